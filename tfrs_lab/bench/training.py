"""The ``training`` suite: throughput and time-to-quality of our models vs the TFRS tutorial recipes.

Same data (``hash`` split), same machine, one process:

* **time to quality**: each model trains with full-catalogue validation after every epoch; the
  wall time of training (validation excluded) is accumulated per epoch. The target is what the
  tutorial recipe reaches in its published 3 epochs (validation ``hit_rate@100`` for retrieval,
  validation ``rmse`` for ranking); we report the training seconds each model needs to reach it.
* **throughput**: train examples/s = examples per epoch / median epoch time, the first (tracing)
  epoch excluded, for our retrieval model under batch sizes, ``tf.data`` settings and XLA
  (``jit_compile``), and for the tutorial recipes (with and without training-time metrics).

Ratios are against the tutorial measured in the same run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from tfrs_lab.bench import common

__all__ = ["curve", "dataset", "EpochClock", "QUALITY", "run_training", "throughput", "time_to_quality",
           "Validator", "VARIANTS"]

logger = logging.getLogger(__name__)


class EpochClock(tf.keras.callbacks.Callback):
    """Seconds of each epoch's training steps (put it first: later callbacks' validation is excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class Validator(tf.keras.callbacks.Callback):
    """Calls ``evaluate()`` after each epoch and records the returned dict."""

    def __init__(self, evaluate: Callable[[], dict[str, float]]) -> None:
        super().__init__()
        self.evaluate = evaluate
        self.values: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.values.append(self.evaluate())


def curve(clock: EpochClock, values: list[dict[str, float]], metric: str) -> list[tuple[float, float]]:
    """``[(cumulative training seconds, validation metric)]`` per epoch."""
    t = np.cumsum(clock.seconds)
    return [(round(float(s), 3), round(float(v[metric]), 6)) for s, v in zip(t, values)]


def time_to_quality(points: list[tuple[float, float]], target: float, higher_is_better: bool) -> float | None:
    """Training seconds until the metric first reaches ``target``; ``None`` if it never does."""
    for seconds, value in points:
        if (value >= target) if higher_is_better else (value <= target):
            return seconds
    return None


def throughput(clock: EpochClock, examples_per_epoch: int) -> float:
    """Examples/s over the median epoch after the first (tracing) one."""
    return round(examples_per_epoch / max(common.median_after_warmup(clock.seconds), 1e-9), 1)


# --------------------------------------------------------------------------- our models


def _retrieval_setup(cfg):
    """Our retrieval model, its columns, a validation function and the config with its ``auto`` rules
    resolved, as ``train retrieval`` builds them."""
    from tfrs_lab.evaluation.metrics import REQUIRED_KS
    from tfrs_lab.models.retrieval import RetrievalModel
    from tfrs_lab.training.evaluate import evaluate
    from tfrs_lab.training.common import resolve_optimizer
    from tfrs_lab.training.retrieval import TASK, hyperparameters, split_columns
    from tfrs_lab.training.runner import prepare

    p = prepare("retrieval", cfg)
    data, split, vocab = p.data, p.split, p.vocab
    cfg = TASK.resolve_data_config(cfg, data, split)  # history_length: auto
    cfg = resolve_optimizer(cfg, TASK.embedding_parameters(cfg, vocab))  # optimizer: auto, as run_task
    hp = hyperparameters(cfg, data.has_user_features)
    cols = split_columns(data, split, hp)
    model = RetrievalModel(vocab, hp)

    def validate() -> dict[str, float]:
        return evaluate(model, vocab, cols["validation"], protocol=split.protocol, ks=REQUIRED_KS[split.protocol],
                        history=cols["train"], batch_size=cfg.eval.batch_size)

    return model, cols["train"], validate, cfg


