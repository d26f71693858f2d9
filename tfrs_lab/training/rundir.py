"""The run directory contract (DESIGN.md §4), written atomically.

A run is built in a hidden sibling ``.<name>.partial-XXXX`` directory and renamed to the requested
``--output-dir`` only when everything (config, metrics, logs, export) is written, so a failed or
interrupted run never leaves a half-written run directory behind.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tfrs_lab.staging import staged_directory


class RunDirError(ValueError):
    """The output directory cannot be used; the message says how to fix it."""


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


def staged_run_dir(output_dir: Path):
    """Context manager yielding a staging directory that replaces ``output_dir`` on success only."""
    return staged_directory(output_dir)


def write_metrics(run_dir: Path, metrics: dict[str, float | int | str]) -> None:
    """Writes ``metrics.json`` (flat keys, numbers and the ``task``/``dataset``/``split`` strings)."""
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
