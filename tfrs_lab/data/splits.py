"""Deterministic, row-order-independent train/validation/test splits (docs/architecture.md#splits).

Every split depends only on the ``(user_id, movie_id, timestamp)`` values of a rating (and on
files or cut-offs the config names), never on the row order, so any tool can reproduce it:

* ``hash``: bucket = ``tf.strings.to_hash_bucket_fast("<user_id>:<movie_id>", 10)``; buckets 0-7
  train, 8 validation, 9 test.
* ``leave-last-out``: per user, order by (timestamp, movie_id compared as an integer); the last
  rating is test, the one before validation, the rest train. Users with fewer than 3 ratings go to
  train entirely.
* ``time``: one global cut-off pair: ``timestamp < t_validation`` train,
  ``t_validation <= timestamp < t_test`` validation, ``timestamp >= t_test`` test.
* ``held-out-users``: users whose ``to_hash_bucket_fast("<user_id>", 1000)`` falls in the first
  validation / test shares are held out; the newest ``target_share`` of each held-out user's
  ratings (at least 1) are the targets (``validation`` / ``test``), the older ones the fold-in
  input (``fold_in_validation`` / ``fold_in_test``); every other user is train.
* ``predefined``: the rows matching a given test table on (user, movie, timestamp) are test; the
  rest is train, with validation carved by the hash bucket 8 of ``"<user_id>:<movie_id>"``.

Each split answers its evaluation :attr:`Split.protocol` (:data:`PROTOCOLS`). Index arrays are
int64 row indices into the ``ratings`` columns, sorted ascending.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging

import numpy as np

from tfrs_lab.data.movielens import DataError, MovieLensData

__all__ = [
    "HASH",
    "HELD_OUT_USERS",
    "LEAVE_LAST_OUT",
    "PREDEFINED",
    "PROTOCOLS",
    "SPLIT_NAMES",
    "Split",
    "SplitOptions",
    "TIME",
    "hash_buckets",
    "hash_split",
    "held_out_users_split",
    "leave_last_out_split",
    "make_split",
    "min_interactions_filter",
    "predefined_split",
    "resolve_time_cutoff",
    "sequence_order",
    "time_split",
]

logger = logging.getLogger(__name__)

HASH = "hash"
LEAVE_LAST_OUT = "leave-last-out"
TIME = "time"
HELD_OUT_USERS = "held-out-users"
PREDEFINED = "predefined"
SPLIT_NAMES: tuple[str, ...] = (HASH, LEAVE_LAST_OUT, TIME, HELD_OUT_USERS, PREDEFINED)
PROTOCOLS: dict[str, str] = {HASH: HASH, TIME: HASH, PREDEFINED: HASH, LEAVE_LAST_OUT: LEAVE_LAST_OUT,
                             HELD_OUT_USERS: HELD_OUT_USERS}
"""Evaluation protocol of each split: ``hash`` (rating-level: every test row is scored on its own:
``rmse``/``mae``, ``hit_rate@K``), ``leave-last-out`` (one target per user, full ranking) or
``held-out-users`` (users unseen in training, folded in from their older ratings; Mult-VAE's
``recall@K``/``ndcg@K`` over several targets)."""

_NUM_BUCKETS = 10
_TRAIN_BUCKETS = 8  # buckets 0..7
_VALIDATION_BUCKET = 8
_TEST_BUCKET = 9
_HASH_CHUNK = 1 << 20  # rows hashed per TF call (bounds the memory of the joined strings)
_USER_BUCKETS = 1000  # held-out-users: shares are resolved to 1/1000
_EMPTY = np.zeros(0, dtype=np.int64)


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Row indices of one split of a ratings table.

    Attributes:
        name: one of :data:`SPLIT_NAMES`.
        train: int64 ``[n_train]`` row indices into the ratings columns, sorted ascending.
        validation: int64 ``[n_validation]``, sorted ascending.
        test: int64 ``[n_test]``, sorted ascending.
        fold_in_validation: int64, sorted: ``held-out-users`` only (else empty): the older ratings
            of the validation users, the model's input when it predicts ``validation``.
        fold_in_test: the same for the test users.

    The five index sets are disjoint and together cover every row.
    """

    name: str
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    fold_in_validation: np.ndarray = dataclasses.field(default_factory=_EMPTY.copy)
    fold_in_test: np.ndarray = dataclasses.field(default_factory=_EMPTY.copy)

    @property
    def protocol(self) -> str:
        """How a model is evaluated on this split (:data:`PROTOCOLS`)."""
        return PROTOCOLS[self.name]


