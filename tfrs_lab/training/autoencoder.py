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

Matrices are dense [users, catalogue] float32 (MovieLens 100K/1M size; ML-1M is ~90 MB).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from tfrs_lab.config import AutoencoderConfig
from tfrs_lab.data.features import Vocabularies, movie_rows
from tfrs_lab.data.movielens import MovieLensData
from tfrs_lab.data.splits import HELD_OUT_USERS
from tfrs_lab.evaluation.metrics import (metric_ks, multi_target_metrics, ranking_metrics, ranks_from_scores,
                                         rating_metrics)
from tfrs_lab.export.autoencoder import FoldIn, export_autoencoder
from tfrs_lab.export.index import IndexSettings
from tfrs_lab.models.autoencoder import AutoRec, MultAutoencoder
from tfrs_lab.training import distribute, report
from tfrs_lab.training.task import RunContext, Task, Trained

__all__ = ["AutoencoderTask", "TASK", "autorec_predictions", "held_out_inputs", "interactions", "rating_matrix"]

logger = logging.getLogger(__name__)

EARLY_STOPPING_METRIC = {"autorec": "neg_rmse", "dae": "ndcg@10", "vae": "ndcg@10"}
HELD_OUT_EARLY_STOPPING_METRIC = "ndcg@100"  # dae / vae on held-out-users (Mult-VAE selects on ndcg@100)


@dataclasses.dataclass(frozen=True)
class Interactions:
    """Rows of one or more splits as matrix coordinates (-1 = user or movie unknown to the vocabularies)."""

    users: np.ndarray  # int64 [n] row in vocab.user_ids
    items: np.ndarray  # int64 [n] catalogue row
    ratings: np.ndarray  # float32 [n]

    @property
    def known(self) -> np.ndarray:
        return (self.users >= 0) & (self.items >= 0)


def interactions(data: MovieLensData, vocab: Vocabularies, *row_sets: np.ndarray) -> Interactions:
    rows = np.concatenate(row_sets) if row_sets else np.zeros(0, np.int64)
    user_ids = data.ratings["user_id"][rows]
    pos = np.clip(np.searchsorted(vocab.user_ids, user_ids), 0, len(vocab.user_ids) - 1)
    users = np.where(vocab.user_ids[pos] == user_ids, pos, -1).astype(np.int64)
    items = movie_rows(vocab, data.ratings["movie_id"][rows])
    return Interactions(users, items, data.ratings["user_rating"][rows].astype(np.float32))


