"""``python -m tfrs_lab.data prepare``: read your own data once into a prepared dataset directory
(integer-encoded columns, vocabularies, catalogue, per-user sequence index; docs/own-data.md).

Examples::

    python -m tfrs_lab.data prepare --interactions plays.csv --columns user=uid,item=sku,rating=plays,time=ts
    python -m tfrs_lab.data prepare --data spec.yaml --output-dir /data/prepared
    python -m tfrs_lab.data prepare --data spec.yaml --output-dir /shared/prepared --runner DirectRunner \
        --beam-option direct_num_workers=2

``--runner`` runs the same preparation as an Apache Beam pipeline (``pip install 'tfrs-lab[beam]'``;
docs/own-data.md#preparing-with-apache-beam); the files it writes are identical.

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
    prep.add_argument("--runner", metavar="RUNNER", help="run the preparation as an Apache Beam pipeline on this "
                      "runner (DirectRunner, DataflowRunner, FlinkRunner, SparkRunner, ...; needs "
                      "pip install 'tfrs-lab[beam]'); the output dir and the sources must be on a filesystem every "
                      "worker mounts")
    prep.add_argument("--beam-option", metavar="KEY=VALUE", action="append", default=[],
                      help="a Beam pipeline option passed through (repeatable), e.g. project=P, region=R, "
                      "temp_location=gs://B/tmp, flink_master=HOST:8081, spark_master_url=spark://HOST:7077")
    prep.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 2 user error)."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        configure_logging(args.verbose)
        from tfrs_lab.data.prepared import prepare_dataset
        from tfrs_lab.data.filesystem import is_url, join, local_path
        from tfrs_lab.data.spec import SourceSpec
        from tfrs_lab.schema import build

        source = own_data_source(args)
        if source is None:
            raise UsageError("prepare needs your data: --interactions FILE --columns user=COLUMN,item=COLUMN, or "
                             "--data SPEC.yaml")
        if args.beam_option and not args.runner:
            raise UsageError("--beam-option needs --runner (e.g. --runner DirectRunner)")
        spec = build(SourceSpec, source, "data.source")
        if args.runner:
            from tfrs_lab.data.beam_prepare import prepare_dataset_beam

            dataset = prepare_dataset_beam(spec, runner=args.runner, beam_options=args.beam_option,
                                           cache_dir=args.output_dir)
        else:
            dataset = prepare_dataset(spec, cache_dir=args.output_dir)
        c = dataset.manifest["counts"]
        print(join(args.output_dir, dataset.path.name) if is_url(local_path(args.output_dir)) else dataset.path)
        print(f"{c['interactions']} interactions, {c['users']} users, {c['items']} items, {c['categories']} categories")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
