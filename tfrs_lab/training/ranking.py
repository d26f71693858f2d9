"""The ``ranking`` task: data -> split -> vocabularies -> ranking model -> evaluation -> export.

Objectives (``model.objective``):

* ``explicit``: regress the star rating (MSE); test ``rmse`` / ``mae`` of the clipped predictions.
  On ``leave-last-out`` the catalogue is also ranked by predicted rating for ``recall@K`` etc.
* ``implicit``: every training rating is a positive; ``train.negatives.count`` negatives per positive
  are drawn afresh every epoch (uniform or popularity-proportional, optionally never a movie the
  user rated in training; drawn inside ``tf.data`` by stateless ops keyed on the seed, the epoch and
  the batch, :class:`NegativeSampler`, so the input pipeline runs no Python per batch and trains
  under every ``train.distribution``, ``parameter_server`` included); ``train.loss`` ``pointwise`` (binary cross-entropy), ``pairwise`` (BPR) or
  ``listwise`` (softmax over each positive and its negatives; see :mod:`tfrs_lab.models.ranking`).
  Evaluated by full-catalogue ranking (docs/architecture.md#metric-definitions):
  ``recall@K`` / ``ndcg@K`` / ``mrr`` on ``leave-last-out`` (seen excluded), ``hit_rate@K`` on ``hash``.

Early stopping watches validation RMSE (explicit) or the retrieval task's ranking metric (implicit).

Data: every run streams its batches from integer codes (:func:`ranking_stream`, a
:class:`~tfrs_lab.training.stream.RetrievalStream` with the rating as ``label`` and only the raw
columns the model reads): your own data (``data.dataset: own``) on the splits computed from codes
(:data:`~tfrs_lab.data.interactions.STREAMED_SPLITS`, no minimum counts) arrives as compact
:class:`~tfrs_lab.data.interactions.Interactions` (:meth:`RankingTask.streams`; never converted
back with ``to_data()``), MovieLens is encoded once (:meth:`Interactions.of`; its per-row zip code,
which DCN reads, rides along as a string column). The per-split state is the row indices and the
sequence index (int arrays); ids, labels, histories and typed context features are gathered per
batch inside the ``tf.data`` pipeline, never held as a Python object per row, and they equal the
string columns of :func:`split_columns` for the same rows (tests/ranking/test_ranking_streamed.py).
The autorec table comes from the codes; the typed features of ``data.source.features`` (and
``from_frame``'s) reach the model (user / item features as tables inside it, context features by
name).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from tfrs_lab.config import (ConfigError, NegativeSamplingConfig, RankingConfig, RankingModelConfig,
                             check_typed_ranking)
from tfrs_lab.data.features import Vocabularies, movie_rows
from tfrs_lab.data.history import recent_history
from tfrs_lab.data.interactions import STREAMED_SPLITS, Interactions
from tfrs_lab.data.movielens import DataError, MovieLensData
from tfrs_lab.data.splits import Split
from tfrs_lab.evaluation.metrics import (EARLY_STOPPING_METRIC, hit_rate, metric_ks, ranking_metrics,
                                         ranks_from_scores, rating_metrics)
from tfrs_lab.export.ranking import export_ranking
from tfrs_lab.export.tables import ItemTable, latest_items
from tfrs_lab.models.features import RAW_COLUMNS
from tfrs_lab.models.ranking import NEGATIVE_MOVIE_ID, RankingModel
from tfrs_lab.training import distribute, report
from tfrs_lab.training.autorec_size import resolve_hidden_units
from tfrs_lab.training.common import make_dataset
from tfrs_lab.training.evaluate import known_rows
from tfrs_lab.training.stream import RetrievalStream, epoch_batches
from tfrs_lab.training.task import FitResult, RunContext, Task, Trained

__all__ = ["AUTOREC_MAX_CELLS", "check_autorec_size", "NegativeSampler", "NEGATIVES_ERROR", "negative_sampler",
           "RankingState", "RankingTask", "TASK", "code_rating_table", "explicit_dataset", "explicit_metrics",
           "implicit_dataset", "implicit_indices", "make_model", "ranking_eval",
           "ranking_stream", "SCORE_PAIR_BUDGET", "score_batches", "score_matrix", "split_columns", "stream_explicit_metrics",
           "stream_ranking_eval", "vocabulary_index"]

logger = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]


def hyperparameters(cfg: RankingConfig, architecture: str | None = None) -> RankingModelConfig:
    """``cfg.model``, with ``architecture`` replaced when given (NeuMF pre-training trains gmf and mlp).
    ``autorec`` ignores ``history_length``: it reads every user's ratings through its movie table.

    Raises:
      ValueError: ``model.autorec.hidden_units`` is still ``auto`` for an ``autorec`` model (resolve it
        first with :func:`resolve_hidden_units`; :func:`tfrs_lab.training.runner.run_task` does).
    """
    hp = replace(cfg.model, architecture=architecture) if architecture else cfg.model
    if hp.architecture != "autorec":
        return hp
    if hp.autorec.hidden_units == "auto":
        raise ValueError("model.autorec.hidden_units: auto is resolved from the training rows first "
                         "(resolve_hidden_units)")
    return replace(hp, history_length=0)


def feature_columns(data: MovieLensData, rows: np.ndarray, hp: RankingModelConfig,
                    history_rows: np.ndarray | None = None) -> Columns:
    """Raw columns of ``rows``: ``user_id``, ``movie_id``, ``label`` (the rating, float32), the raw
    user/context columns of DCN's features that the data set has, and with ``hp.history_length > 0``
    each row's ``history``: the user's movies just before it among ``history_rows`` (leakage-free:
    pass earlier splits only, as :func:`split_columns` does)."""
    cols = {"user_id": data.ratings["user_id"][rows], "movie_id": data.ratings["movie_id"][rows],
            "label": data.ratings["user_rating"][rows].astype(np.float32)}
    if hp.architecture == "dcn":
        for name in hp.features:
            raw = RAW_COLUMNS.get(name)
            if raw is not None and raw in data.ratings:
                cols[raw] = data.ratings[raw][rows]
    if hp.history_length:
        if history_rows is None:
            raise ValueError("model.history_length > 0 needs the rows histories may come from")
        cols["history"] = recent_history(data.ratings, history_rows, rows, hp.history_length)
    return cols


def split_columns(data: MovieLensData, split: Split, hp: RankingModelConfig) -> dict[str, Columns]:
    """In-memory string columns of each split (:func:`feature_columns`), for the benchmarks and as the
    reference the streamed batches are tested against (the task streams: :func:`ranking_stream`).
    Histories come from earlier splits only: train and validation rows see train rows, test rows see
    train and validation rows."""
    known = {"train": split.train, "validation": split.train,
             "test": np.concatenate([split.train, split.validation])}
    return {name: feature_columns(data, getattr(split, name), hp, known[name]) for name in known}


def ranking_stream(data: MovieLensData | Interactions, split: Split, hp: RankingModelConfig) -> RetrievalStream:
    """The ranking task's batches: a :class:`~tfrs_lab.training.stream.RetrievalStream` over the
    integer codes of ``data`` (MovieLens encoded once, :meth:`Interactions.of`) that gathers per batch
    the columns :func:`feature_columns` holds for the same rows: ``user_id`` / ``movie_id`` (string
    [B]), ``label`` (float32 [B], the rating; 1.0 without one), DCN's raw columns among ``timestamp``
    and the MovieLens demographics the data has (``user_zip_code``: MovieLens's per-row string
    column), each typed context feature by name and, with ``hp.history_length`` H > 0, ``history``
    (string [B, H], the user's items strictly before the row among the earlier splits' rows, newest
    first, '' padded). Memory: int codes and the sequence index, no Python object per row (MovieLens
    keeps its own string columns in ``data`` anyway)."""
    coded = Interactions.of(data)
    wanted = [RAW_COLUMNS[f] for f in hp.features if RAW_COLUMNS.get(f)] if hp.architecture == "dcn" else []
    if isinstance(data, MovieLensData) and "user_zip_code" in wanted and "user_zip_code" in data.ratings:
        coded = dataclasses.replace(coded, extra={**coded.extra, "user_zip_code": data.ratings["user_zip_code"]})
    raw = [c for c in wanted if c == "timestamp" or c in coded.extra]
    return RetrievalStream(coded, split, hp.history_length, raw=raw, label=True)


def vocabulary_index(stream: RetrievalStream, vocab: Vocabularies, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Split ``name``'s rows as the model indexes them: (int64 [q] user index, the vocabulary row + 1
    as ``model.user_lookup`` gives it (0 = unknown); int64 [q] catalogue row, -1 outside the
    catalogue), from one id comparison per user and item (:meth:`Interactions.vocabulary_rows`)."""
    users, items = stream.data.vocabulary_rows(vocab)
    rows = stream.parts[name].rows
    return users[stream.data.user[rows]] + 1, items[stream.data.item[rows]]


