"""The task seam: what a task supplies, and what the generic run loop hands it.

A task (retrieval, ranking, sequential, autoencoder, …) is a :class:`Task` subclass named ``TASK``
in the module its registry entry names (``tfrs_lab.config.TASKS``). It supplies only what is its
own — the split it evaluates on, the vocabularies it fits, the model and its training data, its
test metrics, its export and its report inputs — and :func:`tfrs_lab.training.runner.run_task`
does the rest once for every task: seeding, loading or taking the prepared inputs, the staged run
directory, ``config.yaml``, callbacks (early stopping, TensorBoard, fault tolerance), the common
``metrics.json`` keys, the report and the export's place in the run directory.

Prepared inputs are explicit: a caller that already holds the data (a pipeline's ExampleGen
output, a notebook) passes :class:`TaskInputs`; nothing travels through process-global state.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import importlib
import logging
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import tensorflow as tf

from tfrs_lab.config import task_entry
from tfrs_lab.data.features import Vocabularies, build_vocabularies
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.movielens import DataError, MovieLensData
from tfrs_lab.data.predefined import movielens_split_rows, own_test_rows
from tfrs_lab.data.spec import OWN
from tfrs_lab.data.splits import PREDEFINED, Split, SplitOptions, make_split
from tfrs_lab.training.common import ValidationEarlyStopping, capped_steps, learning_rate, optimizer

__all__ = ["data_split_options", "FitResult", "RunContext", "Task", "TaskInputs", "Trained", "VocabularyMismatch",
           "get_task", "rows_digest", "split_options"]

logger = logging.getLogger(__name__)


class VocabularyMismatch(DataError):
    """Vocabularies handed to a run were fitted differently from what its task and config need."""


def rows_digest(rows: np.ndarray) -> str:
    """SHA-256 of training row indices (as int64), identifying the rows a vocabulary fit used."""
    return hashlib.sha256(np.ascontiguousarray(np.asarray(rows, dtype=np.int64)).tobytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class TaskInputs:
    """Prepared inputs for a run.

    Attributes:
      data: the ratings and catalogue to train and evaluate on.
      vocabularies: optional vocabularies already fitted (a pipeline's Transform), used as they are
        when ``fit`` — the ``build_vocabularies`` arguments plus ``train_rows_sha256`` — equals what
        the task would fit; a different fit is refused (:class:`VocabularyMismatch`), never refitted
        silently, so training and serving share one encoding.
    """

    data: MovieLensData
    vocabularies: Vocabularies | None = None
    fit: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.vocabularies is None) != (self.fit is None):
            raise ValueError("TaskInputs: vocabularies and fit must be given together")


@dataclasses.dataclass
class FitResult:
    """One ``model.fit`` with early stopping: the stopper (best epoch, epochs run, best validation
    metrics), training seconds without validation time, and the epochs that counted towards
    throughput (a resumed distributed run does not count the epochs it skipped), and the share of
    each epoch's steps trained (1.0 for whole epochs; less under ``train.max_steps_per_epoch``)."""

    stopper: ValidationEarlyStopping
    seconds: float
    history: dict[str, list[float]]
    epochs_counted: int
    epoch_fraction: float = 1.0


@dataclasses.dataclass
class Trained:
    """What :meth:`Task.train` returns to the run loop.

    Attributes:
      model: the trained model (best validation weights restored).
      state: the task's own objects that evaluation, export and report need (columns, sequences …).
      fits: every fit, in order (NeuMF pre-training fits GMF and MLP first); the last is the model's.
      examples_per_epoch: examples one epoch trains on (negatives included), for throughput.
      num_train_examples: training interactions.
      metrics: task-specific ``metrics.json`` entries (``architecture``, ``objective``, counts …).
    """

    model: Any
    state: Any
    fits: list[FitResult]
    examples_per_epoch: int
    num_train_examples: int
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def final(self) -> FitResult:
        return self.fits[-1]

    @property
    def epochs_run(self) -> int:
        return sum(f.stopper.epochs_run for f in self.fits)

    @property
    def train_seconds(self) -> float:
        return sum(f.seconds for f in self.fits)


@dataclasses.dataclass
class RunContext:
    """What the run loop hands :meth:`Task.train`: the resolved config, the data, the split, the
    vocabularies, the staging directory the run is written into, and :meth:`fit`."""

    cfg: Any
    data: MovieLensData | Interactions
    """The data: :class:`Interactions` when the task streams (:meth:`Task.streams`), else :class:`MovieLensData`."""
    split: Split
    vocab: Vocabularies
    stage: Path
    output_dir: Path
    verbose: int
    distribution: Any  # tfrs_lab.training.distribute.Distribution
    callbacks: Sequence[tf.keras.callbacks.Callback] = ()
    """Callbacks every fit of this run gets first (distributed fault tolerance)."""
    initial_epoch: Callable[[], int] = lambda: 0
    warm_start: Any = None
    """The previous run to continue from (``tfrs_lab.training.warm_start.WarmStart``; ``train.warm_start``),
    or None: a task that supports it calls ``warm_start.restore(model, sample)`` before fitting."""

    def optimizer(self, steps_per_epoch: int) -> tf.keras.optimizers.Optimizer:
        """``train.optimizer`` with ``train.learning_rate`` (and its schedule, where the config has one)."""
        t = self.cfg.train
        return optimizer(t.optimizer, learning_rate(t, steps_per_epoch))

    def fit(self, model: tf.keras.Model, dataset, *, steps_per_epoch: int, validate: Callable[[], Mapping[str, float]],
            monitor: str, label: str | None = None, fit_kwargs: Mapping[str, Any] | None = None) -> FitResult:
        """Fits ``model`` (already compiled) for up to ``train.epochs`` epochs with early stopping on
        ``monitor`` (maximised), TensorBoard logs under ``logs/`` (``logs/<label>`` when a run fits
        several models) and, with ``train.lr_schedule: plateau``, learning-rate decay on plateaus.
        ``steps_per_epoch``: the optimizer steps of one whole epoch of ``dataset``; with
        ``train.max_steps_per_epoch`` below it each epoch stops after that many steps."""
        t = self.cfg.train
        fit_kwargs = dict(fit_kwargs or {})
        steps = capped_steps(t, steps_per_epoch)
        if steps < steps_per_epoch:
            if "steps_per_epoch" in fit_kwargs:  # parameter_server: the coordinator's step count
                fit_kwargs["steps_per_epoch"] = min(fit_kwargs["steps_per_epoch"], steps)
            else:
                dataset = dataset.take(steps)
            logger.info("train.max_steps_per_epoch: %d of %d steps per epoch (%.1f%%)", steps, steps_per_epoch,
                        100.0 * steps / steps_per_epoch)
        stopper = ValidationEarlyStopping(None if t.include_validation else validate, monitor,
                                          t.early_stopping_patience)
        log_dir = self.stage / "logs" / (label or "")
        callbacks: list[tf.keras.callbacks.Callback] = [*self.callbacks, stopper]
        if getattr(t, "lr_schedule", "constant") == "plateau":
            callbacks.append(tf.keras.callbacks.ReduceLROnPlateau(
                monitor=f"val_{monitor}", mode="max", factor=t.lr_decay_factor, patience=0,
                min_lr=t.min_learning_rate, min_delta=0.0, verbose=0))
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False))
        logger.info("training %s for up to %d epochs", label or self.cfg.task, t.epochs)
        start = time.perf_counter()
        history = model.fit(dataset, epochs=t.epochs, callbacks=callbacks, verbose=self.verbose, **fit_kwargs).history
        seconds = time.perf_counter() - start - stopper.eval_seconds
        return FitResult(stopper, seconds, dict(history), stopper.epochs_run - self.initial_epoch(),
                         steps / max(steps_per_epoch, 1))


