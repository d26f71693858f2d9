"""Per-request deadlines: a request whose deadline has passed is not run (or is dropped from a batch).

The gRPC front end opens :func:`scope` with the client's remaining time (``context.time_remaining()``),
the REST front end with ``--rest_api_timeout`` seconds. Code below reads it from a context
variable, so the model layer needs no extra arguments: :func:`check` before a model call, and
:func:`remaining` for how long a batched request may wait for its batch.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

import grpc

from .errors import ServingError

__all__ = ["check", "current", "exceeded", "remaining", "scope"]

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("tfrs_serving_deadline", default=None)


@contextlib.contextmanager
def scope(seconds: float | None) -> Iterator[None]:
    """Requests run inside this block must finish within ``seconds`` (None: no deadline)."""
    token = _deadline.set(None if seconds is None else time.monotonic() + max(0.0, seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


def current() -> float | None:
    """The deadline (``time.monotonic()`` seconds) of the running request, or None."""
    return _deadline.get()


def remaining() -> float | None:
    """Seconds left to the running request (may be <= 0), or None without a deadline."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def exceeded(where: str) -> ServingError:
    """TF Serving's error for a request that ran out of time."""
    return ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, f"Deadline exceeded {where}")


def check(where: str) -> None:
    """Raise DEADLINE_EXCEEDED when the running request's deadline has passed."""
    left = remaining()
    if left is not None and left <= 0:
        raise exceeded(where)
