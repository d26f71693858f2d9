"""``python -m tfrs_lab.bench <suite>``: benchmarks with peers measured side by side, in one run.

Examples::

    python -m tfrs_lab.bench quality --data-zip ml-100k.zip --output-dir bench-out
    python -m tfrs_lab.bench quality --interactions user_artists.dat --columns user=userID,item=artistID,rating=weight,label=implicit --splits leave-last-out
    python -m tfrs_lab.bench training --data-zip ml-100k.zip --output-dir bench-out
    python -m tfrs_lab.bench retrieval-index --output-dir bench-out
    python -m tfrs_lab.bench serving --output-dir bench-out
    python -m tfrs_lab.bench select --task retrieval --data-root ../data --output-dir bench-out
    python -m tfrs_lab.bench all --data-zip ml-100k.zip --output-dir bench-out

Each suite writes ``<output-dir>/<suite>/results.json`` and PNG plots and prints a short table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from tfrs_lab.cli import ArgumentParser, UsageError, configure_logging, run_cli
from tfrs_lab.train import add_own_data_arguments, own_data_source

logger = logging.getLogger(__name__)

SUITES = ("quality", "training", "retrieval-index", "serving")
"""The suites ``all`` runs; ``select`` (several data sets, many runs) runs only when named."""


def _int_list(flag: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v.replace("_", "")) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise UsageError(f"{flag} must be comma-separated positive integers, got {text!r}") from e
    if not values or min(values) <= 0:
        raise UsageError(f"{flag} must be comma-separated positive integers, got {text!r}")
    return values


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tfrs_lab.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("suite", choices=(*SUITES, "select", "all"), help="which benchmark to run")
    p.add_argument("--output-dir", default="bench-out", help="results go to <output-dir>/<suite>/ (default bench-out)")
    p.add_argument("--dataset", default="movielens/100k-ratings", help="as in train; 'synthetic' for a quick run")
    p.add_argument("--data-zip", help="official MovieLens zip (offline)")
    p.add_argument("--data-dir", help="prepared TFDS data cache")
    add_own_data_arguments(p)
    p.add_argument("--splits", default="hash,leave-last-out", help="quality: protocols to run (default both)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="config override for our models (quality, training), e.g. --set train.batch_size=512")
    p.add_argument("--methods", help="quality: comma-separated subset of methods (default all)")
    p.add_argument("--epochs", type=int, help="quality/training: cap on epochs of every trained model")
    p.add_argument("--seeds", type=int,
                   help="quality: seeds per seeded method (ours, tutorials, Surprise, implicit): mean ± std "
                        "(default 3); select: seeds per candidate (default: the selection file's)")
    p.add_argument("--task", help="select: the task whose defaults are selected (retrieval, sequential, ...)")
    p.add_argument("--selection", help="select: selection file (default: the shipped selection/<task>.yaml)")
    p.add_argument("--data-root", default=".",
                   help="select: directory that {data_root} in the selection file's data paths stands for")
    p.add_argument("--throughput-epochs", type=int, default=4,
                   help="training: epochs per throughput variant, the first is warm-up (default 4)")
    p.add_argument("--variants", help="training: comma-separated throughput variants (default all: "
                   "tutorial_metrics,tutorial,default,batch4,batch16,no_prefetch,parallel_batch,jit)")
    p.add_argument("--sizes", default="10000,100000,1000000", help="retrieval-index: catalogue sizes")
    p.add_argument("--dim", type=int, default=64, help="retrieval-index: embedding size")
    p.add_argument("--queries", type=int, default=200, help="retrieval-index: timed single queries per method")
    p.add_argument("--batches", type=int, default=10, help="retrieval-index: timed batches of 256 per method")
    p.add_argument("--no-savedmodel", action="store_true", help="retrieval-index: skip the SavedModel path")
    p.add_argument("--serving-model", help="serving: retrieval export base (holding <version>/); default synthetic")
    p.add_argument("--serving-items", type=int, default=100_000, help="serving: synthetic catalogue size")
    p.add_argument("--serving-duration", type=float, default=5.0, help="serving: measured seconds per setting")
    p.add_argument("--serving-clients", default="1,8,32", help="serving: concurrent clients")
    p.add_argument("--serving-protocols", default="grpc,rest", help="serving: grpc, rest or both")
    p.add_argument("--serving-batching", choices=("off", "on", "both"), default="both")
    p.add_argument("--serving-floor-seconds", type=float, default=3.0,
                   help="serving: seconds of in-process (no server) calls measured as the floor")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def _validate(args) -> None:
    from tfrs_lab.bench.quality import METHODS

    for flag, value in (("--epochs", args.epochs), ("--seeds", args.seeds), ("--throughput-epochs", args.throughput_epochs),
                        ("--dim", args.dim), ("--queries", args.queries), ("--batches", args.batches),
                        ("--serving-items", args.serving_items), ("--serving-duration", args.serving_duration),
                        ("--serving-floor-seconds", args.serving_floor_seconds)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be > 0, got {value}")
    if args.throughput_epochs < 2:
        raise UsageError(f"--throughput-epochs must be >= 2 (the first epoch is warm-up), got {args.throughput_epochs}")
    unknown = [s for s in args.splits.split(",") if s not in ("hash", "leave-last-out")]
    if unknown or not args.splits:
        raise UsageError(f"--splits: unknown protocol(s) {', '.join(unknown)}; choose hash, leave-last-out or both")
    if args.methods:
        unknown = [m for m in args.methods.split(",") if m not in METHODS]
        if unknown:
            raise UsageError(f"--methods: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if args.variants:
        from tfrs_lab.bench.training import VARIANTS

        unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
        if unknown:
            raise UsageError(f"--variants: unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    _int_list("--sizes", args.sizes)
    _int_list("--serving-clients", args.serving_clients)
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output-dir {str(out)!r} is a file: choose a directory")
    if args.serving_model and not Path(args.serving_model).is_dir():
        raise UsageError(f"--serving-model {args.serving_model!r} is not a directory: pass an export base "
                         "such as runs/r1/export/retrieval")


def run_suite(suite: str, args, output_dir: Path) -> str:
    """Runs one suite into ``output_dir``; returns its table."""
    data_options = {"dataset": args.dataset, "data_zip": args.data_zip, "data_dir": args.data_dir}
    source = own_data_source(args)
    if source is not None:  # your own data (docs/own-data.md)
        data_options.update(dataset="own", source=source)
    if suite == "quality":
        from tfrs_lab.bench.quality import run_quality
        from tfrs_lab.config import default_config_file, load_config
        from tfrs_lab.training.runner import load_data

        cfg = load_config("retrieval", [default_config_file("retrieval")], args.overrides, extra={"data": data_options})
        data = load_data(cfg)
        methods = args.methods.split(",") if args.methods else None
        _, table = run_quality(data, output_dir, data_options=data_options, methods=methods, epochs=args.epochs,
                               seeds=args.seeds or 3, overrides=args.overrides,
                               splits=tuple(args.splits.split(",")))
    elif suite == "select":
        from tfrs_lab.bench.select import load_selection, run_select, selection_file

        if not args.task:
            raise UsageError("select needs --task (the task whose defaults are selected), e.g. --task retrieval")
        path = args.selection or selection_file(args.task)
        if not Path(path).is_file():
            raise UsageError(f"--selection {str(path)!r} does not exist: pass a selection file "
                             "(format: tfrs_lab/bench/select.py)")
        selection = load_selection(path, args.data_root)
        if selection.task != args.task:
            raise UsageError(f"--selection {str(path)!r} is for task {selection.task!r}, not --task {args.task!r}")
        _, table = run_select(selection, output_dir, seeds=args.seeds, epochs=args.epochs)
    elif suite == "training":
        from tfrs_lab.bench.training import run_training

        _, table = run_training(data_options, output_dir, epochs=args.epochs, throughput_epochs=args.throughput_epochs,
                                overrides=tuple(args.overrides),
                                **({"variants": tuple(args.variants.split(","))} if args.variants else {}))
    elif suite == "retrieval-index":
        from tfrs_lab.bench.index import run_index

        _, table = run_index(output_dir, sizes=_int_list("--sizes", args.sizes), dim=args.dim, single=args.queries,
                             batches=args.batches, savedmodel=not args.no_savedmodel)
    else:
        from tfrs_lab.bench.serving import run_serving

        _, table = run_serving(output_dir, model=args.serving_model, items=args.serving_items,
                               duration=args.serving_duration, clients=args.serving_clients,
                               protocols=args.serving_protocols, batching=args.serving_batching,
                               floor_seconds=args.serving_floor_seconds)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 a suite failed, 2 user error)."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        _validate(args)
        configure_logging(args.verbose)
        from tfrs_lab.bench.serving import ServingBenchError

        suites = SUITES if args.suite == "all" else (args.suite,)
        status = 0
        for suite in suites:
            out = Path(args.output_dir) / suite
            try:
                table = run_suite(suite, args, out)
            except ServingBenchError as e:
                print(f"{suite}: failed: {e}")
                status = 1
                continue
            print(f"== {suite} ({out / 'results.json'})")
            print(table)
        return status

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
