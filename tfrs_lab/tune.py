"""``python -m tfrs_lab.tune <task>``: search hyperparameters with Keras Tuner over the ``train`` code.

Examples::

    python -m tfrs_lab.tune ranking --data-zip ml-100k.zip --tuner bayesian --max-trials 12 --output-dir runs/tune-r1
    python -m tfrs_lab.tune ranking ... --output-dir runs/tune-r1 --resume --max-trials 20
    python -m tfrs_lab.tune retrieval --dataset synthetic --tuner grid --space my-space.yaml --final-fit --output-dir runs/t
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from tfrs_lab.cli import ArgumentParser, UsageError, configure_logging, print_metrics, run_cli
from tfrs_lab.config import TASKS
from tfrs_lab.train import add_config_arguments, flag_overrides

__all__ = ["build_parser", "main"]

logger = logging.getLogger(__name__)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m tfrs_lab.tune", description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=tuple(TASKS), help="what to tune")
    p.add_argument("--space", metavar="FILE", help="search space YAML (default: the shipped configs/tuning/<task>.yaml)")
    p.add_argument("--tuner", default="bayesian", choices=("random", "bayesian", "hyperband", "grid"),
                   help="search algorithm (default bayesian); grid needs a finite space")
    p.add_argument("--max-trials", type=int, default=None,
                   help="trials in total, finished ones of a resumed search included (default 10; grid and "
                        "hyperband: their whole schedule)")
    p.add_argument("--tuner-seed", type=int, help="seed of the tuner's sampling (default: train.seed)")
    p.add_argument("--resume", action="store_true", help="continue the search in --output-dir without "
                   "repeating finished trials (refused if the space or options changed)")
    p.add_argument("--final-fit", action="store_true", help="afterwards retrain the best configuration on "
                   "train + validation and evaluate once on test, into <output-dir>/final")
    add_config_arguments(p, scope=" of every trial")
    p.add_argument("--output-dir", required=True, help="search directory to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --output-dir")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    return p


def _print_trial(record) -> None:
    hp = ", ".join(f"{k}={v}" for k, v in record.hyperparameters.items())
    if record.status == "RUNNING":
        print(f"trial {record.trial_id} [{record.tuner_id}] started: {hp}", flush=True)
    elif record.status == "COMPLETED":
        value = ", ".join(f"{k}={v:.4f}" for k, v in sorted(record.metrics.items()))
        print(f"trial {record.trial_id} [{record.tuner_id}] done in {record.seconds:.0f}s: {value}", flush=True)
    else:
        print(f"trial {record.trial_id} [{record.tuner_id}] FAILED after {record.seconds or 0:.0f}s: {record.error}",
              flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 2 user error)."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        if args.max_trials is not None and args.max_trials < 1:
            raise UsageError(f"--max-trials must be >= 1, got {args.max_trials}")
        configure_logging(args.verbose)
        from tfrs_lab.tuning import run_search

        extra = flag_overrides(args)
        extra.pop("output_dir", None)
        max_trials = args.max_trials if args.max_trials is not None else (
            None if args.tuner in ("grid", "hyperband") else 10)
        try:
            result = run_search(args.task, args.output_dir, space_file=args.space, config_files=args.config or (),
                                overrides=args.overrides, extra=extra, tuner=args.tuner, max_trials=max_trials,
                                seed=args.tuner_seed, resume=args.resume, overwrite=args.overwrite,
                                final_fit=args.final_fit, progress=_print_trial)
        except KeyboardInterrupt:
            print("interrupted: finished trials are saved; continue with the same command plus --resume",
                  file=sys.stderr)
            return 130
        if result.role == "worker":
            print(f"worker finished its trials; the chief writes the results to {result.output_dir}")
            return 0
        print(f"search directory: {result.output_dir} ({len(result.trials)} trials: {result.num_completed} "
              f"completed, {result.num_failed} failed, {result.seconds:.0f}s)")
        print(f"best trial {result.best_trial_id}: {result.objective} = {result.best_value:.4f} ({result.direction})")
        print(f"  overlay: {result.best_overlay_yaml}")
        if result.final_run_dir is not None:
            print(f"final fit (train + validation): {result.final_run_dir}")
            print_metrics(result.final_metrics)
        return 0

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