def rating_matrix(x: Interactions, num_users: int, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(ratings float32 [U, M] with 0 where unobserved, mask float32 [U, M])."""
    k = x.known
    ratings = np.zeros((num_users, num_items), np.float32)
    mask = np.zeros((num_users, num_items), np.float32)
    ratings[x.users[k], x.items[k]] = x.ratings[k]
    mask[x.users[k], x.items[k]] = 1.0
    return ratings, mask


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


def autorec_predictions(model: AutoRec, input_ratings: np.ndarray, input_mask: np.ndarray, pairs: Interactions,
                        base: RatingBaselines) -> np.ndarray:
    """float32 [n] predicted ratings of ``pairs`` from the model fed ``input_ratings`` [U, M],
    clipped to the training range; fallbacks as the module docstring says."""
    reconstruction = model(tf.constant(input_ratings.T)).numpy()  # [M, U]
    has_input = input_mask.sum(axis=0) > 0  # [M]
    scorable = pairs.known & has_input[np.maximum(pairs.items, 0)]
    fallback = np.where(pairs.users >= 0, base.user_mean[np.maximum(pairs.users, 0)], base.global_mean)
    predicted = np.where(scorable, reconstruction[np.maximum(pairs.items, 0), np.maximum(pairs.users, 0)], fallback)
    return np.clip(predicted, base.rating_min, base.rating_max)


def autorec_dataset(ratings: np.ndarray, mask: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    """Batches of movies (those with training ratings): ``ratings``/``mask`` float32 [B, U]."""
    rows = np.flatnonzero(mask.sum(axis=0) > 0)
    ds = tf.data.Dataset.from_tensor_slices({"ratings": ratings.T[rows], "mask": mask.T[rows]})
    return ds.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True).batch(batch_size).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- Mult-DAE / VAE (implicit)


def user_targets(x: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """(users int64 [n], target catalogue rows int64 [n]) of the known rows (one per user in leave-last-out)."""
    k = x.known
    return x.users[k], x.items[k]


def rank_targets(model: MultAutoencoder, inputs: np.ndarray, users: np.ndarray, targets: np.ndarray,
                 batch_size: int) -> np.ndarray:
    """Ranks of each target among all movies, the input (seen) movies of its user excluded."""
    ranks = np.empty(len(users), np.int64)
    for s in range(0, len(users), batch_size):
        u = users[s : s + batch_size]
        x = inputs[u]
        scores = model(tf.constant(x)).numpy()
        exclude = [np.flatnonzero(row) for row in x]
        ranks[s : s + batch_size] = ranks_from_scores(scores, targets[s : s + batch_size], exclude)
    return ranks


@dataclasses.dataclass(frozen=True)
class HeldOutUsers:
    """Held-out users of one evaluated split (``held-out-users``): row h of ``inputs`` is user ``user_ids[h]``."""

    user_ids: np.ndarray  # str [H]
    inputs: np.ndarray  # float32 [H, M] multi-hot of each user's fold-in movies
    targets: Interactions  # users = row in inputs, items = catalogue row (movies outside the catalogue dropped)


def held_out_inputs(data: MovieLensData, vocab: Vocabularies, fold_in_rows: np.ndarray,
                    target_rows: np.ndarray) -> HeldOutUsers:
    """The fold-in input matrix and the targets of the users of ``fold_in_rows`` / ``target_rows``."""
    ids = data.ratings["user_id"]
    user_ids, inverse = np.unique(np.concatenate([ids[fold_in_rows], ids[target_rows]]).astype(str),
                                  return_inverse=True)
    fold_users, target_users = inverse[: len(fold_in_rows)], inverse[len(fold_in_rows):]
    fold_items = movie_rows(vocab, data.ratings["movie_id"][fold_in_rows])
    target_items = movie_rows(vocab, data.ratings["movie_id"][target_rows])
    inputs = np.zeros((len(user_ids), len(vocab.movie_ids)), np.float32)
    k = fold_items >= 0
    inputs[fold_users[k], fold_items[k]] = 1.0
    keep = target_items >= 0
    targets = Interactions(target_users[keep].astype(np.int64), target_items[keep],
                           data.ratings["user_rating"][target_rows][keep].astype(np.float32))
    return HeldOutUsers(user_ids.astype(object), inputs, targets)


def held_out_metrics(model: MultAutoencoder, held: HeldOutUsers, ks: tuple[int, ...], batch_size: int) -> dict[str, float]:
    """Mult-VAE's ``recall@K`` / ``ndcg@K`` of the held-out users (fold-in movies excluded)."""
    users, targets = user_targets(held.targets)
    ranks = rank_targets(model, held.inputs, users, targets, batch_size)
    return multi_target_metrics(ranks, users, ks)


def mult_dataset(items: np.ndarray, batch_size: int, seed: int) -> tf.data.Dataset:
    rows = np.flatnonzero(items.sum(axis=1) > 0)
    ds = tf.data.Dataset.from_tensor_slices({"items": items[rows]})
    return ds.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True).batch(batch_size).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- the task


@dataclasses.dataclass
class AutoencoderState:
    """Matrices and evaluation closures of one run (``known`` = training + validation inputs)."""

    train: Interactions
    test: Interactions
    r_known: np.ndarray
    m_known: np.ndarray
    test_metrics: Callable[[], dict[str, float]]
    held_out_test: HeldOutUsers | None = None  # held-out-users: the test users' fold-in inputs and targets