@dataclasses.dataclass(frozen=True)
class SplitOptions:
    """Settings of the configurable splits (``DataConfig``'s ``time_cutoff``, ``held_out_users``).

    Attributes:
        time_validation, time_test: ``time`` cut-offs: a quantile in (0, 1) of the timestamps, unix
            seconds (a number >= 1), or an ISO-8601 date / date-time (UTC unless it names an offset).
        validation_users, test_users: ``held-out-users`` shares of users (multiples of 1/1000).
        target_share: ``held-out-users`` share of each held-out user's newest ratings to predict.
        predefined_test: ``predefined``: columns ``user_id``, ``movie_id``, ``timestamp`` ``[m]``
            of the test rows (:func:`predefined_split`).
        predefined_train: optional, the same for the training rows; when given, every rating must
            match one of the two tables.
    """

    time_validation: float | str = 0.8
    time_test: float | str = 0.9
    validation_users: float = 0.1
    test_users: float = 0.1
    target_share: float = 0.2
    predefined_test: dict[str, np.ndarray] | None = None
    predefined_train: dict[str, np.ndarray] | None = None


def _as_str_array(values: np.ndarray) -> np.ndarray:
    """Returns ``values`` as a numpy unicode array (accepts str/bytes object arrays)."""
    values = np.asarray(values)
    if values.dtype.kind == "S" or (
        values.dtype == object and values.size and isinstance(values.flat[0], bytes)
    ):
        return np.char.decode(values.astype("S"), "utf-8")
    return values.astype(str)


def hash_buckets(
    user_id: np.ndarray, movie_id: np.ndarray | None, num_buckets: int = _NUM_BUCKETS
) -> np.ndarray:
    """Hash bucket of every rating, exactly as docs/architecture.md#splits defines it.

    Args:
        user_id: ``[n]`` raw user ids (object array of ``str``, or any string array).
        movie_id: ``[n]`` raw movie ids, same length; ``None`` hashes the user id alone.
        num_buckets: number of buckets.

    Returns:
        int64 ``[n]``: ``tf.strings.to_hash_bucket_fast("<user_id>:<movie_id>", num_buckets)``
        (``"<user_id>"`` without movie ids), computed vectorised in chunks of 2**20 rows.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    parts = [_as_str_array(user_id)] + ([] if movie_id is None else [_as_str_array(movie_id)])
    if parts[-1].shape != parts[0].shape or parts[0].ndim != 1:
        raise ValueError(
            f"user_id and movie_id must be 1-D of the same length, got {parts[0].shape} and "
            f"{parts[-1].shape}"
        )
    out = np.empty(parts[0].shape[0], dtype=np.int64)
    for start in range(0, parts[0].shape[0], _HASH_CHUNK):
        stop = start + _HASH_CHUNK
        keys = tf.strings.join([tf.constant(p[start:stop]) for p in parts], separator=":")
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


def _user_blocks(ratings: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each user's ratings in :func:`sequence_order`, with per sorted row its position counted from
    the end of its user's block (0 = newest) and the block's size.

    Returns:
        (order int64 ``[n]``, users_sorted ``[n]`` unicode, from_end int64 ``[n]``, block_size int64 ``[n]``).
    """
    order, users = _sequence_order(ratings)
    n = order.shape[0]
    users_sorted = users[order]
    is_block_end = np.ones(n, dtype=bool)
    if n:
        is_block_end[:-1] = users_sorted[1:] != users_sorted[:-1]
    block_end = np.flatnonzero(is_block_end)
    block_of_row = np.searchsorted(block_end, np.arange(n), side="left")
    from_end = block_end[block_of_row] - np.arange(n)
    block_start = np.concatenate(([0], block_end[:-1] + 1)) if n else block_end
    block_size = (block_end - block_start + 1)[block_of_row]
    return order, users_sorted, from_end.astype(np.int64), block_size.astype(np.int64)


