"""Splits of docs/architecture.md#splits: hash buckets and leave-last-out, deterministic and row-order independent."""

from __future__ import annotations

import numpy as np
import pytest

from tfrs_lab.data import splits
from tfrs_lab.data.movielens import DataError
from tfrs_lab.data.splits import (
    hash_buckets,
    hash_split,
    leave_last_out_split,
    make_split,
    sequence_order,
)

# tf.strings.to_hash_bucket_fast("<user>:<movie>", n), worked out once with TensorFlow 2.20
# (FarmHash Fingerprint64 mod n; stable across TF versions, which is what makes the split portable).
HAND_PAIRS = [
    ("196", "242", 9, 119),
    ("186", "302", 6, 446),
    ("1", "1", 8, 618),
    ("943", "1330", 3, 13),
    ("22", "377", 6, 486),
    ("10", "9", 8, 648),
    ("9", "10", 8, 518),
    ("user-x", "movie-y", 4, 254),
]


def _ratings(rows: list[tuple[str, str, int]]) -> dict[str, np.ndarray]:
    """Ratings columns from (user_id, movie_id, timestamp) rows."""
    users, movies, ts = zip(*rows)
    return {
        "user_id": np.array(users, dtype=object),
        "movie_id": np.array(movies, dtype=object),
        "timestamp": np.array(ts, dtype=np.int64),
        "user_rating": np.full(len(rows), 3.0, dtype=np.float32),
    }


def _assignment(ratings: dict[str, np.ndarray], split: splits.Split) -> dict[tuple[str, str], str]:
    out = {}
    for part in ("train", "validation", "test"):
        for i in getattr(split, part):
            out[(ratings["user_id"][i], ratings["movie_id"][i])] = part
    return out


def _shuffled(ratings: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(len(ratings["user_id"]))
    return {k: v[perm] for k, v in ratings.items()}


def _check_partition(split: splits.Split, n: int) -> None:
    parts = [split.train, split.validation, split.test]
    for part in parts:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0), "indices must be sorted ascending and unique"
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n)), "disjoint and complete"


def test_hash_buckets_match_tf_strings_on_hand_made_pairs():
    users = np.array([p[0] for p in HAND_PAIRS], dtype=object)
    movies = np.array([p[1] for p in HAND_PAIRS], dtype=object)
    assert hash_buckets(users, movies).tolist() == [p[2] for p in HAND_PAIRS]
    assert hash_buckets(users, movies, num_buckets=1000).tolist() == [p[3] for p in HAND_PAIRS]
    assert hash_buckets(users, movies).dtype == np.int64


def test_hash_buckets_accept_bytes_and_are_chunk_independent(monkeypatch):
    rng = np.random.default_rng(0)
    users = np.array([str(u) for u in rng.integers(1, 500, 1000)], dtype=object)
    movies = np.array([str(m) for m in rng.integers(1, 900, 1000)], dtype=object)
    whole = hash_buckets(users, movies)
    as_bytes = hash_buckets(users.astype("S"), np.array([m.encode() for m in movies], object))
    monkeypatch.setattr(splits, "_HASH_CHUNK", 7)
    chunked = hash_buckets(users, movies)
    assert np.array_equal(whole, as_bytes) and np.array_equal(whole, chunked)
    assert set(whole.tolist()) == set(range(10))


def test_hash_split_buckets_partition_and_proportions(synthetic_data):
    ratings = synthetic_data.ratings
    split = hash_split(ratings)
    n = len(ratings["user_id"])
    _check_partition(split, n)
    assert split.name == "hash"
    buckets = hash_buckets(ratings["user_id"], ratings["movie_id"])
    assert set(buckets[split.train].tolist()) <= set(range(8))
    assert set(buckets[split.validation].tolist()) == {8}
    assert set(buckets[split.test].tolist()) == {9}
    assert 0.75 < len(split.train) / n < 0.85
    assert 0.07 < len(split.test) / n < 0.13


