"""The run loop every task shares: ``run_task(task, cfg, output_dir, inputs=None) -> Run``.

Order of work: (1) the distribution strategy (collectives are configured first); (2) seeding; (3) the
data — the caller's :class:`TaskInputs` or the config's data source; (4) the task's split and
vocabularies; (5) in a staged run directory (renamed into place only when everything is written,
guarded by a lock against a second run into the same directory): ``config.yaml``, training,
the test evaluation, the export, ``report.html``, ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfrs_lab.config import ConfigError, check_typed_features, dump_config
from tfrs_lab.data.features import Vocabularies
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.movielens import MovieLensData, load_movielens
from tfrs_lab.data.prepared import PREPARED_DIR, PreparedDataset, prepare_dataset
from tfrs_lab.data.spec import OWN
from tfrs_lab.data.splits import Split, min_interactions_filter
from tfrs_lab.data.synthetic import SyntheticSpec
from tfrs_lab.training import distribute, report, rundir
from tfrs_lab.evaluation.metrics import beyond_accuracy
from tfrs_lab.training.common import resolve_optimizer, validation_metrics
from tfrs_lab.training.task import RunContext, Task, TaskInputs, Trained, get_task
from tfrs_lab.training.warm_start import METRIC as WARM_START_METRIC, WarmStart, load_warm_start

__all__ = ["FEATURE_TASKS", "Prepared", "Run", "load_data", "load_run", "prepare", "prepared_data", "run_task"]

logger = logging.getLogger(__name__)

FEATURE_TASKS = ("retrieval", "ranking", "multitask", "sequential")
"""Tasks whose models read the typed features of ``data.source.features`` (on :class:`Interactions`;
which sides and architectures: :func:`tfrs_lab.config.check_typed_features`, which refuses the rest)."""


def load_data(cfg, *, compact: bool = False) -> MovieLensData | Interactions:
    """The ratings and catalogue ``cfg.data`` points at (TFDS, a local zip, synthetic, or your own
    files: ``data.dataset: own`` reads ``data.source``), less the rows of users and items below
    ``data.min_user_interactions`` / ``data.min_item_interactions`` (:func:`min_interactions_filter`).
    ``compact``: your own data as :class:`Interactions` straight from the prepared dataset (no
    string per row) when no minimum-count filter applies; the in-memory tables otherwise."""
    d = cfg.data
    filtering = d.min_user_interactions > 0 or d.min_item_interactions > 0
    if d.dataset == OWN:  # prepared once, then reused from the cache by fingerprint
        cache = Path(d.data_dir).expanduser() / PREPARED_DIR if d.data_dir is not None else None
        data = prepared_data(prepare_dataset(d.source, cache_dir=cache), compact=compact and not filtering)
        if isinstance(data, Interactions):
            return data
    else:
        synthetic = None
        if d.dataset == "synthetic":
            try:
                synthetic = SyntheticSpec(**asdict(d.synthetic))
            except ValueError as e:  # the spec names the field: "num_clusters must be >= 2, got 1"
                raise ConfigError(f"data.synthetic.{e}") from e
        data = load_movielens(d.dataset, data_zip=d.data_zip, data_dir=d.data_dir, synthetic=synthetic)
    return min_interactions_filter(data, d.min_user_interactions, d.min_item_interactions)


def prepared_data(prepared: PreparedDataset, *, compact: bool) -> MovieLensData | Interactions:
    """A prepared dataset as a run reads it: with ``compact``, :class:`Interactions` of its codes as
    they are on disk (memory-mapped, no string per row: what a task whose ``streams(cfg)`` says so
    gets); else the string columns, :class:`MovieLensData` (``to_data()``: for a task that does not
    stream — multitask, the ``predefined`` split — and for the minimum-count filter). The one
    function ``train`` and the pipeline's Trainer and Tuner read a prepared dataset with."""
    return Interactions.from_prepared(prepared) if compact else prepared.to_data()