def leave_last_out_split(ratings: dict[str, np.ndarray]) -> Split:
    """Leave-last-out split: per user the last rating is test, the one before validation.

    Ratings are ordered per user with :func:`sequence_order`. Users with fewer than 3 ratings keep
    all their ratings in train. Fully vectorised (no per-user Python loop).

    Args:
        ratings: columns ``user_id``, ``movie_id`` (``[n]`` strings), ``timestamp`` (int64 ``[n]``).
    """
    order, _, from_end, block_size = _user_blocks(ratings)
    eligible = block_size >= 3
    test = np.sort(order[eligible & (from_end == 0)])
    validation = np.sort(order[eligible & (from_end == 1)])
    train = np.sort(order[~eligible | (from_end >= 2)])
    return Split(name=LEAVE_LAST_OUT, train=train, validation=validation, test=test)


def min_interactions_filter(data: MovieLensData, min_user: int = 0, min_item: int = 0) -> MovieLensData:
    """Drops the rows of rare users and items before any split (``data.min_user_interactions`` /
    ``data.min_item_interactions``; docs/architecture.md#splits).

    One pass, as SASRec's preprocessing does (Kang & McAuley 2018, ``data/DataProcessing.py``): a
    row is kept when its user has at least ``min_user`` and its item at least ``min_item`` rows in
    the *unfiltered* table, so a kept user can end with fewer than ``min_user`` rows (not a k-core).
    With ``min_item > 0`` the catalogue keeps only the items left with a row: ranking the "full
    catalogue" then means the items the protocol keeps. ``0`` (the default) keeps everything.

    Args:
        data: ratings and catalogue.
        min_user, min_item: minimum rows per user / per item (>= 0).

    Returns:
        ``data`` itself when nothing is dropped, otherwise a new :class:`MovieLensData` with every
        ratings column restricted to the kept rows (row order kept) and, with ``min_item > 0``,
        the catalogue restricted to the kept items (catalogue order kept).
    """
    if min_user < 0 or min_item < 0:
        raise DataError(f"minimum interactions must be >= 0, got users {min_user}, items {min_item}")
    r = data.ratings
    keep = np.ones(data.num_ratings, dtype=bool)
    for column, minimum in (("user_id", min_user), ("movie_id", min_item)):
        if minimum > 1:
            _, inverse, counts = np.unique(_as_str_array(r[column]), return_inverse=True, return_counts=True)
            keep &= counts[inverse.ravel()] >= minimum
    movies = data.movies
    if min_item > 0:
        kept_items = np.isin(_as_str_array(movies["movie_id"]), _as_str_array(r["movie_id"][keep]))
        if not kept_items.all():
            movies = {k: v[kept_items] for k, v in movies.items()}
    if keep.all() and movies is data.movies:
        return data
    logger.info("minimum interactions (users %d, items %d): kept %d of %d rows, %d of %d catalogue items",
                min_user, min_item, int(keep.sum()), keep.size, len(movies["movie_id"]), len(data.movies["movie_id"]))
    return dataclasses.replace(data, ratings={k: v[keep] for k, v in r.items()}, movies=movies)


def resolve_time_cutoff(value: float | str, timestamps: np.ndarray, what: str = "data.time_cutoff") -> int:
    """A ``time`` cut-off in unix seconds.

    Args:
        value: a quantile ``q`` in (0, 1): the timestamp at position ``floor(q * n)`` of the ``n``
            sorted timestamps (so about a share ``q`` of the ratings lie strictly before it); a
            number ``>= 1``: unix seconds; a string: an ISO-8601 date or date-time (UTC unless it
            names an offset), e.g. ``1998-03-01`` or ``1998-03-01T12:00:00+02:00``.
        timestamps: int64 ``[n]`` unix seconds of every rating.
        what: the config path named in errors.

    Raises:
        DataError: a value that is none of these (one line naming ``what``).
    """
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            raise DataError(f"{what}={value!r} is not an ISO-8601 date: use e.g. 1998-03-01, unix seconds or "
                            "a quantile in (0, 1)") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.timezone.utc)
        return int(parsed.timestamp())
    value = float(value)
    if 0.0 < value < 1.0:
        ts = np.sort(np.asarray(timestamps, dtype=np.int64))
        if not ts.size:
            return 0
        return int(ts[min(int(np.floor(value * ts.size)), ts.size - 1)])
    if value >= 1.0 and value == int(value):
        return int(value)
    raise DataError(f"{what}={value!r} must be a quantile in (0, 1), whole unix seconds (>= 1) or an ISO-8601 date")


