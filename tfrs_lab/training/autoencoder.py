"""The ``autoencoder`` task: data -> split -> rating / interaction matrices -> AutoRec or Mult-DAE/VAE
-> evaluation -> export.

Protocols (``data.split: auto`` picks by architecture, docs/architecture.md#splits):

* ``autorec`` on ``hash``: test ``rmse`` / ``mae`` of predicted ratings clipped to the training
  rating range. The encoder reads each movie's training ratings while training and validating,
  and its training + validation ratings at test time (the convention of every model here:
  test rows see training and validation rows). A (user, movie) pair the model cannot score (user
  or movie without input ratings) gets the user's mean training rating, else the global mean.
  The same on ``time`` and ``predefined`` (rating-level protocol too).
* ``dae`` / ``vae`` on ``leave-last-out``: full-catalogue ``recall@K``, ``ndcg@K``, ``mrr``; the
  user vector is built from training items for validation and from training + validation items
  for test, and exactly those items are excluded from the ranking.
* ``dae`` / ``vae`` on ``held-out-users`` (Mult-VAE's strong generalisation): trained on the
  training users only; a held-out user's vector is built from their fold-in items, which are
  excluded from the ranking, and all their target items are ranked together (Mult-VAE's
  ``recall@K`` normalised by ``min(K, #targets)`` and ``ndcg@K``).

Matrices are sparse (``scipy.sparse.csr_matrix``, O(interactions)); training batches and evaluation
blocks densify only their own rows (:func:`sparse_rows_dataset`, :func:`dense_rows`), so memory is
O(interactions) + O(batch x catalogue) and no [users x catalogue] matrix is ever built. The matrices
come straight from the integer columns of compact
:class:`~tfrs_lab.data.interactions.Interactions` (:meth:`AutoencoderTask.streams`: your own data
as the prepared dataset holds it; MovieLens encoded once): user and item codes mapped to vocabulary
rows through two small lookup tables, never a string per interaction.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
import tensorflow as tf

from tfrs_lab.config import AutoencoderConfig
from tfrs_lab.data.features import Vocabularies
from tfrs_lab.data.interactions import STREAMED_SPLITS, Interactions as Coded
from tfrs_lab.data.movielens import MovieLensData
from tfrs_lab.data.splits import HELD_OUT_USERS, Split
from tfrs_lab.evaluation.metrics import (metric_ks, multi_target_metrics, ranking_metrics, ranks_from_scores,
                                         rating_metrics)
from tfrs_lab.export.autoencoder import FoldIn, export_autoencoder
from tfrs_lab.export.index import IndexSettings
from tfrs_lab.models.autoencoder import AutoRec, MultAutoencoder
from tfrs_lab.training import distribute, report
from tfrs_lab.training.autorec_size import resolve_hidden_units
from tfrs_lab.training.common import capped_steps, sample_weights
from tfrs_lab.training.task import RunContext, Task, Trained

__all__ = ["AutoencoderTask", "TASK", "Interactions", "RatingBaselines", "autorec_dataset", "autorec_predictions",
           "dense_rows", "held_out_inputs", "interactions", "mult_dataset", "rank_targets", "rating_matrix",
           "sparse_rows_dataset", "DENSE_BLOCK_BYTES", "DENSE_IN_FLIGHT_BYTES",
           "dense_batches_in_flight", "dense_block_rows", "inference_copy"]

logger = logging.getLogger(__name__)

EARLY_STOPPING_METRIC = {"autorec": "neg_rmse", "dae": "ndcg@10", "vae": "ndcg@10"}
HELD_OUT_EARLY_STOPPING_METRIC = "ndcg@100"  # dae / vae on held-out-users (Mult-VAE selects on ndcg@100)


@dataclasses.dataclass(frozen=True)
class Interactions:
    """Rows of one or more splits as matrix coordinates (-1 = user or movie unknown to the vocabularies)."""

    users: np.ndarray  # int32 [n] row in vocab.user_ids (int64 where a caller built it so)
    items: np.ndarray  # int32 [n] catalogue row
    ratings: np.ndarray  # float32 [n]

    @property
    def known(self) -> np.ndarray:
        return (self.users >= 0) & (self.items >= 0)


def interactions(data: Coded, vocab: Vocabularies, *row_sets: np.ndarray) -> Interactions:
    """The rows of ``row_sets`` (concatenated) as matrix coordinates of ``vocab``, from the codes:
    int32 users and items (12 bytes a row with the rating; vocabularies stay below 2^31 rows)."""
    rows = np.concatenate(row_sets) if row_sets else np.zeros(0, np.int64)
    user_rows, item_rows = (r.astype(np.int32) for r in data.vocabulary_rows(vocab))
    return Interactions(user_rows[data.user[rows]], item_rows[data.item[rows]],
                        np.asarray(data.rating[rows], np.float32))


def rating_matrix(x: Interactions, num_users: int, num_items: int) -> sp.csr_matrix:
    """Sparse ratings float32 [U, M] of the known rows: the stored entries are the observed
    ratings (the mask is the sparsity pattern); a repeated (user, movie) keeps its last rating.
    Memory O(interactions)."""
    k = x.known
    users, items, ratings = x.users[k], x.items[k], x.ratings[k]
    _, last = np.unique((users.astype(np.int64) * num_items + items)[::-1], return_index=True)
    keep = len(users) - 1 - last
    return sp.csr_matrix((ratings[keep], (users[keep], items[keep])), shape=(num_users, num_items), dtype=np.float32)


def dense_rows(matrix: sp.csr_matrix, rows: np.ndarray, binary: bool = False) -> np.ndarray:
    """float32 [len(rows), columns]: the given rows of ``matrix`` densified (``binary``: 1 where stored)."""
    block = matrix[np.asarray(rows, np.int64)]
    if binary:
        block = block.copy()
        block.data = np.ones_like(block.data)
    return block.toarray().astype(np.float32, copy=False)


def sparse_rows_dataset(matrix: sp.csr_matrix, batch_size: int, seed: int,
                        features: Callable[[tf.Tensor, tf.Tensor], dict[str, tf.Tensor]]) -> tf.data.Dataset:
    """Shuffled batches of the non-empty rows of ``matrix`` [R, C], densified per batch.

    The dataset holds the CSR arrays (O(nnz)) and shuffles row numbers; each batch of B rows
    becomes ``features(values, mask)`` of two float32 [B, C] tensors (stored values, 1 where
    stored). The row order is that of shuffling the dense rows themselves with the same seed.
    """
    rows = np.flatnonzero(np.diff(matrix.indptr) > 0).astype(np.int64)
    splits = matrix.indptr.astype(np.int64)
    columns = tf.RaggedTensor.from_row_splits(matrix.indices.astype(np.int32, copy=False), splits)  # int32: 4 B a value
    values = tf.RaggedTensor.from_row_splits(matrix.data.astype(np.float32), splits)
    width = int(matrix.shape[1])

    def densify(batch: tf.Tensor) -> dict[str, tf.Tensor]:
        cols, vals = tf.gather(columns, batch), tf.gather(values, batch)  # ragged [B, None]
        index = tf.stack([cols.value_rowids(), tf.cast(cols.flat_values, tf.int64)], axis=1)
        shape = tf.stack([tf.size(batch, out_type=tf.int64), tf.constant(width, tf.int64)])
        dense = tf.ensure_shape(tf.scatter_nd(index, vals.flat_values, shape), (None, width))
        mask = tf.ensure_shape(tf.scatter_nd(index, tf.ones_like(vals.flat_values), shape), (None, width))
        return features(dense, mask)

    in_flight = dense_batches_in_flight(batch_size, width)
    ds = tf.data.Dataset.from_tensor_slices(rows).shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).map(densify, num_parallel_calls=in_flight).prefetch(in_flight)


DENSE_IN_FLIGHT_BYTES = 512 * 2**20
"""Budget for the densified batches :func:`sparse_rows_dataset` keeps in flight (being densified or
prefetched): 512 MiB. ``tf.data.AUTOTUNE`` sizes its buffers against half the machine's memory, which at
25M (162,541 users: 333 MB per batch of 256 movies, values and mask) took AutoRec's training past 8 GiB."""


