"""Prometheus metrics in TF Serving's names (``:tensorflow:serving:...``), text exposition format."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

# TF Serving reports request latency in microseconds.
LATENCY_BUCKETS_US: tuple[float, ...] = (
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,
)
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
LOAD_COUNT = ":tensorflow:serving:load_attempt_count"

LabelKey = tuple[tuple[str, str], ...]


def _labels(key: LabelKey, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in key]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Thread-safe request counters and latency histograms per model, version, API and status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[LabelKey, int] = defaultdict(int)
        self._hist: dict[LabelKey, list[float]] = {}
        self._loads: dict[LabelKey, int] = defaultdict(int)

    def observe(self, *, model: str, version: str, api: str, entrypoint: str, status: str, seconds: float) -> None:
        """Record one finished request."""
        count_key = (("model_name", model), ("model_version", version), ("API", api),
                     ("entrypoint", entrypoint), ("status", status))
        hist_key = (("model_name", model), ("API", api), ("entrypoint", entrypoint))
        micros = seconds * 1e6
        with self._lock:
            self._counts[count_key] += 1
            h = self._hist.setdefault(hist_key, [0.0] * (len(LATENCY_BUCKETS_US) + 2))
            h[bisect.bisect_left(LATENCY_BUCKETS_US, micros)] += 1
            h[-1] += micros

    def observe_load(self, *, model: str, status: str) -> None:
        """Record a version load attempt."""
        with self._lock:
            self._loads[(("model_name", model), ("status", status))] += 1

    def render(self) -> str:
        """The Prometheus text exposition of every metric."""
        lines = [f"# TYPE {REQUEST_COUNT} counter"]
        with self._lock:
            for key, value in sorted(self._counts.items()):
                lines.append(f"{REQUEST_COUNT}{_labels(key)} {value}")
            lines.append(f"# TYPE {REQUEST_LATENCY} histogram")
            for key, h in sorted(self._hist.items()):
                cumulative = 0.0
                for bound, n in zip(LATENCY_BUCKETS_US, h):
                    cumulative += n
                    le = 'le="%g"' % bound
                    lines.append(f"{REQUEST_LATENCY}_bucket{_labels(key, le)} {cumulative:g}")
                cumulative += h[len(LATENCY_BUCKETS_US)]
                inf = 'le="+Inf"'
                lines.append(f"{REQUEST_LATENCY}_bucket{_labels(key, inf)} {cumulative:g}")
                lines.append(f"{REQUEST_LATENCY}_sum{_labels(key)} {h[-1]:g}")
                lines.append(f"{REQUEST_LATENCY}_count{_labels(key)} {cumulative:g}")
            lines.append(f"# TYPE {LOAD_COUNT} counter")
            for key, value in sorted(self._loads.items()):
                lines.append(f"{LOAD_COUNT}{_labels(key)} {value}")
        return "\n".join(lines) + "\n"
