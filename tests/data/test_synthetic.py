"""Synthetic ml-100k-format archives: layout, determinism, TFDS-parsability, planted structure."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from tensorflow_datasets.structured import movielens_parsing

from tfrs_lab.data.splits import leave_last_out_split
from tfrs_lab.data.synthetic import (
    ML100K_GENRES,
    ML100K_OCCUPATIONS,
    SyntheticSpec,
    planted_clusters,
    write_synthetic_zip,
)

SPEC = SyntheticSpec(num_users=120, num_movies=80, ratings_per_user=25, seed=0)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return write_synthetic_zip(SPEC, tmp_path_factory.mktemp("synthetic") / "ml-100k.zip")


@pytest.fixture(scope="module")
def extracted(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("extracted")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(out)
    return out / "ml-100k"


@pytest.fixture(scope="module")
def ratings(extracted):
    """u.data as int64 columns (user, movie, rating, timestamp)."""
    rows = np.loadtxt(extracted / "u.data", dtype=np.int64, delimiter="\t", ndmin=2)
    return {"user": rows[:, 0], "movie": rows[:, 1], "rating": rows[:, 2], "timestamp": rows[:, 3]}


def test_same_spec_gives_identical_bytes_and_seeds_differ(tmp_path, archive):
    again = write_synthetic_zip(SPEC, tmp_path / "again.zip")
    assert again.read_bytes() == archive.read_bytes()
    other = write_synthetic_zip(SyntheticSpec(num_users=120, num_movies=80, ratings_per_user=25, seed=1),
                                tmp_path / "other.zip")
    assert other.read_bytes() != archive.read_bytes()


def test_archive_has_the_ml100k_layout_and_formats(archive, extracted, ratings):
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
    for name in ("u.data", "u.item", "u.user", "u.genre", "u.occupation"):
        assert f"ml-100k/{name}" in names
    items = (extracted / "u.item").read_text(encoding="latin-1").splitlines()
    assert len(items) == SPEC.num_movies
    for line in items:
        fields = line.split("|")
        assert len(fields) == 24
        assert set(fields[5:]) <= {"0", "1"} and "1" in fields[5:]
    users = [line.split("|") for line in (extracted / "u.user").read_text().splitlines()]
    assert len(users) == SPEC.num_users
    assert {u[2] for u in users} <= {"M", "F"}
    assert {u[3] for u in users} <= set(ML100K_OCCUPATIONS)
    genre_lines = [g for g in (extracted / "u.genre").read_text().splitlines() if g]
    assert [g.split("|")[0] for g in genre_lines] == list(ML100K_GENRES)
    # Ratings: integer stars, unique (user, movie) pairs, at least 8 per user, ~1 year of seconds.
    assert set(np.unique(ratings["rating"]).tolist()) <= {1, 2, 3, 4, 5}
    pairs = ratings["user"] * 10_000 + ratings["movie"]
    assert np.unique(pairs).size == pairs.size
    per_user = np.bincount(ratings["user"])[1:]
    assert per_user.min() >= 8 and per_user.size == SPEC.num_users
    assert 15 < per_user.mean() < 35
    span_days = (ratings["timestamp"].max() - ratings["timestamp"].min()) / 86_400
    assert 200 < span_days <= 366
    # Repeated timestamps within a user, as in the real data.
    user_ts = ratings["user"] * 10**10 + ratings["timestamp"]
    assert np.unique(user_ts).size < 0.9 * user_ts.size


def test_tfds_movielens_parser_reads_every_row(extracted, ratings):
    examples = list(movielens_parsing.parse_100k_ratings_data(str(extracted)))
    assert len(examples) == ratings["user"].size
    _, first = examples[0]
    assert first["user_id"] == str(ratings["user"][0])
    assert first["movie_genres"] and first["user_occupation_label"]
    movies = list(movielens_parsing.parse_100k_movies_data(str(extracted)))
    assert len(movies) == SPEC.num_movies


def test_planted_structure_rewards_learning_over_popularity(ratings):
    planted = planted_clusters(SPEC)
    u, m = ratings["user"] - 1, ratings["movie"] - 1
    home = planted.movie_cluster[m] == planted.user_cluster[u]
    second = planted.movie_cluster[m] == planted.user_second_cluster[u]
    in_taste = home | second
    # ~0.8 by design; lower here because 10-movie clusters run out for 25-rating users.
    assert in_taste.mean() > 0.6  # vs ~2/8 = 0.25 for random picks
    assert ratings["rating"][in_taste].mean() > ratings["rating"][~in_taste].mean() + 1.0
    # Temporal drift: held-out last items come from the second cluster more than early ones.
    cols = {
        "user_id": ratings["user"].astype(str).astype(object),
        "movie_id": ratings["movie"].astype(str).astype(object),
        "timestamp": ratings["timestamp"],
    }
    split = leave_last_out_split(cols)
    assert second[split.test].mean() > second[split.train].mean() + 0.15
    # Knowing the user's (drifted) cluster beats global popularity by a wide margin.
    counts = np.bincount(m[split.train], minlength=SPEC.num_movies)
    popular = np.argsort(-counts, kind="stable")[:10]
    pop_recall = np.isin(m[split.test], popular).mean()
    hits = 0
    for row in split.test:
        cluster = planted.user_second_cluster[u[row]]
        members = np.flatnonzero(planted.movie_cluster == cluster)
        hits += m[row] in members[np.argsort(-counts[members], kind="stable")][:10]
    assert hits / split.test.size > pop_recall + 0.2, (hits / split.test.size, pop_recall)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_users": 0}, "num_users must be >= 1"),
    ({"num_clusters": 1}, "num_clusters must be >= 2"),
    ({"num_movies": 3}, "num_movies must be >="),
    ({"ratings_per_user": 1}, "ratings_per_user must be >="),
])
def test_spec_rejects_impossible_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticSpec(**kwargs)