class AutoencoderTask(Task):
    """AutoRec (explicit ratings, ``hash``) and Mult-DAE/VAE (top-K, ``leave-last-out``)."""

    name = "autoencoder"

    def resolve_config(self, cfg: AutoencoderConfig) -> AutoencoderConfig:
        """``data.split: auto`` resolved to the architecture's protocol."""
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, split=cfg.split_name))

    def train(self, ctx: RunContext) -> Trained:
        cfg, data, split, vocab = ctx.cfg, ctx.data, ctx.split, ctx.vocab
        arch = cfg.model.architecture
        num_users, num_items = len(vocab.user_ids), len(vocab.movie_ids)
        train = interactions(data, vocab, split.train)
        train_plus_val = interactions(data, vocab, split.train, split.validation)
        validation, test = interactions(data, vocab, split.validation), interactions(data, vocab, split.test)
        r_train, m_train = rating_matrix(train, num_users, num_items)
        r_known, m_known = rating_matrix(train_plus_val, num_users, num_items)
        protocol = split.protocol
        ks = metric_ks("leave-last-out" if arch == "autorec" else protocol, cfg.eval.ks)
        held_out_test = None
        monitor = EARLY_STOPPING_METRIC[arch]

        if arch == "autorec":
            base = baselines(train, num_users)

            def build() -> AutoRec:
                return AutoRec(num_users, cfg.model.autorec)

            def make(batch: int) -> tf.data.Dataset:
                return autorec_dataset(r_train, m_train, batch, cfg.train.seed)

            def probe(m: AutoRec, features) -> tf.Tensor:
                return m(features["ratings"])

            rows = int((m_train.sum(axis=0) > 0).sum())  # movies with training ratings

            def validate() -> dict[str, float]:
                m = rating_metrics(autorec_predictions(model, r_train, m_train, validation, base), validation.ratings)
                return {**m, "neg_rmse": -m["rmse"]}

            def test_metrics() -> dict[str, float]:
                return rating_metrics(autorec_predictions(model, r_known, m_known, test, base), test.ratings)
        else:
            rows = int((m_train.sum(axis=1) > 0).sum())  # users with training ratings
            anneal_steps = cfg.model.mult.kl_anneal_epochs * math.ceil(rows / cfg.train.batch_size)

            def build() -> MultAutoencoder:
                return MultAutoencoder(num_items, cfg.model.mult, variational=arch == "vae", anneal_steps=anneal_steps)

            def make(batch: int) -> tf.data.Dataset:
                return mult_dataset(m_train, batch, cfg.train.seed)

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
                    return ranking_metrics(rank_targets(model, m_train, val_users, val_targets, cfg.eval.batch_size), ks)

                def test_metrics() -> dict[str, float]:
                    return ranking_metrics(rank_targets(model, m_known, test_users, test_targets, cfg.eval.batch_size),
                                           ks)

        dist = ctx.distribution
        with dist.strategy.scope():
            model = build()
            model.compile(optimizer=ctx.optimizer(math.ceil(rows / cfg.train.batch_size)))
        # multi_worker_mirrored: each worker keeps its share of every global batch of train.batch_size
        dataset, fit_kwargs = distribute.fit_dataset(dist, make, rows, cfg.train.batch_size)
        logger.info("training %s (%d training ratings)", arch, len(split.train))
        fit = ctx.fit(model, dataset, validate=validate, monitor=monitor, fit_kwargs=fit_kwargs)
        sample = {k: v.numpy() for k, v in next(iter(make(2))).items()}
        # distributed: evaluate and export a single-device copy (the closures above read ``model``)
        model = distribute.finish_training(dist, model, build, sample, ctx.stage, probe)
        state = AutoencoderState(train, test, r_known, m_known, test_metrics, held_out_test)
        return Trained(model, state, [fit], len(split.train), len(split.train), {"architecture": arch})

    def evaluate(self, ctx: RunContext, trained: Trained) -> dict[str, float]:
        return trained.state.test_metrics()

    def export(self, ctx: RunContext, trained: Trained, export_dir: Path) -> dict[str, float]:
        s: AutoencoderState = trained.state
        h = s.held_out_test  # held-out users: their fold-in inputs are the sample and recall queries
        r, m, test = (s.r_known, s.m_known, s.test) if h is None else (h.inputs, h.inputs, h.targets)
        result = _export(ctx.cfg, trained.model, ctx.vocab, ctx.data, export_dir, r, m, s.train, test)
        return {} if result.scann_recall_at_10 is None else {"scann_recall@10": result.scann_recall_at_10}

    def report_inputs(self, ctx: RunContext, trained: Trained) -> dict[str, Any]:
        s: AutoencoderState = trained.state
        if s.held_out_test is not None:  # held-out users: scored from their fold-in inputs
            h = s.held_out_test
            return report_inputs(trained.model, ctx.cfg.model.architecture, ctx.vocab, ctx.data, h.inputs, h.inputs,
                                 h.targets, ctx.cfg.eval.batch_size, user_ids=h.user_ids)
        return report_inputs(trained.model, ctx.cfg.model.architecture, ctx.vocab, ctx.data, s.r_known, s.m_known,
                             s.test, ctx.cfg.eval.batch_size)


