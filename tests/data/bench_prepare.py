"""Time and peak memory of ``python -m tfrs_lab.data prepare`` on generated interactions (a
benchmark helper, not a test; the official scale benchmark is ``python -m tfrs_lab.bench scale``).

    python tests/data/bench_prepare.py --rows 1000000 --format parquet --workdir /tmp/bench-prepare

Writes ``rows`` seeded interactions in the ML-25M ratings layout (``userId``, ``movieId`` integers,
``rating`` in half stars, ``timestamp`` unix seconds; Zipf-like item popularity) as CSV or Parquet,
then runs the CLI twice in fresh processes under ``/usr/bin/time``: a cold preparation and a cache
hit (``--read-source``: and ``read_source``, the in-memory reader, for comparison; ``--check``:
prepared == ``read_source``). Prints one JSON line per run: seconds (wall) and peak RSS (MiB).
With the own-data flags (``--interactions ... --columns ...`` or ``--data SPEC.yaml``) it measures
your files instead of generated ones::

    python tests/data/bench_prepare.py --workdir /tmp/bench-prepare --read-source --check \\
        --interactions $LFM/user_artists.dat --columns user=userID,item=artistID,rating=weight,label=implicit,time=weight \\
        --items $LFM/artists.dat --item-columns id=id,text=name
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

__all__ = ["check_equal", "main", "write_interactions"]


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
_READ_SOURCE = ("import json, sys; from tfrs_lab.data import read_source; from tfrs_lab.data.spec import SourceSpec; "
                "from tfrs_lab.schema import build; "
                "d = read_source(build(SourceSpec, json.loads(sys.argv[1]), 'data.source')); "
                "print(d.num_ratings, 'interactions')")
_OWN_FLAGS = ("interactions", "columns", "items", "item_columns", "data")


def check_equal(source: dict, out: Path) -> dict[str, bool]:
    """Whether the prepared dataset of ``source`` decodes to exactly what ``read_source`` reads and
    its sequence index is ``sequence_order``; raises AssertionError naming the column otherwise."""
    from tfrs_lab.data import prepare_dataset, read_source, sequence_order
    from tfrs_lab.data.spec import SourceSpec
    from tfrs_lab.schema import build

    spec = build(SourceSpec, source, "data.source")
    ds = prepare_dataset(spec, cache_dir=out)
    a, b = read_source(spec), ds.to_data()
    for table in ("ratings", "movies"):
        for key, x in getattr(a, table).items():
            y = getattr(b, table)[key]
            assert x.dtype == y.dtype and x.shape == y.shape and (x == y).all(), key
    assert (np.asarray(ds.sequence_rows) == sequence_order(a.ratings)).all(), "sequence_rows"
    return {"equal": True}


def _run(args: list[str]) -> dict[str, float]:
    """Wall seconds and peak RSS of ``python ARGS`` in a fresh process, and its last output line."""
    proc = subprocess.run(["/usr/bin/time", "-f", "%e %M", sys.executable, *args], capture_output=True, text=True,
                          check=True, env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    seconds, kib = proc.stderr.strip().splitlines()[-1].split()
    return {"seconds": float(seconds), "peak_rss_mib": round(int(kib) / 1024, 1),
            "counts": proc.stdout.strip().splitlines()[-1]}


def main(argv: list[str] | None = None) -> int:
    from tfrs_lab.data.spec import quick_source
    from tfrs_lab.train import add_own_data_arguments, own_data_source

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="generated interactions (without own-data flags)")
    p.add_argument("--format", choices=("csv", "parquet"), default="parquet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--read-source", action="store_true", help="also time read_source (today's in-memory reader)")
    p.add_argument("--check", action="store_true", help="also check prepared == read_source (in this process)")
    add_own_data_arguments(p)  # instead of generated data: your files (e.g. Last.fm)
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    source = own_data_source(args)
    if source is None:
        path = args.workdir / f"ratings-{args.rows}-{args.seed}.{args.format}"
        if not path.exists():
            write_interactions(path, args.rows, seed=args.seed)
        source = quick_source(str(path), _COLUMNS)
        flags = ["--interactions", str(path), "--columns", _COLUMNS]
        what = {"rows": args.rows, "format": args.format, "bytes": path.stat().st_size}
    else:
        flags = [x for f in _OWN_FLAGS if getattr(args, f) is not None for x in (f"--{f.replace('_', '-')}",
                                                                                  getattr(args, f))]
        what = {"source": " ".join(flags)}
    out = args.workdir / f"prepared-{abs(hash(json.dumps(source, sort_keys=True))) % 10**8}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    runs = {"cold": ["-m", "tfrs_lab.data", "prepare", *flags, "--output-dir", str(out)]}
    runs["cache hit"] = runs["cold"]
    if args.read_source:
        runs["read_source"] = ["-c", _READ_SOURCE, json.dumps(source)]
    for run, argv_run in runs.items():
        print(json.dumps({**what, "run": run, **_run(argv_run)}), flush=True)
    if args.check:
        print(json.dumps({**what, "run": "check", **check_equal(source, out)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
