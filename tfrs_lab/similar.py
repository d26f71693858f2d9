"""``python -m tfrs_lab.similar``: print the items most similar to an item, with titles.

Examples::

    python -m tfrs_lab.similar --model-dir runs/ae/export/autoencoder/1 --item-id 50 --k 10
    python -m tfrs_lab.similar --model-dir runs/quickstart --item-id 1     # a run directory works too

Reads the export's ``similar_items`` signature (every retrieval, sequential and autoencoder export
has one) and its ``assets.extra/item_titles.tsv``.
"""

from __future__ import annotations

import sys
from typing import Sequence

from tfrs_lab.cli import ArgumentParser, UsageError, configure_logging, run_cli
from tfrs_lab.export.signatures import legacy_flag_error

__all__ = ["build_parser", "main"]


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tfrs_lab.similar", description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", required=True,
                   help="export version dir, export/<name> (latest version) or a run directory")
    p.add_argument("--item-id", required=True, help="item id from the model's catalogue, e.g. 50 (Star Wars in MovieLens)")
    p.add_argument("--k", type=int, default=10, help="how many similar items to print (default 10)")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 2 user error)."""

    def body() -> int:
        renamed = legacy_flag_error(sys.argv[1:] if argv is None else argv)
        if renamed:
            raise UsageError(renamed)
        args = build_parser().parse_args(argv)
        if args.k < 1:
            raise UsageError(f"--k must be >= 1, got {args.k}")
        configure_logging(args.verbose)
        from tfrs_lab.export.similar import SimilarItemsError, similar_items

        try:
            title, answer = similar_items(args.model_dir, args.item_id, args.k)
        except SimilarItemsError as e:
            raise UsageError(str(e)) from e
        print(f"items similar to {args.item_id} {title}".rstrip() + ":")
        for rank, (item_id, item_title, score) in enumerate(answer, 1):
            print(f"{rank:3d}. {item_id:>6s}  {score:6.3f}  {item_title}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