def _ranking_setup(cfg):
    from tfrs_lab.training.common import resolve_optimizer
    from tfrs_lab.training.ranking import TASK, explicit_metrics, hyperparameters, make_model, split_columns
    from tfrs_lab.training.runner import prepare

    p = prepare("ranking", cfg)
    data, split, vocab = p.data, p.split, p.vocab
    cfg = TASK.resolve_data_config(cfg, data, split)  # hidden_units: auto
    cfg = resolve_optimizer(cfg, TASK.embedding_parameters(cfg, vocab))  # optimizer: auto, as run_task
    hp = hyperparameters(cfg)
    cols = split_columns(data, split, hp)
    model = make_model(vocab, hp, cols["train"], float(np.mean(cols["train"]["label"])))
    return model, cols["train"], lambda: explicit_metrics(model, cols["validation"]), cfg


def dataset(columns: dict[str, np.ndarray], batch_size: int, seed: int, *, prefetch: bool = True,
            parallel_batch: bool = False) -> tf.data.Dataset:
    """Our training input pipeline (as :func:`tfrs_lab.training.common.make_dataset`) with the
    ``tf.data`` knobs the suite varies."""
    n = len(columns["user_id"])
    ds = tf.data.Dataset.from_tensor_slices({k: tf.constant(v) for k, v in columns.items()})
    ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE if parallel_batch else None)
    return ds.prefetch(tf.data.AUTOTUNE) if prefetch else ds


def _fit_ours(task: str, cfg, *, epochs: int, validate: bool, batch_size: int | None = None,
              jit_compile: bool = False, prefetch: bool = True, parallel_batch: bool = False) -> dict[str, Any]:
    from tfrs_lab.training.common import optimizer

    model, train_cols, validate_fn, cfg = (_retrieval_setup if task == "retrieval" else _ranking_setup)(cfg)
    model.compile(optimizer=optimizer(cfg.train.optimizer, cfg.train.learning_rate), jit_compile=jit_compile)
    batch = batch_size or cfg.train.batch_size
    ds = dataset(train_cols, batch, cfg.train.seed, prefetch=prefetch, parallel_batch=parallel_batch)
    clock, validator = EpochClock(), Validator(validate_fn)
    model.fit(ds, epochs=epochs, callbacks=[clock, validator] if validate else [clock], verbose=0)
    n = len(train_cols["user_id"])
    return {"clock": clock, "values": validator.values, "examples_per_epoch": n,
            "batch_size": batch, "train_examples_per_second": throughput(clock, n)}


def _fit_tutorial(task: str, data, split, *, epochs: int, validate: bool, metrics_in_training: bool = False,
                  jit_compile: bool = False) -> dict[str, Any]:
    from tfrs_lab.bench import peers

    if task == "retrieval":
        model = peers.build_tutorial_retrieval(data, split, metrics_in_training=metrics_in_training,
                                               jit_compile=jit_compile)
        ds = peers.tutorial_dataset(data, split.train, 42)
        validate_fn = lambda: model.evaluate_split(data, split, (10, 50, 100), "validation")  # noqa: E731
    else:
        model = peers.build_tutorial_ranking(data, split, jit_compile=jit_compile)
        ds = peers.tutorial_dataset(data, split.train, 42, with_rating=True)
        validate_fn = lambda: model.evaluate_rows(data, split.validation)  # noqa: E731
    clock, validator = EpochClock(), Validator(validate_fn)
    model.fit(ds, epochs=epochs, callbacks=[clock, validator] if validate else [clock], verbose=0)
    n = len(split.train)
    return {"clock": clock, "values": validator.values, "examples_per_epoch": n, "batch_size": peers.TUTORIAL_BATCH,
            "train_examples_per_second": throughput(clock, n)}


VARIANTS = ("tutorial_metrics", "tutorial", "default", "batch4", "batch16", "no_prefetch", "parallel_batch", "jit")
"""Throughput variants: the tutorial recipe with its published per-step metrics and without; our
model at its default config, 4x and 16x the batch size, without prefetch, with parallel batching,
and with XLA (``jit_compile``)."""