@dataclasses.dataclass
class Run:
    """A finished run.

    Attributes:
      task: the task's name; config: the resolved config; metrics: what ``metrics.json`` holds.
      run_dir: the run directory (``config.yaml``, ``metrics.json``, ``logs/``, ``report.html``, ``export/``).
      model: the trained Keras model (best validation weights), in this process.
    """

    task: str
    config: Any
    metrics: dict[str, Any]
    run_dir: Path
    model: Any
    _task: Task = dataclasses.field(repr=False, default=None)
    _context: RunContext | None = dataclasses.field(repr=False, default=None)
    _trained: Trained | None = dataclasses.field(repr=False, default=None)

    @property
    def export_path(self) -> Path:
        """The exported SavedModel: ``run_dir/export/<model_name>/<version>``."""
        x = self.config.export
        return self.run_dir / rundir.EXPORT_DIR / x.model_name / str(x.version)

    def evaluate(self) -> dict[str, float]:
        """The test metrics of :attr:`model`, computed again (equal to those in :attr:`metrics`)."""
        return self._task.evaluate(self._context, self._trained)

    def export(self, export_dir: str | Path) -> Path:
        """Exports :attr:`model` again into ``export_dir/<model_name>/<version>`` (which must not
        exist yet); returns that path."""
        export_dir = Path(export_dir)
        x = self.config.export
        target = export_dir / x.model_name / str(x.version)
        if target.exists():
            raise rundir.RunDirError(f"{target} already exists: choose another export directory")
        self._task.export(self._context, self._trained, export_dir)
        return target


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A run's data, its split and its fitted vocabularies (what :func:`prepare` returns)."""

    data: MovieLensData | Interactions
    split: Split
    vocab: Vocabularies


def prepare(task: str | Task, cfg, inputs: TaskInputs | None = None, *, stream: bool = True) -> Prepared:
    """Seeds TF/NumPy/Python from ``cfg.train.seed``, then the data (``inputs`` or the config's
    source; compact :class:`Interactions` when the task streams it and ``stream``), the task's split
    and its vocabularies: everything a run trains on."""
    t = get_task(task) if isinstance(task, str) else task
    tf.keras.utils.set_random_seed(cfg.train.seed)
    if inputs is None:
        logger.info("loading %s", cfg.data.dataset)
        inputs = TaskInputs(load_data(cfg, compact=stream and t.streams(cfg)))
    features = cfg.data.source.features if cfg.data.dataset == OWN and cfg.data.source is not None else ()
    carried = inputs.data.features  # prepared (Interactions) or from_frame (MovieLensData) typed features
    check_typed_features(cfg, [c.spec for c in carried.values()])  # from_frame: not in the config
    if (features or carried) and not (t.name in FEATURE_TASKS and carried):
        logger.warning("typed features (%s) are read by %s on the splits computed from codes only, without minimum "
                       "counts, and from from_frame data: this run ignores them",
                       ", ".join([f.name for f in features] or list(carried)), ", ".join(FEATURE_TASKS))
    split = _split(t, cfg, inputs.data)
    return Prepared(inputs.data, split, t.vocabularies(cfg, inputs.data, split.train, inputs))


def _split(task: Task, cfg, data: MovieLensData | Interactions) -> Split:
    split = task.split(cfg, data)
    if cfg.train.include_validation:  # final fit: validation rows (and validation users' fold-in rows) join training
        split = dataclasses.replace(
            split, train=np.sort(np.concatenate([split.train, split.validation, split.fold_in_validation])),
            validation=split.validation[:0], fold_in_validation=split.fold_in_validation[:0])
    logger.info("split %s: %d train / %d validation / %d test ratings", split.name,
                len(split.train), len(split.validation), len(split.test))
    return split


def _rounded(values: dict[str, Any]) -> dict[str, float]:
    """Metric values as floats rounded to 6 decimals (what ``metrics.json`` stores)."""
    return {k: round(float(v), 6) for k, v in values.items()}