DENSE_BLOCK_BYTES = 128 * 2**20
"""Largest dense float32 block AutoRec's evaluation feeds the model at once: 128 MiB (the input, its
float64 densification, the output and its numpy copy each take about this much). At 25M, 1,024 movies x
162,541 users were 666 MB per copy, on top of training's state."""


def dense_block_rows(batch_size: int, width: int, budget: int = DENSE_BLOCK_BYTES) -> int:
    """Rows of ``width`` float32 columns per evaluation block: ``batch_size``, fewer when a block
    would pass ``budget`` bytes, at least 1."""
    return max(1, min(batch_size, budget // (4 * max(1, width))))


def dense_batches_in_flight(batch_size: int, width: int, budget: int = DENSE_IN_FLIGHT_BYTES) -> int:
    """Densified batches of ``batch_size`` rows x ``width`` columns (two float32 tensors each) kept in
    flight within ``budget`` bytes: at least 1 (one batch is always needed), at most 8."""
    batch_bytes = 2 * 4 * batch_size * width
    return max(1, min(8, budget // max(1, batch_bytes)))


# --------------------------------------------------------------------------- AutoRec (explicit)


@dataclasses.dataclass(frozen=True)
class RatingBaselines:
    global_mean: float
    user_mean: np.ndarray  # float32 [U] mean training rating (global mean where none)
    rating_min: float
    rating_max: float


def baselines(train: Interactions, num_users: int) -> RatingBaselines:
    k = train.known
    g = float(train.ratings[k].mean())
    sums = np.bincount(train.users[k], weights=train.ratings[k], minlength=num_users)
    counts = np.bincount(train.users[k], minlength=num_users)
    user_mean = np.where(counts > 0, sums / np.maximum(counts, 1), g).astype(np.float32)
    return RatingBaselines(g, user_mean, float(train.ratings[k].min()), float(train.ratings[k].max()))


def autorec_reconstruction(model: AutoRec, by_movie: sp.csr_matrix, movies: np.ndarray, batch_size: int,
                           out: Callable[[np.ndarray, np.ndarray], None]) -> None:
    """Feeds the rating vectors of ``movies`` (rows of ``by_movie`` [M, U]) through the model
    ``batch_size`` movies at a time (fewer when a dense [b, U] block would pass
    :data:`DENSE_BLOCK_BYTES`), calling ``out(movie rows int [b], reconstruction float32 [b, U])``."""
    step = dense_block_rows(batch_size, by_movie.shape[1])
    for s in range(0, len(movies), step):
        chunk = movies[s : s + step]
        out(chunk, model(tf.constant(dense_rows(by_movie, chunk))).numpy())


def autorec_predictions(model: AutoRec, input_ratings: sp.csr_matrix, pairs: Interactions, base: RatingBaselines,
                        batch_size: int = 1024) -> np.ndarray:
    """float32 [n] predicted ratings of ``pairs`` from the model fed ``input_ratings`` (sparse
    [U, M]), clipped to the training range; fallbacks as the module docstring says. Movies are
    reconstructed ``batch_size`` at a time (never an [M, U] matrix)."""
    by_movie = input_ratings.T.tocsr()  # [M, U]
    has_input = np.diff(by_movie.indptr) > 0  # [M]
    scorable = pairs.known & has_input[np.maximum(pairs.items, 0)]
    predicted = np.where(pairs.users >= 0, base.user_mean[np.maximum(pairs.users, 0)], base.global_mean)
    predicted = predicted.astype(np.float32)
    order = np.flatnonzero(scorable)
    order = order[np.argsort(pairs.items[order], kind="stable")]
    sorted_items = pairs.items[order]

    def fill(chunk: np.ndarray, reconstruction: np.ndarray) -> None:
        lo, hi = np.searchsorted(sorted_items, [chunk[0], chunk[-1] + 1])
        which = order[lo:hi]
        predicted[which] = reconstruction[np.searchsorted(chunk, pairs.items[which]), pairs.users[which]]

    autorec_reconstruction(model, by_movie, np.unique(sorted_items), batch_size, fill)
    return np.clip(predicted, base.rating_min, base.rating_max)


def autorec_dataset(ratings: sp.csr_matrix, batch_size: int, seed: int) -> tf.data.Dataset:
    """Batches of movies (those with training ratings): ``ratings``/``mask`` float32 [B, U],
    densified per batch from the sparse [U, M] ``ratings``."""
    return sparse_rows_dataset(ratings.T.tocsr(), batch_size, seed, lambda r, m: {"ratings": r, "mask": m})


# --------------------------------------------------------------------------- Mult-DAE / VAE (implicit)


def user_targets(x: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """(users int64 [n], target catalogue rows int64 [n]) of the known rows (one per user in leave-last-out)."""
    k = x.known
    return x.users[k], x.items[k]


def seen_items(inputs: sp.csr_matrix, user: int) -> np.ndarray:
    """int [n] catalogue rows stored in row ``user`` of ``inputs`` (ascending)."""
    return np.sort(inputs.indices[inputs.indptr[user] : inputs.indptr[user + 1]])


def rank_targets(model: MultAutoencoder, inputs: sp.csr_matrix, users: np.ndarray, targets: np.ndarray,
                 batch_size: int) -> np.ndarray:
    """Ranks of each target among all movies, the input (seen) movies of its user excluded
    (``inputs`` sparse [U, M], densified ``batch_size`` users at a time)."""
    ranks = np.empty(len(users), np.int64)
    for s in range(0, len(users), batch_size):
        u = users[s : s + batch_size]
        scores = model(tf.constant(dense_rows(inputs, u, binary=True))).numpy()
        exclude = [seen_items(inputs, i) for i in u]
        ranks[s : s + batch_size] = ranks_from_scores(scores, targets[s : s + batch_size], exclude)
    return ranks


@dataclasses.dataclass(frozen=True)
class HeldOutUsers:
    """Held-out users of one evaluated split (``held-out-users``): row h of ``inputs`` is user ``user_ids[h]``."""

    user_ids: np.ndarray  # str [H]
    inputs: sp.csr_matrix  # float32 [H, M] sparse multi-hot of each user's fold-in movies
    targets: Interactions  # users = row in inputs, items = catalogue row (movies outside the catalogue dropped)


def held_out_inputs(data: Coded, vocab: Vocabularies, fold_in_rows: np.ndarray,
                    target_rows: np.ndarray) -> HeldOutUsers:
    """The fold-in input matrix and the targets of the users of ``fold_in_rows`` / ``target_rows``."""
    codes, inverse = np.unique(np.concatenate([data.user[fold_in_rows], data.user[target_rows]]), return_inverse=True)
    fold_users, target_users = inverse[: len(fold_in_rows)], inverse[len(fold_in_rows):]
    item_rows = data.vocabulary_rows(vocab)[1]
    fold_items, target_items = item_rows[data.item[fold_in_rows]], item_rows[data.item[target_rows]]
    k = fold_items >= 0
    fold_in = Interactions(fold_users[k].astype(np.int64), fold_items[k], np.ones(int(k.sum()), np.float32))
    inputs = rating_matrix(fold_in, len(codes), len(vocab.movie_ids))
    keep = target_items >= 0
    targets = Interactions(target_users[keep].astype(np.int64), target_items[keep],
                           np.asarray(data.rating[target_rows], np.float32)[keep])
    return HeldOutUsers(data.user_ids[codes].astype(object), inputs, targets)


def held_out_metrics(model: MultAutoencoder, held: HeldOutUsers, ks: tuple[int, ...], batch_size: int) -> dict[str, float]:
    """Mult-VAE's ``recall@K`` / ``ndcg@K`` of the held-out users (fold-in movies excluded)."""
    users, targets = user_targets(held.targets)
    ranks = rank_targets(model, held.inputs, users, targets, batch_size)
    return multi_target_metrics(ranks, users, ks)


def mult_dataset(items: sp.csr_matrix, batch_size: int, seed: int, *, weighted: bool = False) -> tf.data.Dataset:
    """Batches of users (those with input movies): ``items`` float32 [B, M] multi-hot, densified per
    batch from the sparse [U, M] ``items`` (stored entries = seen); with ``weighted`` also
    ``weights`` float32 [B, M], the stored values (each seen movie's ``train.sample_weight``, 0 elsewhere)."""
    if weighted:
        return sparse_rows_dataset(items, batch_size, seed, lambda r, m: {"items": m, "weights": r})
    return sparse_rows_dataset(items, batch_size, seed, lambda r, m: {"items": m})


# --------------------------------------------------------------------------- the task


def inference_copy(model: tf.keras.Model, build: Callable[[], tf.keras.Model]) -> tf.keras.Model:
    """A fresh, uncompiled ``build()`` holding ``model``'s weights (assigned variable by variable, no
    numpy copy), for evaluation and export. Once the caller drops ``model`` (the early-stopping
    callback lets it go at the end of ``fit``), its optimizer slots (Adam: 2 copies of the weights)
    and traced training step are freed; a SavedModel of the copy holds no optimizer variables."""
    copy = build()
    if len(copy.weights) != len(model.weights):
        raise ValueError(f"build() made {len(copy.weights)} weights, the trained model has {len(model.weights)}")
    for target, source in zip(copy.weights, model.weights):
        target.assign(source)
    return copy



@dataclasses.dataclass
class AutoencoderState:
    """Matrices and evaluation closures of one run (``known`` = training + validation inputs)."""

    train: Interactions
    test: Interactions
    known: sp.csr_matrix  # float32 [U, M] training + validation ratings (the pattern is the mask)
    test_metrics: Callable[[], dict[str, float]]
    held_out_test: HeldOutUsers | None = None  # held-out-users: the test users' fold-in inputs and targets


class AutoencoderTask(Task):
    """AutoRec (explicit ratings, ``hash``) and Mult-DAE/VAE (top-K, ``leave-last-out``)."""

    name = "autoencoder"

    def resolve_config(self, cfg: AutoencoderConfig) -> AutoencoderConfig:
        """``data.split: auto`` resolved to the architecture's protocol."""
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, split=cfg.split_name))

    def resolve_data_config(self, cfg: AutoencoderConfig, data: MovieLensData | Coded,
                            split: Split) -> AutoencoderConfig:
        """``model.autorec.hidden_units: auto`` → :func:`~tfrs_lab.training.autorec_size.auto_hidden_units`
        of the training rows (distinct items: the code size; distinct users, the model's width: the
        memory cap), for ``autorec``; dae / vae do not read the section and keep it as written."""
        if cfg.model.architecture != "autorec":
            return cfg
        return resolve_hidden_units(cfg, data, split.train)

    def embedding_parameters(self, cfg: AutoencoderConfig, vocab: Vocabularies) -> int:
        """0: AutoRec and Mult-DAE/VAE are dense layers fed whole rating rows (a batch of items or
        users), so every weight gets a dense gradient and is updated in full each step by ``adam`` and
        ``lazy_adam`` alike: ``train.optimizer: auto`` is ``adam``."""
        return 0

    def streams(self, cfg: AutoencoderConfig) -> bool:
        """Your own data reaches the task as compact :class:`~tfrs_lab.data.interactions.Interactions`
        on the splits computed from codes (all but ``predefined``)."""
        return cfg.split_name in STREAMED_SPLITS

    def train(self, ctx: RunContext) -> Trained:
        cfg, data, split, vocab = ctx.cfg, Coded.of(ctx.data), ctx.split, ctx.vocab
        arch = cfg.model.architecture
        num_users, num_items = len(vocab.user_ids), len(vocab.movie_ids)
        train = interactions(data, vocab, split.train)
        validation, test = interactions(data, vocab, split.validation), interactions(data, vocab, split.test)
        r_train = rating_matrix(train, num_users, num_items)
        # training + validation rows only as the matrix: their coordinates are not kept (O(rows) at 25M)
        r_known = rating_matrix(interactions(data, vocab, split.train, split.validation), num_users, num_items)
        protocol = split.protocol
        ks = metric_ks("leave-last-out" if arch == "autorec" else protocol, cfg.eval.ks)
        held_out_test = None
        monitor = EARLY_STOPPING_METRIC[arch]

        if arch == "autorec":
            base = baselines(train, num_users)

            def build() -> AutoRec:
                return AutoRec(num_users, cfg.model.autorec)

            def make(batch: int) -> tf.data.Dataset:
                return autorec_dataset(r_train, batch, cfg.train.seed)

            def probe(m: AutoRec, features) -> tf.Tensor:
                return m(features["ratings"])

            rows = int(np.count_nonzero(np.bincount(r_train.indices, minlength=num_items)))  # rated movies

            def validate() -> dict[str, float]:
                m = rating_metrics(autorec_predictions(model, r_train, validation, base, cfg.eval.batch_size),
                                   validation.ratings)
                return {**m, "neg_rmse": -m["rmse"]}

            def test_metrics() -> dict[str, float]:
                return rating_metrics(autorec_predictions(model, r_known, test, base, cfg.eval.batch_size),
                                      test.ratings)
        else:
            rows = int(np.count_nonzero(np.diff(r_train.indptr)))  # users with training ratings
            # the optimizer steps of kl_anneal_epochs epochs (capped ones under train.max_steps_per_epoch)
            anneal_steps = cfg.model.mult.kl_anneal_epochs * capped_steps(cfg.train, math.ceil(rows / cfg.train.batch_size))

            def build() -> MultAutoencoder:
                return MultAutoencoder(num_items, cfg.model.mult, variational=arch == "vae", anneal_steps=anneal_steps)

            weights = sample_weights(data.rating, cfg.train.sample_weight, split.train)
            # train.sample_weight: the stored values are the weights (the pattern, what the model reads, is unchanged)
            r_fit = r_train if weights is None else rating_matrix(
                dataclasses.replace(train, ratings=weights[split.train]), num_users, num_items)

            def make(batch: int) -> tf.data.Dataset:
                return mult_dataset(r_fit, batch, cfg.train.seed, weighted=weights is not None)

            def probe(m: MultAutoencoder, features) -> tf.Tensor:
                return m(features["items"])

            val_users, val_targets = user_targets(validation)
            test_users, test_targets = user_targets(test)

            if protocol == HELD_OUT_USERS:
                held_out_val = held_out_inputs(data, vocab, split.fold_in_validation, split.validation)
                held_out_test = held_out_inputs(data, vocab, split.fold_in_test, split.test)
                monitor = HELD_OUT_EARLY_STOPPING_METRIC

                def validate() -> dict[str, float]:
                    return held_out_metrics(model, held_out_val, ks, cfg.eval.batch_size)

                def test_metrics() -> dict[str, float]:
                    return held_out_metrics(model, held_out_test, ks, cfg.eval.batch_size)
            else:
                def validate() -> dict[str, float]:
                    return ranking_metrics(rank_targets(model, r_train, val_users, val_targets, cfg.eval.batch_size), ks)

                def test_metrics() -> dict[str, float]:
                    return ranking_metrics(rank_targets(model, r_known, test_users, test_targets, cfg.eval.batch_size),
                                           ks)

        dist = ctx.distribution
        with dist.strategy.scope():
            model = build()
            model.compile(optimizer=ctx.optimizer(steps := math.ceil(rows / cfg.train.batch_size)))
        # multi_worker_mirrored: each worker keeps its share of every global batch of train.batch_size
        dataset, fit_kwargs = distribute.fit_dataset(dist, make, rows, cfg.train.batch_size)
        logger.info("training %s (%d training ratings)", arch, len(split.train))
        fit = ctx.fit(model, dataset, steps_per_epoch=steps, validate=validate, monitor=monitor,
                      fit_kwargs=fit_kwargs)
        del dataset, fit_kwargs
        if dist.name == "default":
            # evaluate and export an uncompiled copy: the optimizer's slots and the traced training
            # step are freed here, not held through evaluation and export (the closures read ``model``)
            model = inference_copy(model, build)
            gc.collect()  # the trained model and its optimizer form reference cycles
        else:  # distributed: a single-device copy (uncompiled too)
            sample = {k: v.numpy() for k, v in next(iter(make(2))).items()}
            model = distribute.finish_training(dist, model, build, sample, ctx.stage, probe)
        state = AutoencoderState(train, test, r_known, test_metrics, held_out_test)
        return Trained(model, state, [fit], len(split.train), len(split.train), {"architecture": arch})

    def evaluate(self, ctx: RunContext, trained: Trained) -> dict[str, float]:
        return trained.state.test_metrics()

    def export(self, ctx: RunContext, trained: Trained, export_dir: Path) -> dict[str, float]:
        s: AutoencoderState = trained.state
        h = s.held_out_test  # held-out users: their fold-in inputs are the sample and recall queries
        known, test = (s.known, s.test) if h is None else (h.inputs, h.targets)
        result = _export(ctx.cfg, trained.model, ctx.vocab, ctx.data, export_dir, known, s.train, test)
        return {} if result.scann_recall_at_10 is None else {"scann_recall@10": result.scann_recall_at_10}

    def report_inputs(self, ctx: RunContext, trained: Trained) -> dict[str, Any]:
        s: AutoencoderState = trained.state
        if s.held_out_test is not None:  # held-out users: scored from their fold-in inputs
            h = s.held_out_test
            return report_inputs(trained.model, ctx.cfg.model.architecture, ctx.vocab, ctx.data, h.inputs,
                                 h.targets, ctx.cfg.eval.batch_size, user_ids=h.user_ids)
        return report_inputs(trained.model, ctx.cfg.model.architecture, ctx.vocab, ctx.data, s.known,
                             s.test, ctx.cfg.eval.batch_size)


def report_inputs(model, arch: str, vocab: Vocabularies, data: MovieLensData | Coded, known: sp.csr_matrix,
                  test: Interactions, batch_size: int, sample: int = 200,
                  user_ids: np.ndarray | None = None) -> dict:
    """:func:`report.write_report` inputs: the whole catalogue scored for each test user from their
    training + validation interactions (autorec: predicted ratings of the first test rating of up to
    ``sample`` users, seen not excluded; dae/vae: every test row, seen excluded). ``known``: sparse
    [U, M] inputs; ``user_ids``: the id of each matrix row (default ``vocab.user_ids``)."""
    user_ids = vocab.user_ids if user_ids is None else user_ids
    users, targets = user_targets(test)
    if arch == "autorec":
        first = np.unique(users, return_index=True)[1][:sample]
        users, targets, exclude = users[first], targets[first], None
        by_movie = known.T.tocsr()  # [M, U]
        scores = np.empty((len(users), by_movie.shape[0]), np.float32)  # [n, M]

        def keep(chunk: np.ndarray, reconstruction: np.ndarray) -> None:
            scores[:, chunk] = reconstruction[:, users].T

        autorec_reconstruction(model, by_movie, np.arange(by_movie.shape[0]), batch_size, keep)
        blocks = [(0, scores)]
        note = f"predicted ratings over the whole catalogue, first test rating of {len(users)} users (seen not excluded)"
    else:
        exclude = [seen_items(known, u) for u in users]
        blocks = ((s, model(tf.constant(dense_rows(known, users[s : s + batch_size], binary=True))).numpy())
                  for s in range(0, len(users), batch_size))
        note = ""
    return report.scored_inputs(blocks, targets, users=user_ids[users], exclude=exclude,
                                item_counts=vocab.item_counts[1:],
                                titles=report.catalogue_titles(data, vocab.movie_ids), ranks_note=note)


def _export(cfg: AutoencoderConfig, model, vocab: Vocabularies, data: MovieLensData | Coded, export_dir: Path,
            known: sp.csr_matrix, train: Interactions, test: Interactions):
    """Exports with the training + validation inputs (what the test evaluation used)."""
    x = cfg.export
    settings = IndexSettings(kind=x.index, k=x.k, max_exclude=x.max_exclude, **asdict(x.scann))
    logger.info("exporting %s index (k=%d) to export/%s/%d", x.index, x.k, x.model_name, x.version)
    counts = vocab.item_counts[1:].astype(np.float64)
    trained = np.flatnonzero(counts > 0)  # movies the model has training interactions for
    item_ids = vocab.movie_ids[trained]
    popularity = counts[trained] / max(counts.sum(), 1.0)
    sample_users = np.unique(test.users[test.known])[:8]
    seen = [[str(vocab.movie_ids[i]) for i in seen_items(known, u)] for u in sample_users]
    width = max([len(s) for s in seen] + [1])
    samples = {"seen_item_ids": [s + [""] * (width - len(s)) for s in seen]}
    common = dict(item_ids=item_ids, catalogue_ids=vocab.movie_ids, popularity=popularity, model_name=x.model_name,
                  version=x.version, settings=settings, titles=data.movies["movie_title"], verify=x.verify)
    if isinstance(model, AutoRec):
        by_movie = known.T.tocsr()  # [M, U]
        step = dense_block_rows(cfg.eval.batch_size, by_movie.shape[1])  # blocks within DENSE_BLOCK_BYTES
        codes = np.concatenate([model.encode(tf.constant(dense_rows(by_movie, trained[s : s + step]))).numpy()
                                for s in range(0, len(trained), step)])  # [N, hidden]
        base = baselines(train, len(vocab.user_ids))
        rows, biases = model.user_vectors()
        samples["seen_ratings"] = [[float(known[u, i]) for i in seen_items(known, u)] + [0.0] * (width - len(s))
                                   for u, s in zip(sample_users, seen)]
        queries = np.concatenate([rows[:1000], biases[:1000, None]], axis=1)  # not a [U, h + 1] copy first
        return export_autoencoder(
            export_dir, index_vectors=np.concatenate([codes, np.ones((len(codes), 1), np.float32)], 1),
            similarity_vectors=codes, sample_inputs=samples, recall_queries=queries,
            fold_in=FoldIn(codes=codes, mean_row=rows.mean(axis=0), mean_bias=float(biases.mean()),
                           rating_min=base.rating_min, rating_max=base.rating_max, l2=x.fold_in_l2), **common)
    vectors, bias = model.item_vectors()
    users = np.arange(min(known.shape[0], 1000))
    step = dense_block_rows(cfg.eval.batch_size, known.shape[1])
    queries = np.concatenate([model.query_vectors(tf.constant(dense_rows(known, users[s : s + step], binary=True))).numpy()
                              for s in range(0, len(users), step)])  # [<= 1000, d]
    queries = np.concatenate([queries, np.ones((len(queries), 1), np.float32)], axis=1)
    return export_autoencoder(
        export_dir, index_vectors=np.concatenate([vectors[trained], bias[trained, None]], 1),
        similarity_vectors=vectors[trained], sample_inputs=samples, recall_queries=queries, model=model, **common)


TASK = AutoencoderTask()
