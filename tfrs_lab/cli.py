"""Shared plumbing for the command-line entry points: logging set-up and user-error handling."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable, Mapping

__all__ = ["ArgumentParser", "configure_logging", "FAILURE_EXIT", "print_metrics", "run_cli", "UsageError",
           "USER_ERROR_EXIT", "user_error_types"]

USER_ERROR_EXIT = 2
FAILURE_EXIT = 1


class UsageError(ValueError):
    """Bad command-line input; the message names the flag and the fix."""


def user_error_types() -> tuple[type[Exception], ...]:
    """Exceptions that are the user's to fix: printed as one line, exit code 2, no traceback."""
    from tfrs_lab.config import ConfigError
    from tfrs_lab.data.movielens import DataError
    from tfrs_lab.training.rundir import RunDirError

    return (UsageError, ConfigError, DataError, RunDirError)


def configure_logging(verbose: bool = False) -> None:
    """Clean user-facing output: our INFO lines on stderr, TensorFlow/absl noise suppressed."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("tfrs_lab").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl ships with TensorFlow; nothing to quiet without it
        pass


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors as :class:`UsageError` (exit 2 through :func:`run_cli`)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def print_metrics(metrics: Mapping[str, Any]) -> None:
    """Prints the float entries of ``metrics`` one per line (the summary every job ends with)."""
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"  {key:28s} {value:.4f}")


def run_cli(body: Callable[[], int]) -> int:
    """Runs ``body`` and turns user errors into ``error: <message>`` on stderr with exit code 2 (a
    :class:`~tfrs_lab.training.rundir.RunFailed`, not the user's input: the same line, exit code 1)."""
    from tfrs_lab.training.rundir import RunFailed

    try:
        return body()
    except user_error_types() as e:
        print(f"error: {e}", file=sys.stderr)
        return USER_ERROR_EXIT
    except RunFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return FAILURE_EXIT
    except KeyboardInterrupt:
        print("interrupted: nothing was written to the output directory", file=sys.stderr)
        return 130