def make_model(vocab: Vocabularies, hp: RankingModelConfig, train: Columns | None, global_offset: float,
               loss: str = "pointwise", table: np.ndarray | None = None) -> RankingModel:
    """A :class:`RankingModel` of ``hp`` trained with ``loss`` (``train.loss``) on the ``train``
    columns (autorec: with ``table``, by default their :func:`item_rating_table`; ``train`` is read
    only then)."""
    if hp.architecture == "autorec" and table is None:
        if train is None:
            raise ValueError("make_model: autorec needs its rating table or the training columns")
        table = item_rating_table(vocab, train)
    if hp.architecture != "autorec":
        table = None
    return RankingModel(vocab, hp, global_offset=global_offset, item_ratings=table, loss=loss)


AUTOREC_MAX_CELLS = 100_000_000
"""Largest [movies x users] rating table the ranking ``autorec`` architecture holds (400 MB of
float32; ML-1M needs 22M cells, ML-10M 746M, ML-25M 9.6G): above it the run is refused."""


def check_autorec_size(vocab: Vocabularies) -> None:
    """Raises :class:`ConfigError` when ranking ``autorec``'s dense table would exceed :data:`AUTOREC_MAX_CELLS`."""
    cells = vocab.num_movies * vocab.num_users
    if cells > AUTOREC_MAX_CELLS:
        raise ConfigError(f"model.architecture: autorec holds a dense [movies x users] rating table of {cells:,} cells "
                          f"({vocab.num_movies:,} x {vocab.num_users:,}), over the {AUTOREC_MAX_CELLS:,} limit: use the "
                          f"autoencoder task (model.architecture: autorec, sparse per-batch inputs) or another ranking "
                          f"architecture (e.g. mf)")


