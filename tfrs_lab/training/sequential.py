"""The ``sequential`` task: data -> split -> sequences -> next-item model -> evaluation -> export.

Protocols: ``leave-last-out`` (each user's last rating is the target, the earlier ones the history)
and ``held-out-users`` (users never trained on: their older ratings are the history, every one of
their newest ratings a target; Mult-VAE's ``recall@K`` / ``ndcg@K`` per user).

The task reads compact :class:`~tfrs_lab.data.interactions.Interactions` (:meth:`SequentialTask.streams`:
your own data straight from the prepared dataset; MovieLens encoded once): the training windows,
the evaluation histories and the export's per-user history table (int32 item codes,
:func:`serving_histories`) all come from its per-user sequence index (:meth:`Interactions.user_items`,
:meth:`Interactions.latest_codes`), never from a string column per row; the windows' inputs and targets are gathered per batch inside the ``tf.data``
pipeline (:func:`sequence_dataset`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_lab.config import SequentialConfig
from tfrs_lab.data.features import Vocabularies, movie_rows
from tfrs_lab.data.interactions import STREAMED_SPLITS, Interactions
from tfrs_lab.data.movielens import MovieLensData
from tfrs_lab.data.sequences import EvaluationSequences, TrainingSequences, query_sequences, sequence_windows
from tfrs_lab.data.splits import HELD_OUT_USERS, Split
from tfrs_lab.evaluation.metrics import metric_ks, multi_target_metrics, ranking_metrics, target_ranks
from tfrs_lab.export.index import IndexSettings
from tfrs_lab.export.sequential import export_sequential
from tfrs_lab.export.tables import ItemTable, latest_items
from tfrs_lab.models.sequential import SequentialModel
from tfrs_lab.training import distribute, report
from tfrs_lab.training.common import learning_rate, make_dataset, optimizer
from tfrs_lab.training.task import RunContext, Task, Trained

__all__ = ["SequentialTask", "TASK", "build_model", "build_sequences", "evaluate_sequences", "gather_windows",
           "query_vectors", "sequence_dataset", "steps_per_epoch", "trim_left_padding", "window_batch"]

logger = logging.getLogger(__name__)

EARLY_STOPPING_METRIC = {"leave-last-out": "ndcg@10", "held-out-users": "ndcg@100"}


def item_indices(vocab: Vocabularies, movie_ids: np.ndarray) -> np.ndarray:
    """Model item index of each movie id (catalogue row + 1; 0 = not in the catalogue)."""
    return movie_rows(vocab, movie_ids) + 1


def build_sequences(data: MovieLensData | Interactions, split: Split, vocab: Vocabularies, max_length: int,
                    window_stride: int = 0) -> tuple[TrainingSequences, EvaluationSequences, EvaluationSequences]:
    """Leakage-free (train, validation, test) sequences: see :mod:`tfrs_lab.data.sequences`
    (``window_stride``: the training windows, ``model.window_stride``), from the sequence index of
    ``data`` (the same windows and queries as :func:`~tfrs_lab.data.sequences.training_sequences`
    and :func:`~tfrs_lab.data.sequences.evaluation_sequences` of the string columns).

    ``held-out-users``: a held-out user's history is their fold-in rows, one query per target row."""
    data = Interactions.of(data)
    index = item_indices(vocab, data.item_ids)  # [m'] the model's index of each item code (0 = not in the catalogue)
    train = sequence_windows(data.user_items(split.train, index), max_length, window_stride)
    if split.protocol == HELD_OUT_USERS:
        validation_history, test_history = split.fold_in_validation, split.fold_in_test
    else:
        validation_history, test_history = split.train, np.concatenate([split.train, split.validation])

    def queries(history_rows: np.ndarray, target_rows: np.ndarray) -> EvaluationSequences:
        target_rows = np.asarray(target_rows, np.int64)
        target_rows = target_rows[index[data.item[target_rows]] > 0]  # items outside the catalogue dropped
        users = data.user[target_rows]
        return query_sequences(data.user_items(history_rows, index), users, data.user_ids[users],
                               index[data.item[target_rows]], max_length)

    return train, queries(validation_history, split.validation), queries(test_history, split.test)


def trim_left_padding(inputs: np.ndarray) -> np.ndarray:
    """``inputs`` int [n, L] without the leading columns that are padding (0) in every row: int
    [n, T], T = the longest history among the rows (at least 1). The model's positions count back
    from the newest item and padding is masked, so its vectors are the same with or without those
    columns; dropping them saves the attention and feed-forward work on them (Last.fm histories hold
    at most 48 artists against ``max_length`` 200)."""
    nonzero = np.any(np.asarray(inputs) != 0, axis=0)
    first = int(np.argmax(nonzero)) if nonzero.any() else inputs.shape[1] - 1
    return inputs[:, first:]


