"""Deterministic, row-order-independent train/validation/test splits (docs/architecture.md#splits).

Both splits depend only on the ``(user_id, movie_id, timestamp)`` values of a rating, never on the
row order, so any tool can reproduce them:

* ``hash``: bucket = ``tf.strings.to_hash_bucket_fast("<user_id>:<movie_id>", 10)``; buckets 0-7
  train, 8 validation, 9 test.
* ``leave-last-out``: per user, order by (timestamp, movie_id compared as an integer); the last
  rating is test, the one before validation, the rest train. Users with fewer than 3 ratings go to
  train entirely.

Index arrays are int64 row indices into the ``ratings`` columns, sorted ascending.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from tfrs_lab.data.movielens import DataError

__all__ = [
    "HASH",
    "LEAVE_LAST_OUT",
    "SPLIT_NAMES",
    "Split",
    "hash_buckets",
    "hash_split",
    "leave_last_out_split",
    "make_split",
    "sequence_order",
]

logger = logging.getLogger(__name__)

HASH = "hash"
LEAVE_LAST_OUT = "leave-last-out"
SPLIT_NAMES: tuple[str, ...] = (HASH, LEAVE_LAST_OUT)

_NUM_BUCKETS = 10
_TRAIN_BUCKETS = 8  # buckets 0..7
_VALIDATION_BUCKET = 8
_TEST_BUCKET = 9
_HASH_CHUNK = 1 << 20  # rows hashed per TF call (bounds the memory of the joined strings)


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Row indices of one split of a ratings table.

    Attributes:
        name: ``"hash"`` or ``"leave-last-out"``.
        train: int64 ``[n_train]`` row indices into the ratings columns, sorted ascending.
        validation: int64 ``[n_validation]``, sorted ascending.
        test: int64 ``[n_test]``, sorted ascending.

    The three index sets are disjoint and together cover every row.
    """

    name: str
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def _as_str_array(values: np.ndarray) -> np.ndarray:
    """Returns ``values`` as a numpy unicode array (accepts str/bytes object arrays)."""
    values = np.asarray(values)
    if values.dtype.kind == "S" or (
        values.dtype == object and values.size and isinstance(values.flat[0], bytes)
    ):
        return np.char.decode(values.astype("S"), "utf-8")
    return values.astype(str)