def item_rating_table(vocab: Vocabularies, train: Columns) -> np.ndarray:
    """float32 [M + 1, U + 1]: the training rating of each (movie index, user index), 0 = unrated
    (the ``autorec`` architecture's input; indices as the model's lookups, 0 = unknown). At most
    :data:`AUTOREC_MAX_CELLS` cells (:func:`check_autorec_size`)."""
    check_autorec_size(vocab)
    users = tf.keras.layers.StringLookup(vocabulary=list(vocab.user_ids), mask_token=None)(train["user_id"]).numpy()
    table = np.zeros((vocab.num_movies, vocab.num_users), np.float32)
    table[movie_rows(vocab, train["movie_id"]) + 1, users] = train["label"]
    return table


def code_rating_table(data: Interactions, vocab: Vocabularies, rows: np.ndarray) -> np.ndarray:
    """:func:`item_rating_table` of ``rows`` (row indices) from the codes (one id comparison per user
    and item, :meth:`Interactions.vocabulary_rows`): float32 [M + 1, U + 1]."""
    check_autorec_size(vocab)
    users, items = data.vocabulary_rows(vocab)
    rows = np.asarray(rows, np.int64)
    label = data.rating[rows] if data.rating is not None else np.ones(len(rows), np.float32)
    table = np.zeros((vocab.num_movies, vocab.num_users), np.float32)
    table[items[data.item[rows]] + 1, users[data.user[rows]] + 1] = label
    return table


def serving_user_table(data: MovieLensData | Interactions, train_rows: np.ndarray, vocab: Vocabularies,
                       history_length: int = 0) -> dict[str, np.ndarray | ItemTable]:
    """Raw user features per user index ([U + 1] rows, row 0 = unknown-user defaults) that the
    exported model looks up: the vocabulary's demographics, the zip code (first training row) and,
    with ``history_length`` H > 0, ``history``: an :class:`~tfrs_lab.export.tables.ItemTable`
    [U + 1, H] of int32 item codes (the user's latest H items among *all* known ratings, most recent
    first, pads after; row 0 empty: the freshest history the exported model can have), from the
    sequence index (:func:`~tfrs_lab.export.tables.latest_items`; never a string per entry)."""
    table: dict[str, np.ndarray | ItemTable] = dict(vocab.user_table)
    if history_length:
        table["history"] = latest_items(Interactions.of(data), vocab.user_ids, history_length)
    if isinstance(data, MovieLensData) and "user_zip_code" in data.ratings:
        users = data.ratings["user_id"][train_rows]
        uniq, first = np.unique(users, return_index=True)
        assert np.array_equal(uniq, vocab.user_ids)
        zips = data.ratings["user_zip_code"][train_rows][first]
        table["user_zip_code"] = np.concatenate([np.array([""], dtype=object), zips.astype(object)])
    return table


# --------------------------------------------------------------------------- negatives


NEGATIVES_ERROR = "negatives could not avoid the movies the users rated: set train.negatives.exclude_seen=false"
"""The end of the error a ``train.negatives.exclude_seen`` run stops with when some user's rated
movies leave nothing (or too little, after :attr:`NegativeSampler.max_rounds` redraws) to draw."""


