"""``python -m tfrs_lab.bench <suite>``: benchmarks with peers measured side by side, in one run.

Examples::

    python -m tfrs_lab.bench quality --data-zip ml-100k.zip --output-dir bench-out
    python -m tfrs_lab.bench quality --interactions user_artists.dat --columns user=userID,item=artistID,rating=weight,label=implicit --splits leave-last-out
    python -m tfrs_lab.bench training --data-zip ml-100k.zip --output-dir bench-out
    python -m tfrs_lab.bench retrieval-index --output-dir bench-out
    python -m tfrs_lab.bench serving --output-dir bench-out
    python -m tfrs_lab.bench select --tasks retrieval --data-root ../data --output-dir bench-out
    python -m tfrs_lab.bench select --tasks sequential --datasets lastfm --data-root ../data --output-dir bench-out
    python -m tfrs_lab.bench scale --sizes 1M,5M,25M --tasks retrieval,ranking --output-dir bench-out
    python -m tfrs_lab.bench scale --tasks none --interactions user_artists.dat --columns user=userID,item=artistID --output-dir bench-out
    python -m tfrs_lab.bench all --data-zip ml-100k.zip --output-dir bench-out
    python -m tfrs_lab.bench cascade --cascade-retrieval runs/r1 --cascade-ranking runs/k1 --output-dir bench-out

Each suite writes ``<output-dir>/<suite>/results.json`` and PNG plots and prints a short table.
``all`` runs every suite but ``select``, ``cascade`` and ``scale`` (hours at 25M: run it on its own).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from tfrs_lab.cli import ArgumentParser, UsageError, configure_logging, run_cli
from tfrs_lab.train import add_own_data_arguments, own_data_source

logger = logging.getLogger(__name__)

SUITES = ("quality", "training", "retrieval-index", "serving")
"""The suites ``all`` runs; ``select`` (several data sets, many runs), ``cascade`` (needs two runs)
and ``scale`` (hours at 25M) run only when named."""


def _int_list(flag: str, text: str) -> tuple[int, ...]:
    """``"10k,1M,25_000"`` -> ``(10000, 1000000, 25000)``; UsageError naming ``flag`` otherwise."""
    from tfrs_lab.data.synthetic import parse_count

    try:
        values = tuple(parse_count(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise UsageError(f"{flag} must be comma-separated positive integers (10000, 10k, 1M), got {text!r}") from e
    if not values:
        raise UsageError(f"{flag} must be comma-separated positive integers (10000, 10k, 1M), got {text!r}")
    return values


def _sizes(args) -> tuple[int, ...]:
    """``--sizes``, or the suite's default."""
    default = "1M,5M,25M" if args.suite == "scale" else "10000,100000,1000000"
    return _int_list("--sizes", args.sizes or default)


def _tasks(args) -> tuple[str, ...] | None:
    """``--tasks`` checked against the task registry (None: all; ``()`` for ``none``)."""
    from tfrs_lab.config import TASKS

    if not args.tasks:
        return None
    if args.tasks == "none":  # the data stages only (generate, prepare)
        return ()
    names = tuple(t for t in args.tasks.split(",") if t)
    unknown = [t for t in names if t not in TASKS]
    if unknown or not names:
        raise UsageError(f"--tasks: unknown task(s) {', '.join(unknown) or repr(args.tasks)}; choose from {', '.join(TASKS)}")
    return names


