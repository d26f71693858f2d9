"""Log output of the serving CLIs: human text (default) or one JSON object per line.

``python -m tfrs_lab.serving.start --log-format json`` writes records such as::

    {"ts": "2026-11-23T19:40:01.123Z", "level": "INFO", "logger": "tfrs_lab.serving.servable",
     "message": "loaded model retrieval version 1 ...", "model": "retrieval", "version": 1}

Fields passed with ``logger.info(..., extra={...})`` become top-level keys; exceptions are in
``exc_info`` as text. Only CLIs call :func:`configure`; library modules just use ``logging``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = ["configure", "FORMATS", "JsonFormatter", "TEXT_FORMAT"]

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ms), level, logger, message, extras, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(level: str = "INFO", log_format: str = "text") -> None:
    """Send logs to stderr as ``text`` or ``json`` (replacing handlers set earlier by this function)."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {log_format!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_tfrs_serving", False)]:
        root.removeHandler(old)
    handler._tfrs_serving = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    for noisy in ("absl", "tensorflow"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
