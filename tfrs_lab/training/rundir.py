"""The run directory contract (docs/architecture.md#run-directory), written atomically.

A run is built in a hidden sibling ``.<name>.partial-XXXX`` directory and renamed to the requested
``--output-dir`` only when everything (config, metrics, logs, export) is written, so a failed or
interrupted run never leaves a half-written run directory behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from tfrs_lab.staging import staged_directory

__all__ = ["check_output_dir", "CONFIG_FILE", "parse_phase_log", "parse_train_throughput", "peak_rss_bytes", "PhaseClock", "PHASES", "EXPORT_DIR", "LOGS_DIR", "METRICS_FILE", "run_lock", "RunDirError",
           "RunFailed", "staged_run_dir", "THROUGHPUT_LOG", "write_metrics"]


class RunDirError(ValueError):
    """The output directory cannot be used; the message says how to fix it."""


class RunFailed(RuntimeError):
    """A run stopped by something outside the user's input (e.g. a worker of its cluster died); the
    message is one line saying what was kept (nothing published) and how to go on. Exit code 1."""


CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
LOGS_DIR = "logs"
EXPORT_DIR = "export"


def check_output_dir(output_dir: str | Path, *, overwrite: bool) -> Path:
    """Validates ``output_dir`` before any work starts; returns it as an absolute path."""
    out = Path(output_dir).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise RunDirError(f"output dir {str(out)!r} is a file: choose a directory path with --output-dir")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise RunDirError(f"output dir {str(out)!r} is not empty: pass --overwrite or choose another --output-dir")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.probe-", dir=parent):
            pass
    except OSError as e:
        raise RunDirError(
            f"output dir {str(out)!r} is not writable ({e.strerror}): choose a writable --output-dir") from e
    return out


@contextlib.contextmanager
def run_lock(output_dir: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``output_dir`` for the block: a second run into the same directory
    (another process, or this one) is refused at once with :class:`RunDirError` instead of racing
    it. The lock is ``.<name>.lock`` beside the directory (an OS file lock: a killed run frees it)."""
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    path = output_dir.parent / f".{output_dir.name}.lock"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(path).st_ino:  # the holder unlinked it as we opened it
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError) as e:
            raise RunDirError(f"output dir {str(output_dir)!r} is in use by another run (lock {path}): wait for it "
                              "to finish or choose another --output-dir") from e
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()
    finally:
        os.close(fd)


def staged_run_dir(output_dir: Path):
    """Context manager yielding a staging directory that replaces ``output_dir`` on success only."""
    return staged_directory(output_dir)


def write_metrics(run_dir: Path, metrics: dict[str, float | int | str]) -> None:
    """Writes ``metrics.json`` (flat keys, numbers and the ``task``/``dataset``/``split`` strings)."""
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


PHASES = ("load", "train", "evaluate", "export", "report")
"""The run loop's phases, timed into ``metrics.json`` as ``phase_<name>_seconds`` and
``phase_<name>_peak_rss_bytes``: load (data, split, vocabularies; a warm start's previous run), train (model building and every
fit, validation included), evaluate (the test metrics), export (SavedModel, index, reload check),
report (beyond-accuracy metrics and ``report.html``)."""

_PHASE_LOG = "phase %s done: %.3f s, peak RSS %d bytes"
_PHASE_LINE = re.compile(r"phase (\w+) done: ([0-9.]+) s, peak RSS (\d+) bytes")
THROUGHPUT_LOG = "train throughput: %.1f examples/s (the fits alone, validation excluded)"
"""The line a run logs after training (``train_examples_per_second`` of ``metrics.json``), so a run
killed later (in evaluate or export) still tells :func:`parse_train_throughput` its training speed."""
_THROUGHPUT_LINE = re.compile(r"train throughput: ([0-9.]+) examples/s")


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (``getrusage`` high-water mark), in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB


class PhaseClock:
    """Wall seconds and peak RSS at the end of each phase of a run.

    ``end(phase)`` records the seconds since the previous ``end`` (or construction) and the process's
    peak RSS so far (a high-water mark: it never goes down), and logs one line that
    :func:`parse_phase_log` reads back (the ``scale`` benchmark reads the phases a killed run finished).
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._last = time.perf_counter()
        self.metrics: dict[str, float | int] = {}

    def end(self, phase: str) -> None:
        now = time.perf_counter()
        seconds, rss = now - self._last, peak_rss_bytes()
        self._last = now
        self.metrics[f"phase_{phase}_seconds"] = round(seconds, 3)
        self.metrics[f"phase_{phase}_peak_rss_bytes"] = rss
        self._logger.info(_PHASE_LOG, phase, seconds, rss)


def parse_train_throughput(text: str) -> float | None:
    """Training examples per second from the :data:`THROUGHPUT_LOG` line in ``text``, or None."""
    m = _THROUGHPUT_LINE.search(text)
    return float(m.group(1)) if m else None


def parse_phase_log(text: str) -> dict[str, tuple[float, int]]:
    """``{phase: (seconds, peak RSS bytes)}`` from the log lines :class:`PhaseClock` wrote into ``text``."""
    return {m.group(1): (float(m.group(2)), int(m.group(3))) for m in _PHASE_LINE.finditer(text)}
