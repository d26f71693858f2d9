"""A worker killed mid-training, for ranking, sequential, autoencoder and multitask (retrieval:
test_cluster_training.py; a parameter-server run: test_parameter_server_tasks.py), on a real two-worker ``multi_worker_mirrored`` cluster (127.0.0.1).

Per task, on the tiny seeded synthetic data of test_task_clusters.py:

* a reference single-process run of the same command trains meanwhile;
* worker 1 is killed once the chief has finished epoch 2 (backed up); the chief then fails on its
  own (``train.collective_timeout_seconds`` bounds the collective it waits in) with exit code 1 and
  one ``error:`` line as its last line, and no run directory is published (nothing staged left);
* both workers restarted with the same command resume at the epoch after the last backup and finish;
  the resumed epochs' training losses match the reference run's within tolerance (the restored
  weights and optimizer are the reference's trajectory; only the data order of the epochs after a
  restart differs, since each process's shuffle starts again from the seed).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from distributed_cluster import free_ports, launch, stop, tf_config, train_command, wait_all
from test_task_clusters import CASES, TINY, data_dir, epoch_losses  # noqa: F401  (data_dir: the fixture)

pytestmark = pytest.mark.slow

EPOCHS = 4
KILL_AFTER = 2  # epochs finished (and backed up) before worker 1 is killed
ARGS = [*TINY, "--epochs", str(EPOCHS), "--set", "train.early_stopping_patience=20", "--set", "export.verify=false"]
TIMEOUT = 480.0  # seconds for one cluster run (minutes on a loaded 2-core machine)
COLLECTIVE_TIMEOUT = 120  # seconds a collective may wait (a dead peer is seen at once: connection refused; a
# live one may lag by a whole validation on a loaded machine, so not much less)
# relative: the resumed epochs see their rows in another order than the uninterrupted run's epochs
LOSS_RTOL = 0.15


def wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"exited with {proc.returncode} before {text!r}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} after {timeout:.0f}s:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


@pytest.mark.parametrize("task", ["ranking", "sequential", "autoencoder", "multitask"])
def test_killed_worker_fails_clearly_then_resumes_to_the_same_result(task, tmp_path, data_dir):
    args = [*CASES[task], *ARGS]
    run = tmp_path / "run"
    cmd = train_command(run, data_dir, "--set", "train.distribution=multi_worker_mirrored",
                        "--set", f"train.collective_timeout_seconds={COLLECTIVE_TIMEOUT}", *args, task=task)
    reference = launch(train_command(tmp_path / "single", data_dir, *args, task=task), tmp_path / "single.log", None)
    logs = [tmp_path / "w0-first.log", tmp_path / "w1-first.log"]
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = [launch(cmd, log, tf_config({"worker": workers}, "worker", i)) for i, log in enumerate(logs)]
    try:
        wait_for(logs[0], f"epoch {KILL_AFTER}: validation", procs[0], TIMEOUT)
        procs[1].kill()  # worker 1 dies mid-training
        procs[1].wait(timeout=30)
        procs[0].wait(timeout=COLLECTIVE_TIMEOUT + 120)  # the chief fails by itself: no scheduler kills it
    finally:
        stop(procs)
    first = logs[0].read_text(errors="replace")
    assert procs[0].returncode == 1, first[-3000:]
    last = first.strip().splitlines()[-1]
    assert last.startswith("error: a task of the multi_worker_mirrored cluster stopped during training"), last
    assert "restart every task with the same command" in last and str(run) in last
    done = max(e for e in range(1, EPOCHS + 1) if f"epoch {e}: validation" in first)
    assert KILL_AFTER <= done < EPOCHS
    assert not run.exists()  # never a run directory taken for a complete one
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.partial")]
    assert (tmp_path / ".run.backup").is_dir()  # the last finished epoch is backed up

    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]  # new ports: the old ones may linger
    logs = [tmp_path / "w0-again.log", tmp_path / "w1-again.log"]
    procs = [launch(cmd, log, tf_config({"worker": workers}, "worker", i)) for i, log in enumerate(logs)]
    assert wait_all([*procs, reference], TIMEOUT, [*logs, tmp_path / "single.log"]) == [0, 0, 0], \
        "\n".join(p.read_text()[-3000:] for p in logs)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["resumed_at_epoch"] == done + 1 and metrics["epochs_trained"] == EPOCHS
    assert f"resumed from the backup at epoch {done + 1}" in logs[0].read_text()
    assert not (tmp_path / ".run.backup").exists()  # a finished run leaves no backup behind
    resumed, want = epoch_losses(run), epoch_losses(tmp_path / "single")
    assert len(want) == EPOCHS and len(resumed) == EPOCHS - done  # TensorBoard of the published run: resumed epochs
    np.testing.assert_allclose(resumed, want[done:], rtol=LOSS_RTOL)