QUALITY = {"retrieval": ("hit_rate@100", True), "ranking": ("rmse", False)}


def run_training(data_options: dict[str, Any], output_dir: Path, *, epochs: int | None = None,
                 throughput_epochs: int = 4, overrides: tuple[str, ...] = (),
                 variants: tuple[str, ...] = VARIANTS) -> tuple[dict[str, Any], str]:
    """Runs the suite; writes ``results.json``, ``time_to_quality.png`` and ``throughput.png``.

    Args:
      data_options: ``data.*`` config values (dataset, data_zip, data_dir).
      epochs: epochs of our models' time-to-quality runs (default: their config's ``train.epochs``,
        capped at 10); the tutorials run their published 3 epochs.
      throughput_epochs: epochs per throughput variant (the first is warm-up).
      variants: which of :data:`VARIANTS` to measure.
    """
    from tfrs_lab.bench.peers import TUTORIAL_EPOCHS
    from tfrs_lab.config import default_config_file, load_config
    from tfrs_lab.data.splits import make_split

    output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"suite": "training", "machine": common.machine(), "split": "hash",
                               "tasks": {}, "variants": []}
    rows = []
    for task, (metric, higher) in QUALITY.items():
        cfg = load_config(task, [default_config_file(task)], list(overrides),
                          extra={"data": {**data_options, "split": "hash"}})
        from tfrs_lab.training.runner import load_data

        data = load_data(cfg)
        results["dataset"] = data.dataset
        split = make_split("hash", data.ratings)
        logger.info("training suite: TFRS tutorial %s recipe (%d epochs, validation each epoch)", task, TUTORIAL_EPOCHS)
        tut = _fit_tutorial(task, data, split, epochs=TUTORIAL_EPOCHS, validate=True)
        tut_curve = curve(tut["clock"], tut["values"], metric)
        target = tut_curve[-1][1]
        ours_epochs = epochs or min(cfg.train.epochs, 10)
        logger.info("training suite: tfrs_lab %s (%d epochs, validation each epoch)", task, ours_epochs)
        ours = _fit_ours(task, cfg, epochs=ours_epochs, validate=True)
        ours_curve = curve(ours["clock"], ours["values"], metric)
        t_ours = time_to_quality(ours_curve, target, higher)
        t_tut = time_to_quality(tut_curve, target, higher)
        best = (max if higher else min)(v for _, v in ours_curve)
        results["tasks"][task] = {
            "metric": f"validation {metric}", "target": target,
            "tfrs_tutorial": {"curve": tut_curve, "seconds_to_target": t_tut,
                              "train_examples_per_second": tut["train_examples_per_second"]},
            "tfrs_lab": {"curve": ours_curve, "seconds_to_target": t_ours, "best": best,
                         "train_examples_per_second": ours["train_examples_per_second"]},
            "time_to_quality_speedup": round(t_tut / t_ours, 3) if t_ours and t_tut else None,
        }
        for name, r in (("tfrs_tutorial", tut), ("tfrs_lab", ours)):
            rows.append({"run": f"{task}: {name}", "batch": r["batch_size"],
                         "examples/s": r["train_examples_per_second"],
                         "s_to_target": results["tasks"][task][name]["seconds_to_target"],
                         f"val_{metric}": (ours_curve if name == "tfrs_lab" else tut_curve)[-1][1]})
        results["variants"] += _variants(task, cfg, data, split, throughput_epochs, variants)
    _plot_curves(output_dir / "time_to_quality.png", results)
    bars = common.bar_chart(output_dir / "throughput.png",
                     [{"variant": v["variant"], "train_examples_per_second": v.get("train_examples_per_second")}
                      for v in results["variants"]], ["train_examples_per_second"],
                     "train examples/s (median epoch after warm-up)", label="variant")
    results["plots"] = [str(output_dir / "time_to_quality.png")] + ([str(bars)] if bars else [])
    common.write_results(output_dir, results)
    table = common.format_table(rows, ["batch", "examples/s", "s_to_target", "val_hit_rate@100", "val_rmse"], first="run")
    shown = [{**v, "error": v["error"][:60] + "…" if len(v["error"]) > 60 else v["error"]} if "error" in v else v
             for v in results["variants"]]
    table += "\n\n" + common.format_table(shown, ["train_examples_per_second", "vs_tutorial", "error"], first="variant")
    return results, table


