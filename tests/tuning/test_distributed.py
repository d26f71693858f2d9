"""Keras Tuner's chief/worker mode: a chief and two workers as separate processes on 127.0.0.1."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import write_space

TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT_S + 60)
def test_chief_and_two_workers_share_the_trials(tmp_path, data_args):
    space = write_space(tmp_path / "space.yaml", {"model.embedding_dim": {"type": "choice", "values": [4, 8, 16, 32]}})
    out = tmp_path / "search"
    cmd = [sys.executable, "-m", "tfrs_lab.tune", "retrieval", *data_args, "--space", str(space), "--tuner", "random",
           "--max-trials", "4", "--output-dir", str(out)]
    env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_port())}
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs["chief"] = subprocess.Popen(cmd, env={**env, "KERASTUNER_TUNER_ID": "chief"},
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while not (out / "search.json").is_file():  # the chief has validated and claimed the directory
            assert procs["chief"].poll() is None, procs["chief"].communicate()[0][-3000:]
            assert time.monotonic() < deadline, "the chief did not start within 120 s"
            time.sleep(0.5)
        for worker in ("tuner0", "tuner1"):
            procs[worker] = subprocess.Popen(cmd, env={**env, "KERASTUNER_TUNER_ID": worker},
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        logs = {}
        end = time.monotonic() + TIMEOUT_S
        for name, proc in procs.items():
            logs[name] = proc.communicate(timeout=max(1.0, end - time.monotonic()))[0]
            assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{logs[name][-3000:]}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(r["status"] == "COMPLETED" for r in rows)
    assert {r["tuner_id"] for r in rows} == {"tuner0", "tuner1"}  # both workers ran trials
    assert len({r["model.embedding_dim"] for r in rows}) == 4
    assert len(json.loads((out / "tuner_results.json").read_text())) == 4
    assert (out / "best_hyperparameters.yaml").is_file() and (out / "best_hyperparameters.txt").is_file()
    assert "worker finished its trials" in logs["tuner0"] and "best trial" in logs["chief"]