def time_split(ratings: dict[str, np.ndarray], validation: float | str = 0.8, test: float | str = 0.9) -> Split:
    """Global time split: ``ts < t_val`` train, ``t_val <= ts < t_test`` validation, ``ts >= t_test`` test.

    A rating exactly at a cut-off goes to the later part, so ties never straddle the boundary in
    an order-dependent way.

    Args:
        ratings: columns with at least ``timestamp`` (int64 ``[n]``, unix seconds).
        validation, test: the cut-offs (:func:`resolve_time_cutoff`).

    Raises:
        DataError: when the validation cut-off lies after the test cut-off.
    """
    ts = np.asarray(ratings["timestamp"], dtype=np.int64)
    t_val = resolve_time_cutoff(validation, ts, "data.time_cutoff.validation")
    t_test = resolve_time_cutoff(test, ts, "data.time_cutoff.test")
    if t_val > t_test:
        raise DataError(f"data.time_cutoff.validation ({validation!r} = {t_val}) must not be after "
                        f"data.time_cutoff.test ({test!r} = {t_test}): swap them or pick an earlier validation cut-off")
    return Split(
        name=TIME,
        train=np.flatnonzero(ts < t_val).astype(np.int64),
        validation=np.flatnonzero((ts >= t_val) & (ts < t_test)).astype(np.int64),
        test=np.flatnonzero(ts >= t_test).astype(np.int64),
    )


def held_out_users_split(ratings: dict[str, np.ndarray], validation_users: float = 0.1, test_users: float = 0.1,
                         target_share: float = 0.2) -> Split:
    """Strong generalisation (Mult-VAE, Liang et al. 2018): held-out users, folded in at evaluation.

    A user is a validation user when ``to_hash_bucket_fast("<user_id>", 1000)`` is below
    ``round(1000 * validation_users)``, a test user when it is below that plus
    ``round(1000 * test_users)``. For a held-out user with ``n >= 2`` ratings, in
    :func:`sequence_order`, the newest ``max(1, floor(target_share * n))`` are the targets and the
    rest the fold-in input; a held-out user with a single rating is dropped into train.

    Args:
        ratings: columns ``user_id``, ``movie_id`` (``[n]`` strings), ``timestamp`` (int64 ``[n]``).
        validation_users, test_users: shares of users in [0, 1), summing to < 1.
        target_share: share of a held-out user's ratings to predict, in (0, 1).
    """
    order, users_sorted, from_end, block_size = _user_blocks(ratings)
    uniq, inverse = np.unique(users_sorted, return_inverse=True)
    bucket = (hash_buckets(uniq, None, _USER_BUCKETS) if uniq.size else np.zeros(0, np.int64))[inverse]
    v_end = int(round(validation_users * _USER_BUCKETS))
    t_end = v_end + int(round(test_users * _USER_BUCKETS))
    n_targets = np.maximum(1, np.floor(target_share * block_size).astype(np.int64))
    held = block_size >= 2
    is_target = held & (from_end < n_targets)
    is_val_user, is_test_user = held & (bucket < v_end), held & (bucket >= v_end) & (bucket < t_end)

    def rows(mask: np.ndarray) -> np.ndarray:
        return np.sort(order[mask]).astype(np.int64)

    return Split(
        name=HELD_OUT_USERS,
        train=rows(~is_val_user & ~is_test_user),
        validation=rows(is_val_user & is_target),
        test=rows(is_test_user & is_target),
        fold_in_validation=rows(is_val_user & ~is_target),
        fold_in_test=rows(is_test_user & ~is_target),
    )


