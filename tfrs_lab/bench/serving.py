"""The ``serving`` suite: latency and QPS of the built-in TF-Serving-protocol server.

``tfrs_lab`` never imports ``tfrs_lab.serving`` (docs/architecture.md#layers-and-imports), so this suite runs the serving
load test, ``python -m tfrs_lab.serving.bench``, as a child process and turns its JSON into this
suite's ``results.json``, a table and ``serving_latency.png``. Without ``--serving-model`` it
benchmarks a synthetic ScaNN export (``--serving-items`` random 64-d items) that the child builds.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tfrs_lab.bench import common

__all__ = ["run_serving", "ServingBenchError"]

logger = logging.getLogger(__name__)


class ServingBenchError(RuntimeError):
    """The serving load test failed; the message holds the tail of its output."""


def run_serving(output_dir: Path, *, model: str | None = None, items: int = 100_000, duration: float = 5.0,
                clients: str = "1,8,32", protocols: str = "grpc,rest", batching: str = "both",
                floor_seconds: float = 3.0, timeout: float = 1800.0, workers: str | None = None
                ) -> tuple[dict[str, Any], str]:
    """Runs the load test in a child process; writes ``results.json`` and ``serving_latency.png``.

    Args:
      model: export base path of a retrieval model (holding ``<version>/``); ``None`` = synthetic.
      items: synthetic catalogue size (ignored with ``model``).
      duration, clients, protocols, batching, floor_seconds: passed to ``tfrs_lab.serving.bench``.
      workers: the server's ``--workers`` settings, comma separated (``None``: one per core).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    raw = output_dir / "serving-bench.json"
    raw.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "tfrs_lab.serving.bench", "--output", str(raw), "--label", "bench",
           "--duration", str(duration), "--warmup", str(min(1.0, duration)), "--floor-seconds", str(floor_seconds),
           "--clients", clients, "--protocols", protocols, "--batching", batching,
           "--workers", workers or str(os.cpu_count() or 1)]
    if model:
        cmd += ["--model", f"retrieval={model}"]
    else:
        cmd += ["--build-synthetic", str(output_dir / f"synthetic-{items}"), "--items", str(items), "--dim", "64"]
    logger.info("serving: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not raw.is_file():
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise ServingBenchError(f"python -m tfrs_lab.serving.bench failed (exit {proc.returncode}):\n{tail}")
    record = json.loads(raw.read_text())["runs"]["bench"]
    settings = record["settings"]
    rows = [{"setting": f"{s.get('server', '')} {s['protocol']} batching={'on' if s['batching'] else 'off'} "
                        f"clients={s['clients']}".strip(),
             "qps": s.get("qps"), "p50_ms": s.get("p50_ms"), "p95_ms": s.get("p95_ms"), "p99_ms": s.get("p99_ms"),
             "errors": s.get("errors")} for s in settings]
    floor = record.get("floor_in_process", [{}])[0]
    results = {"suite": "serving", "machine": common.machine(), "model": model or f"synthetic ScaNN, {items} items",
               "floor_in_process_p50_ms": floor.get("p50_ms"), "settings": rows,
               "server_overhead_ms_at_1_client": record.get("server_overhead_ms_at_1_client"),
               "raw": str(raw)}
    _plot(output_dir / "serving_latency.png", rows, floor.get("p50_ms"))
    results["plots"] = [str(output_dir / "serving_latency.png")]
    common.write_results(output_dir, results)
    table = common.format_table(rows, ["qps", "p50_ms", "p95_ms", "p99_ms", "errors"], first="setting")
    table += f"\nin-process floor (same signature, no server): p50 {floor.get('p50_ms')} ms"
    return results, table


def _plot(path: Path, rows: list[dict[str, Any]], floor_ms: float | None) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in sorted({r["setting"].rsplit(" clients=", 1)[0] for r in rows}):
        pts = [r for r in rows if r["setting"].startswith(label + " ") and r["qps"] and r["p50_ms"] is not None]
        ax.plot([r["qps"] for r in pts], [r["p50_ms"] for r in pts], marker="o", label=label)
        for r in pts:
            ax.annotate(r["setting"].rsplit("=", 1)[1], (r["qps"], r["p50_ms"]), fontsize=7)
    if floor_ms is not None:
        ax.axhline(floor_ms, color="grey", linestyle="--", linewidth=1, label="in-process floor")
    ax.set_xlabel("QPS")
    ax.set_ylabel("latency p50 (ms)")
    ax.set_title("built-in server, top-k retrieval, labels = concurrent clients")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