def hash_buckets(
    user_id: np.ndarray, movie_id: np.ndarray, num_buckets: int = _NUM_BUCKETS
) -> np.ndarray:
    """Hash bucket of every rating, exactly as docs/architecture.md#splits defines it.

    Args:
        user_id: ``[n]`` raw user ids (object array of ``str``, or any string array).
        movie_id: ``[n]`` raw movie ids, same length.
        num_buckets: number of buckets.

    Returns:
        int64 ``[n]``: ``tf.strings.to_hash_bucket_fast("<user_id>:<movie_id>", num_buckets)``,
        computed vectorised in chunks of 2**20 rows.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    user_id = _as_str_array(user_id)
    movie_id = _as_str_array(movie_id)
    if user_id.shape != movie_id.shape or user_id.ndim != 1:
        raise ValueError(
            f"user_id and movie_id must be 1-D of the same length, got {user_id.shape} and "
            f"{movie_id.shape}"
        )
    out = np.empty(user_id.shape[0], dtype=np.int64)
    for start in range(0, user_id.shape[0], _HASH_CHUNK):
        stop = start + _HASH_CHUNK
        keys = tf.strings.join(
            [tf.constant(user_id[start:stop]), tf.constant(movie_id[start:stop])], separator=":"
        )
        out[start:stop] = tf.strings.to_hash_bucket_fast(keys, num_buckets).numpy()
    return out


def hash_split(ratings: dict[str, np.ndarray]) -> Split:
    """Hash split: buckets 0-7 train, 8 validation, 9 test (about 80/10/10).

    Args:
        ratings: columns with at least ``user_id`` and ``movie_id`` (``[n]`` string arrays).
    """
    buckets = hash_buckets(ratings["user_id"], ratings["movie_id"], _NUM_BUCKETS)
    return Split(
        name=HASH,
        train=np.flatnonzero(buckets < _TRAIN_BUCKETS).astype(np.int64),
        validation=np.flatnonzero(buckets == _VALIDATION_BUCKET).astype(np.int64),
        test=np.flatnonzero(buckets == _TEST_BUCKET).astype(np.int64),
    )


def _movie_order_key(movie_id: np.ndarray) -> np.ndarray:
    """Sort key for movie ids: the integer value, or the string when an id is not an integer."""
    ids = _as_str_array(movie_id)
    try:
        return ids.astype(np.int64)
    except ValueError:
        logger.warning(
            "movie ids are not all integers; tie-breaking equal timestamps by the id as a string"
        )
        return ids


def sequence_order(ratings: dict[str, np.ndarray]) -> np.ndarray:
    """Row indices ordered by (user_id, timestamp, int(movie_id)).

    Args:
        ratings: columns with at least ``user_id`` (``[n]`` strings), ``timestamp`` (int64 ``[n]``,
            unix seconds) and ``movie_id`` (``[n]`` strings holding integers).

    Returns:
        int64 ``[n]`` permutation of the rows: users in ascending string order of their id, each
        user's ratings from oldest to newest, equal timestamps by the movie id as an integer.
        Stable: rows with equal keys keep their input order (so the result is independent of the
        input row order whenever the (user, movie) pairs are distinct).
    """
    return _sequence_order(ratings)[0]


def _sequence_order(ratings: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(:func:`sequence_order`, the user ids as a unicode array) -- converted once."""
    users = _as_str_array(ratings["user_id"])
    timestamps = np.asarray(ratings["timestamp"], dtype=np.int64)
    movies = _movie_order_key(ratings["movie_id"])
    # np.lexsort: the last key is the primary one.
    return np.lexsort((movies, timestamps, users)).astype(np.int64), users


def leave_last_out_split(ratings: dict[str, np.ndarray]) -> Split:
    """Leave-last-out split: per user the last rating is test, the one before validation.

    Ratings are ordered per user with :func:`sequence_order`. Users with fewer than 3 ratings keep
    all their ratings in train. Fully vectorised (no per-user Python loop).

    Args:
        ratings: columns ``user_id``, ``movie_id`` (``[n]`` strings), ``timestamp`` (int64 ``[n]``).
    """
    order, users = _sequence_order(ratings)
    n = order.shape[0]
    users_sorted = users[order]
    # Position of each sorted row counted from the end of its user's block: 0 = last.
    is_block_end = np.ones(n, dtype=bool)
    if n:
        is_block_end[:-1] = users_sorted[1:] != users_sorted[:-1]
    block_end = np.flatnonzero(is_block_end)
    block_of_row = np.searchsorted(block_end, np.arange(n), side="left")
    from_end = block_end[block_of_row] - np.arange(n)
    block_start = np.concatenate(([0], block_end[:-1] + 1)) if n else block_end
    block_size = (block_end - block_start + 1)[block_of_row]
    eligible = block_size >= 3
    test = np.sort(order[eligible & (from_end == 0)])
    validation = np.sort(order[eligible & (from_end == 1)])
    train = np.sort(order[~eligible | (from_end >= 2)])
    return Split(name=LEAVE_LAST_OUT, train=train, validation=validation, test=test)


def make_split(name: str, ratings: dict[str, np.ndarray]) -> Split:
    """Returns the split called ``name`` (``"hash"`` or ``"leave-last-out"``) of ``ratings``.

    Raises:
        DataError: for an unknown name.
    """
    if name == HASH:
        return hash_split(ratings)
    if name == LEAVE_LAST_OUT:
        return leave_last_out_split(ratings)
    raise DataError(f"unknown split {name!r}: choose hash or leave-last-out")
