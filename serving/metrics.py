"""Prometheus metrics in TF Serving's names (``:tensorflow:serving:...``) through ``prometheus_client``.

Label values are bounded: ``model_name`` is a configured model's name or :data:`UNKNOWN_MODEL`
(requests naming any other model all count there), ``model_version`` a loaded version, ``API``,
``entrypoint`` and ``status`` fixed sets. Counters carry the ``_total`` suffix that
``prometheus_client`` (and OpenMetrics) give every counter: ``:tensorflow:serving:request_count_total``.

With several worker processes (``--workers``), ``PROMETHEUS_MULTIPROC_DIR`` is set before any worker
starts; every worker then writes its values there and :meth:`Metrics.render` reports the sum over
all workers (``prometheus_client``'s multiprocess mode).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS_US", "LOAD_COUNT", "Metrics", "MULTIPROC_ENV", "multiprocess_dir",
           "REQUEST_COUNT", "REQUEST_LATENCY", "UNKNOWN_MODEL"]

# TF Serving reports request latency in microseconds.
LATENCY_BUCKETS_US: tuple[float, ...] = (
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,
)
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
LOAD_COUNT = ":tensorflow:serving:load_attempt_count"
UNKNOWN_MODEL = "__unknown__"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


def multiprocess_dir() -> str | None:
    """The shared metrics directory of a multi-worker server, or None in a single process."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """Request counters and latency histograms per model, version, API and status (thread-safe)."""

    def __init__(self, models: Iterable[str] = ()) -> None:
        disable_created_metrics()  # no ``_created`` series next to every counter
        self.registry = CollectorRegistry(auto_describe=True)
        self._known: frozenset[str] = frozenset(models)
        self._lock = threading.Lock()
        self._requests = Counter(
            REQUEST_COUNT, "Requests by model, version, API, entrypoint and status",
            ["model_name", "model_version", "API", "entrypoint", "status"], registry=self.registry,
        )
        self._latency = Histogram(
            REQUEST_LATENCY, "Request latency in microseconds", ["model_name", "API", "entrypoint"],
            buckets=LATENCY_BUCKETS_US, registry=self.registry,
        )
        self._loads = Counter(
            LOAD_COUNT, "Version load attempts by model and status", ["model_name", "status"], registry=self.registry,
        )

    def set_models(self, models: Iterable[str]) -> None:
        """The configured model names: the only ``model_name`` label values besides UNKNOWN_MODEL."""
        with self._lock:
            self._known = frozenset(models)

    def model_label(self, model: str) -> str:
        """``model`` when it is configured, else :data:`UNKNOWN_MODEL` (bounds the series count)."""
        return model if model in self._known else UNKNOWN_MODEL

    def observe(self, *, model: str, version: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        """Record one finished request."""
        label = self.model_label(model)
        if label == UNKNOWN_MODEL:
            version = ""
        self._requests.labels(label, version, api, entrypoint, status).inc()
        self._latency.labels(label, api, entrypoint).observe(seconds * 1e6)

    def observe_load(self, *, model: str, status: str) -> None:
        """Record a version load attempt."""
        self._loads.labels(self.model_label(model), status).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition: this process, or every worker in multiprocess mode."""
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
        return generate_latest(registry)