def _row_keys(columns: dict[str, np.ndarray]) -> np.ndarray:
    """``"<user_id>\t<movie_id>\t<timestamp>"`` of every row (unicode ``[n]``)."""
    users = np.char.add(_as_str_array(columns["user_id"]), "\t")
    movies = np.char.add(_as_str_array(columns["movie_id"]), "\t")
    return np.char.add(np.char.add(users, movies), np.asarray(columns["timestamp"], dtype=np.int64).astype(str))


def predefined_split(ratings: dict[str, np.ndarray], test_rows: dict[str, np.ndarray],
                     train_rows: dict[str, np.ndarray] | None = None, source: str = "data.predefined") -> Split:
    """Explicit split: the ratings matching ``test_rows`` on (user_id, movie_id, timestamp) are test.

    The other ratings are train, except those whose ``"<user_id>:<movie_id>"`` hash bucket (of 10)
    is 8, which are validation (10 % carved deterministically from the training part).

    Args:
        ratings: columns ``user_id``, ``movie_id`` (``[n]``), ``timestamp`` (int64 ``[n]``).
        test_rows: the same columns ``[m]`` of the test rows (``u1.test``).
        train_rows: optionally the training rows (``u1.base``); when given, every rating must match
            exactly one of the two tables.
        source: what the tables came from, named in errors.

    Raises:
        DataError: a test row (or, with ``train_rows``, a rating) without a match, or a row in both.
    """
    keys = _row_keys(ratings)
    test_keys = _row_keys(test_rows)
    is_test = np.isin(keys, test_keys)
    missing = int(test_keys.size - np.isin(test_keys, keys).sum())
    if missing:
        raise DataError(f"{source}: {missing} of {test_keys.size} test rows match no rating on (user, item, "
                        "timestamp): the split file must come from the same data")
    if train_rows is not None:
        train_keys = _row_keys(train_rows)
        both = int(np.isin(train_keys, test_keys).sum())
        unmatched = int((~is_test & ~np.isin(keys, train_keys)).sum())
        if both or unmatched:
            raise DataError(f"{source}: {unmatched} ratings are in neither the train nor the test file and "
                            f"{both} in both: the split files must partition the data")
    buckets = hash_buckets(ratings["user_id"], ratings["movie_id"], _NUM_BUCKETS)
    return Split(
        name=PREDEFINED,
        train=np.flatnonzero(~is_test & (buckets != _VALIDATION_BUCKET)).astype(np.int64),
        validation=np.flatnonzero(~is_test & (buckets == _VALIDATION_BUCKET)).astype(np.int64),
        test=np.flatnonzero(is_test).astype(np.int64),
    )


def make_split(name: str, ratings: dict[str, np.ndarray], options: SplitOptions | None = None) -> Split:
    """Returns the split called ``name`` (one of :data:`SPLIT_NAMES`) of ``ratings``.

    Args:
        name: the split.
        ratings: the ratings columns.
        options: settings of ``time``, ``held-out-users`` and ``predefined`` (defaults otherwise;
            ``predefined`` needs ``options.predefined_test``).

    Raises:
        DataError: for an unknown name, or ``predefined`` without its test rows.
    """
    o = options or SplitOptions()
    if name == HASH:
        return hash_split(ratings)
    if name == LEAVE_LAST_OUT:
        return leave_last_out_split(ratings)
    if name == TIME:
        return time_split(ratings, o.time_validation, o.time_test)
    if name == HELD_OUT_USERS:
        return held_out_users_split(ratings, o.validation_users, o.test_users, o.target_share)
    if name == PREDEFINED:
        if o.predefined_test is None:
            raise DataError("data.split=predefined needs data.predefined: name u1..u5, ua or ub (MovieLens 100K "
                            "from --data-zip) or a test file of your data")
        return predefined_split(ratings, o.predefined_test, o.predefined_train)
    raise DataError(f"unknown split {name!r}: choose {', '.join(SPLIT_NAMES)}")
