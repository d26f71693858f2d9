"""Plumbing shared by the benchmark suites: results files, tables, plots and timing statistics.

Every suite writes ``<output_dir>/results.json`` (through :func:`write_results`, atomically) and its
PNG plots next to it, and returns a short text table the CLI prints.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from tfrs_lab.training.report import pyplot  # noqa: F401  (the suites' one way to get pyplot)

__all__ = ["bar_chart", "format_table", "machine", "mean_over_seeds", "median_after_warmup", "percentiles",
           "RESULTS_FILE", "time_calls", "write_results"]

RESULTS_FILE = "results.json"


def machine() -> dict[str, Any]:
    """Facts about where the numbers were measured (CPU count, load, Python, TensorFlow)."""
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:  # not available on every platform
        pass
    return info


def write_results(output_dir: Path, results: dict[str, Any]) -> Path:
    """Writes ``results.json`` into ``output_dir`` (created) via a temporary file and rename."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RESULTS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    tmp.replace(path)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def mean_over_seeds(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One row from the rows of runs that differ only in their seed.

    Every numeric entry (not bool) present in all runs becomes its mean; with more than one run also
    ``<key>_std``, the population standard deviation across runs; ``seeds`` = ``len(runs)``.
    """
    if not runs:
        raise ValueError("mean_over_seeds needs at least one run")
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            and all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool) for r in runs)]
    out: dict[str, Any] = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    if len(runs) > 1:
        out.update({f"{k}_std": float(np.std([r[k] for r in runs])) for k in keys})
    out["seeds"] = len(runs)
    return out


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """``p50_ms``, ``p99_ms`` and ``mean_ms`` of latencies given in seconds."""
    a = np.asarray(samples_s, dtype=np.float64) * 1e3
    if not len(a):
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "mean_ms": float("nan")}
    return {"p50_ms": round(float(np.percentile(a, 50)), 4), "p99_ms": round(float(np.percentile(a, 99)), 4),
            "mean_ms": round(float(a.mean()), 4)}


def time_calls(fn: Callable[[int], Any], repeats: int, warmup: int = 3) -> list[float]:
    """Seconds of ``repeats`` calls ``fn(i)`` after ``warmup`` unmeasured calls."""
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def median_after_warmup(values: Sequence[float], warmup: int = 1) -> float:
    """Median of ``values`` without the first ``warmup`` ones (all of them when too few)."""
    rest = list(values[warmup:]) if len(values) > warmup else list(values)
    return float(np.median(rest)) if rest else float("nan")


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], first: str = "method") -> str:
    """A fixed-width text table: one line per row, ``-`` for missing cells, floats to 4 digits."""
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "-"
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    header = [first, *columns]
    body = [[cell(r.get(c)) for c in header] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(b, widths))) for b in body]
    return "\n".join(lines)


def bar_chart(path: Path, rows: Sequence[dict[str, Any]], metrics: Iterable[str], title: str,
              label: str = "method") -> Path | None:
    """One bar panel per metric (methods without the metric are left out), with ``<metric>_std`` as
    error bars where a row has it; ``None`` if nothing to draw."""
    metrics = [m for m in metrics if any(isinstance(r.get(m), (int, float)) for r in rows)]
    if not metrics:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        have = [r for r in rows if isinstance(r.get(m), (int, float))]
        ax.barh([str(r[label]) for r in have], [float(r[m]) for r in have],
                xerr=[float(r.get(f"{m}_std", 0.0)) for r in have],  # ± std across seeds, where run
                color=["tab:orange" if str(r[label]).startswith("tfrs_lab") else "tab:blue" for r in have])
        ax.invert_yaxis()
        ax.set_title(m + (" (lower is better)" if m in ("rmse", "mae") else ""))
        ax.tick_params(axis="y", labelsize=8)
        for y, r in enumerate(have):
            ax.text(float(r[m]), y, f" {float(r[m]):.3f}", va="center", fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
