"""Staged run directories, exports and pushes honour the umask (mkdtemp alone would leave 0700)."""

from __future__ import annotations

import os
import stat

from tfrs_lab.staging import staged_directory


def test_staged_directory_is_0755_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "export" / "retrieval" / "1"
        with staged_directory(target) as stage:
            (stage / "variables").mkdir()
            (stage / "saved_model.pb").write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "variables").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "saved_model.pb").stat().st_mode) == 0o644


def test_staged_directory_follows_a_stricter_umask(tmp_path):
    old = os.umask(0o027)  # not mkdtemp's own 0700: only honouring the umask gives 0750
    try:
        target = tmp_path / "run"
        with staged_directory(target) as stage:
            (stage / "config.yaml").write_text("a: 1\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
