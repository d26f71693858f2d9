"""Time and peak memory of ``python -m tfrs_lab.data prepare`` on generated interactions (a
benchmark helper, not a test; the official scale benchmark is ``python -m tfrs_lab.bench scale``).

    python tests/data/bench_prepare.py --rows 1000000 --format parquet --workdir /tmp/bench-prepare

Writes ``rows`` seeded interactions in the ML-25M ratings layout (``userId``, ``movieId`` integers,
``rating`` in half stars, ``timestamp`` unix seconds; Zipf-like item popularity) as CSV or Parquet,
then runs the CLI twice in fresh processes under ``/usr/bin/time``: a cold preparation and a cache
hit (``--read-source``: and ``read_source``, the in-memory reader, for comparison). Prints one JSON
line per run: seconds (wall) and peak RSS (MiB).
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


_COLUMNS = "user=userId,item=movieId,rating=rating,time=timestamp"
_READ_SOURCE = ("import sys; from tfrs_lab.data import read_source; from tfrs_lab.data.spec import SourceSpec, "
                "quick_source; from tfrs_lab.schema import build; "
                "d = read_source(build(SourceSpec, quick_source(sys.argv[1], sys.argv[2]), 'data.source')); "
                "print(d.num_ratings, 'interactions')")


def _run(args: list[str]) -> dict[str, float]:
    """Wall seconds and peak RSS of ``python ARGS`` in a fresh process, and its last output line."""
    proc = subprocess.run(["/usr/bin/time", "-f", "%e %M", sys.executable, *args], capture_output=True, text=True,
                          check=True, env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    seconds, kib = proc.stderr.strip().splitlines()[-1].split()
    return {"seconds": float(seconds), "peak_rss_mib": round(int(kib) / 1024, 1),
            "counts": proc.stdout.strip().splitlines()[-1]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--format", choices=("csv", "parquet"), default="parquet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--read-source", action="store_true", help="also time read_source (today's in-memory reader)")
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    source = args.workdir / f"ratings-{args.rows}-{args.seed}.{args.format}"
    if not source.exists():
        write_interactions(source, args.rows, seed=args.seed)
    out = args.workdir / f"prepared-{args.format}-{args.rows}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    runs = {"cold": ["-m", "tfrs_lab.data", "prepare", "--interactions", str(source), "--columns", _COLUMNS,
                     "--output-dir", str(out)]}
    runs["cache hit"] = runs["cold"]
    if args.read_source:
        runs["read_source"] = ["-c", _READ_SOURCE, str(source), _COLUMNS]
    for run, argv_run in runs.items():
        print(json.dumps({"rows": args.rows, "format": args.format, "bytes": source.stat().st_size, "run": run,
                          **_run(argv_run)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
