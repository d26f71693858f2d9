"""Launch ``python -m tfrs_lab.train <task>`` tasks of a local (127.0.0.1) TF_CONFIG cluster."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

#: Synthetic data big enough for hit rates that do not saturate, small enough for seconds per epoch.
SYNTHETIC = ["--dataset", "synthetic", "--set", "data.synthetic.num_users=200", "--set",
             "data.synthetic.num_movies=300", "--set", "data.synthetic.ratings_per_user=30"]

#: The export arguments of the tasks whose export has an index: brute force (no ScaNN tree to build).
BRUTE_FORCE = {task: ["--set", "export.index=brute_force"] for task in ("retrieval", "sequential", "autoencoder",
                                                                          "multitask")}


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(cluster: dict[str, list[str]], task_type: str, index: int) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def train_command(output_dir: Path, data_dir: Path, *args: str, task: str = "retrieval") -> list[str]:
    """``python -m tfrs_lab.train <task>`` on :data:`SYNTHETIC` data cached in ``data_dir`` (with a
    brute-force index: :data:`BRUTE_FORCE`)."""
    return [sys.executable, "-m", "tfrs_lab.train", task, *SYNTHETIC, "--data-dir", str(data_dir),
            "--output-dir", str(output_dir), *BRUTE_FORCE.get(task, ()), *args]


def launch(cmd: list[str], log: Path, tf_config_json: str | None) -> subprocess.Popen:
    """Starts ``cmd`` with ``TF_CONFIG`` (or none) and stdout+stderr to ``log``."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    if tf_config_json is not None:
        env["TF_CONFIG"] = tf_config_json
    out = open(log, "wb")
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    finally:
        out.close()


def wait_all(procs: list[subprocess.Popen], timeout: float, logs: list[Path]) -> list[int]:
    """Waits for every process (killing all of them on timeout); returns the exit codes."""
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        tails = "\n".join(f"--- {log}\n{log.read_text()[-3000:]}" for log in logs)
        raise AssertionError(f"cluster did not finish in {timeout:.0f}s\n{tails}") from None
    finally:
        stop(procs)
    return [p.returncode for p in procs]


def stop(procs: list[subprocess.Popen]) -> None:
    """Kills the processes that still run (only the ones this test started)."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)