@pytest.mark.parametrize("name", ["hash", "leave-last-out"])
def test_splits_are_deterministic_and_row_order_independent(synthetic_data, name):
    ratings = synthetic_data.ratings
    first = make_split(name, ratings)
    again = make_split(name, ratings)
    for part in ("train", "validation", "test"):
        assert np.array_equal(getattr(first, part), getattr(again, part))
    shuffled = _shuffled(ratings, seed=1)
    other = make_split(name, shuffled)
    _check_partition(other, len(ratings["user_id"]))
    assert _assignment(ratings, first) == _assignment(shuffled, other)


def test_leave_last_out_breaks_timestamp_ties_by_integer_movie_id():
    ratings = _ratings(
        [
            ("1", "9", 100),  # same timestamp as "10": as integers 9 < 10, so "10" is the last
            ("1", "10", 100),
            ("1", "5", 50),
            ("1", "7", 10),
        ]
    )
    split = leave_last_out_split(ratings)
    movies = ratings["movie_id"]
    assert movies[split.test].tolist() == ["10"]
    assert movies[split.validation].tolist() == ["9"]
    assert sorted(movies[split.train].tolist()) == ["5", "7"]
    assert movies[sequence_order(ratings)].tolist() == ["7", "5", "9", "10"]


def test_leave_last_out_users_with_fewer_than_three_ratings_go_to_train():
    ratings = _ratings(
        [
            ("a", "1", 5),
            ("b", "1", 5),
            ("b", "2", 6),
            ("c", "3", 1),
            ("c", "1", 2),
            ("c", "2", 3),
        ]
    )
    split = leave_last_out_split(ratings)
    assert _assignment(ratings, split) == {
        ("a", "1"): "train",
        ("b", "1"): "train",
        ("b", "2"): "train",
        ("c", "3"): "train",
        ("c", "1"): "validation",
        ("c", "2"): "test",
    }


def test_leave_last_out_on_synthetic_data_holds_out_each_users_latest(synthetic_data):
    ratings = synthetic_data.ratings
    split = leave_last_out_split(ratings)
    _check_partition(split, len(ratings["user_id"]))
    users = ratings["user_id"]
    assert len(set(users[split.test])) == len(split.test) == len(set(users))  # one per user
    assert set(users[split.validation]) == set(users[split.test])
    ts = ratings["timestamp"]
    latest_train = {}
    for i in split.train:
        latest_train[users[i]] = max(latest_train.get(users[i], ts[i]), ts[i])
    val_ts = dict(zip(users[split.validation], ts[split.validation]))
    for i in split.test:
        assert ts[i] >= val_ts[users[i]] >= latest_train[users[i]]


def test_sequence_order_groups_users_and_sorts_by_time():
    ratings = _ratings([("2", "1", 30), ("10", "4", 5), ("2", "3", 10), ("10", "2", 5)])
    order = sequence_order(ratings)
    assert order.dtype == np.int64
    # Users in string order ("10" < "2"); within a user by (timestamp, int(movie_id)).
    assert order.tolist() == [3, 1, 2, 0]


def test_empty_ratings_give_empty_splits():
    empty = {
        "user_id": np.array([], dtype=object),
        "movie_id": np.array([], dtype=object),
        "timestamp": np.array([], dtype=np.int64),
    }
    for name in ("hash", "leave-last-out"):
        split = make_split(name, empty)
        assert all(len(getattr(split, p)) == 0 for p in ("train", "validation", "test"))


def test_make_split_rejects_unknown_names():
    with pytest.raises(DataError, match="unknown split 'random': choose hash, leave-last-out, time, held-out-users, predefined"):
        make_split("random", _ratings([("1", "1", 1)]))


def test_sequence_order_is_stable_for_equal_keys():
    # Rows 0 and 2 have identical keys; later code (recent histories) relies on input order.
    ratings = _ratings([("1", "5", 7), ("1", "3", 7), ("1", "5", 7)])
    assert sequence_order(ratings).tolist() == [1, 0, 2]
