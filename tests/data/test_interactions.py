"""Compact interactions (tfrs_lab.data.interactions): the prepared dataset read without a string per
row gives the same codes, splits, vocabularies and histories as the string columns. Small seeded
files in tmp_path only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tfrs_lab.data import DataError, read_source
from tfrs_lab.data.features import build_vocabularies
from tfrs_lab.data.history import PAD, latest_history, recent_history
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.movielens import MovieLensData
from tfrs_lab.data.prepared import prepare_dataset
from tfrs_lab.data.splits import SplitOptions, make_split
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.schema import build

pytest.importorskip("pyarrow")

FIT = dict(has_user_features=False, title_vocab_size=50, title_max_tokens=4, timestamp_buckets=8)


def own_source(tmp_path, missing_items: str = "keep") -> SourceSpec:
    """400 plays of 30 listeners over tracks 1..25 with many equal timestamps (tie-breaks by the
    track as an integer: "10" sorts before "9" as text); the catalogue lacks 21..25."""
    rng = np.random.default_rng(3)
    n = 400
    lines = ["listener,track,when"] + [f"L{u},{i},{t}" for u, i, t in zip(
        rng.integers(0, 30, n), rng.integers(1, 26, n), 1_600_000_000 + rng.integers(0, 30, n))]
    (tmp_path / "plays.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "tracks.csv").write_text("sku,name,tags\n" + "".join(
        f"{i},Track {i},{'rock|pop' if i % 2 else 'jazz'}\n" for i in list(range(1, 21)) + [999]))
    return build(SourceSpec, {
        "name": "plays", "missing_items": missing_items,
        "interactions": {"path": str(tmp_path / "plays.csv"),
                         "columns": {"user": "listener", "item": "track", "time": "when"}},
        "items": {"path": str(tmp_path / "tracks.csv"), "columns": {"id": "sku", "text": "name", "categories": "tags"}},
    }, "data.source")


@pytest.fixture(params=["keep", "drop"])
def prepared(request, tmp_path):
    spec = own_source(tmp_path, request.param)
    return prepare_dataset(spec, cache_dir=tmp_path / "cache"), read_source(spec)


def strings(inter: Interactions, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return inter.user_ids[inter.user[rows]], inter.item_ids[inter.item[rows]]


def test_prepared_and_in_memory_encodings_agree(prepared):
    ds, data = prepared
    a, b = Interactions.from_prepared(ds), Interactions.from_data(data)
    rows = np.arange(data.num_ratings)
    for inter in (a, b):
        users, items = strings(inter, rows)
        assert (users == data.ratings["user_id"]).all() and (items == data.ratings["movie_id"]).all()
        assert (inter.item_ids[:inter.num_catalogue] == data.movies["movie_id"]).all()
    assert (a.sequence_rows == b.sequence_rows).all() and (a.sequence_offsets == b.sequence_offsets).all()
    assert not a.has_user_features and a.num_ratings == data.num_ratings


@pytest.mark.parametrize("name", ["hash", "leave-last-out", "time", "held-out-users"])
def test_splits_from_codes_equal_the_string_splits(prepared, name):
    ds, data = prepared
    options = SplitOptions(time_validation=0.7, time_test=0.85, validation_users=0.3, test_users=0.3,
                           target_share=0.3)
    want = make_split(name, data.ratings, options)
    got = Interactions.from_prepared(ds).split(name, options)
    for part in ("train", "validation", "test", "fold_in_validation", "fold_in_test"):
        assert np.array_equal(getattr(got, part), getattr(want, part)), part
    if name == "held-out-users":  # the shares above leave every part non-empty on these 30 users
        assert all(len(getattr(got, p)) for p in ("validation", "test", "fold_in_validation", "fold_in_test"))
    assert got.name == want.name


def test_vocabularies_from_codes_equal_build_vocabularies(prepared):
    ds, data = prepared
    split = make_split("hash", data.ratings)
    want = build_vocabularies(data.ratings, data.movies, split.train, **FIT)
    got = Interactions.from_prepared(ds).vocabularies(split.train, **FIT)
    for field in dataclasses.fields(want):
        x, y = getattr(want, field.name), getattr(got, field.name)
        assert (np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y), field.name


def test_histories_and_latest_items_equal_the_string_helpers():
    """Duplicated (user, time, item) rows never see each other; ties order by the item as an integer."""
    ratings = {"user_id": np.array(["b", "a", "a", "a", "a", "b", "a", "a"], dtype=object),
               "movie_id": np.array(["9", "10", "9", "10", "7", "3", "2", "5"], dtype=object),
               "user_rating": np.ones(8, np.float32),
               "timestamp": np.array([5, 1, 1, 1, 2, 5, 3, 0], np.int64)}
    movies = {"movie_id": np.array(["2", "3", "5", "7", "9", "10"], dtype=object),
              "movie_title": np.array(["x"] * 6, dtype=object), "movie_genres": np.zeros((6, 1), np.float32)}
    data = MovieLensData("tiny", ratings, movies)
    inter = Interactions.from_data(data)
    for source_rows in (np.arange(8), np.array([0, 1, 3, 4, 5, 7])):
        source, stop = inter.history_source(source_rows)
        for length in (1, 3, 6):
            want = recent_history(ratings, source_rows, np.arange(8), length)
            at = stop[:, None] - 1 - np.arange(length)[None, :]
            start = source.user_start[inter.user]
            got = np.where(at >= start[:, None], inter.item_ids[source.items[np.maximum(at, 0)]], PAD)
            assert (got == want).all(), (source_rows, length, got, want)
    users = inter.codes_of(np.array(["a", "b"], dtype=object))
    assert (inter.latest(users, 4) == latest_history(ratings, np.arange(8), np.array(["a", "b"]), 4)).all()


def test_a_split_that_needs_the_string_columns_is_refused(prepared):
    with pytest.raises(DataError, match=r"data.split=predefined .* choose one of hash, leave-last-out, time, "
                                        r"held-out-users"):
        Interactions.from_prepared(prepared[0]).split("predefined")