def query_vectors(model: SequentialModel, inputs: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """float32 [n, d] next-item query vectors of left-padded histories int [n, L] (each batch's
    all-padding columns dropped first: :func:`trim_left_padding`)."""
    out = [model.compiled_query_embedding(tf.constant(trim_left_padding(inputs[s : s + batch_size]), tf.int32)).numpy()
           for s in range(0, len(inputs), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.hp.embedding_dim), np.float32)


def evaluate_sequences(model: SequentialModel, seqs: EvaluationSequences, ks: tuple[int, ...],
                       batch_size: int = 1024, protocol: str = "leave-last-out") -> dict[str, float]:
    """Full-catalogue ranks, each user's history excluded (docs/architecture.md#metric-definitions):
    ``recall@K``, ``ndcg@K``, ``mrr`` (one target per user), or on ``held-out-users`` Mult-VAE's
    ``recall@K``, ``ndcg@K`` over each user's targets together."""
    queries = query_vectors(model, seqs.inputs, batch_size)
    exclude = [s - 1 for s in seqs.seen]  # item index -> catalogue row
    ranks = target_ranks(queries, model.item_embeddings().numpy(), seqs.targets - 1, exclude=exclude,
                         batch_size=batch_size)
    if protocol == HELD_OUT_USERS:
        return multi_target_metrics(ranks, np.unique(seqs.user_ids.astype(str), return_inverse=True)[1], ks)
    return ranking_metrics(ranks, ks)


def build_model(cfg: SequentialConfig, vocab: Vocabularies, steps_per_epoch: int = 1) -> SequentialModel:
    """A compiled :class:`SequentialModel` over ``vocab``'s catalogue (sampled-softmax item
    probabilities from the training counts, add-one smoothed; ``vocab.typed``: its item features). ``steps_per_epoch``: optimizer steps
    per epoch, ``ceil(training windows / train.batch_size)`` (:func:`steps_per_epoch`), what a
    learning-rate schedule counts in; 1 for a model that is not trained."""
    counts = vocab.item_counts[1:].astype(np.float64) + 1.0
    model = SequentialModel(len(vocab.movie_ids), cfg.model, item_probability=counts / counts.sum(),
                            item_features=tuple(getattr(vocab, "typed", ())))  # own data's items features
    model.compile(optimizer=optimizer(cfg.train.optimizer, learning_rate(cfg.train, steps_per_epoch)))
    return model


def steps_per_epoch(train: TrainingSequences, batch_size: int) -> int:
    """Optimizer steps in one epoch over ``train``'s windows (their number, not the users', moves
    with ``model.window_stride``)."""
    return max(1, math.ceil(len(train) / batch_size))


def gather_windows(items: tf.Tensor, max_length: int, windows: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """``{"inputs", "targets"}`` int32 [B, L] of a batch of training windows
    (:class:`~tfrs_lab.data.sequences.TrainingSequences`; 0 = padding / no target).

    Args:
      items: int32 [N] :attr:`TrainingSequences.items`.
      max_length: L.
      windows: ``starts``, ``ends``, ``trained_from`` int64 [B] (:class:`TrainingSequences` columns).
    """
    positions = windows["ends"][:, None] + tf.range(1 - max_length, 1, dtype=tf.int64)[None, :]  # [B, L]
    valid = positions >= windows["starts"][:, None]
    trained = positions >= windows["trained_from"][:, None]
    safe = tf.maximum(positions, 0)
    zero = tf.zeros_like(safe, tf.int32)
    return {"inputs": tf.where(valid, tf.gather(items, safe), zero),
            "targets": tf.where(trained, tf.gather(items, safe + 1), zero)}


WINDOW_COLUMNS = ("starts", "ends", "trained_from")


def window_batch(seqs: TrainingSequences, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``{"inputs", "targets"}`` int32 [len(rows), L] of the given windows (default all; samples, tests)."""
    rows = np.arange(len(seqs)) if rows is None else np.asarray(rows, np.int64)
    windows = {k: tf.constant(getattr(seqs, k)[rows]) for k in WINDOW_COLUMNS}
    return {k: v.numpy() for k, v in gather_windows(tf.constant(seqs.items), seqs.max_length, windows).items()}


def sequence_dataset(seqs: TrainingSequences, batch_size: int, shuffle_buffer: int, seed: int) -> tf.data.Dataset:
    """Shuffled batches of ``inputs`` (int [B, T]) and next-item ``targets`` (int [B, T]): the
    window index is shuffled and each batch's windows gathered from ``seqs.items``. T <= L is the
    batch's longest window: the columns that are padding in every row are not built (the model's
    loss is the same without them, :func:`trim_left_padding`), so data sets whose histories are
    shorter than ``max_length`` do not pay for ``max_length``."""
    items, length = tf.constant(seqs.items), seqs.max_length
    ds = make_dataset({k: getattr(seqs, k) for k in WINDOW_COLUMNS}, batch_size, shuffle_buffer, seed)

    def gather(w: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        width = tf.minimum(tf.reduce_max(w["ends"] - w["starts"]) + 1, length)  # the batch's longest window
        return {k: v[:, length - width:] for k, v in gather_windows(items, length, w).items()}

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE)


def serving_histories(data: MovieLensData | Interactions, vocab: Vocabularies, width: int) -> ItemTable:
    """[U, width]: each known user's latest ``width`` movies among *all* ratings, oldest first (pads
    on the left) — the freshest history the exported model can hold — as int32 item codes from the
    sequence index (:func:`~tfrs_lab.export.tables.latest_items`, never a string per entry)."""
    return latest_items(Interactions.of(data), vocab.user_ids, width, unknown_row=False, oldest_first=True)


@dataclasses.dataclass
class SequentialState:
    train: TrainingSequences
    validation: EvaluationSequences
    test: EvaluationSequences
    ks: tuple[int, ...]
    protocol: str
    data: Interactions


class SequentialTask(Task):
    """Next-item prediction from the user's time-ordered history (``leave-last-out`` or ``held-out-users``)."""

    name = "sequential"

    def streams(self, cfg: SequentialConfig) -> bool:
        """Your own data reaches the task as :class:`Interactions` (both its splits are computed from codes)."""
        return cfg.split_name in STREAMED_SPLITS

    def train(self, ctx: RunContext) -> Trained:
        cfg, vocab, data = ctx.cfg, ctx.vocab, Interactions.of(ctx.data)
        train, validation, test = build_sequences(data, ctx.split, vocab, cfg.model.max_length,
                                                  cfg.model.window_stride)
        logger.info("%d training windows (%d next-item targets), %d validation / %d test users",
                    len(train), train.num_positions, len(validation.targets), len(test.targets))
        protocol = ctx.split.protocol
        state = SequentialState(train, validation, test, metric_ks(protocol, cfg.eval.ks), protocol, data)
        dist = ctx.distribution
        steps = steps_per_epoch(train, cfg.train.batch_size)
        with dist.strategy.scope():
            model = build_model(cfg, vocab, steps)

        def make(batch: int) -> tf.data.Dataset:
            return sequence_dataset(train, batch, cfg.train.shuffle_buffer, cfg.train.seed)

        # multi_worker_mirrored: each worker keeps its share of every global batch of train.batch_size
        dataset, fit_kwargs = distribute.fit_dataset(dist, make, len(train), cfg.train.batch_size)
        fit = ctx.fit(model, dataset, steps_per_epoch=steps, monitor=EARLY_STOPPING_METRIC[protocol], label=None,
                      fit_kwargs=fit_kwargs,
                      validate=lambda: evaluate_sequences(model, validation, state.ks, cfg.eval.batch_size, protocol))
        model = distribute.finish_training(  # distributed: evaluate and export a single-device copy
            dist, model, lambda: build_model(cfg, vocab, steps), window_batch(train, np.arange(min(len(train), 2))),
            ctx.stage, lambda m, features: m.query_embedding(features["inputs"]))
        return Trained(model, state, [fit], train.num_positions, train.num_positions,
                       {"architecture": cfg.model.architecture, "num_train_sequences": int(len(train))})

    def evaluate(self, ctx: RunContext, trained: Trained) -> dict[str, float]:
        s: SequentialState = trained.state
        return evaluate_sequences(trained.model, s.test, s.ks, ctx.cfg.eval.batch_size, s.protocol)

    def export(self, ctx: RunContext, trained: Trained, export_dir: Path) -> dict[str, float]:
        cfg, vocab, model = ctx.cfg, ctx.vocab, trained.model
        data, test = trained.state.data, trained.state.test
        x = cfg.export
        settings = IndexSettings(kind=x.index, k=x.k, max_exclude=x.max_exclude, **asdict(x.scann))
        logger.info("exporting %s index (k=%d) to export/%s/%d", x.index, x.k, x.model_name, x.version)
        counts = vocab.item_counts[1:].astype(np.float64)
        longest = int(max(np.diff(data.sequence_offsets).max(initial=0), 1))
        width = min(longest, max(cfg.model.max_length, x.max_exclude))
        samples = [[str(vocab.movie_ids[i - 1]) for i in row if i > 0] for row in test.inputs[:8]]
        result = export_sequential(
            model, export_dir, movie_ids=vocab.movie_ids, popularity=counts / max(counts.sum(), 1.0),
            user_ids=vocab.user_ids, user_histories=serving_histories(data, vocab, width),
            model_name=x.model_name, version=x.version, settings=settings, sample_histories=samples,
            recall_queries=query_vectors(model, test.inputs[:1000]), titles=data.movies["movie_title"],
            verify=x.verify)
        return {} if result.scann_recall_at_10 is None else {"scann_recall@10": result.scann_recall_at_10}

    def report_inputs(self, ctx: RunContext, trained: Trained) -> dict[str, Any]:
        model, test, vocab = trained.model, trained.state.test, ctx.vocab
        return report.factorized_inputs(query_vectors(model, test.inputs), model.item_embeddings().numpy(),
                                        test.targets - 1, users=test.user_ids, exclude=[s - 1 for s in test.seen],
                                        item_counts=vocab.item_counts[1:],
                                        titles=report.catalogue_titles(ctx.data, vocab.movie_ids))


TASK = SequentialTask()
