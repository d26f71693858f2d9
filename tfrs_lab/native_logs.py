"""Silencing of native (C++) log lines that bypass Python logging.

ScaNN's index builder logs through its own copy of absl (``I0000 … partitioner_factory_base.cc``)
which neither ``TF_CPP_MIN_LOG_LEVEL`` nor Python's logging controls. :func:`quiet_native_stderr`
points file descriptor 2 at ``/dev/null`` while such code runs; Python exceptions still propagate.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

__all__ = ["quiet_native_stderr"]


@contextlib.contextmanager
def quiet_native_stderr(enabled: bool = True) -> Iterator[None]:
    """Discards what native code writes to fd 2 inside the block (no-op when ``enabled`` is False
    or when ``TFRS_LAB_NATIVE_LOGS=1`` is set, for debugging)."""
    if not enabled or os.environ.get("TFRS_LAB_NATIVE_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
