"""An execution whose process died (a killed Trainer) does not stay RUNNING forever: the next
pipeline run, and ``lineage_cli executions``, mark it FAILED naming the process."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest

from tfrs_lab.components import lineage as L
from tfrs_lab.components.lineage_cli import main as lineage_main
from tfrs_lab.components.processes import ProcessInfo, current, is_gone, start_time
from tfrs_lab.components.runner import build_pipeline, run_pipeline

SPEC = {"name": "recovery", "components": {"empty": {"type": "tfrs_lab_test_custom:EmptySchema"}}}


def dead_process() -> ProcessInfo:
    """A process of this host that has exited (and been reaped)."""
    child = subprocess.Popen(["true"])
    started = start_time(child.pid)
    child.wait()
    return ProcessInfo(child.pid, current().host, started)


def start(store: L.LineageStore, node: str, process: ProcessInfo) -> int:
    ctx = store.context(L.PIPELINE, SPEC["name"])
    return store.start_execution("Trainer", node, cache_key=node, parameters={}, code_fingerprint="",
                                 contexts=[ctx], process=process)


@pytest.fixture
def sleeper():
    child = subprocess.Popen(["sleep", "60"])
    yield ProcessInfo(child.pid, current().host, start_time(child.pid))
    child.kill()
    child.wait()


def test_process_liveness(sleeper):
    assert is_gone(current()) is False and is_gone(sleeper) is False
    assert is_gone(dead_process()) is True
    assert is_gone(dataclasses.replace(current(), started=0.0)) is True  # same pid, another process: reused
    assert is_gone(dataclasses.replace(current(), host="elsewhere")) is None  # cannot tell


def test_dead_executions_are_failed_live_and_remote_ones_kept(tmp_path, sleeper):
    with L.LineageStore(tmp_path / L.DB_FILE) as store:
        ids = {"dead": start(store, "dead", dead_process()), "live": start(store, "live", sleeper),
               "reused": start(store, "reused", dataclasses.replace(current(), started=0.0)),
               "remote": start(store, "remote", dataclasses.replace(sleeper, host="elsewhere"))}
        failed = store.fail_dead_executions()
        assert sorted(ex.id for ex in failed) == sorted([ids["dead"], ids["reused"]])
        states = {node: store.get_execution(eid).state for node, eid in ids.items()}
        assert states == {"dead": L.FAILED, "live": L.RUNNING, "reused": L.FAILED, "remote": L.RUNNING}
        dead = store.get_execution(ids["dead"])
        assert f"pid {dead.process.pid}" in dead.error and dead.end_time is not None
        assert store.fail_dead_executions() == []  # idempotent


def test_next_pipeline_run_and_lineage_cli_show_the_killed_execution_failed(tmp_path, capsys):
    root = tmp_path / "root"
    pipeline = build_pipeline(SPEC, pipeline_root=root)
    with L.LineageStore(pipeline.db_path) as store:
        killed = start(store, "trainer", dead_process())
    said: list[str] = []
    result = run_pipeline(pipeline, progress=said.append)
    assert result.results["empty"].state == L.COMPLETE
    assert any(f"execution #{killed} Trainer (trainer) marked FAILED" in line for line in said)
    with L.LineageStore(pipeline.db_path) as store:
        assert store.get_execution(killed).state == L.FAILED
        ran = store.get_execution(result.results["empty"].execution_id)
        assert ran.process == current()  # the execution records who ran it
    capsys.readouterr()
    assert lineage_main(["executions", "--pipeline-root", str(root), "--json"]) == 0
    rows = {r["id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows[killed]["state"] == L.FAILED and "process gone" in rows[killed]["error"]


def test_lineage_cli_marks_a_dead_execution_without_a_pipeline_run(tmp_path, capsys, sleeper):
    with L.LineageStore(tmp_path / L.DB_FILE) as store:
        dead, live = start(store, "trainer", dead_process()), start(store, "tuner", sleeper)
    assert lineage_main(["executions", "--pipeline-root", str(tmp_path)]) == 0
    lines = {int(line.split()[0][1:]): line for line in capsys.readouterr().out.splitlines()}
    assert "FAILED (process gone: pid" in lines[dead]
    assert f"RUNNING (pid {sleeper.pid} on {sleeper.host})" in lines[live]


def test_a_store_written_before_process_columns_is_upgraded(tmp_path):
    import sqlite3

    db = tmp_path / L.DB_FILE
    with L.LineageStore(db) as store:
        old = start(store, "trainer", current())
    con = sqlite3.connect(db)
    for column in ("pid", "host", "process_start"):
        con.execute(f"ALTER TABLE executions DROP COLUMN {column}")
    con.commit()
    con.close()
    with L.LineageStore(db) as store:
        assert store.get_execution(old).process is None and store.fail_dead_executions() == []
        assert store.get_execution(start(store, "again", current())).process == current()