def _memory_cap(args) -> int:
    from tfrs_lab.bench.scale import parse_bytes

    try:
        return parse_bytes(args.memory_cap)
    except ValueError as e:
        raise UsageError(f"--memory-cap: {e}") from e


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tfrs_lab.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("suite", choices=(*SUITES, "select", "cascade", "scale", "all"),
                   help="which benchmark to run (all: every suite but select, cascade and scale, which need "
                        "their own inputs or hours)")
    p.add_argument("--output-dir", default="bench-out", help="results go to <output-dir>/<suite>/ (default bench-out)")
    p.add_argument("--dataset", default="movielens/100k-ratings", help="as in train; 'synthetic' for a quick run")
    p.add_argument("--data-zip", help="official MovieLens zip (offline)")
    p.add_argument("--data-dir", help="prepared TFDS data cache")
    add_own_data_arguments(p)
    p.add_argument("--splits", default="hash,leave-last-out", help="quality: protocols to run (default both)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="config override for our models (quality, training), e.g. --set train.batch_size=512")
    p.add_argument("--methods", help="quality: comma-separated subset of methods (default all)")
    p.add_argument("--epochs", type=int, help="quality/training: cap on epochs of every trained model; "
                   "scale: epochs per run (default 1)")
    p.add_argument("--seeds", type=int,
                   help="quality: seeds per seeded method (ours, tutorials, Surprise, implicit): mean ± std "
                        "(default 3); select: seeds per candidate (default: the selection file's)")
    p.add_argument("--selection", help="select: selection file (default: the shipped selection/<task>.yaml)")
    p.add_argument("--datasets", metavar="NAME,...",
                   help="select: run only these data sets of the selection file (default all), e.g. lastfm")
    p.add_argument("--data-root", default=".",
                   help="select: directory that {data_root} in the selection file's data paths stands for")
    p.add_argument("--throughput-epochs", type=int, default=4,
                   help="training: epochs per throughput variant, the first is warm-up (default 4)")
    p.add_argument("--variants", help="training: comma-separated throughput variants (default all: "
                   "tutorial_metrics,tutorial,default,batch4,batch16,no_prefetch,parallel_batch,jit)")
    p.add_argument("--sizes", help="retrieval-index: catalogue sizes (default 10k,100k,1M); "
                   "scale: interactions per synthetic data set (default 1M,5M,25M; not read with own data)")
    p.add_argument("--tasks", help="scale: comma-separated tasks (default all registered; none: generate and prepare "
                   "only); select: the one task whose defaults are selected")
    p.add_argument("--memory-cap", default="10G",
                   help="scale: kill a stage whose process tree's resident memory exceeds this (default 10G)")
    p.add_argument("--seed", type=int, default=0, help="scale: seed of the synthetic data (default 0)")
    p.add_argument("--stage-timeout", type=float, help="scale: seconds before a stage is killed (default none)")
    p.add_argument("--keep-data", action="store_true", help="scale: keep the generated data under <output-dir>/scale/data")
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
    p.add_argument("--cascade-retrieval", metavar="RUN", help="cascade: a retrieval run (export.exclude_seen=false)")
    p.add_argument("--cascade-ranking", metavar="RUN", help="cascade: a ranking run on the same data")
    p.add_argument("--cascade-candidates", type=int, help="cascade: retrieval candidates (default: its export.k)")
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
    _sizes(args)
    _tasks(args)
    _memory_cap(args)
    if args.suite == "scale" and args.sizes and (args.interactions or args.data):
        raise UsageError("--sizes sets the synthetic data sets' sizes: drop it to measure your own data, or drop "
                         "--interactions/--data to measure synthetic sizes")
    if args.stage_timeout is not None and args.stage_timeout <= 0:
        raise UsageError(f"--stage-timeout must be > 0 seconds, got {args.stage_timeout}")
    _int_list("--serving-clients", args.serving_clients)
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output-dir {str(out)!r} is a file: choose a directory")
    if args.suite == "cascade" and not (args.cascade_retrieval and args.cascade_ranking):
        raise UsageError("cascade needs --cascade-retrieval RUN and --cascade-ranking RUN")
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
        from tfrs_lab.bench.select import load_selection, restrict_datasets, run_select, selection_file
        from tfrs_lab.config import TASKS

        task = args.tasks or ""
        if task not in TASKS:
            raise UsageError(f"select needs --tasks naming one task (the one whose defaults are selected), one of "
                             f"{', '.join(TASKS)}; got {task!r}")
        path = args.selection or selection_file(task)
        if not Path(path).is_file():
            raise UsageError(f"--selection {str(path)!r} does not exist: pass a selection file "
                             "(format: tfrs_lab/bench/select.py)")
        selection = restrict_datasets(load_selection(path, args.data_root), args.datasets)
        if selection.task != task:
            raise UsageError(f"--selection {str(path)!r} is for task {selection.task!r}, not --tasks {task!r}")
        _, table = run_select(selection, output_dir, seeds=args.seeds, epochs=args.epochs)
    elif suite == "training":
        from tfrs_lab.bench.training import run_training

        _, table = run_training(data_options, output_dir, epochs=args.epochs, throughput_epochs=args.throughput_epochs,
                                overrides=tuple(args.overrides),
                                **({"variants": tuple(args.variants.split(","))} if args.variants else {}))
    elif suite == "cascade":
        from tfrs_lab.bench.cascade import run_cascade_bench
        from tfrs_lab.export.cascade import CascadeError

        try:
            _, table = run_cascade_bench(args.cascade_retrieval, args.cascade_ranking, output_dir,
                                         candidates=args.cascade_candidates)
        except CascadeError as e:
            raise UsageError(str(e)) from e
    elif suite == "retrieval-index":
        from tfrs_lab.bench.index import run_index

        _, table = run_index(output_dir, sizes=_sizes(args), dim=args.dim, single=args.queries,
                             batches=args.batches, savedmodel=not args.no_savedmodel)
    elif suite == "scale":
        from tfrs_lab.bench.scale import run_scale

        _, table = run_scale(output_dir, sizes=_sizes(args), tasks=_tasks(args), memory_cap=_memory_cap(args),
                             seed=args.seed, epochs=args.epochs or 1, overrides=args.overrides,
                             data_zip=args.data_zip, data_dir=args.data_dir, stage_timeout=args.stage_timeout,
                             keep_data=args.keep_data, source=source)
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
