"""``python -m tfrs_lab.train <task>``: train, evaluate and export a model into a run directory.

The module is also the Python API's entry point: ``tfrs_lab.train("retrieval", ...)`` calls
:func:`tfrs_lab.api.train` (the module is callable), so one name serves the shell and Python.

Examples::

    python -m tfrs_lab.train retrieval --dataset synthetic --output-dir runs/quickstart
    python -m tfrs_lab.train retrieval --data-zip ml-100k.zip --split leave-last-out --output-dir runs/r1
    python -m tfrs_lab.train retrieval --config configs/retrieval.yaml --set model.embedding_dim=32
    python -m tfrs_lab.train retrieval --interactions plays.csv --columns user=userId,item=artistId,rating=plays,label=implicit
    python -m tfrs_lab.train ranking --data my-spec.yaml --split leave-last-out
    python -m tfrs_lab.train retrieval --warm-start runs/r1 --interactions newer.csv --columns user=u,item=i --epochs 2
"""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path
from typing import Any, Sequence

from tfrs_lab.cli import ArgumentParser, configure_logging, print_metrics, run_cli
from tfrs_lab.config import SPLITS, TASKS
from tfrs_lab.data.spec import OWN

__all__ = ["add_config_arguments", "add_own_data_arguments", "build_parser", "flag_overrides", "main", "own_data_source"]

logger = logging.getLogger(__name__)


def add_own_data_arguments(p: ArgumentParser) -> None:
    """The own-data flags (``--interactions``, ``--columns``, ``--items``, ``--item-columns``,
    ``--data``) of ``train``, ``tune`` and ``bench``; :func:`own_data_source` reads them."""
    own = p.add_argument_group("your own data (docs/own-data.md); sets data.dataset=own and data.source")
    own.add_argument("--interactions", metavar="FILE", help="interactions file or glob of shards (csv, tsv, parquet, "
                     "jsonl, tfrecord; by suffix, other suffixes are delimited text with a sniffed delimiter)")
    own.add_argument("--columns", metavar="ROLE=COLUMN,...", help="columns of --interactions: user=..,item=..[,rating=..]"
                     "[,label=explicit|implicit|binary][,time=..][,time_format=unix|iso8601]")
    own.add_argument("--items", metavar="FILE", help="optional items file (the catalogue)")
    own.add_argument("--item-columns", metavar="ROLE=COLUMN,...", help="columns of --items: id=..[,text=..]"
                     "[,categories=COLUMN:SEP] (categories split on the character after the colon)")
    own.add_argument("--data", metavar="SPEC.yaml", help="a dataset spec (the data.source mapping) for everything the "
                     "quick path does not cover; relative paths are relative to the spec file")


def add_config_arguments(p: ArgumentParser, *, scope: str = "") -> None:
    """The config flags shared by ``train`` and ``tune`` (``scope`` e.g. " of every trial")."""
    p.add_argument("--config", action="append", default=None, metavar="FILE",
                   help="YAML config; repeatable, later files overlay earlier ones (default: the shipped configs/<task>.yaml; python -m tfrs_lab.configs prints where)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help=f"override one config value{scope}, e.g. --set model.embedding_dim=32 (repeatable)")
    p.add_argument("--dataset", help="movielens/100k-ratings (default), movielens/1m-ratings, ..., or synthetic")
    p.add_argument("--data-zip", help="official MovieLens zip to use instead of downloading (offline)")
    p.add_argument("--data-dir", help="where prepared TFDS data is cached (default ~/.cache/tfrs_lab/tfds)")
    p.add_argument("--split", choices=SPLITS,
                   help="the split and with it the evaluation protocol (docs/architecture.md#splits); time, "
                        "held-out-users and predefined take options from data.time_cutoff, data.held_out_users "
                        "and data.predefined (--set)")
    add_own_data_arguments(p)
    p.add_argument("--epochs", type=int, help=f"maximum training epochs{scope} (early stopping may end sooner)")
    p.add_argument("--seed", type=int, help=f"random seed for initialisation and shuffling{scope}")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tfrs_lab.train", description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=tuple(TASKS), help="what to train: " + "; ".join(
        f"{e.name}: {e.summary}" for e in TASKS.values()))
    add_config_arguments(p)
    p.add_argument("--output-dir", help="run directory to write (default from the config: runs/<task>)")
    p.add_argument("--warm-start", metavar="RUN", help="continue from the weights of an earlier run of the same "
                   "task (its vocabularies are kept: new users/movies map to the unknown row); sets train.warm_start")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output dir")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def flag_overrides(args) -> dict[str, Any]:
    """The dedicated flags of :func:`add_config_arguments` (and ``--output-dir``) as a nested config
    overlay (applied before ``--set``)."""
    extra: dict[str, Any] = {}
    data = {k: v for k, v in (("dataset", args.dataset), ("data_zip", args.data_zip),
                              ("data_dir", args.data_dir), ("split", args.split)) if v is not None}
    source = own_data_source(args)
    if source is not None:
        data.update(dataset=data.get("dataset", OWN), source=source)
    if data:
        extra["data"] = data
    warm = getattr(args, "warm_start", None)  # train only, not tune
    train = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed),
                               ("warm_start", warm and str(Path(warm).expanduser().absolute()))) if v is not None}
    if train:
        extra["train"] = train
    if args.output_dir is not None:
        extra["output_dir"] = args.output_dir
    return extra


def own_data_source(args) -> dict[str, Any] | None:
    """The ``data.source`` mapping of the own-data flags (``--interactions``/``--columns``/``--items``/
    ``--item-columns`` or ``--data SPEC.yaml``), or None when none is given."""
    from tfrs_lab.config import ConfigError, read_yaml
    from tfrs_lab.data.spec import quick_source, resolve_spec_paths

    quick = any(v is not None for v in (args.interactions, args.columns, args.items, args.item_columns))
    if args.data is not None:
        if quick:
            raise ConfigError("--data SPEC.yaml names the files and columns: drop --interactions/--columns/--items/"
                              "--item-columns, or drop --data")
        spec = read_yaml(args.data, what="data spec", flag="--data")
        if not isinstance(spec, dict):
            raise ConfigError(f"data spec {args.data!r} must hold a mapping (interactions: ..., items: ...) at the top level")
        return resolve_spec_paths(spec, Path(args.data).expanduser().resolve().parent)
    if not quick:
        return None
    if args.interactions is None:
        raise ConfigError("--columns/--items/--item-columns describe your own data: pass --interactions FILE too")
    return quick_source(args.interactions, args.columns, args.items, args.item_columns)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 2 user error)."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        configure_logging(args.verbose)
        from tfrs_lab.api import train
        from tfrs_lab.config import default_config_file, load_config

        files = args.config if args.config else [default_config_file(args.task)]
        cfg = load_config(args.task, files, args.overrides, extra=flag_overrides(args))
        run = train(args.task, cfg, overwrite=args.overwrite)  # the Python API: one way to run a task
        print(f"run directory: {run.run_dir}")
        print_metrics(run.metrics)
        return 0

    return run_cli(body)


class _CallableModule(types.ModuleType):
    """Makes ``tfrs_lab.train(...)`` the Python API while ``python -m tfrs_lab.train`` stays the CLI."""

    def __call__(self, task: str, *args: Any, **kwargs: Any):
        from tfrs_lab.api import train

        return train(task, *args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    raise SystemExit(main())