def split_options(cfg) -> SplitOptions:
    """The :class:`SplitOptions` of ``cfg.data`` (``predefined``: its train/test rows, read here)."""
    return data_split_options(cfg.data, cfg.split_name)


def data_split_options(d, split_name: str) -> SplitOptions:
    """The :class:`SplitOptions` of a ``DataConfig`` ``d`` for the split ``split_name``; ``predefined``
    reads its train/test rows (the MovieLens 100K archive ``d.data_zip``, or ``d.predefined`` in the
    format of ``d.source.interactions``). One implementation for runs and the pipeline's ExampleGen."""
    train = test = None
    if split_name == PREDEFINED:
        if d.dataset == OWN:
            test = own_test_rows(d.source.interactions, d.predefined)
        else:
            train, test = movielens_split_rows(d.data_zip, d.predefined)
    h, t = d.held_out_users, d.time_cutoff
    return SplitOptions(time_validation=t.validation, time_test=t.test, validation_users=h.validation,
                        test_users=h.test, target_share=h.target_share, predefined_test=test, predefined_train=train)


class Task(abc.ABC):
    """One kind of model the library trains. Subclasses set ``name`` and implement the hooks."""

    name: ClassVar[str]

    # ----------------------------------------------------------------- data
    def resolve_config(self, cfg):
        """``cfg`` with values the task derives filled in (written to ``config.yaml``); default: as is."""
        return cfg

    def resolve_data_config(self, cfg, data: MovieLensData | Interactions, split: Split):
        """``cfg`` with values derived from the **training** rows (``split.train``) filled in, once the
        data is split and before ``config.yaml`` is written (e.g. retrieval's ``model.history_length:
        auto``); never from the validation or test rows. Default: as is."""
        return cfg

    def streams(self, cfg) -> bool:
        """Whether the run loop hands this task your own data as compact :class:`Interactions`
        (integer codes read straight from the prepared dataset, never a string per row) instead of
        :class:`MovieLensData`; default False."""
        return False

    def split(self, cfg, data: MovieLensData | Interactions) -> Split:
        """The train / validation / test rows of ``data`` for ``cfg`` (``cfg.split_name``; its
        evaluation protocol is ``Split.protocol``)."""
        if isinstance(data, Interactions):
            return data.split(cfg.split_name, split_options(cfg))
        return make_split(cfg.split_name, data.ratings, split_options(cfg))

    def vocabulary_fit(self, cfg, has_user_features: bool) -> dict[str, Any]:
        """The :func:`tfrs_lab.data.features.build_vocabularies` keyword arguments this task needs
        (a pipeline's Transform fits exactly these)."""
        return dict(has_user_features=False, title_vocab_size=2, title_max_tokens=1, timestamp_buckets=1)

    def vocabularies(self, cfg, data: MovieLensData | Interactions, train_rows: np.ndarray,
                     inputs: TaskInputs | None = None) -> Vocabularies:
        """The provided vocabularies when they were fitted as this task needs, else a fresh fit."""
        fit = self.vocabulary_fit(cfg, data.has_user_features)
        if inputs is not None and inputs.vocabularies is not None:
            wanted = {**fit, "train_rows_sha256": rows_digest(train_rows)}
            for key, value in wanted.items():
                have = inputs.fit.get(key)
                if have != value:
                    raise VocabularyMismatch(
                        f"the provided vocabularies were fitted with {key}={have!r} but {self.name} needs "
                        f"{key}={value!r}: fit them with the same task config and split (a pipeline: give "
                        "Transform the Trainer's task config)")
            return inputs.vocabularies
        if isinstance(data, Interactions) or data.features:  # typed features (from_frame): from the codes
            return Interactions.of(data).vocabularies(train_rows, **fit)
        return build_vocabularies(data.ratings, data.movies, train_rows, **fit)

    def model_shape(self, cfg, has_user_features: bool) -> dict[str, Any] | None:
        """The config values (dotted keys) that fix the shapes of the model's weights: a warm start
        (``train.warm_start``) needs them equal in both runs. ``None`` (the default): the task
        cannot warm-start."""
        return None

    # ----------------------------------------------------------------- training and evaluation
    @abc.abstractmethod
    def train(self, ctx: RunContext) -> Trained:
        """Builds the model and its training data and fits it (through ``ctx.fit``)."""

    @abc.abstractmethod
    def evaluate(self, ctx: RunContext, trained: Trained) -> dict[str, float]:
        """Test metrics of the trained model (the keys docs/architecture.md lists for the split)."""

    @abc.abstractmethod
    def export(self, ctx: RunContext, trained: Trained, export_dir: Path) -> dict[str, float]:
        """Writes ``export_dir/<model_name>/<version>/``; returns metrics the export measured
        (``scann_recall@10``), possibly none."""

    @abc.abstractmethod
    def report_inputs(self, ctx: RunContext, trained: Trained) -> dict[str, Any]:
        """Keyword arguments of :func:`tfrs_lab.training.report.write_report` (ranks, recommendations …)."""


def get_task(name: str) -> Task:
    """The registered :class:`Task` called ``name`` (its module is imported on first use)."""
    entry = task_entry(name)
    task = importlib.import_module(entry.module).TASK
    if not isinstance(task, Task) or task.name != name:
        raise TypeError(f"{entry.module}.TASK must be the Task named {name!r}")  # programming error
    return task