def common_metrics(cfg, data: MovieLensData | Interactions, split: Split, trained: Trained) -> dict[str, Any]:
    """The ``metrics.json`` entries every task writes (docs/architecture.md)."""
    final = trained.final
    epochs = max(trained.epochs_run, 1)
    counted = sum(f.epochs_counted * f.epoch_fraction for f in trained.fits)  # whole epochs' worth trained
    fraction = min(f.epoch_fraction for f in trained.fits)  # the smallest share any fit trained
    return {
        "task": cfg.task, "dataset": data.dataset, "split": split.name,
        "optimizer": cfg.train.optimizer,  # the name train.optimizer: auto resolved to
        **trained.metrics,
        "train_seconds": round(trained.train_seconds, 3),
        "train_seconds_per_epoch": round(trained.train_seconds / epochs, 3),
        "train_seconds_to_best_epoch": round(final.seconds / max(final.stopper.epochs_run, 1)
                                             * final.stopper.best_epoch, 3),
        "train_examples_per_second": round(trained.examples_per_epoch * counted / max(trained.train_seconds, 1e-9), 1),
        "num_train_examples": int(trained.num_train_examples),
        "num_test_examples": int(len(split.test)),
        "epochs_trained": trained.epochs_run,
        **({"epoch_fraction": round(fraction, 6)} if fraction < 1 else {}),  # train.max_steps_per_epoch
        "best_epoch": final.stopper.best_epoch,
        **validation_metrics(final.stopper.best_metrics),
        **({} if cfg.train.include_validation else  # a final fit runs no validation: no validation_* keys
           {"validation_seconds": round(sum(f.stopper.eval_seconds for f in trained.fits), 3)}),
    }


def _previous(task: Task, kept: list[Prepared] | None = None, *, stream: bool = True):
    """``prepare`` for :func:`load_warm_start`: a previous run's config -> (its vocabularies as it
    fitted them, through its own warm start if it had one; its number of training rows). The
    previous run's :class:`Prepared` is appended to ``kept`` when given; ``stream``: as :func:`prepare`
    (compact :class:`Interactions` when the task streams; ``reindex`` reads the string columns)."""

    def previous(prev_cfg) -> tuple[Vocabularies, int]:
        earlier = _warm_start(task, prev_cfg)
        p = prepare(task, prev_cfg, stream=stream)
        vocab = p.vocab if earlier is None else earlier.adopt(task, prev_cfg, p.data, p.split)
        if kept is not None:
            kept.append(p)
        return vocab, len(p.split.train)

    return previous


def _warm_start(task: Task, cfg) -> WarmStart | None:
    """The previous run ``cfg.train.warm_start`` names (None without one); its vocabularies are
    prepared as that run prepared them (through its own warm start, if it had one)."""
    if not cfg.train.warm_start:
        return None
    return load_warm_start(task, cfg.train.warm_start, _previous(task))


def load_run(task: str | Task, run_dir: str | Path) -> tuple[WarmStart, Prepared]:
    """A finished run read back as warm start reads it (:func:`load_warm_start`: its resolved
    config, vocabularies refitted exactly as it fitted them, the checkpoint of its export) together
    with its data, split and vocabularies as prepared again from its ``config.yaml``."""
    t = get_task(task) if isinstance(task, str) else task
    kept: list[Prepared] = []
    run = load_warm_start(t, run_dir, _previous(t, kept, stream=False))
    return run, kept[-1]