class NegativeSampler:
    """Draws negatives (catalogue rows) for training positives inside the TF graph (a ``tf.data``
    map), from stateless random ops keyed on ``(seed, *key)``: the same seed and key, the same draws.

    Args:
      num_items: catalogue size M (rows 0 .. M - 1).
      seen_users, seen_items: int [n] (user key, catalogue row) of every training positive (rows
        < 0, items outside the catalogue, are ignored); with ``exclude_seen`` a user is never given a
        movie they rated in training (so never the positive). Users are any int keys below 2**31,
        the same :meth:`draw` is given (the task passes user codes, :func:`negative_sampler`).
      count: negatives per positive (:meth:`sample`).
      distribution: ``uniform`` over the catalogue rows or ``popularity`` (proportional to
        ``item_counts``, float [M]: a CDF searched with ``tf.searchsorted``).
      max_rounds: with ``exclude_seen``, how many times a draw that hit a seen movie is redrawn
        before the batch fails with :data:`NEGATIVES_ERROR`.

    Memory: the seen pairs as one sorted int64 key ``user * M + row`` each (8 bytes per distinct
    training pair) and, for ``popularity``, a float64 [M] CDF, held as TF constants.

    Raises:
      DataError: with ``exclude_seen``, when a user has rated every movie the distribution can draw.
    """

    def __init__(self, num_items: int, seen_users: np.ndarray, seen_items: np.ndarray, *, count: int,
                 distribution: str, exclude_seen: bool, item_counts: np.ndarray | None = None,
                 seed: int = 0, max_rounds: int = 100) -> None:
        self.num_items, self.count, self.exclude_seen, self.max_rounds = num_items, count, exclude_seen, max_rounds
        self.seed = int(seed)
        drawable = num_items
        cdf = None
        if distribution == "popularity":
            if item_counts is None or np.sum(item_counts) <= 0:
                raise ValueError("popularity sampling needs positive item counts")
            counts = np.asarray(item_counts, np.float64)
            cdf = np.cumsum(counts)
            cdf /= cdf[-1]
            drawable = int(np.count_nonzero(counts > 0))
        elif distribution != "uniform":
            raise ValueError(f"unknown negative distribution {distribution!r}: choose uniform or popularity")
        seen_users, seen_items = np.asarray(seen_users, np.int64), np.asarray(seen_items, np.int64)
        keep = seen_items >= 0
        keys = np.unique(seen_users[keep] * num_items + seen_items[keep]) if exclude_seen else np.zeros(0, np.int64)
        if len(keys):
            users, rated = np.unique(keys // num_items, return_counts=True)
            if cdf is not None:  # only the rated movies the distribution can draw count
                drawn = np.asarray(item_counts)[keys % num_items] > 0
                rated = np.bincount(np.searchsorted(users, keys // num_items), weights=drawn, minlength=len(users))
            full = int(np.count_nonzero(rated >= drawable))
            if full:
                raise DataError(f"{full} users rated every movie the {distribution} distribution draws, so their "
                                f"{NEGATIVES_ERROR}")
        with tf.init_scope():  # eager constants, also when first built inside a worker's dataset_fn
            self._cdf = None if cdf is None else tf.constant(cdf)
            self._seen = tf.constant(keys) if len(keys) else None

    def _candidates(self, size: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """int64 [size] catalogue rows from the distribution, drawn by the stateless ``seed``."""
        if self._cdf is None:
            return tf.random.stateless_uniform([size], seed, minval=0, maxval=self.num_items, dtype=tf.int64)
        u = tf.random.stateless_uniform([size], seed, dtype=tf.float64)
        return tf.minimum(tf.searchsorted(self._cdf, u, side="right", out_type=tf.int64), self.num_items - 1)

    def _is_seen(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
        """bool [N]: whether each (user, row) is a seen pair (binary search of the sorted keys)."""
        keys = users * self.num_items + items
        pos = tf.minimum(tf.searchsorted(self._seen, keys, out_type=tf.int64), tf.size(self._seen, tf.int64) - 1)
        return tf.equal(tf.gather(self._seen, pos), keys)

    def draw(self, users: tf.Tensor, key: Sequence[int | tf.Tensor] = ()) -> tf.Tensor:
        """int64 [N]: one negative catalogue row for each entry of ``users`` (int [N] user keys),
        drawn by stateless ops seeded with ``seed`` and each entry of ``key`` (int64 scalars, e.g.
        the epoch's key and the batch's step) folded in. With ``exclude_seen`` the draws that hit a
        seen pair are redrawn (with the round folded in too), at most ``max_rounds`` times; then the
        batch fails with :data:`NEGATIVES_ERROR` (a ``tf.errors.InvalidArgumentError``)."""
        users = tf.cast(tf.reshape(users, [-1]), tf.int64)
        seed = tf.constant([self.seed, 0x6E6567], tf.int64)
        for k in key:
            seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(k, tf.int64))
        size = tf.size(users)
        items = self._candidates(size, seed)
        if self._seen is None:
            return items

        def redraw(r: tf.Tensor, items: tf.Tensor, bad: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            fresh = self._candidates(size, tf.random.experimental.stateless_fold_in(seed, r + 1))
            items = tf.where(bad, fresh, items)
            return r + 1, items, self._is_seen(users, items)

        _, items, bad = tf.while_loop(lambda r, items, bad: (r < self.max_rounds) & tf.reduce_any(bad), redraw,
                                      (tf.constant(0, tf.int64), items, self._is_seen(users, items)))
        left = tf.reduce_sum(tf.cast(bad, tf.int64))
        check = tf.debugging.Assert(tf.equal(left, 0), [left, NEGATIVES_ERROR])
        with tf.control_dependencies([check]):
            return tf.identity(items)

    def sample(self, users: tf.Tensor | np.ndarray, key: Sequence[int | tf.Tensor] = ()) -> tf.Tensor:
        """int64 [len(users), count]: ``count`` negatives (:meth:`draw`) for each positive's user key."""
        users = tf.convert_to_tensor(users, tf.int64)
        return tf.reshape(self.draw(tf.repeat(users, self.count), key), [-1, self.count])


def negative_sampler(stream: RetrievalStream, vocab: Vocabularies, negatives: NegativeSamplingConfig,
                     seed: int) -> NegativeSampler:
    """The training run's :class:`NegativeSampler` (``train.negatives``): the seen pairs are the
    training rows' (user code, catalogue row), users keyed as :func:`implicit_dataset` gathers them
    (:meth:`RetrievalStream.user_fn`), popularity from the vocabulary's training counts."""
    part = stream.parts["train"]
    _, items = vocabulary_index(stream, vocab, "train")
    return NegativeSampler(len(vocab.movie_ids), stream.data.user[part.rows], items, count=negatives.count,
                           distribution=negatives.distribution, exclude_seen=negatives.exclude_seen,
                           item_counts=vocab.item_counts[1:], seed=seed)


def explicit_dataset(stream: RetrievalStream, batch_size: int, shuffle_buffer: int, seed: int) -> tf.data.Dataset:
    """Batches of the training rows (explicit objective): the row positions shuffled as
    :func:`~tfrs_lab.training.common.make_dataset` shuffles in-memory columns (the same seed, the same
    order), each batch's features gathered from the codes (:meth:`RetrievalStream.batch_fn`)."""
    positions = make_dataset({"position": np.arange(len(stream.parts["train"]), dtype=np.int64)}, batch_size,
                             shuffle_buffer, seed)
    gather = stream.batch_fn("train")
    return positions.map(lambda b: gather(b["position"]), num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)


def implicit_indices(stream: RetrievalStream, sampler: NegativeSampler, batch_size: int, seed: int, *,
                     grouped: bool = False) -> tf.data.Dataset:
    """The implicit training batches as ints, drawn inside ``tf.data`` (no Python per batch): per
    batch ``position`` (int64 [b], the positives' training positions) and ``negative`` (pointwise:
    int64 [b], a catalogue row, -1 for the positives themselves; grouped: int64 [b, count]).

    The order is :func:`~tfrs_lab.training.stream.epoch_batches` (a new stateless shuffle every
    epoch, keyed on (epoch, ``seed``)) and the negatives are ``sampler`` draws keyed on (epoch,
    step): re-drawn every epoch, the same epochs for the same seeds, on every worker too.
    Pointwise: the n positives and n × count negatives (negative j belongs to positive j // count)
    are shuffled together, ``batch_size`` of them a batch; grouped: ``max(1, batch_size // (1 +
    count))`` positives a batch, each with its ``count`` negatives. The dataset's cardinality is
    set: a run resumed from its backup (``train.distribution``) runs whole epochs, as the first did."""
    n, k = len(stream.parts["train"]), sampler.count
    user = stream.user_fn("train")
    if grouped:
        step = max(1, batch_size // (1 + k))

        def group(epoch: tf.Tensor, i: tf.Tensor, take: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"position": take, "negative": sampler.sample(user(take), (epoch, i))}

        ds, batches = epoch_batches(n, step, seed).map(group, num_parallel_calls=tf.data.AUTOTUNE), -(-n // step)
    else:
        def mixed(epoch: tf.Tensor, i: tf.Tensor, take: tf.Tensor) -> dict[str, tf.Tensor]:
            negative = take >= n  # slot < n: a positive; n + j: negative j
            position = tf.where(negative, (take - n) // k, take)
            drawn = sampler.draw(user(position), (epoch, i))
            return {"position": position, "negative": tf.where(negative, drawn, -1)}

        ds = epoch_batches(n * (1 + k), batch_size, seed).map(mixed, num_parallel_calls=tf.data.AUTOTUNE)
        batches = -(-(n * (1 + k)) // batch_size)
    return ds.apply(tf.data.experimental.assert_cardinality(batches))


def implicit_dataset(stream: RetrievalStream, vocab: Vocabularies, sampler: NegativeSampler, batch_size: int,
                     seed: int, *, grouped: bool = False) -> tf.data.Dataset:
    """Batches of training positives and fresh sampled negatives (:func:`implicit_indices`), re-drawn
    every epoch; a negative copies its positive's user and context columns and swaps in the sampled movie.

    ``grouped=False`` (pointwise loss): ``batch_size`` rows of positives (``label`` 1) and negatives
    (``label`` 0), shuffled together. ``grouped=True`` (pairwise / listwise losses): ``batch_size //
    (1 + count)`` positives (at least one), each row with its ``count`` negatives in the
    ``negative_movie_id`` column (string [b, count]), so a batch scores as many pairs either way.

    Everything runs in the ``tf.data`` graph (so parameter-server workers build it from their
    ``dataset_fn``): the order and negatives as ints, then each batch's features gathered from the
    codes (:meth:`RetrievalStream.batch_fn`), no string per row."""
    movies = tf.constant(np.asarray(vocab.movie_ids).astype(str))
    gather = stream.batch_fn("train")

    def features(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = gather(batch["position"])
        negative = batch["negative"]
        if grouped:
            del out["label"]
            out[NEGATIVE_MOVIE_ID] = tf.gather(movies, negative)
        else:
            out["movie_id"] = tf.where(negative >= 0, tf.gather(movies, tf.maximum(negative, 0)), out["movie_id"])
            out["label"] = tf.cast(negative < 0, tf.float32)
        return out

    ds = implicit_indices(stream, sampler, batch_size, seed, grouped=grouped)
    return ds.map(features, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- evaluation


def _predictions(model: RankingModel, batches: Iterable[dict[str, tf.Tensor]]) -> np.ndarray:
    """float32 [n]: ``model.predict_scores`` of every batch, joined."""
    out = [model.predict_scores(b).numpy() for b in batches]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def explicit_metrics(model: RankingModel, cols: Columns, batch_size: int = 8192) -> dict[str, float]:
    """``rmse`` and ``mae`` of the clipped predicted ratings against ``cols["label"]`` (in-memory columns)."""
    n = len(cols["label"])
    return rating_metrics(_predictions(model, ({k: tf.constant(v[s : s + batch_size]) for k, v in cols.items()}
                                               for s in range(0, n, batch_size))), cols["label"])


def stream_explicit_metrics(model: RankingModel, stream: RetrievalStream, name: str,
                            batch_size: int = 8192) -> dict[str, float]:
    """:func:`explicit_metrics` of split ``name``'s rows, batches gathered from the codes."""
    positions = np.arange(len(stream.parts[name]), dtype=np.int64)
    return rating_metrics(_predictions(model, stream.batches(name, positions, batch_size)), stream.labels(name))


SCORE_PAIR_BUDGET = 1 << 21
"""History entries (pairs × history length; pairs when the model reads no history) :func:`score_batches`
feeds the model at once: a query row's history is repeated for every catalogue movie, so one row of a
200-item history against 11,809 movies (5M) was 2.4M entries, 2.4 GB of embeddings at 8 rows a batch."""


def score_batches(model: RankingModel, batches: Iterable[dict[str, tf.Tensor]]) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(start, scores float32 [b, M])``: every catalogue movie scored for each batch of query
    rows (their user and context columns; ``movie_id`` and ``label`` are ignored), ``start`` the
    batch's first row among all batches, movies in ``model.movie_ids`` order. The b × M (row, movie)
    pairs go through the model in chunks of at most :data:`SCORE_PAIR_BUDGET` history entries."""
    movies = model.movie_ids
    m = int(movies.shape[0])
    start = 0
    for batch in batches:
        block = {k: v for k, v in batch.items() if k not in ("movie_id", "label")}
        b = int(block["user_id"].shape[0])
        history = block.get("history")
        width = int(history.shape[1]) if history is not None and history.shape.rank == 2 else 1
        chunk = max(1, SCORE_PAIR_BUDGET // max(1, width))
        scores = []
        for s in range(0, b * m, chunk):
            pair = tf.range(s, min(s + chunk, b * m))  # pair p = (row p // M, movie p % M)
            feats = {k: tf.gather(v, pair // m) for k, v in block.items()}
            feats["movie_id"] = tf.gather(movies, pair % m)
            scores.append(model.predict_scores(feats))
        yield start, tf.reshape(tf.concat(scores, 0), [b, m]).numpy()
        start += b


def score_matrix(model: RankingModel, queries: Columns, batch_size: int = 64) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`score_batches` of in-memory query columns, ``batch_size`` rows at a time."""
    names = [k for k in queries if k not in ("movie_id", "label")]
    n = len(queries["user_id"])
    return score_batches(model, ({k: tf.constant(queries[k][s : s + batch_size]) for k in names}
                                 for s in range(0, n, batch_size)))


def _block_metrics(blocks: Iterable[tuple[int, np.ndarray]], targets: np.ndarray,
                   exclude: Callable[[int, int], list[np.ndarray]] | None, protocol: str,
                   ks: tuple[int, ...]) -> dict[str, float]:
    """``hit_rate@K`` (``hash``) or ``recall@K``/``ndcg@K``/``mrr`` of the targets' ranks in the
    scored blocks; ``exclude(a, b)``: the catalogue rows removed from the rankings of queries ``a:b``."""
    ranks = np.empty(len(targets), np.int64)
    for s, scores in blocks:
        e = slice(s, s + len(scores))
        ranks[e] = ranks_from_scores(scores, targets[e], None if exclude is None else exclude(e.start, e.stop))
    return hit_rate(ranks, ks) if protocol == "hash" else ranking_metrics(ranks, ks)


def ranking_eval(model: RankingModel, vocab: Vocabularies, cols: Columns, *, protocol: str, ks: tuple[int, ...],
                 history: Columns | None = None, batch_size: int = 64) -> dict[str, float]:
    """Full-catalogue ranking metrics (docs/architecture.md#metric-definitions) of the rows ``cols`` (one target each):
    ``hit_rate@K`` on ``hash``; ``recall@K``/``ndcg@K``/``mrr`` with ``history`` excluded otherwise."""
    targets = movie_rows(vocab, cols["movie_id"])
    keep = targets >= 0
    cols, targets = {k: v[keep] for k, v in cols.items()}, targets[keep]
    exclude = None
    if protocol == "leave-last-out":
        if history is None:
            raise ValueError("leave-last-out evaluation needs the users' history to exclude")
        seen = known_rows(vocab, cols["user_id"], history)
        exclude = lambda a, b: seen[a:b]  # noqa: E731
    return _block_metrics(score_matrix(model, cols, batch_size), targets, exclude, protocol, ks)


def stream_ranking_eval(model: RankingModel, stream: RetrievalStream, name: str, *, protocol: str,
                        ks: tuple[int, ...], batch_size: int = 64) -> dict[str, float]:
    """:func:`ranking_eval` of split ``name``'s rows whose item is in the catalogue, batches gathered
    from the codes; on ``leave-last-out`` each user's items in the split's history source (train
    rows for validation, train + validation rows for test) are excluded."""
    keep = stream.rankable(name)
    exclude = None
    if protocol == "leave-last-out":
        exclude = lambda a, b: stream.seen(name, keep[a:b])  # noqa: E731
    return _block_metrics(score_batches(model, stream.batches(name, keep, batch_size)), stream.targets(name)[keep],
                          exclude, protocol, ks)


# --------------------------------------------------------------------------- the task


@dataclasses.dataclass
class RankingState:
    """The trained task's state: the batches of every split (:func:`ranking_stream`; leave-last-out
    evaluation excludes each user's items of the split's history source) and the metric cut-offs."""

    hp: RankingModelConfig
    stream: RetrievalStream
    ks: tuple[int, ...]


class RankingTask(Task):
    """Pointwise rating (explicit) or click (implicit, sampled negatives) prediction."""

    name = "ranking"

    def streams(self, cfg: RankingConfig) -> bool:
        """Your own data reaches ranking as :class:`Interactions` on the splits computed from codes."""
        return cfg.split_name in STREAMED_SPLITS

    def resolve_data_config(self, cfg: RankingConfig, data: MovieLensData | Interactions,
                            split: Split) -> RankingConfig:
        """``model.autorec.hidden_units: auto`` → :func:`~tfrs_lab.training.autorec_size.auto_hidden_units` of the
        training rows."""
        return resolve_hidden_units(cfg, data, split.train)

    def embedding_parameters(self, cfg: RankingConfig, vocab: Vocabularies) -> int:
        """The id tables of ``mf``, ``gmf``, ``mlp`` and ``dcn`` (NeuMF: GMF's and MLP's, two pairs):
        user ``U + 1`` and item ``M + 1`` rows of ``model.embedding_dim``, plus SVD++'s implicit item
        table with ``model.history_length > 0``, plus the user and item bias tables (one column) with
        ``model.use_biases``. ``autorec`` has only those and its decoder's per-user bias (``U + 1``):
        its other weights are dense layers fed whole rating rows, updated in full every step by either
        optimizer. The small feature tables (DCN's demographics and genres, typed features) are not
        counted."""
        m = cfg.model
        U, M = vocab.num_users, vocab.num_movies
        biases = U + M if m.use_biases else 0
        if m.architecture == "autorec":
            return U + biases
        pairs = 2 if m.architecture == "neumf" else 1
        return pairs * (U + M + (M if m.history_length > 0 else 0)) * m.embedding_dim + biases

    def vocabulary_fit(self, cfg: RankingConfig, has_user_features: bool) -> dict[str, Any]:
        return dict(has_user_features=has_user_features, title_vocab_size=10_000, title_max_tokens=16,
                    timestamp_buckets=cfg.model.timestamp_buckets)

    def train(self, ctx: RunContext) -> Trained:
        cfg, data, split, vocab, dist = ctx.cfg, ctx.data, ctx.split, ctx.vocab, ctx.distribution
        protocol, t = split.protocol, cfg.train
        hp = hyperparameters(cfg)
        check_typed_ranking(hp.architecture, [f.name for f in vocab.typed])  # from_frame features: not in the config
        if hp.architecture == "autorec":
            check_autorec_size(vocab)  # before any training work
        explicit = hp.objective == "explicit"
        stream = ranking_stream(data, split, hp)

        def rating_table(*parts: str) -> np.ndarray:  # autorec's [M + 1, U + 1] ratings of these splits
            return code_rating_table(stream.data, vocab, np.concatenate([getattr(split, p) for p in parts]))

        state = RankingState(hp, stream, metric_ks(protocol, cfg.eval.ks))
        n_train = len(split.train)
        make_train: Callable[[int], tf.data.Dataset]  # global batch size -> the training batches
        if explicit:
            def make_train(batch: int) -> tf.data.Dataset:
                return explicit_dataset(stream, batch, t.shuffle_buffer, t.seed)
            steps, examples_per_epoch = -(-n_train // t.batch_size), n_train
            offset = float(np.mean(stream.labels("train")))
            monitor = "neg_rmse"
        else:
            sampler = negative_sampler(stream, vocab, t.negatives, t.seed)
            grouped = t.loss != "pointwise"

            def make_train(batch: int) -> tf.data.Dataset:  # every worker draws the same negatives (same seed)
                return implicit_dataset(stream, vocab, sampler, batch, t.seed, grouped=grouped)
            examples_per_epoch = n_train * (1 + t.negatives.count)
            per_step = max(1, t.batch_size // (1 + t.negatives.count)) if grouped else t.batch_size
            steps = -(-(n_train if grouped else examples_per_epoch) // per_step)
            offset = -float(np.log(t.negatives.count))
            monitor = EARLY_STOPPING_METRIC[protocol]
        # multi_worker_mirrored: each worker keeps its share of every global batch of train.batch_size;
        # parameter_server runs ceil(examples / batch) steps an epoch: the scored pairs of `steps` whole batches
        train_ds, fit_kwargs = distribute.fit_dataset(dist, make_train, steps * t.batch_size, t.batch_size)

        def validator(model: RankingModel) -> Callable[[], dict[str, float]]:
            def validate() -> dict[str, float]:
                if explicit:
                    m = stream_explicit_metrics(model, stream, "validation")
                    return {**m, "neg_rmse": -m["rmse"]}
                return stream_ranking_eval(model, stream, "validation", protocol=protocol, ks=state.ks,
                                           batch_size=cfg.eval.batch_size)
            return validate

        def fit(model: RankingModel, label: str) -> FitResult:
            with dist.strategy.scope():
                model.compile(optimizer=ctx.optimizer(steps))
            try:
                return ctx.fit(model, train_ds, steps_per_epoch=steps, validate=validator(model), monitor=monitor,
                               label=label, fit_kwargs=fit_kwargs)
            except tf.errors.InvalidArgumentError as e:  # the sampler's check, raised inside tf.data
                if NEGATIVES_ERROR not in e.message:
                    raise
                raise DataError(f"a user rated nearly every movie the {t.negatives.distribution} distribution draws, "
                                f"so some {NEGATIVES_ERROR}") from None

        def build() -> RankingModel:
            table = rating_table("train") if hp.architecture == "autorec" else None
            return make_model(vocab, hp, None, offset, t.loss, table)

        fits: list[FitResult] = []
        pretrained = None
        if hp.architecture == "neumf" and cfg.model.neumf_pretrain:
            pretrained = {}
            for arch in ("gmf", "mlp"):
                with dist.strategy.scope():  # GMF has no input for typed features: NeuMF reads them in its MLP
                    sub = RankingModel(replace(vocab, typed=()) if arch == "gmf" else vocab, hyperparameters(cfg, arch),
                                       global_offset=offset, loss=t.loss)
                fits.append(fit(sub, arch))
                pretrained[arch] = sub
        def first_batch() -> dict[str, np.ndarray]:  # a small training batch: what builds a model's variables
            return {k: v.numpy() for k, v in next(iter(make_train(2))).items()}

        sample = first_batch() if pretrained is not None else None
        with dist.strategy.scope():
            model = build()
            if pretrained is not None:
                model(sample)  # build the layers before copying weights in
                model.init_neumf_from(pretrained["gmf"], pretrained["mlp"], cfg.model.neumf_alpha)
                logger.info("NeuMF initialised from the pre-trained GMF and MLP (alpha %.2f)", cfg.model.neumf_alpha)
        fits.append(fit(model, hp.architecture))
        model = distribute.finish_training(  # distributed: evaluate and export a single-device copy
            dist, model, build, sample if sample is not None else first_batch(), ctx.stage,
            lambda m, features: m.predict_scores(features))
        if hp.architecture == "autorec":  # test time: the ratings known before the test split
            model.item_ratings.assign(rating_table("train", "validation"))
        return Trained(model, state, fits, examples_per_epoch, n_train,
                       {"architecture": hp.architecture, "objective": hp.objective})

    def evaluate(self, ctx: RunContext, trained: Trained) -> dict[str, float]:
        s: RankingState = trained.state
        protocol, explicit = ctx.split.protocol, s.hp.objective == "explicit"
        metrics: dict[str, float] = {}
        if explicit:
            metrics.update(stream_explicit_metrics(trained.model, s.stream, "test"))
        if not explicit or protocol == "leave-last-out":
            metrics.update(stream_ranking_eval(trained.model, s.stream, "test", protocol=protocol, ks=s.ks,
                                               batch_size=ctx.cfg.eval.batch_size))
        return metrics

    def export(self, ctx: RunContext, trained: Trained, export_dir: Path) -> dict[str, float]:
        x, vocab, data = ctx.cfg.export, ctx.vocab, ctx.data
        logger.info("exporting to export/%s/%d", x.model_name, x.version)
        export_ranking(trained.model, export_dir,
                       user_table=serving_user_table(data, ctx.split.train, vocab, trained.state.hp.history_length),
                       model_name=x.model_name, version=x.version,
                       sample_users=[str(u) for u in vocab.user_ids[:4]],
                       sample_movies=[str(m) for m in vocab.movie_ids[:4]], verify=x.verify,
                       movie_titles=(data.movies["movie_id"], data.movies["movie_title"]))
        return {}

    def report_inputs(self, ctx: RunContext, trained: Trained, sample: int = 200) -> dict[str, Any]:
        """The whole catalogue scored for the first test row of up to ``sample`` users (scoring
        every test row would cost minutes)."""
        vocab, s = ctx.vocab, trained.state
        stream = s.stream
        targets = stream.targets("test")
        rows = report.first_per_user(stream.users("test"))
        rows = rows[targets[rows] < stream.data.num_catalogue][:sample]
        exclude = stream.seen("test", rows) if ctx.split.protocol == "leave-last-out" else None
        note = (f"recall@K of the ranking model over the whole catalogue, first test rating of "
                f"{len(rows)} users ({'seen not excluded' if exclude is None else 'seen excluded'})")
        return report.scored_inputs(score_batches(trained.model, stream.batches("test", rows, batch_size=8)),
                                    targets[rows].astype(np.int64), users=stream.data.user_ids[stream.users("test")[rows]],
                                    exclude=exclude, item_counts=vocab.item_counts[1:],
                                    titles=report.catalogue_titles(ctx.data, vocab.movie_ids), ranks_note=note)


TASK = RankingTask()
