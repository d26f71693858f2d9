"""What an index-backed exporter returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ExportResult"]


@dataclass(frozen=True)
class ExportResult:
    """The written SavedModel version directory and its index's ScaNN recall@10 against brute force."""

    path: Path  # the version directory
    scann_recall_at_10: float | None  # None for brute force