def _variants(task: str, cfg, data, split, epochs: int, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Throughput of our model under batch size / tf.data / XLA settings and of the tutorial recipe."""
    base = cfg.train.batch_size
    settings: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
        "tutorial_metrics": ("tfrs_tutorial (metrics every step, as published)",
                             lambda: _fit_tutorial(task, data, split, epochs=epochs, validate=False,
                                                   metrics_in_training=True)),
        "tutorial": ("tfrs_tutorial", lambda: _fit_tutorial(task, data, split, epochs=epochs, validate=False)),
        "default": (f"tfrs_lab batch {base} (default)", lambda: _fit_ours(task, cfg, epochs=epochs, validate=False)),
        "batch4": (f"tfrs_lab batch {base * 4}",
                   lambda: _fit_ours(task, cfg, epochs=epochs, validate=False, batch_size=base * 4)),
        "batch16": (f"tfrs_lab batch {base * 16}",
                    lambda: _fit_ours(task, cfg, epochs=epochs, validate=False, batch_size=base * 16)),
        "no_prefetch": ("tfrs_lab no prefetch", lambda: _fit_ours(task, cfg, epochs=epochs, validate=False, prefetch=False)),
        "parallel_batch": ("tfrs_lab parallel batch",
                           lambda: _fit_ours(task, cfg, epochs=epochs, validate=False, parallel_batch=True)),
        "jit": ("tfrs_lab jit_compile (XLA)", lambda: _fit_ours(task, cfg, epochs=epochs, validate=False, jit_compile=True)),
    }
    if task == "ranking":  # the tutorial ranking recipe has no training-time metrics to drop
        settings.pop("tutorial_metrics")
    out = []
    for key in names:
        if key not in settings:
            continue
        name, fn = settings[key]
        logger.info("training suite: %s throughput, %s", task, name)
        entry: dict[str, Any] = {"variant": f"{task}: {name}"}
        try:
            entry["train_examples_per_second"] = fn()["train_examples_per_second"]
        except (tf.errors.OpError, ValueError, TypeError) as e:  # e.g. XLA cannot compile string lookups
            entry["error"] = _reason(e)
            logger.warning("%s failed: %s", entry["variant"], entry["error"])
        out.append(entry)
    tut = next((v.get("train_examples_per_second") for v in out if v["variant"] == f"{task}: tfrs_tutorial"), None)
    for v in out:
        if tut and "train_examples_per_second" in v:
            v["vs_tutorial"] = round(v["train_examples_per_second"] / tut, 3)
    return out


def _reason(e: Exception) -> str:
    """The informative line of a (long, multi-line) TensorFlow error."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    for ln in lines:
        if "unsupported operations" in ln.lower() or "xla" in ln.lower():
            return ln[:300]
    return (lines[-1] if lines else type(e).__name__)[:300]


def _plot_curves(path: Path, results: dict[str, Any]) -> None:
    plt = common.pyplot()
    tasks = results["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, (task, r) in zip(axes[0], tasks.items()):
        for name in ("tfrs_tutorial", "tfrs_lab"):
            pts = r[name]["curve"]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.axhline(r["target"], color="grey", linestyle="--", linewidth=1, label="target (tutorial, 3 epochs)")
        ax.set_xlabel("training seconds (validation excluded)")
        ax.set_ylabel(r["metric"])
        ax.set_title(task)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
