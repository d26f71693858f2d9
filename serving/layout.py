"""TF Serving's on-disk layout, without TensorFlow: ``<base_path>/<version>/saved_model.pb``,
``variables/``, ``assets/``, ``assets.extra/``; which versions exist, whether one is complete, and a
fingerprint that changes whenever any of its files does."""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["fingerprint", "incomplete_reason", "is_saved_model", "list_versions", "SAVED_MODEL_PB",
           "SAVED_MODEL_PBTXT"]

SAVED_MODEL_PB = "saved_model.pb"
SAVED_MODEL_PBTXT = "saved_model.pbtxt"


def is_saved_model(path: str) -> bool:
    """Whether ``path`` holds ``saved_model.pb`` (or ``.pbtxt``)."""
    return any(os.path.isfile(os.path.join(path, n)) for n in (SAVED_MODEL_PB, SAVED_MODEL_PBTXT))


def list_versions(base_path: str) -> list[int]:
    """Positive integer version directories under ``base_path`` (highest first); [] if missing."""
    try:
        names = os.listdir(base_path)
    except OSError:
        return []
    versions = []
    for name in names:
        if name.isdigit() and int(name) > 0 and os.path.isdir(os.path.join(base_path, name)):
            versions.append(int(name))
    return sorted(versions, reverse=True)


def fingerprint(path: str) -> tuple[Any, ...]:
    """Every file under a version directory with its size and mtime: changes whenever any file of
    the SavedModel (``variables.data-*``, ``assets``, ``assets.extra`` included) is rewritten, so a
    version that failed to load is retried once its files change."""
    items = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                items.append((os.path.relpath(full, path), None, None))
                continue
            items.append((os.path.relpath(full, path), st.st_mtime_ns, st.st_size))
    return tuple(items)


_DATA_SHARD = re.compile(r"^variables\.data-(\d+)-of-(\d+)$")


def incomplete_reason(path: str) -> str | None:
    """Why the version directory ``path`` cannot be loaded yet (None when it is complete).

    Complete means: ``saved_model.pb`` (or ``.pbtxt``) exists, ``variables/variables.index`` and
    every ``variables.data-NNNNN-of-MMMMM`` shard it implies exist when ``variables/`` does, and
    every file (``assets/`` and ``assets.extra/`` included) can be opened for reading.
    """
    if not is_saved_model(path):
        return f"{SAVED_MODEL_PB} is missing"
    variables = os.path.join(path, "variables")
    if os.path.isdir(variables):
        names = set(os.listdir(variables))
        if "variables.index" not in names:
            return "variables/variables.index is missing"
        totals = {int(m.group(2)) for m in map(_DATA_SHARD.match, names) if m}
        if not totals:
            return "variables/variables.data-00000-of-00001 is missing"
        for total in totals:
            for shard in range(total):
                shard_name = f"variables.data-{shard:05d}-of-{total:05d}"
                if shard_name not in names:
                    return f"variables/{shard_name} is missing"
    for root, _dirs, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                with open(full, "rb"):
                    pass
            except OSError as e:
                return f"{os.path.relpath(full, path)} is not readable ({e.strerror})"
    return None
