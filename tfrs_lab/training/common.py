"""Training pieces every task shares: early stopping on full-catalogue validation metrics, the
optimizer (and the ``train.optimizer: auto`` size rule) and learning-rate schedule, required metric
cut-offs, in-memory ``tf.data`` batches."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Mapping

import numpy as np
import tensorflow as tf

from tfrs_lab.data.movielens import DataError
from tfrs_lab.training.optimizers import LazyAdam

__all__ = ["AUTO_OPTIMIZER_MAX_PARAMETERS", "ValidationEarlyStopping", "auto_optimizer", "capped_steps", "learning_rate",
           "make_dataset", "optimizer", "resolve_optimizer", "sample_weights", "validation_metrics"]

logger = logging.getLogger(__name__)

class ValidationEarlyStopping(tf.keras.callbacks.Callback):
    """Evaluates full-catalogue validation metrics after each epoch, keeps the best weights,
    stops after ``patience`` epochs without improvement, and restores the best weights at the end.

    The metrics are added to the epoch ``logs`` (as ``val_<name>``) so TensorBoard records them;
    ``best_metrics`` holds every validation metric of the best epoch. With ``evaluate_fn=None``
    (``train.include_validation``: no held-out data) it only counts epochs and keeps the last weights.
    ``monitor`` is maximised (error metrics are monitored as ``neg_<name>``).
    """

    def __init__(self, evaluate_fn: Callable[[], Mapping[str, float]] | None, monitor: str, patience: int) -> None:
        super().__init__()
        self.evaluate_fn, self.monitor, self.patience = evaluate_fn, monitor, patience
        self.best, self.best_epoch, self.best_weights, self.wait = -np.inf, 0, None, 0
        self.best_metrics: dict[str, float] = {}
        self.eval_seconds = 0.0
        self.epochs_run = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.evaluate_fn is None:
            self.epochs_run = self.best_epoch = epoch + 1
            return
        start = time.perf_counter()
        metrics = self.evaluate_fn()
        self.eval_seconds += time.perf_counter() - start
        self.epochs_run = epoch + 1
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in metrics.items()})
        value = metrics[self.monitor]
        logger.info("epoch %d: validation %s = %.4f", epoch + 1, self.monitor, value)
        if value > self.best:
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            self.best_metrics = dict(metrics)
            self.best_weights = None  # the previous copy goes first: at most one copy of the weights here
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
            if self.wait > self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        # the weights live in the model now; and a task that evaluates and exports a copy of the model
        # (autoencoder) frees the trained one and its optimizer state once it drops it
        self.best_weights, self.model = None, None


def validation_metrics(best_metrics: Mapping[str, float]) -> dict[str, float]:
    """``validation_<name>`` of every validation metric at the best epoch (``neg_*`` helpers dropped)."""
    return {f"validation_{k}": round(float(v), 6) for k, v in best_metrics.items() if not k.startswith("neg_")}


def capped_steps(train_cfg, steps_per_epoch: int) -> int:
    """Optimizer steps one epoch runs: ``steps_per_epoch`` (whole epochs), or ``train.max_steps_per_epoch``
    where that is set and smaller."""
    cap = train_cfg.max_steps_per_epoch
    return steps_per_epoch if cap is None else min(steps_per_epoch, cap)


def learning_rate(train_cfg, steps_per_epoch: int):
    """``train.learning_rate``, or with ``train.lr_schedule: cosine`` (configs that have it) a cosine
    decay to ``train.min_learning_rate`` over ``train.epochs * steps_per_epoch`` steps (``steps_per_epoch``
    capped at ``train.max_steps_per_epoch`` where it is set)."""
    steps_per_epoch = capped_steps(train_cfg, steps_per_epoch)
    lr = train_cfg.learning_rate
    if getattr(train_cfg, "lr_schedule", "constant") == "cosine":
        lr = tf.keras.optimizers.schedules.CosineDecay(
            lr, decay_steps=max(1, train_cfg.epochs * steps_per_epoch),
            alpha=min(1.0, train_cfg.min_learning_rate / train_cfg.learning_rate))
    return lr


def optimizer(name: str, lr) -> tf.keras.optimizers.Optimizer:
    """The ``train.optimizer`` named ``name`` (adam | lazy_adam | adagrad | sgd) with learning rate (or
    schedule) ``lr``; ``lazy_adam`` updates only the embedding rows a batch touches
    (:class:`tfrs_lab.training.optimizers.LazyAdam`).

    Raises:
      ValueError: ``name`` is ``auto`` (the size rule: resolve it first with :func:`resolve_optimizer`;
        the run loop does).
    """
    if name == "auto":
        raise ValueError("train.optimizer: auto is resolved from the embedding tables first (resolve_optimizer)")
    return {"adam": tf.keras.optimizers.Adam, "lazy_adam": LazyAdam, "adagrad": tf.keras.optimizers.Adagrad,
            "sgd": tf.keras.optimizers.SGD}[name](learning_rate=lr)


AUTO_OPTIMIZER_MAX_PARAMETERS = 2_000_000
"""Sparse embedding-table parameters (:meth:`tfrs_lab.training.task.Task.embedding_parameters`) up to
which ``train.optimizer: auto`` picks ``adam``; above it ``lazy_adam`` (:func:`auto_optimizer`)."""


def auto_optimizer(parameters: int) -> str:
    """``train.optimizer: auto``, one rule for every task: ``adam`` while the model's embedding tables
    with sparse (row) gradients hold at most :data:`AUTO_OPTIMIZER_MAX_PARAMETERS` parameters,
    ``lazy_adam`` above.

    ``adam`` won retrieval's validation selection on every data set (ML-100K both protocols, Last.fm,
    synthetic: +0.1 to +2 %), but Keras's ``Adam`` decays both moments and rewrites every row of those
    tables each step, so its cost per example grows with the tables while ``lazy_adam``'s (the rows a
    batch touches only) does not. Measured at batch 256 (docs/tuning.md#optimizer-a-size-rule-every-task):
    ``adam`` adds about 17 µs of CPU per example per million table parameters on retrieval's step and
    12-14 µs on ranking ``mf``'s while ``lazy_adam`` stays flat (21-24 and 27-30 µs); the threshold (2M:
    31k rows at dimension 64) is where ``adam``'s extra cost reaches about one ``lazy_adam`` step
    (ranking ``mf`` with 25M's tables: 5.1x, retrieval 12.6x). Tables whose
    gradient is dense (an autoencoder's layers, the sequential item table, which is also the output
    layer) do not count: ``lazy_adam`` updates them exactly as ``adam`` does, so they cannot make it
    cheaper.

    Args:
      parameters: the run's :meth:`~tfrs_lab.training.task.Task.embedding_parameters` (0: none).

    Returns:
      ``"adam"`` or ``"lazy_adam"``.
    """
    return "adam" if parameters <= AUTO_OPTIMIZER_MAX_PARAMETERS else "lazy_adam"


def resolve_optimizer(cfg, parameters: int):
    """``cfg`` (any task's config) with ``train.optimizer: auto`` replaced by :func:`auto_optimizer` of
    ``parameters``, the model's sparse embedding-table parameters (logged once); any other ``cfg`` as
    is. The run loop calls it once the vocabularies are known (``tfrs_lab.training.runner.run_task``)."""
    if cfg.train.optimizer != "auto":
        return cfg
    name = auto_optimizer(parameters)
    logger.info("train.optimizer: auto = %s (embedding tables %d parameters; adam up to %d)", name, parameters,
                AUTO_OPTIMIZER_MAX_PARAMETERS)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, optimizer=name))


def make_dataset(columns: Mapping[str, np.ndarray], batch_size: int, shuffle_buffer: int, seed: int) -> tf.data.Dataset:
    """Shuffled (reshuffled each epoch), batched, prefetched batches of in-memory columns (all of
    the same length n; shuffle buffer ``min(n, shuffle_buffer)``)."""
    n = len(next(iter(columns.values())))
    ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in columns.items()})
    ds = ds.shuffle(max(1, min(n, shuffle_buffer)), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def sample_weights(rating: np.ndarray, mode: str, train_rows: np.ndarray) -> np.ndarray | None:
    """float32 [n]: each interaction's loss weight under ``train.sample_weight`` = ``mode``, or None
    for ``none`` (every row weighs 1, the unweighted loss exactly).

    ``rating`` float [n] is the rating / implicit weight column (a play count; 1.0 where the data has
    no rating column). ``rating`` -> the value itself, ``log1p`` -> log(1 + value); either is then
    divided by its mean over ``train_rows`` (int [t], the rows the loss sees), so the mean training
    weight is 1 and the loss keeps its scale. Raises :class:`DataError` on a negative value or when
    every training weight is 0.
    """
    if mode == "none":
        return None
    values = np.asarray(rating, np.float64)
    train = values[np.asarray(train_rows, np.int64)]
    if len(train) and train.min() < 0:
        raise DataError(f"train.sample_weight={mode} needs ratings >= 0, got {train.min():g}: "
                        "weigh only implicit weights such as play counts, or set train.sample_weight=none")
    weight = values if mode == "rating" else np.log1p(np.maximum(values, 0.0))
    mean = float(weight[np.asarray(train_rows, np.int64)].mean()) if len(train) else 1.0
    if mean <= 0:
        raise DataError(f"train.sample_weight={mode}: every training row has weight 0 (no rating column, or all "
                        "ratings 0): name the weight column as rating, or set train.sample_weight=none")
    return (weight / mean).astype(np.float32)