def report_inputs(model, arch: str, vocab: Vocabularies, data: MovieLensData, r_known: np.ndarray,
                  m_known: np.ndarray, test: Interactions, batch_size: int, sample: int = 200,
                  user_ids: np.ndarray | None = None) -> dict:
    """:func:`report.write_report` inputs: the whole catalogue scored for each test user from their
    training + validation interactions (autorec: predicted ratings of the first test rating of up to
    ``sample`` users, seen not excluded; dae/vae: every test row, seen excluded). ``user_ids``: the
    id of each matrix row (default ``vocab.user_ids``)."""
    user_ids = vocab.user_ids if user_ids is None else user_ids
    users, targets = user_targets(test)
    if arch == "autorec":
        first = np.unique(users, return_index=True)[1][:sample]
        users, targets, exclude = users[first], targets[first], None
        reconstruction = model(tf.constant(r_known.T)).numpy()  # [M, U]
        blocks = [(0, reconstruction[:, users].T)]
        note = f"predicted ratings over the whole catalogue, first test rating of {len(users)} users (seen not excluded)"
    else:
        exclude = [np.flatnonzero(m_known[u]) for u in users]
        blocks = ((s, model(tf.constant(m_known[users[s : s + batch_size]])).numpy())
                  for s in range(0, len(users), batch_size))
        note = ""
    return report.scored_inputs(blocks, targets, users=user_ids[users], exclude=exclude,
                                item_counts=vocab.item_counts[1:],
                                titles=report.catalogue_titles(data, vocab.movie_ids), ranks_note=note)


def _export(cfg: AutoencoderConfig, model, vocab: Vocabularies, data: MovieLensData, export_dir: Path,
            r_known: np.ndarray, m_known: np.ndarray, train: Interactions, test: Interactions):
    """Exports with the training + validation inputs (what the test evaluation used)."""
    x = cfg.export
    settings = IndexSettings(kind=x.index, k=x.k, max_exclude=x.max_exclude, **asdict(x.scann))
    logger.info("exporting %s index (k=%d) to export/%s/%d", x.index, x.k, x.model_name, x.version)
    counts = vocab.item_counts[1:].astype(np.float64)
    trained = np.flatnonzero(counts > 0)  # movies the model has training interactions for
    item_ids = vocab.movie_ids[trained]
    popularity = counts[trained] / max(counts.sum(), 1.0)
    sample_users = np.unique(test.users[test.known])[:8]
    seen = [[str(vocab.movie_ids[i]) for i in np.flatnonzero(m_known[u])] for u in sample_users]
    width = max([len(s) for s in seen] + [1])
    samples = {"seen_item_ids": [s + [""] * (width - len(s)) for s in seen]}
    common = dict(item_ids=item_ids, catalogue_ids=vocab.movie_ids, popularity=popularity, model_name=x.model_name,
                  version=x.version, settings=settings, titles=data.movies["movie_title"], verify=x.verify)
    if isinstance(model, AutoRec):
        codes = model.encode(tf.constant(r_known.T[trained])).numpy()  # [N, hidden]
        base = baselines(train, len(vocab.user_ids))
        rows, biases = model.user_vectors()
        samples["seen_ratings"] = [[float(r_known[u, i]) for i in np.flatnonzero(m_known[u])] + [0.0] * (width - len(s))
                                   for u, s in zip(sample_users, seen)]
        queries = np.concatenate([rows, biases[:, None]], axis=1)[:1000]
        return export_autoencoder(
            export_dir, index_vectors=np.concatenate([codes, np.ones((len(codes), 1), np.float32)], 1),
            similarity_vectors=codes, sample_inputs=samples, recall_queries=queries,
            fold_in=FoldIn(codes=codes, mean_row=rows.mean(axis=0), mean_bias=float(biases.mean()),
                           rating_min=base.rating_min, rating_max=base.rating_max, l2=x.fold_in_l2), **common)
    vectors, bias = model.item_vectors()
    queries = model.query_vectors(tf.constant(m_known[:1000])).numpy()
    queries = np.concatenate([queries, np.ones((len(queries), 1), np.float32)], axis=1)
    return export_autoencoder(
        export_dir, index_vectors=np.concatenate([vectors[trained], bias[trained, None]], 1),
        similarity_vectors=vectors[trained], sample_inputs=samples, recall_queries=queries, model=model, **common)


TASK = AutoencoderTask()
