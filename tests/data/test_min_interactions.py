"""``data.min_user_interactions`` / ``data.min_item_interactions`` (the SASRec / BERT4Rec protocol's
minimum counts, docs/architecture.md#splits): one pass on the unfiltered counts, catalogue trimmed,
applied when a run loads its data, and bad values refused in one line (exit code 2, nothing written)."""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_lab import train
from tfrs_lab.config import default_config_file, load_config
from tfrs_lab.data.movielens import DataError, MovieLensData
from tfrs_lab.data.splits import leave_last_out_split, min_interactions_filter
from tfrs_lab.training.runner import load_data, prepare


def _data() -> MovieLensData:
    # user a: 4 rows, b: 3 rows, c: 1 row; item 1: 3 rows, 2: 2, 3: 2, 4: 1; catalogue also has 5 (no rows)
    rows = [("a", "1"), ("a", "2"), ("a", "3"), ("a", "4"), ("b", "1"), ("b", "2"), ("b", "3"), ("c", "1")]
    users, movies = zip(*rows)
    n = len(rows)
    ratings = {"user_id": np.array(users, dtype=object), "movie_id": np.array(movies, dtype=object),
               "user_rating": np.arange(n, dtype=np.float32), "timestamp": np.arange(n, dtype=np.int64) + 100}
    catalogue = {"movie_id": np.array(["1", "2", "3", "4", "5"], dtype=object),
                 "movie_title": np.array(["m1", "m2", "m3", "m4", "m5"], dtype=object),
                 "movie_genres": np.eye(5, 3, dtype=np.float32)}
    return MovieLensData("tiny", ratings, catalogue)


def test_one_pass_on_the_unfiltered_counts_and_the_catalogue_trimmed():
    data = _data()
    out = min_interactions_filter(data, min_user=3, min_item=2)
    # c (1 row) and item 4 (1 row) go; b keeps 3 rows, a keeps 3 (a's item-4 row went) — not re-counted
    assert list(out.ratings["user_id"]) == ["a", "a", "a", "b", "b", "b"]
    assert list(out.ratings["movie_id"]) == ["1", "2", "3", "1", "2", "3"]
    np.testing.assert_array_equal(out.ratings["user_rating"], [0, 1, 2, 4, 5, 6])  # every column, row order kept
    np.testing.assert_array_equal(out.ratings["timestamp"], [100, 101, 102, 104, 105, 106])
    assert list(out.movies["movie_id"]) == ["1", "2", "3"] and list(out.movies["movie_title"]) == ["m1", "m2", "m3"]
    np.testing.assert_array_equal(out.movies["movie_genres"], np.eye(5, 3, dtype=np.float32)[:3])
    assert out.dataset == "tiny" and data.num_ratings == 8  # the input is untouched

    # one pass, not a k-core: at min_user=4 only a survives the user filter, and with min_item=3 only
    # item 1 (3 rows in the unfiltered table) — leaving a with a single row
    single = min_interactions_filter(data, min_user=4, min_item=3)
    assert list(zip(single.ratings["user_id"], single.ratings["movie_id"])) == [("a", "1")]
    # users only (BERT4Rec): the whole catalogue stays
    users_only = min_interactions_filter(data, min_user=2)
    assert "c" not in set(users_only.ratings["user_id"]) and len(users_only.movies["movie_id"]) == 5
    assert min_interactions_filter(data) is data and min_interactions_filter(data, 1, 0) is data
    assert len(min_interactions_filter(data, 0, 1).movies["movie_id"]) == 4  # the item without rows goes
    with pytest.raises(DataError, match="must be >= 0"):
        min_interactions_filter(data, min_user=-1)


def test_a_run_loads_the_filtered_data_and_splits_it():
    base = ["data.dataset=synthetic", "data.synthetic.num_users=120", "data.synthetic.num_movies=200", "data.synthetic.ratings_per_user=12"]
    files = [default_config_file("sequential")]
    raw = load_data(load_config("sequential", files, base))
    users, user_counts = np.unique(raw.ratings["user_id"].astype(str), return_counts=True)
    items, item_counts = np.unique(raw.ratings["movie_id"].astype(str), return_counts=True)
    min_user, min_item = int(np.median(user_counts)), int(np.median(item_counts))
    assert (user_counts < min_user).any() and (item_counts < min_item).any()  # the filter has work to do
    cfg = load_config("sequential", files, [*base, f"data.min_user_interactions={min_user}",
                                            f"data.min_item_interactions={min_item}"])
    prepared = prepare("sequential", cfg)
    kept = prepared.data
    rare_users = set(users[user_counts < min_user])
    rare_items = set(items[item_counts < min_item])
    assert not rare_users & set(kept.ratings["user_id"].astype(str))
    assert not rare_items & set(kept.ratings["movie_id"].astype(str))
    assert not rare_items & set(kept.movies["movie_id"].astype(str))  # ranked catalogue = kept items
    expected = min_interactions_filter(raw, min_user, min_item)
    assert kept.num_ratings == expected.num_ratings < raw.num_ratings
    split = leave_last_out_split(kept.ratings)
    for part in ("train", "validation", "test"):
        np.testing.assert_array_equal(getattr(prepared.split, part), getattr(split, part))


@pytest.mark.parametrize("key", ["data.min_user_interactions", "data.min_item_interactions"])
def test_a_negative_minimum_is_refused_in_one_line(tmp_path, capsys, key):
    out = tmp_path / "run"
    code = train.main(["sequential", "--dataset", "synthetic", "--set", f"{key}=-1", "--output-dir", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert f"{key} must be >= 0, got -1" in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not out.exists()
