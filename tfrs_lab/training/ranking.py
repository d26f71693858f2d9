"""The ``ranking`` task: data -> split -> vocabularies -> ranking model -> evaluation -> export.

Objectives (``model.objective``):

* ``explicit``: regress the star rating (MSE); test ``rmse`` / ``mae`` of the clipped predictions.
  On ``leave-last-out`` the catalogue is also ranked by predicted rating for ``recall@K`` etc.
* ``implicit``: every training rating is a positive; ``train.negatives.count`` negatives per positive
  are drawn afresh every epoch (uniform or popularity-proportional, optionally never a movie the
  user rated in training); ``train.loss`` ``pointwise`` (binary cross-entropy), ``pairwise`` (BPR) or
  ``listwise`` (softmax over each positive and its negatives; see :mod:`tfrs_lab.models.ranking`).
  Evaluated by full-catalogue ranking (docs/architecture.md#metric-definitions):
  ``recall@K`` / ``ndcg@K`` / ``mrr`` on ``leave-last-out`` (seen excluded), ``hit_rate@K`` on ``hash``.

Early stopping watches validation RMSE (explicit) or the retrieval task's ranking metric (implicit).

Data: your own data (``data.dataset: own``) on the splits computed from codes
(:data:`~tfrs_lab.data.interactions.STREAMED_SPLITS`, no minimum counts) arrives as compact
:class:`~tfrs_lab.data.interactions.Interactions` (:meth:`RankingTask.streams`; never converted
back with ``to_data()``): labels, ids and histories come from the codes and the sequence index, the
autorec table from the codes, and the typed features of ``data.source.features`` reach the model
(user / item features as tables inside it, context features as per-row columns by name); so do
``from_frame`` data's typed features (the frame encoded once, :meth:`Interactions.of`). MovieLens
keeps its string columns (its demographics and zip codes feed DCN); both give the same columns for
the same rows (tests/ranking/test_ranking_streamed.py).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import tensorflow as tf

from tfrs_lab.config import ConfigError, RankingConfig, RankingModelConfig, check_typed_ranking
from tfrs_lab.data.features import Vocabularies, movie_rows
from tfrs_lab.data.history import latest_history, recent_history, walk_back
from tfrs_lab.data.interactions import STREAMED_SPLITS, Interactions
from tfrs_lab.data.movielens import DataError, MovieLensData
from tfrs_lab.data.splits import Split
from tfrs_lab.evaluation.metrics import (EARLY_STOPPING_METRIC, hit_rate, metric_ks, ranking_metrics,
                                         ranks_from_scores, rating_metrics)
from tfrs_lab.export.ranking import export_ranking
from tfrs_lab.models.features import RAW_COLUMNS
from tfrs_lab.models.ranking import NEGATIVE_MOVIE_ID, RankingModel
from tfrs_lab.training import distribute, report
from tfrs_lab.training.common import make_dataset
from tfrs_lab.training.evaluate import known_rows
from tfrs_lab.training.stream import context_gather
from tfrs_lab.training.task import FitResult, RunContext, Task, Trained

__all__ = ["AUTO_HIDDEN_PER_ITEM", "AUTO_HIDDEN_RANGE", "AUTO_HIDDEN_STEP", "AUTOREC_MAX_CELLS", "auto_hidden_units",
           "check_autorec_size", "resolve_hidden_units", "NegativeSampler", "RankingTask", "TASK", "code_columns", "code_rating_table",
           "explicit_metrics", "make_model", "ranking_eval", "score_matrix", "split_columns"]

logger = logging.getLogger(__name__)

Columns = dict[str, np.ndarray]


AUTO_HIDDEN_PER_ITEM = 0.3
"""Hidden units per distinct training item (:func:`auto_hidden_units`)."""
AUTO_HIDDEN_STEP = 50
""":func:`auto_hidden_units` rounds to a multiple of this."""
AUTO_HIDDEN_RANGE = (100, 1000)
"""The fewest and most hidden units :func:`auto_hidden_units` picks."""


def auto_hidden_units(train_items: np.ndarray) -> int:
    """``model.autorec.hidden_units: auto``: AutoRec's code size for data whose training rows hold ``train_items``.

    Item-based AutoRec learns one code per item from its rating vector over users: the items are its
    training examples, and the best code size measured on validation RMSE grows with their number.
    ML-100K (1,651 training items on ``hash``, 1,637 on ``u1``) prefers 500 units to 250; the
    synthetic sets (400 and 200 items, 8 planted taste clusters) prefer 100 to 50, 150, 200, 250 and
    500. The rule is ``h = AUTO_HIDDEN_PER_ITEM * (distinct training items)``, rounded to a multiple
    of :data:`AUTO_HIDDEN_STEP` and clipped to :data:`AUTO_HIDDEN_RANGE` (1,651 -> 500, 1,637 -> 500,
    400 -> 100, 200 -> 100, ML-1M's 3,706 -> the cap 1,000, which no run has measured). Its constants
    were fitted to those validation winners (docs/tuning.md#ranking-explicit-autorec).

    Args:
      train_items: the item id (or code) of every **training** row, any dtype, ``[n]``; never
        validation or test rows.

    Returns:
      the hidden units, an int in ``AUTO_HIDDEN_RANGE``, a multiple of ``AUTO_HIDDEN_STEP``.
    """
    items = np.asarray(train_items)
    distinct = len(np.unique(items)) if items.size else 0
    lo, hi = AUTO_HIDDEN_RANGE
    units = int(np.clip(round(AUTO_HIDDEN_PER_ITEM * distinct / AUTO_HIDDEN_STEP) * AUTO_HIDDEN_STEP, lo, hi))
    logger.info("model.autorec.hidden_units: auto = %d (%d distinct training items)", units, distinct)
    return units


def resolve_hidden_units(cfg: RankingConfig, data: MovieLensData | Interactions, train: np.ndarray) -> RankingConfig:
    """``cfg`` with ``model.autorec.hidden_units: auto`` replaced by :func:`auto_hidden_units` of the
    training rows ``train`` (row indices into ``data``, int [n]); any other ``cfg`` as is."""
    autorec = cfg.model.autorec
    if autorec.hidden_units != "auto":
        return cfg
    items = data.item[train] if isinstance(data, Interactions) else data.ratings["movie_id"][train]
    autorec = replace(autorec, hidden_units=auto_hidden_units(items))
    return replace(cfg, model=replace(cfg.model, autorec=autorec))


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


def split_columns(data: MovieLensData | Interactions, split: Split, hp: RankingModelConfig) -> dict[str, Columns]:
    """Columns of each split. Histories come from earlier splits only: train and validation rows
    see train rows, test rows see train and validation rows. :class:`Interactions` give the same
    columns from their codes (:func:`code_columns`), plus the typed context features by name."""
    known = {"train": split.train, "validation": split.train,
             "test": np.concatenate([split.train, split.validation])}
    if isinstance(data, Interactions):
        return code_columns(data, split, hp, known)
    return {name: feature_columns(data, getattr(split, name), hp, known[name]) for name in known}


def code_columns(data: Interactions, split: Split, hp: RankingModelConfig,
                 known: dict[str, np.ndarray]) -> dict[str, Columns]:
    """:func:`feature_columns` of each split from integer codes: ``user_id`` / ``movie_id`` (object
    [n] references to the vocabularies' strings, no string made per row), ``label`` (the rating
    column, float32; 1.0 without one), DCN's ``timestamp`` (and the demographics MovieLens encoded
    into :attr:`Interactions.extra`), each typed context feature by name
    (:func:`tfrs_lab.training.stream.context_gather`) and ``history`` (string [n, H], from the
    sequence index: the user's items among ``known[name]`` strictly before the row, newest first,
    '' padded)."""
    context = {name: context_gather(f) for name, f in data.features.items() if f.spec.side == "context"}
    sources: dict[int, tuple] = {}
    out: dict[str, Columns] = {}
    for name, source_rows in known.items():
        rows = np.asarray(getattr(split, name), np.int64)
        user = data.user[rows]
        label = data.rating[rows] if data.rating is not None else np.ones(len(rows))
        cols = {"user_id": data.user_ids[user], "movie_id": data.item_ids[data.item[rows]],
                "label": np.asarray(label, np.float32)}
        if hp.architecture == "dcn":
            for feature in hp.features:
                raw = RAW_COLUMNS.get(feature)
                if raw == "timestamp":
                    cols[raw] = np.asarray(data.timestamp[rows], np.int64)
                elif raw in data.extra:
                    cols[raw] = data.extra[raw][rows]
        if context:
            positions = tf.constant(rows)
            cols.update({feature: gather(positions).numpy() for feature, gather in context.items()})
        if hp.history_length:
            if id(source_rows) not in sources:  # train and validation share the training rows
                sources[id(source_rows)] = data.history_source(source_rows)
            source, stop = sources[id(source_rows)]
            codes = walk_back(source.items, source.user_start[user], stop[rows], hp.history_length, -1)
            cols["history"] = np.where(codes >= 0, data.item_ids[np.maximum(codes, 0)], "").astype(object)
        out[name] = cols
    return out


def make_model(vocab: Vocabularies, hp: RankingModelConfig, train: Columns, global_offset: float,
               loss: str = "pointwise", table: np.ndarray | None = None) -> RankingModel:
    """A :class:`RankingModel` of ``hp`` trained with ``loss`` (``train.loss``) on the ``train``
    columns (autorec: with ``table``, by default their :func:`item_rating_table`)."""
    if hp.architecture == "autorec" and table is None:
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
                       history_length: int = 0) -> Columns:
    """Raw user features per user index ([U + 1] rows, row 0 = unknown-user defaults) that the
    exported model looks up: the vocabulary's demographics, the zip code (first training row) and,
    with ``history_length > 0``, the user's latest ``history_length`` movies among *all* known
    ratings (the freshest history the exported model can have; '' padding, empty for row 0;
    :class:`Interactions`: from the sequence index)."""
    table = dict(vocab.user_table)
    if isinstance(data, Interactions):
        if history_length:
            table["history"] = np.concatenate([np.full((1, history_length), "", dtype=object),
                                               data.latest(data.codes_of(vocab.user_ids), history_length)])
        return table
    if history_length:
        known = latest_history(data.ratings, np.arange(len(data.ratings["user_id"])), vocab.user_ids, history_length)
        table["history"] = np.concatenate([np.full((1, history_length), "", dtype=object), known])
    if "user_zip_code" in data.ratings:
        users = data.ratings["user_id"][train_rows]
        uniq, first = np.unique(users, return_index=True)
        assert np.array_equal(uniq, vocab.user_ids)
        zips = data.ratings["user_zip_code"][train_rows][first]
        table["user_zip_code"] = np.concatenate([np.array([""], dtype=object), zips.astype(object)])
    return table


# --------------------------------------------------------------------------- negatives


class NegativeSampler:
    """Draws negatives (catalogue rows) for training positives.

    Args:
      num_items: catalogue size M (rows 0 .. M - 1).
      seen_users, seen_items: int [n] (user index, catalogue row) of every training positive; with
        ``exclude_seen`` a user is never given a movie they rated in training (so never the positive).
      distribution: ``uniform`` or ``popularity`` (proportional to ``item_counts``, float [M]).
    """

    def __init__(self, num_items: int, seen_users: np.ndarray, seen_items: np.ndarray, *, count: int,
                 distribution: str, exclude_seen: bool, item_counts: np.ndarray | None = None,
                 seed: int = 0, max_rounds: int = 100) -> None:
        self.num_items, self.count, self.exclude_seen, self.max_rounds = num_items, count, exclude_seen, max_rounds
        self.rng = np.random.default_rng(seed)
        self.cdf = None
        if distribution == "popularity":
            if item_counts is None or np.sum(item_counts) <= 0:
                raise ValueError("popularity sampling needs positive item counts")
            self.cdf = np.cumsum(np.asarray(item_counts, np.float64))
            self.cdf /= self.cdf[-1]
        elif distribution != "uniform":
            raise ValueError(f"unknown negative distribution {distribution!r}: choose uniform or popularity")
        self.seen_keys = np.unique(np.asarray(seen_users, np.int64) * num_items + np.asarray(seen_items, np.int64))

    def _draw(self, n: int) -> np.ndarray:
        if self.cdf is None:
            return self.rng.integers(0, self.num_items, size=n)
        return np.minimum(np.searchsorted(self.cdf, self.rng.random(n), side="right"), self.num_items - 1)

    def _is_seen(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.num_items + items
        pos = np.minimum(np.searchsorted(self.seen_keys, keys), len(self.seen_keys) - 1)
        return self.seen_keys[pos] == keys

    def sample(self, users: np.ndarray) -> np.ndarray:
        """int64 [len(users), count] negative catalogue rows for each positive's user index."""
        users = np.repeat(np.asarray(users, np.int64), self.count)
        items = self._draw(len(users))
        if self.exclude_seen and len(self.seen_keys):
            bad = np.flatnonzero(self._is_seen(users, items))
            for _ in range(self.max_rounds):
                if not len(bad):
                    break
                items[bad] = self._draw(len(bad))
                bad = bad[self._is_seen(users[bad], items[bad])]
            if len(bad):  # users who rated (nearly) the whole catalogue
                raise DataError(f"{len(bad)} negatives could not avoid the users' rated movies: "
                                "set train.negatives.exclude_seen=false")
        return items.reshape(-1, self.count)


def implicit_dataset(cols: Columns, vocab: Vocabularies, sampler: NegativeSampler, batch_size: int,
                     seed: int, *, grouped: bool = False) -> tf.data.Dataset:
    """Batches of training positives and fresh sampled negatives, re-drawn every epoch; a negative
    copies its positive's user and context columns and swaps in the sampled movie.

    ``grouped=False`` (pointwise loss): ``batch_size`` rows of positives (``label`` 1) and negatives
    (``label`` 0), shuffled together. ``grouped=True`` (pairwise / listwise losses): ``batch_size //
    (1 + count)`` positives (at least one), each row with its ``count`` negatives in the
    ``negative_movie_id`` column (string [b, count]), so a batch scores as many pairs either way."""
    users = np.asarray(tf.keras.layers.StringLookup(vocabulary=list(vocab.user_ids), mask_token=None)(
        cols["user_id"]).numpy(), np.int64)
    base = {k: v for k, v in cols.items() if k != "label"}
    shuffle_rng = np.random.default_rng(seed)
    n, k = len(users), sampler.count

    def epoch() -> Iterator[dict[str, np.ndarray]]:
        negatives = sampler.sample(users)  # [n, k]
        rows = np.concatenate([np.arange(n), np.repeat(np.arange(n), k)])
        movies = np.concatenate([cols["movie_id"], vocab.movie_ids[negatives.reshape(-1)]])
        labels = np.concatenate([np.ones(n, np.float32), np.zeros(n * k, np.float32)])
        order = shuffle_rng.permutation(len(rows))
        for s in range(0, len(order), batch_size):
            take = order[s : s + batch_size]
            batch = {name: col[rows[take]] for name, col in base.items()}
            batch["movie_id"], batch["label"] = movies[take], labels[take]
            yield batch

    def grouped_epoch() -> Iterator[dict[str, np.ndarray]]:
        negatives = vocab.movie_ids[sampler.sample(users)]  # [n, k] movie ids
        order = shuffle_rng.permutation(n)
        step = max(1, batch_size // (1 + k))
        for s in range(0, n, step):
            take = order[s : s + step]
            batch = {name: col[take] for name, col in base.items()}
            batch[NEGATIVE_MOVIE_ID] = negatives[take]
            yield batch

    spec = {name: tf.TensorSpec([None, *col.shape[1:]], tf.string if col.dtype == object else tf.as_dtype(col.dtype))
            for name, col in base.items()}
    if grouped:
        spec[NEGATIVE_MOVIE_ID] = tf.TensorSpec([None, k], tf.string)
    else:
        spec["label"] = tf.TensorSpec([None], tf.float32)
    batches = -(-n // max(1, batch_size // (1 + k))) if grouped else -(-(n * (1 + k)) // batch_size)
    ds = tf.data.Dataset.from_generator(grouped_epoch if grouped else epoch, output_signature=spec)
    # a known length: a run resumed from its backup (train.distribution) runs whole epochs, as the first did
    return ds.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(2)


# --------------------------------------------------------------------------- evaluation


def explicit_metrics(model: RankingModel, cols: Columns, batch_size: int = 8192) -> dict[str, float]:
    """``rmse`` and ``mae`` of the clipped predicted ratings against ``cols["label"]``."""
    preds = np.concatenate([
        model.predict_scores({k: tf.constant(v[s : s + batch_size]) for k, v in cols.items()}).numpy()
        for s in range(0, len(cols["label"]), batch_size)]) if len(cols["label"]) else np.zeros(0)
    return rating_metrics(preds, cols["label"])


def score_matrix(model: RankingModel, queries: Columns, batch_size: int = 64) -> Iterator[tuple[int, np.ndarray]]:
    """Yields ``(start, scores float32 [b, M])``: every catalogue movie scored for query rows
    ``start .. start + b`` (each row's user and context columns, every movie in ``model.movie_ids`` order)."""
    movies = model.movie_ids
    m = int(movies.shape[0])
    names = [k for k in queries if k not in ("movie_id", "label")]
    n = len(queries["user_id"])
    for s in range(0, n, batch_size):
        block = {k: tf.constant(queries[k][s : s + batch_size]) for k in names}
        b = int(block["user_id"].shape[0])
        feats = {k: tf.repeat(v, m, axis=0) for k, v in block.items()}
        feats["movie_id"] = tf.tile(movies, [b])
        yield s, tf.reshape(model.predict_scores(feats), [b, m]).numpy()


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
        exclude = known_rows(vocab, cols["user_id"], history)
    ranks = np.empty(len(targets), np.int64)
    for s, scores in score_matrix(model, cols, batch_size):
        e = slice(s, s + len(scores))
        ranks[e] = ranks_from_scores(scores, targets[e], None if exclude is None else exclude[e])
    return hit_rate(ranks, ks) if protocol == "hash" else ranking_metrics(ranks, ks)


# --------------------------------------------------------------------------- the task


@dataclasses.dataclass
class RankingState:
    hp: RankingModelConfig
    cols: dict[str, Columns]
    seen: dict[str, Columns]  # what leave-last-out evaluation excludes per user, per evaluated split
    ks: tuple[int, ...]


class RankingTask(Task):
    """Pointwise rating (explicit) or click (implicit, sampled negatives) prediction."""

    name = "ranking"

    def streams(self, cfg: RankingConfig) -> bool:
        """Your own data reaches ranking as :class:`Interactions` on the splits computed from codes."""
        return cfg.split_name in STREAMED_SPLITS

    def resolve_data_config(self, cfg: RankingConfig, data: MovieLensData | Interactions,
                            split: Split) -> RankingConfig:
        """``model.autorec.hidden_units: auto`` → :func:`auto_hidden_units` of the training rows."""
        return resolve_hidden_units(cfg, data, split.train)

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
        if not isinstance(data, Interactions) and data.features:  # from_frame's typed features: read from the codes
            data = Interactions.of(data)
        explicit = hp.objective == "explicit"
        cols = split_columns(data, split, hp)

        def rating_table(*parts: str) -> np.ndarray:  # autorec's [M + 1, U + 1] ratings of these splits
            if isinstance(data, Interactions):
                return code_rating_table(data, vocab, np.concatenate([getattr(split, p) for p in parts]))
            return item_rating_table(vocab, {k: np.concatenate([cols[p][k] for p in parts])
                                             for k in ("user_id", "movie_id", "label")})

        seen = {"validation": cols["train"],
                "test": {k: np.concatenate([cols["train"][k], cols["validation"][k]]) for k in ("user_id", "movie_id")}}
        state = RankingState(hp, cols, seen, metric_ks(protocol, cfg.eval.ks))
        n_train = len(split.train)
        make_train: Callable[[int], tf.data.Dataset]  # global batch size -> the training batches
        if explicit:
            def make_train(batch: int) -> tf.data.Dataset:
                return make_dataset(cols["train"], batch, t.shuffle_buffer, t.seed)
            steps, examples_per_epoch = -(-n_train // t.batch_size), n_train
            offset = float(np.mean(cols["train"]["label"]))
            monitor = "neg_rmse"
        else:
            train_users = tf.keras.layers.StringLookup(vocabulary=list(vocab.user_ids), mask_token=None)(
                cols["train"]["user_id"]).numpy()
            sampler = NegativeSampler(
                len(vocab.movie_ids), train_users, movie_rows(vocab, cols["train"]["movie_id"]),
                count=t.negatives.count, distribution=t.negatives.distribution,
                exclude_seen=t.negatives.exclude_seen, item_counts=vocab.item_counts[1:], seed=t.seed)
            grouped = t.loss != "pointwise"

            def make_train(batch: int) -> tf.data.Dataset:  # every worker draws the same negatives (same seed)
                return implicit_dataset(cols["train"], vocab, sampler, batch, t.seed, grouped=grouped)
            examples_per_epoch = n_train * (1 + t.negatives.count)
            per_step = max(1, t.batch_size // (1 + t.negatives.count)) if grouped else t.batch_size
            steps = -(-(n_train if grouped else examples_per_epoch) // per_step)
            offset = -float(np.log(t.negatives.count))
            monitor = EARLY_STOPPING_METRIC[protocol]
        # multi_worker_mirrored: each worker keeps its share of every global batch of train.batch_size
        train_ds, fit_kwargs = distribute.fit_dataset(dist, make_train, n_train, t.batch_size)

        def validator(model: RankingModel) -> Callable[[], dict[str, float]]:
            def validate() -> dict[str, float]:
                if explicit:
                    m = explicit_metrics(model, cols["validation"])
                    return {**m, "neg_rmse": -m["rmse"]}
                return ranking_eval(model, vocab, cols["validation"], protocol=protocol, ks=state.ks,
                                    history=seen["validation"], batch_size=cfg.eval.batch_size)
            return validate

        def fit(model: RankingModel, label: str) -> FitResult:
            with dist.strategy.scope():
                model.compile(optimizer=ctx.optimizer(steps))
            return ctx.fit(model, train_ds, validate=validator(model), monitor=monitor, label=label,
                           fit_kwargs=fit_kwargs)

        def build() -> RankingModel:
            table = rating_table("train") if hp.architecture == "autorec" else None
            return make_model(vocab, hp, cols["train"], offset, t.loss, table)

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
            metrics.update(explicit_metrics(trained.model, s.cols["test"]))
        if not explicit or protocol == "leave-last-out":
            metrics.update(ranking_eval(trained.model, ctx.vocab, s.cols["test"], protocol=protocol, ks=s.ks,
                                        history=s.seen["test"], batch_size=ctx.cfg.eval.batch_size))
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
        columns = s.cols["test"]
        targets = movie_rows(vocab, columns["movie_id"])
        rows = report.first_per_user(columns["user_id"])
        rows = rows[targets[rows] >= 0][:sample]
        columns, targets = {k: v[rows] for k, v in columns.items()}, targets[rows]
        exclude = None
        if ctx.split.protocol == "leave-last-out":
            history = s.seen["test"]
            exclude = known_rows(vocab, columns["user_id"], history)
        note = (f"recall@K of the ranking model over the whole catalogue, first test rating of "
                f"{len(rows)} users ({'seen not excluded' if exclude is None else 'seen excluded'})")
        return report.scored_inputs(score_matrix(trained.model, columns, batch_size=8), targets,
                                    users=columns["user_id"], exclude=exclude, item_counts=vocab.item_counts[1:],
                                    titles=report.catalogue_titles(ctx.data, vocab.movie_ids), ranks_note=note)


TASK = RankingTask()
