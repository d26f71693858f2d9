"""Atomic directory writes: build in a hidden sibling, rename into place only on success."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["apply_umask", "current_umask", "staged_directory"]


def current_umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def apply_umask(path: Path) -> None:
    """Give the directory tree ``path`` the modes a plain ``mkdir``/``open`` would have given it.

    ``tempfile.mkdtemp`` creates 0700 whatever the umask, so a staged run directory, export or push
    would stay unreadable to other users (e.g. a serving container running as another uid).
    Directories get ``0o777 & ~umask``; files are left as written (``open`` already honours the
    umask).
    """
    mask = current_umask()
    dir_mode = 0o777 & ~mask
    os.chmod(path, dir_mode)
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, dir_mode)


@contextlib.contextmanager
def staged_directory(target: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yields an empty ``.<name>.partial-XXXX`` directory beside ``target``.

    When the block succeeds the staging directory replaces ``target`` (an existing ``target`` is
    removed first); when it raises, the staging directory is deleted and ``target`` is untouched.
    ``replace=False`` (content-addressed caches): an existing ``target`` -- e.g. published by a
    concurrent writer of the same content -- is kept and the staging directory discarded.
    Directories inside get the modes the umask gives (0755 under umask 022), not mkdtemp's 0700.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield stage
        apply_umask(stage)
        if replace and target.exists():
            shutil.rmtree(target)
        try:
            stage.rename(target)
        except OSError:
            if replace or not target.is_dir():
                raise
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
