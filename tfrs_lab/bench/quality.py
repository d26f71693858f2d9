"""The ``quality`` suite: our models (default configs) and peers on the same deterministic splits.

``hash`` split: popularity, the TFRS basic-retrieval and basic-ranking tutorial recipes, Surprise
SVD / SVD++ (optional), our retrieval and ranking models. ``leave-last-out``: popularity, item-kNN,
implicit ALS / BPR, EASE (λ chosen on validation), the tutorial retrieval recipe, our retrieval and
sequential models. Every method is scored by the same evaluator
(docs/architecture.md#metric-definitions); our models run the full ``train`` pipeline (their run
directories, with ``report.html``, are kept under ``<output>/runs/<task>-<split>-seed<seed>``).

Seeds: every method with randomness (ours, the tutorial recipes, Surprise, implicit) runs once per
seed of ``Context.seeds`` and reports the mean plus ``<metric>_std`` (population std across seeds,
with two or more seeds) and ``seeds``; seed offset ``i`` is added to the method's own default seed
(``train.seed`` of our configs, 42 for the tutorials, 0 for Surprise and implicit), so one seed
reproduces the single-seed figures. Popularity, item-kNN and EASE are deterministic: one run, no
``_std``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tfrs_lab.bench import common

__all__ = ["Context", "KS", "METHODS", "PLOT_METRICS", "run_quality", "TABLE_COLUMNS"]

logger = logging.getLogger(__name__)

KS = {"hash": (10, 50, 100), "leave-last-out": (10, 50)}
TABLE_COLUMNS = ("hit_rate@10", "hit_rate@100", "recall@10", "ndcg@10", "rmse", "train_seconds")
PLOT_METRICS = ("hit_rate@10", "hit_rate@100", "recall@10", "ndcg@10", "rmse")


@dataclass
class Context:
    """What every method gets: the data, the split, and the run options."""

    data: Any
    split: Any
    ks: tuple[int, ...]
    run_root: Path
    data_options: dict[str, Any]
    epochs: int | None = None
    seeds: tuple[int, ...] = (0,)
    overrides: Sequence[str] = field(default_factory=tuple)


def _per_seed(ctx: Context, run_one: Callable[[int], dict[str, Any]]) -> dict[str, Any]:
    """``run_one(offset)`` for every seed offset in ``ctx.seeds``, folded into one row (mean, ``_std``)."""
    return common.mean_over_seeds([run_one(offset) for offset in ctx.seeds])


def _ours(task: str, ctx: Context) -> dict[str, Any]:
    """Our ``task`` with its default config (``configs/<task>.yaml``) on ``ctx``'s data, once per seed
    (``train.seed`` = the config's seed + offset); the run directories are listed in ``run_dirs``."""
    from tfrs_lab.config import default_config_file, load_config
    from tfrs_lab.training.runner import run_task
    from tfrs_lab.training.task import TaskInputs

    extra: dict[str, Any] = {"data": {**ctx.data_options, "split": ctx.split.name}}
    if ctx.epochs is not None:
        extra["train"] = {"epochs": ctx.epochs}
    overrides = [*ctx.overrides, "export.verify=false"]
    files = [default_config_file(task)]
    base_seed = load_config(task, files, overrides, extra=extra).train.seed
    run_dirs: list[str] = []

    def run_one(offset: int) -> dict[str, Any]:
        seed = base_seed + offset
        cfg = load_config(task, files, [*overrides, f"train.seed={seed}"], extra=extra)
        run_dir = ctx.run_root / f"{task}-{ctx.split.name}-seed{seed}"
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        metrics = run_task(task, cfg, run_dir, TaskInputs(ctx.data), verbose=0).metrics
        run_dirs.append(str(run_dir))
        return metrics

    out = _per_seed(ctx, run_one)
    out["run_dirs"] = run_dirs
    return out


def _tutorial_retrieval(ctx: Context) -> dict[str, Any]:
    from tfrs_lab.bench.peers import TUTORIAL_EPOCHS, tutorial_retrieval_metrics

    return _per_seed(ctx, lambda offset: tutorial_retrieval_metrics(
        ctx.data, ctx.split, ctx.ks, epochs=ctx.epochs or TUTORIAL_EPOCHS, seed=42 + offset))


def _tutorial_ranking(ctx: Context) -> dict[str, Any]:
    from tfrs_lab.bench.peers import TUTORIAL_EPOCHS, tutorial_ranking_metrics

    return _per_seed(ctx, lambda offset: tutorial_ranking_metrics(
        ctx.data, ctx.split, epochs=ctx.epochs or TUTORIAL_EPOCHS, seed=42 + offset))


def _peer(name: str, *args, **kwargs) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        from tfrs_lab.bench import peers

        fn = getattr(peers, name)
        start = time.perf_counter()
        if name == "surprise_metrics":
            out = _per_seed(ctx, lambda offset: fn(ctx.data, ctx.split, *args, seed=offset, **kwargs))
        elif name == "implicit_metrics":
            out = fn(ctx.data, ctx.split, ctx.ks, *args, seeds=ctx.seeds, **kwargs)
        else:
            out = fn(ctx.data, ctx.split, ctx.ks, *args, **kwargs)
        out.setdefault("train_seconds", round(time.perf_counter() - start, 3))
        return out

    return run


METHODS: dict[str, tuple[tuple[str, ...], Callable[[Context], dict[str, Any]]]] = {
    "popularity": (("hash", "leave-last-out"), _peer("popularity_metrics")),
    "item_knn": (("leave-last-out",), _peer("item_knn_metrics")),
    "implicit_als": (("leave-last-out",), _peer("implicit_metrics", "als")),
    "implicit_bpr": (("leave-last-out",), _peer("implicit_metrics", "bpr")),
    "ease": (("leave-last-out",), _peer("ease_metrics")),
    "surprise_svd": (("hash",), _peer("surprise_metrics", "svd")),
    "surprise_svdpp": (("hash",), _peer("surprise_metrics", "svdpp")),
    "tfrs_tutorial_retrieval": (("hash", "leave-last-out"), _tutorial_retrieval),
    "tfrs_tutorial_ranking": (("hash",), _tutorial_ranking),
    "tfrs_lab_retrieval": (("hash", "leave-last-out"), lambda ctx: _ours("retrieval", ctx)),
    "tfrs_lab_ranking": (("hash",), lambda ctx: _ours("ranking", ctx)),
    "tfrs_lab_sequential": (("leave-last-out",), lambda ctx: _ours("sequential", ctx)),
}
"""Method -> (splits it runs on, function returning its metrics)."""


def run_quality(data, output_dir: Path, *, data_options: dict[str, Any], methods: Sequence[str] | None = None,
                epochs: int | None = None, seeds: int = 3, overrides: Sequence[str] = (),
                splits: Sequence[str] = tuple(KS)) -> tuple[dict[str, Any], str]:
    """Runs ``methods`` (default: all) on ``splits`` (default both) of ``data``; writes ``results.json`` and
    ``quality.png`` into ``output_dir``. Returns ``(results, table)``.

    ``epochs`` caps every trained model (ours and the tutorials; ``None`` = their defaults);
    ``seeds`` = number of seeds every seeded method runs with (mean ± std, see the module docstring).
    Optional peers whose package is missing are listed under ``skipped`` with the reason.
    """
    from tfrs_lab.bench.peers import PeerUnavailable
    from tfrs_lab.data.splits import make_split

    output_dir.mkdir(parents=True, exist_ok=True)
    methods = list(methods or METHODS)
    results: dict[str, Any] = {"suite": "quality", "dataset": data.dataset, "machine": common.machine(),
                               "epochs": epochs, "seeds": seeds, "splits": {}, "skipped": {}}
    rows = []
    for split_name, ks in KS.items():
        if split_name not in splits:
            continue
        split = make_split(split_name, data.ratings)
        ctx = Context(data=data, split=split, ks=ks, run_root=output_dir / "runs", data_options=data_options,
                      epochs=epochs, seeds=tuple(range(seeds)), overrides=tuple(overrides))
        row: dict[str, Any] = {}
        for name in methods:
            method_splits, fn = METHODS[name]
            if split_name not in method_splits:
                continue
            logger.info("quality: %s on %s", name, split_name)
            try:
                row[name] = fn(ctx)
            except PeerUnavailable as e:
                logger.warning("skipping %s: %s", name, e)
                results["skipped"][name] = str(e)
                continue
            rows.append({"method": f"{name} [{split_name}]", **row[name]})
        results["splits"][split_name] = row
    plot = common.bar_chart(output_dir / "quality.png", rows, PLOT_METRICS,
                            f"{data.dataset}: test metrics per method (same splits, same evaluator)")
    results["plots"] = [str(plot)] if plot else []
    common.write_results(output_dir, results)
    table = common.format_table([_with_std(r) for r in rows], TABLE_COLUMNS)
    if results["skipped"]:
        table += "\nskipped: " + "; ".join(f"{k} ({v})" for k, v in results["skipped"].items())
    return results, table


def _with_std(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` for the printed table: a metric column with ``<metric>_std`` reads ``mean ± std``."""
    return {k: f"{v:.4f} ± {row[f'{k}_std']:.4f}" if k in PLOT_METRICS and f"{k}_std" in row else v
            for k, v in row.items()}
