"""Atomic directory writes: build in a hidden sibling, rename into place only on success."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yields an empty ``.<name>.partial-XXXX`` directory beside ``target``.

    When the block succeeds the staging directory replaces ``target`` (an existing ``target`` is
    removed first); when it raises, the staging directory is deleted and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield stage
        if target.exists():
            shutil.rmtree(target)
        stage.rename(target)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
