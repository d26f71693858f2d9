"""Structured logs: ``--log-format json`` writes one JSON object per line with the record's extras."""

from __future__ import annotations

import json
import logging

import pytest

from tfrs_lab.serving import logs, start


def test_json_formatter_puts_extras_and_exceptions_at_top_level():
    record = logging.LogRecord("tfrs_lab.serving.x", logging.ERROR, __file__, 1, "model %s failed", ("m",), None)
    record.model, record.version, record.path = "m", 3, object()
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    out = json.loads(logs.JsonFormatter().format(record))
    assert out["level"] == "ERROR" and out["logger"] == "tfrs_lab.serving.x" and out["message"] == "model m failed"
    assert out["model"] == "m" and out["version"] == 3 and isinstance(out["path"], str)
    assert "ValueError: boom" in out["exc_info"]
    assert out["ts"].endswith("Z") and "T" in out["ts"]
    assert "args" not in out and "msg" not in out  # LogRecord internals stay out


def test_configure_json_writes_one_object_per_line(capsys, restore_root_logging):
    logs.configure("INFO", "json")
    logs.configure("INFO", "json")  # idempotent: one handler, not two
    logging.getLogger("tfrs_lab.serving.test").info("loaded %s", "retrieval", extra={"event": "load", "version": 1})
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["event"] == "load"
    with pytest.raises(ValueError, match="log format"):
        logs.configure("INFO", "xml")


def test_start_cli_rejects_unknown_log_format_and_reports_errors(capsys, restore_root_logging, tmp_path):
    assert start.main(["--model", f"m={tmp_path}", "--log-format", "xml"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert start.main(["--model", f"m={tmp_path / 'missing'}", "--log-format", "json"]) == 2
    assert "does not exist" in capsys.readouterr().err