def run_task(task: str, cfg, output_dir: str | Path, inputs: TaskInputs | None = None, *,
             verbose: int | None = None, evaluate_test: bool = True) -> Run:
    """Trains, evaluates and exports ``task`` with the resolved config ``cfg`` into ``output_dir``.

    Args:
      task: a registered task name (``tfrs_lab.config.TASKS``).
      cfg: its resolved config (``tfrs_lab.config.load_config``).
      output_dir: the run directory; it must not exist or be empty (check it first with
        :func:`tfrs_lab.training.rundir.check_output_dir` to allow overwriting). A second run into
        the same directory while this one runs is refused.
      inputs: prepared inputs; ``None`` loads what ``cfg.data`` names.
      verbose: Keras progress (0 silent, 1 bar, 2 a line per epoch; default 1 on a terminal, else 2).
      evaluate_test: ``False`` for model selection (tuning trials, ``bench select``): the run trains
        and validates only; the test split is never evaluated, nothing is exported, no report is
        written, and ``metrics.json`` holds the training and ``validation_*`` figures only.

    Returns:
      the :class:`Run` (its ``metrics`` are what ``metrics.json`` holds).
    """
    t = get_task(task)
    if cfg.task != task:
        raise ConfigError(f"task: the config is for '{cfg.task}' but the run is '{task}'")
    cfg = t.resolve_config(cfg)
    output_dir = Path(output_dir)
    dist = distribute.make_distribution(cfg.train)  # first: collectives are configured at start-up
    if dist.ps_server_role:
        distribute.serve_forever(dist)  # a parameter-server cluster's worker/ps task only serves
        return Run(task, cfg, {}, output_dir, None, t)
    clock = rundir.PhaseClock(logger)
    warm = _warm_start(t, cfg)
    prepared = prepare(t, cfg, inputs)
    cfg = t.resolve_data_config(cfg, prepared.data, prepared.split)  # rules of the training rows (history: auto)
    if warm is not None:  # the previous run's vocabularies, so its weights keep their meaning
        prepared = dataclasses.replace(prepared, vocab=warm.adopt(t, cfg, prepared.data, prepared.split))
    data, split, vocab = prepared.data, prepared.split, prepared.vocab
    cfg = resolve_optimizer(cfg, t.embedding_parameters(cfg, vocab))  # train.optimizer: auto, every task
    clock.end("load")
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    lock = rundir.run_lock(output_dir) if dist.is_chief else contextlib.nullcontext()
    with lock, distribute.run_directory(dist, output_dir, rundir.staged_run_dir) as stage:
        dump_config(cfg, stage / rundir.CONFIG_FILE)
        backup, resume = distribute.fault_tolerance_callbacks(dist, cfg.train, output_dir)
        ctx = RunContext(cfg, data, split, vocab, stage, output_dir, verbose, dist, backup,
                         lambda: resume.initial_epoch or 0, warm_start=warm)
        with distribute.cluster_failures(dist, cfg.train, output_dir):
            trained = t.train(ctx)
        clock.end("train")
        metrics = common_metrics(cfg, data, split, trained)
        logger.info(rundir.THROUGHPUT_LOG, metrics["train_examples_per_second"])
        if warm is not None:
            metrics[WARM_START_METRIC] = warm.oov_rows
        if evaluate_test:
            _evaluate_and_export(t, ctx, trained, metrics, dist, resume, stage, clock)
        else:  # model selection: validation figures only (docs/tuning.md#selection-on-validation)
            metrics["test_evaluated"] = False
            metrics.update(clock.metrics)
            if dist.is_chief:
                rundir.write_metrics(stage, metrics)
    ctx.stage = output_dir  # the staging directory was renamed into place
    return Run(task, cfg, metrics, output_dir, trained.model, t, ctx, trained)


def _evaluate_and_export(t: Task, ctx: RunContext, trained: Trained, metrics: dict[str, Any], dist, resume,
                         stage: Path, clock: rundir.PhaseClock) -> None:
    """The end of a run: the test evaluation (once), the export, ``report.html``, ``metrics.json``
    (with the phase timings of ``clock``)."""
    logger.info("evaluating on the test split (best epoch %d)", trained.final.stopper.best_epoch)
    metrics.update(_rounded(t.evaluate(ctx, trained)))
    clock.end("evaluate")
    if dist.name != "default":
        metrics.update(num_workers=dist.num_workers, resumed_at_epoch=(resume.initial_epoch or 0) + 1)
    if dist.is_chief:  # non-chief workers: their run directory is discarded, skip the export
        metrics.update(_rounded(t.export(ctx, trained, stage / rundir.EXPORT_DIR)))
        clock.end("export")
        shown = t.report_inputs(ctx, trained)
        metrics.update(_rounded(beyond_accuracy(shown["recommendations"], shown["item_counts"], report.TOP_K,
                                                ctx.vocab.genres[1:])))
        report.write_report(stage, metrics, history=trained.final.history, **shown)
        clock.end("report")
        metrics.update(clock.metrics)  # metrics.json only (report.html's table is the test metrics)
        rundir.write_metrics(stage, metrics)
