"""Compact interactions: integer codes, small vocabularies and a per-user sequence index, never a
per-row string.

:class:`Interactions` is what the retrieval task streams its batches from
(:mod:`tfrs_lab.training.stream`), what the sequential task cuts its training windows and
evaluation histories from (:meth:`Interactions.user_items`) and what the autoencoders build their
sparse matrices from (:meth:`Interactions.vocabulary_rows`): a prepared dataset
(:func:`Interactions.from_prepared`; your own data, read once by :mod:`tfrs_lab.data.prepared`,
never converted back to strings per row) or an in-memory
:class:`~tfrs_lab.data.movielens.MovieLensData` encoded once (:func:`Interactions.from_data`). Both
give the same codes, splits, vocabularies and histories as the string columns would
(tests/data/test_interactions.py), so the models and their SavedModels stay string-keyed.

Memory at n interactions, U users, m items: ``user``/``item`` int32, ``rating`` float32 and
``timestamp`` int64 per row (20 bytes), the sequence index (8 bytes per row, 8 per user), the id
vocabularies (one Python string per user and item) and the catalogue (``movies``).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from tfrs_lab.data.features import RAW_QUERY_FEATURES, Vocabularies, fit_vocabularies, movie_rows
from tfrs_lab.data.history import walk_back
from tfrs_lab.data.movielens import DataError, MovieLensData
from tfrs_lab.data.prepared import PreparedDataset
from tfrs_lab.data.readers import _multi_hot
from tfrs_lab.data.sequences import PAD_INDEX, UserItems
from tfrs_lab.data.splits import (HASH, HELD_OUT_USERS, LEAVE_LAST_OUT, TIME, Split, SplitOptions, _HASH_CHUNK,
                                  _NUM_BUCKETS, _TEST_BUCKET, _TRAIN_BUCKETS, _USER_BUCKETS, _VALIDATION_BUCKET,
                                  hash_buckets, sequence_order, time_split)
from tfrs_lab.data.typed import FeatureColumn, ModelFeature

__all__ = ["HistorySource", "Interactions", "STREAMED_SPLITS"]

STREAMED_SPLITS = (HASH, LEAVE_LAST_OUT, TIME, HELD_OUT_USERS)
"""Splits :meth:`Interactions.split` computes from codes (``predefined`` needs the string columns: a
run with it reads the data as :class:`MovieLensData`)."""


@dataclasses.dataclass(frozen=True, eq=False)
class HistorySource:
    """The rows histories may come from (e.g. the training split), in sequence order.

    Attributes:
        items: int32 ``[s + 1]`` item codes of the source rows ordered by (user, timestamp, item id
            as an integer); a last 0 entry pads so a gather never sees an empty array.
        user_start: int64 ``[U + 1]``: user code u's source rows are ``items[user_start[u]:user_start[u + 1]]``.
    """

    items: np.ndarray
    user_start: np.ndarray

    def seen(self, users: np.ndarray, num_catalogue: int) -> list[np.ndarray]:
        """Per entry of ``users`` (int codes), the catalogue rows (item codes < ``num_catalogue``) of
        its source rows: what a ranking excludes (views, no copy when every item is in the catalogue)."""
        out = [self.items[a:b] for a, b in zip(self.user_start[users], self.user_start[users + 1])]
        return out if self.largest_item < num_catalogue else [e[e < num_catalogue] for e in out]

    @functools.cached_property
    def largest_item(self) -> int:
        """The largest item code among the source rows (-1 without any)."""
        return int(self.items[:-1].max()) if len(self.items) > 1 else -1


@dataclasses.dataclass(frozen=True, eq=False)
class Interactions:
    """Integer-coded interactions with their vocabularies and sequence index.

    Attributes:
        dataset: the data set's name (``metrics.json``'s ``dataset``).
        user: int32 ``[n]`` codes into ``user_ids``; item: int32 ``[n]`` codes into ``item_ids``.
        timestamp: int64 ``[n]`` unix seconds.
        user_ids: object ``[U]`` of ``str`` in ascending order; item_ids: object ``[m']`` of ``str``:
            the catalogue (``movies["movie_id"]``, its first ``m`` entries) then any interacted item
            missing from it.
        sequence_offsets: int64 ``[U + 1]``; sequence_rows: int64 ``[n]``: user u's rows, oldest first,
            are ``sequence_rows[sequence_offsets[u]:sequence_offsets[u + 1]]``
            (= :func:`tfrs_lab.data.splits.sequence_order`).
        movies: the catalogue columns of :class:`MovieLensData` (``movie_id``, ``movie_title``, ``movie_genres``).
        extra: per-row numeric query features of :data:`RAW_QUERY_FEATURES` the data has besides
            ``timestamp`` (MovieLens demographics), ``[n]`` each.
        rating: float32 ``[n]``: the label (``user_rating``: an explicit rating, or the implicit
            weight; 1.0 where the data has none), or None when the caller did not give one.
        features: the typed features of ``data.source.features`` (name ->
            :class:`~tfrs_lab.data.typed.FeatureColumn`, per item code, user code or row).
    """

    dataset: str
    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    sequence_offsets: np.ndarray
    sequence_rows: np.ndarray
    movies: dict[str, np.ndarray]
    extra: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    rating: np.ndarray | None = None
    features: dict[str, FeatureColumn] = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_prepared(cls, prepared: PreparedDataset) -> "Interactions":
        """The prepared dataset's columns as they are on disk (memory-mapped; no string per row)."""
        genres, _ = _multi_hot(prepared.item_categories)
        movies = {"movie_id": prepared.item_ids, "movie_title": prepared.item_text, "movie_genres": genres}
        return cls(prepared.name, prepared.user, prepared.item, prepared.timestamp, prepared.user_ids,
                   prepared.item_ids, prepared.sequence_offsets, prepared.sequence_rows, movies,
                   rating=prepared.rating, features=dict(prepared.features))

    @classmethod
    def from_data(cls, data: MovieLensData) -> "Interactions":
        """``data`` encoded once: users in ascending id order, items in catalogue order (ids the
        catalogue lacks appended in ascending order), the sequence index of :func:`sequence_order`;
        its typed features (``from_frame``) as they are (aligned with these codes and rows)."""
        r = data.ratings
        user_ids, user = np.unique(r["user_id"].astype(object), return_inverse=True)
        catalogue = np.asarray(data.movies["movie_id"], dtype=object)
        order = np.argsort(catalogue)
        pos = np.clip(np.searchsorted(catalogue[order], r["movie_id"]), 0, max(len(catalogue) - 1, 0))
        known = catalogue[order][pos] == r["movie_id"] if len(catalogue) else np.zeros(len(user), bool)
        missing, code = np.unique(r["movie_id"][~known].astype(object), return_inverse=True)
        item = np.empty(len(user), np.int64)
        item[known] = order[pos[known]]
        item[~known] = len(catalogue) + code
        rows = sequence_order(r)
        counts = np.bincount(user, minlength=len(user_ids))
        extra = {k: r[k] for k in RAW_QUERY_FEATURES[1:] if k in r}
        rating = np.asarray(r["user_rating"], np.float32) if "user_rating" in r else None
        return cls(data.dataset, user.astype(np.int32), item.astype(np.int32), np.asarray(r["timestamp"], np.int64),
                   user_ids.astype(object), np.concatenate([catalogue, missing]).astype(object),
                   np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), rows.astype(np.int64), data.movies, extra,
                   rating, dict(data.features))

    @classmethod
    def of(cls, data: "MovieLensData | Interactions") -> "Interactions":
        """``data`` as :class:`Interactions`: as it is, or a :class:`MovieLensData` encoded once
        (:meth:`from_data`)."""
        return data if isinstance(data, Interactions) else cls.from_data(data)

    # ------------------------------------------------------------------ what MovieLensData answers too

    @property
    def has_user_features(self) -> bool:
        """Whether the rows carry the MovieLens demographics (never for a prepared dataset)."""
        return bool(self.extra)

    @property
    def num_ratings(self) -> int:
        return int(self.user.shape[0])

    @property
    def num_catalogue(self) -> int:
        """m: catalogue items (item codes ``0 .. m - 1``; larger codes are items the catalogue lacks)."""
        return int(len(self.movies["movie_id"]))

    # ------------------------------------------------------------------ splits and vocabularies

    def split(self, name: str, options: SplitOptions | None = None) -> Split:
        """The split ``name`` (one of :data:`STREAMED_SPLITS`), equal to
        :func:`tfrs_lab.data.splits.make_split` on the string columns.

        Raises:
            DataError: for a split that needs the string columns.
        """
        o = options or SplitOptions()
        if name == HASH:
            buckets = self.hash_buckets()
            return Split(HASH, np.flatnonzero(buckets < _TRAIN_BUCKETS).astype(np.int64),
                         np.flatnonzero(buckets == _VALIDATION_BUCKET).astype(np.int64),
                         np.flatnonzero(buckets == _TEST_BUCKET).astype(np.int64))
        if name == LEAVE_LAST_OUT:
            counts = np.diff(self.sequence_offsets)
            eligible = np.flatnonzero(counts >= 3)
            last = self.sequence_offsets[eligible + 1]
            test = np.sort(self.sequence_rows[last - 1])
            validation = np.sort(self.sequence_rows[last - 2])
            train = np.ones(self.num_ratings, bool)
            train[test] = train[validation] = False
            return Split(LEAVE_LAST_OUT, np.flatnonzero(train).astype(np.int64), validation, test)
        if name == TIME:
            return time_split({"timestamp": self.timestamp}, o.time_validation, o.time_test)
        if name == HELD_OUT_USERS:
            return self._held_out_users(o)
        raise DataError(f"data.split={name} is not computed on streamed data: choose one of {', '.join(STREAMED_SPLITS)}")

    def hash_buckets(self, num_buckets: int = _NUM_BUCKETS) -> np.ndarray:
        """int64 ``[n]``: :func:`tfrs_lab.data.splits.hash_buckets` of every row (the
        ``"<user_id>:<item_id>"`` keys gathered from the vocabularies in TF a chunk at a time, never
        a string per row in numpy)."""
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        users, items = tf.constant(self.user_ids.astype(str)), tf.constant(self.item_ids.astype(str))
        buckets = np.empty(self.num_ratings, np.int64)
        for s in range(0, self.num_ratings, _HASH_CHUNK):
            e = slice(s, s + _HASH_CHUNK)
            keys = tf.strings.join([tf.gather(users, self.user[e]), tf.gather(items, self.item[e])], separator=":")
            buckets[e] = tf.strings.to_hash_bucket_fast(keys, num_buckets).numpy()
        return buckets

    def _held_out_users(self, o: SplitOptions) -> Split:
        """:func:`tfrs_lab.data.splits.held_out_users_split` from the sequence index: the users' hash
        buckets from the user vocabulary, each row's place from the end of its user's sequence."""
        counts = np.diff(self.sequence_offsets)  # [U]
        bucket = hash_buckets(self.user_ids, None, _USER_BUCKETS) if len(counts) else np.zeros(0, np.int64)
        v_end = int(round(o.validation_users * _USER_BUCKETS))
        t_end = v_end + int(round(o.test_users * _USER_BUCKETS))
        held = counts >= 2
        val_user, test_user = held & (bucket < v_end), held & (bucket >= v_end) & (bucket < t_end)
        n_targets = np.maximum(1, np.floor(o.target_share * counts).astype(np.int64))  # [U]
        owner = np.repeat(np.arange(len(counts)), counts)  # user code of each sequence position
        from_end = self.sequence_offsets[owner + 1] - 1 - np.arange(self.num_ratings)  # 0 = the user's newest
        target = from_end < n_targets[owner]
        del from_end
        at_val, at_test = val_user[owner], test_user[owner]
        del owner

        def rows(mask: np.ndarray) -> np.ndarray:
            return np.sort(self.sequence_rows[mask]).astype(np.int64)

        return Split(HELD_OUT_USERS, train=rows(~at_val & ~at_test), validation=rows(at_val & target),
                     test=rows(at_test & target), fold_in_validation=rows(at_val & ~target),
                     fold_in_test=rows(at_test & ~target))

    def vocabularies(self, train_rows: np.ndarray, *, has_user_features: bool, title_vocab_size: int,
                     title_max_tokens: int, timestamp_buckets: int) -> Vocabularies:
        """:func:`tfrs_lab.data.features.build_vocabularies` of the training rows, from the codes."""
        if has_user_features:
            raise DataError("user features need the string columns: read the data as MovieLensData")
        train_rows = np.asarray(train_rows)
        users = self.user_ids[np.unique(self.user[train_rows])]
        items = self.item[train_rows]
        items = items[items < self.num_catalogue]
        counts = np.bincount(items.astype(np.int64) + 1, minlength=self.num_catalogue + 1).astype(np.int64)
        return fit_vocabularies(users, self.movies, counts, self.timestamp[train_rows],
                                title_vocab_size=title_vocab_size, title_max_tokens=title_max_tokens,
                                timestamp_buckets=timestamp_buckets, typed=self.model_features(users))

    def model_features(self, users: np.ndarray) -> tuple[ModelFeature, ...]:
        """The typed features as the model reads them: item features per movie index (catalogue
        row + 1), user features per index of ``users`` (str [U'], the vocabulary's users; + 1), row 0
        the unknown entity; context features by name."""
        out = []
        for f in self.features.values():
            if f.spec.side == "item":
                index = np.arange(-1, self.num_catalogue, dtype=np.int64)
            elif f.spec.side == "user":
                index = np.concatenate([[-1], self.codes_of(users)]).astype(np.int64)
            else:
                index = None
            out.append(f.for_model(index))
        return tuple(out)

    # ------------------------------------------------------------------ histories

    @functools.cached_property
    def group_start(self) -> np.ndarray:
        """int64 ``[n]``: per sequence position, the first position holding the same (user,
        timestamp, item) key (computed once)."""
        rows = self.sequence_rows
        n = len(rows)
        same = np.zeros(n, bool)
        if n > 1:
            same[1:] = ((self.user[rows[1:]] == self.user[rows[:-1]]) & (self.timestamp[rows[1:]] == self.timestamp[rows[:-1]])
                        & (self.item[rows[1:]] == self.item[rows[:-1]]))
        return np.maximum.accumulate(np.where(same, 0, np.arange(n)))

    def history_source(self, source_rows: np.ndarray) -> tuple[HistorySource, np.ndarray]:
        """The :class:`HistorySource` of ``source_rows`` (row indices) and int64 ``[n]``: for every row
        r, the end (exclusive) in its ``items`` of the source rows of r's user strictly before r (rows
        with r's exact (user, timestamp, item) key are not before it, as
        :func:`tfrs_lab.data.history.recent_history` decides)."""
        in_order, before = self._in_order(source_rows)
        stop = np.empty(self.num_ratings, np.int64)
        stop[self.sequence_rows] = before[self.group_start]
        items = np.concatenate([self.item[self.sequence_rows[in_order]], [0]]).astype(np.int32)
        return HistorySource(items, before[self.sequence_offsets]), stop

    def _in_order(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bool ``[n]``: whether the row at each sequence position is one of ``rows``; int64
        ``[n + 1]``: how many of them come before each position)."""
        is_row = np.zeros(self.num_ratings, bool)
        is_row[np.asarray(rows, np.int64)] = True
        in_order = is_row[self.sequence_rows]
        return in_order, np.concatenate([[0], np.cumsum(in_order)]).astype(np.int64)

    def user_items(self, rows: np.ndarray, item_index: np.ndarray) -> UserItems:
        """Every user's items among ``rows`` in sequence order, as the CSR
        :func:`tfrs_lab.data.sequences.user_items` builds from the string columns (rows whose item
        index is :data:`~tfrs_lab.data.sequences.PAD_INDEX` dropped), from the sequence index.

        Args:
            rows: int row indices.
            item_index: int ``[m']``: the model's index of each item code (0 = not in the catalogue).

        Returns:
            :class:`UserItems` over all ``U`` users (``user_ids``; a user without rows has an
            empty block), items int64.
        """
        item_index = np.asarray(item_index, np.int64)
        rows = np.asarray(rows, np.int64)
        in_order, before = self._in_order(rows[item_index[self.item[rows]] > PAD_INDEX])
        items = item_index[self.item[self.sequence_rows[in_order]]]
        return UserItems(self.user_ids, items, before[self.sequence_offsets])

    def latest(self, users: np.ndarray, length: int) -> np.ndarray:
        """object ``[len(users), length]``: each user's (int codes) newest ``length`` item ids among
        all rows, most recent first, '' padded (:func:`tfrs_lab.data.history.latest_history`)."""
        codes = self.latest_codes(users, length)
        return np.where(codes >= 0, self.item_ids[np.maximum(codes, 0)], "").astype(object)

    def latest_codes(self, users: np.ndarray, length: int) -> np.ndarray:
        """:meth:`latest` as item codes: int32 ``[len(users), length]`` into :attr:`item_ids`, -1
        pads; a user code of -1 (the unknown user) gets a row of pads. No string per entry."""
        users = np.asarray(users, np.int64)
        known = np.maximum(users, 0)
        start = np.where(users >= 0, self.sequence_offsets[known], 0)
        stop = np.where(users >= 0, self.sequence_offsets[known + 1], 0)
        return walk_back(self.item[self.sequence_rows].astype(np.int32, copy=False), start, stop, length, -1)

    def vocabulary_rows(self, vocab: Vocabularies) -> tuple[np.ndarray, np.ndarray]:
        """(int64 ``[U]``: each user code's row in ``vocab.user_ids``, int64 ``[m']``: each item code's
        catalogue row in ``vocab.movie_ids``), -1 where the vocabulary lacks the id; index them with
        :attr:`user` / :attr:`item` to get the rows of interactions (O(U + m') strings compared,
        never one per interaction)."""
        known = vocab.user_ids
        pos = np.clip(np.searchsorted(known, self.user_ids), 0, max(len(known) - 1, 0))
        users = np.where(known[pos] == self.user_ids, pos, -1) if len(known) else np.full(len(self.user_ids), -1)
        return users.astype(np.int64), movie_rows(vocab, self.item_ids)

    def codes_of(self, user_ids: np.ndarray) -> np.ndarray:
        """int64 user codes of ``user_ids`` (each must be one of :attr:`user_ids`)."""
        return np.searchsorted(self.user_ids, np.asarray(user_ids, dtype=object)).astype(np.int64)
