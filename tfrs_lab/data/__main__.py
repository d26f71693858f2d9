"""``python -m tfrs_lab.data prepare``: read your own data once into a prepared dataset directory
(integer-encoded columns, vocabularies, catalogue, per-user sequence index; docs/own-data.md).

Examples::

    python -m tfrs_lab.data prepare --interactions plays.csv --columns user=uid,item=sku,rating=plays,time=ts
    python -m tfrs_lab.data prepare --data spec.yaml --output-dir /data/prepared

Prints the dataset directory on the first line and its counts on the second. A second run with the
same files and spec reuses the directory (``<output-dir>/<name>-<fingerprint>``). Bad input: one
``error:`` line, exit code 2, nothing written.
"""

from __future__ import annotations

from typing import Sequence

from tfrs_lab.cli import ArgumentParser, UsageError, configure_logging, run_cli
from tfrs_lab.train import add_own_data_arguments, own_data_source


def build_parser() -> ArgumentParser:
    """The ``python -m tfrs_lab.data`` parser (one command: ``prepare``)."""
    p = ArgumentParser(prog="python -m tfrs_lab.data", description=__doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    prep = commands.add_parser("prepare", help="prepare your own data (cached by fingerprint)")
    add_own_data_arguments(prep)
    prep.add_argument("--output-dir", metavar="DIR", help="the folder of prepared datasets; the dataset goes to "
                      "DIR/<name>-<fingerprint> (default: $TFRS_LAB_DATA_DIR/prepared, else "
                      "~/.cache/tfrs_lab/tfds/prepared)")
    prep.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 2 user error)."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        configure_logging(args.verbose)
        from tfrs_lab.data.prepared import prepare_dataset
        from tfrs_lab.data.spec import SourceSpec
        from tfrs_lab.schema import build

        source = own_data_source(args)
        if source is None:
            raise UsageError("prepare needs your data: --interactions FILE --columns user=COLUMN,item=COLUMN, or "
                             "--data SPEC.yaml")
        dataset = prepare_dataset(build(SourceSpec, source, "data.source"), cache_dir=args.output_dir)
        c = dataset.manifest["counts"]
        print(dataset.path)
        print(f"{c['interactions']} interactions, {c['users']} users, {c['items']} items, {c['categories']} categories")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
