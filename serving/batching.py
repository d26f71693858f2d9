"""Optional server-side batching of Predict calls (TF Serving's ``--enable_batching``).

Concurrent requests to the same signature are queued and merged along the batch dimension into
one model call of at most ``max_batch_size`` rows, waiting at most ``batch_timeout_micros`` for a
batch to fill. Requests whose inputs do not share a batch dimension run unbatched.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping

import grpc
import numpy as np
import tensorflow as tf

from .config import BatchingParameters
from . import deadline
from .errors import ServingError, invalid_argument
from .tensors import Signature

__all__ = ["Batcher", "make_batcher_factory"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Task:
    tensors: Mapping[str, tf.Tensor]
    rows: int
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: dict[str, np.ndarray] | None = None
    error: ServingError | None = None
    deadline: float | None = None  # time.monotonic(); expired tasks are dropped, never run

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def key(self) -> tuple[tuple[str, tuple[int | None, ...], str], ...]:
        return tuple((k, tuple(t.shape[1:]), t.dtype.name) for k, t in sorted(self.tensors.items()))


def _rows(tensors: Mapping[str, tf.Tensor]) -> int | None:
    sizes = {t.shape[0] if t.shape.rank else None for t in tensors.values()}
    if len(sizes) != 1:
        return None
    size = sizes.pop()
    return int(size) if size is not None else None


class Batcher:
    """Merges concurrent calls of one signature into batched model calls."""

    def __init__(self, signature: Signature, params: BatchingParameters, call: Callable[[Signature, Mapping[str, tf.Tensor]], dict[str, np.ndarray]]) -> None:
        self._signature = signature
        self._params = params
        self._call = call
        self._queue: queue.Queue[_Task] = queue.Queue(maxsize=params.max_enqueued_batches * params.max_batch_size)
        self._closed = threading.Event()
        self._threads = [
            threading.Thread(target=self._worker, name=f"batch-{signature.name}-{i}", daemon=True)
            for i in range(params.num_batch_threads)
        ]
        for t in self._threads:
            t.start()

    def run(self, tensors: Mapping[str, tf.Tensor]) -> dict[str, np.ndarray]:
        """Queue one request and wait for its slice of a batched call."""
        rows = _rows(tensors)
        if rows is None or rows == 0:
            return self._call(self._signature, tensors)
        if rows > self._params.max_batch_size:
            raise invalid_argument(
                f"Task size {rows} is larger than maximum input batch size {self._params.max_batch_size}; "
                "split the request or raise max_batch_size in the batching parameters"
            )
        if self._closed.is_set():
            raise ServingError(grpc.StatusCode.UNAVAILABLE, "Batcher is shut down; the model version was unloaded")
        deadline.check("before the request was queued for batching")
        task = _Task(tensors=tensors, rows=rows, deadline=deadline.current())
        try:
            self._queue.put_nowait(task)
        except queue.Full:
            raise ServingError(
                grpc.StatusCode.UNAVAILABLE,
                "The batch scheduling queue to which this task was submitted is full",
            ) from None
        left = deadline.remaining()
        if not task.done.wait(timeout=None if left is None else max(0.0, left)):
            raise deadline.exceeded("while waiting for a batch")  # the worker drops the expired task
        if task.error is not None:
            raise task.error
        assert task.result is not None
        return task.result

    def close(self, timeout_s: float = 1.0) -> None:
        """Stop the worker threads once the queue is empty (waiting up to ``timeout_s`` in all;
        they are daemon threads, so a model call that outlives it cannot hold the process)."""
        self._closed.set()
        deadline_at = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(timeout=max(0.0, deadline_at - time.monotonic()))

    def _worker(self) -> None:
        carry: _Task | None = None
        timeout_s = self._params.batch_timeout_micros / 1e6
        while True:
            if carry is not None:
                first, carry = carry, None
            else:
                try:
                    first = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if self._closed.is_set():
                        return
                    continue
            batch, rows = [first], first.rows
            deadline = time.monotonic() + timeout_s
            while rows < self._params.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    task = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if rows + task.rows > self._params.max_batch_size or task.key() != first.key():
                    carry = task
                    break
                batch.append(task)
                rows += task.rows
            self._execute(batch, rows)

    def _execute(self, batch: list[_Task], rows: int) -> None:
        now = time.monotonic()
        expired = [t for t in batch if t.expired(now)]
        if expired:
            for task in expired:
                task.error = deadline.exceeded("while waiting for a batch")
                task.done.set()
            batch = [t for t in batch if not t.expired(now)]
            rows = sum(t.rows for t in batch)
            if not batch:
                return
        try:
            if len(batch) == 1:
                batch[0].result = self._call(self._signature, batch[0].tensors)
            else:
                merged = {k: tf.concat([t.tensors[k] for t in batch], axis=0) for k in batch[0].tensors}
                outputs = self._call(self._signature, merged)
                if any(v.ndim == 0 or v.shape[0] != rows for v in outputs.values()):
                    for task in batch:  # outputs are not per-row: run each request on its own
                        task.result = self._call(self._signature, task.tensors)
                else:
                    offset = 0
                    for task in batch:
                        task.result = {k: v[offset: offset + task.rows] for k, v in outputs.items()}
                        offset += task.rows
        except ServingError as e:
            for task in batch:
                task.error = e
        except Exception as e:  # the worker must survive any model failure and answer every task
            logger.exception("batched call of %s failed", self._signature.name)
            for task in batch:
                task.error = ServingError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
        finally:
            for task in batch:
                task.done.set()


def make_batcher_factory(params: BatchingParameters) -> Callable[[Signature], Batcher]:
    """A factory the model manager calls for every signature of every loaded version."""
    from .servable import call_signature

    def factory(signature: Signature) -> Batcher:
        return Batcher(signature, params, call_signature)

    return factory
