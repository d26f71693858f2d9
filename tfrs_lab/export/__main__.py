"""``python -m tfrs_lab.export <command>``: build serving exports from finished runs.

Commands::

    python -m tfrs_lab.export cascade --retrieval runs/r1 --ranking runs/k1 --candidates 100 --k 10 \\
        --output-dir serving/cascade

``cascade`` writes ONE SavedModel version ``DIR/<version>/`` that answers "top k for this user" in one
call: the retrieval run's top N candidates (the user's rated movies excluded), scored by the ranking
run's model, filtered (exclude / allow lists), best k first (docs/serving.md#retrieve--rank-cascade).

    python -m tfrs_lab.export reindex --run runs/r1 --items items.csv --item-columns id=id,text=title,categories=genres:|

``reindex`` embeds the run's catalogue plus the new items of the file through the trained candidate
tower (a new item's id is out of vocabulary; its text and categories count) and writes the next
export version ``RUN/export/<model_name>/<version + 1>/`` (or ``DIR/<version>/``), no retraining
(docs/tasks.md#new-items-without-retraining-reindex).
"""

from __future__ import annotations

from typing import Sequence

from tfrs_lab.cli import ArgumentParser, UsageError, configure_logging, run_cli

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = {"cascade": "retrieval top N -> ranking score -> filter -> top k, in one SavedModel",
            "reindex": "a retrieval run's index over its catalogue plus new items, as a new export version"}
"""Subcommand -> one-line summary (each has an ``_add_<name>`` parser and a ``_run_<name>`` body)."""


def _add_cascade(sub) -> None:
    p = sub.add_parser("cascade", help=COMMANDS["cascade"], description=COMMANDS["cascade"])
    p.add_argument("--retrieval", required=True, metavar="RUN", help="a `python -m tfrs_lab.train retrieval` run directory")
    p.add_argument("--ranking", required=True, metavar="RUN", help="a `python -m tfrs_lab.train ranking` run directory "
                                                                  "on the same catalogue")
    p.add_argument("--candidates", type=int, default=None, metavar="N",
                   help="retrieval candidates scored per request (default and maximum: the retrieval export's "
                        "export.k); also the largest k the `recommend` signature accepts")
    p.add_argument("--k", type=int, default=10, help="movies serving_default returns (default 10, <= --candidates)")
    p.add_argument("--output-dir", required=True, metavar="DIR",
                   help="the model's base path: the version is written to DIR/<version>/")
    p.add_argument("--version", type=int, default=None, help="version number (default: one above the highest in DIR)")
    p.add_argument("--no-verify", action="store_true", help="skip the fresh-process reload check")


def _run_cascade(args) -> int:
    from tfrs_lab.export.cascade import CascadeError, export_cascade

    try:
        path = export_cascade(args.retrieval, args.ranking, args.output_dir, candidates=args.candidates, k=args.k,
                              version=args.version, verify=not args.no_verify)
    except CascadeError as e:
        raise UsageError(str(e)) from e
    print(f"wrote {path}")
    return 0


def _add_reindex(sub) -> None:
    p = sub.add_parser("reindex", help=COMMANDS["reindex"], description=COMMANDS["reindex"])
    p.add_argument("--run", required=True, metavar="RUN", help="a `python -m tfrs_lab.train retrieval` run directory")
    p.add_argument("--items", required=True, metavar="FILE",
                   help="items table (CSV/TSV/Parquet/JSONL) with the new items; ids already in the catalogue "
                        "update nothing")
    p.add_argument("--item-columns", default=None, metavar="ROLES",
                   help="id=COLUMN[,text=COLUMN][,categories=COLUMN:SEP] (default: the run's own items columns, "
                        "else id=id,text=title,categories=genres)")
    p.add_argument("--output-dir", default=None, metavar="DIR",
                   help="the model's base path: the version is written to DIR/<version>/ "
                        "(default RUN/export/<model_name>)")
    p.add_argument("--version", type=int, default=None, help="version number (default: one above the highest)")
    p.add_argument("--no-verify", action="store_true", help="skip the fresh-process reload check")


def _run_reindex(args) -> int:
    from tfrs_lab.export.reindex import ReindexError, reindex

    try:
        done = reindex(args.run, args.items, item_columns=args.item_columns, output_dir=args.output_dir,
                       version=args.version, verify=not args.no_verify)
    except ReindexError as e:
        raise UsageError(str(e)) from e
    print(f"wrote {done.path} ({len(done.new_items)} new items, {done.existing_items} already in the catalogue)")
    return 0


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tfrs_lab.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    _add_cascade(sub)
    _add_reindex(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 2 user error)."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError(f"a command is required: choose one of {', '.join(COMMANDS)}")
        configure_logging(args.verbose)
        return {"cascade": _run_cascade, "reindex": _run_reindex}[args.command](args)

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
