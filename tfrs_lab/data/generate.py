"""``python -m tfrs_lab.data.generate``: MovieLens-25M-shaped synthetic data as own-data Parquet.

Examples::

    python -m tfrs_lab.data.generate --interactions 25M --output-dir data/synthetic-25M
    python -m tfrs_lab.train retrieval --data data/synthetic-25M/dataset.yaml --output-dir runs/s25m

Writes ``dataset.yaml`` (the own-data spec), ``interactions/part-*.parquet`` and ``items.parquet``
(:func:`tfrs_lab.data.synthetic.write_synthetic_parquet`) and prints one summary line.
"""

from __future__ import annotations

import time
from typing import Sequence

from tfrs_lab.cli import ArgumentParser, UsageError, run_cli
from tfrs_lab.data.synthetic import parse_count, write_synthetic_parquet

__all__ = ["build_parser", "main"]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tfrs_lab.data.generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--interactions", required=True, help="ratings to write: 20000, 20k, 1M, 25M ...")
    p.add_argument("--output-dir", required=True, help="directory to create (must not exist or be empty)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): same seed, same rows")
    p.add_argument("--clusters", type=int, default=20, help="planted taste clusters (default 20)")
    p.add_argument("--shard-rows", default="1M", help="ratings per Parquet shard (default 1M)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 written, 2 bad input: nothing written)."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        try:
            n = parse_count(args.interactions)
        except ValueError as e:
            raise UsageError(f"--interactions: {e}") from e
        try:
            shard_rows = parse_count(args.shard_rows)
        except ValueError as e:
            raise UsageError(f"--shard-rows: {e}") from e
        if args.clusters < 2:
            raise UsageError(f"--clusters must be >= 2, got {args.clusters}")
        start = time.perf_counter()
        try:
            out = write_synthetic_parquet(args.output_dir, interactions=n, seed=args.seed, num_clusters=args.clusters,
                                          shard_rows=shard_rows, overwrite=args.overwrite)
        except ValueError as e:  # a non-empty output directory
            raise UsageError(f"--output-dir: {e}") from e
        print(f"wrote {out.num_interactions} ratings of {out.num_users} users on {out.num_items} items in "
              f"{len(out.interaction_files)} shard(s) in {time.perf_counter() - start:.1f} s: --data {out.spec_path}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
