"""Time and peak memory of ``python -m tfrs_lab.data prepare`` on generated interactions (a
benchmark helper, not a test; the official scale benchmark is ``python -m tfrs_lab.bench scale``).

    python tests/data/bench_prepare.py --rows 1000000 --format parquet --workdir /tmp/bench-prepare

Writes ``rows`` seeded interactions in the ML-25M ratings layout (``userId``, ``movieId`` integers,
``rating`` in half stars, ``timestamp`` unix seconds; Zipf-like item popularity) as CSV or Parquet,
then runs the CLI twice in fresh processes under ``/usr/bin/time``: a cold preparation and a cache
hit. Prints one JSON line per run: seconds (wall) and peak RSS (MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

__all__ = ["main", "write_interactions"]


def write_interactions(path: Path, rows: int, *, seed: int = 0) -> Path:
    """``rows`` interactions of ~rows/150 users over ~rows/400 items (at least 1000), as CSV or Parquet by suffix."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    users = max(rows // 150, 10)
    items = max(rows // 400, 1000)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.9
    table = pa.table({
        "userId": rng.integers(1, users + 1, rows, dtype=np.int64),
        "movieId": rng.choice(items, rows, p=popularity / popularity.sum()).astype(np.int64) + 1,
        "rating": rng.integers(1, 11, rows).astype(np.float64) / 2,
        "timestamp": 1_000_000_000 + rng.integers(0, 600_000_000, rows, dtype=np.int64),
    })
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return path


def _run(source: Path, out: Path) -> dict[str, float]:
    cmd = ["/usr/bin/time", "-f", "%e %M", sys.executable, "-m", "tfrs_lab.data", "prepare", "--interactions",
           str(source), "--columns", "user=userId,item=movieId,rating=rating,time=timestamp", "--output-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    seconds, kib = proc.stderr.strip().splitlines()[-1].split()
    return {"seconds": float(seconds), "peak_rss_mib": round(int(kib) / 1024, 1),
            "counts": proc.stdout.strip().splitlines()[-1]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--format", choices=("csv", "parquet"), default="parquet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, required=True)
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    source = args.workdir / f"ratings-{args.rows}-{args.seed}.{args.format}"
    if not source.exists():
        write_interactions(source, args.rows, seed=args.seed)
    out = args.workdir / f"prepared-{args.format}-{args.rows}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    for run in ("cold", "cache hit"):
        print(json.dumps({"rows": args.rows, "format": args.format, "bytes": source.stat().st_size, "run": run,
                          **_run(source, out)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
