"""Real TF_CONFIG clusters on 127.0.0.1: every task is a ``python -m tfrs_lab.train retrieval``
process, exactly as users launch them on several hosts.

* two ``multi_worker_mirrored`` workers match a single-worker run with the same global batch;
* ``parameter_server`` with 2 workers and 2 parameter servers shards the embedding tables over both;
* a worker killed mid-training and restarted resumes from the last backed-up epoch.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from distributed_cluster import SYNTHETIC, free_ports, launch, stop, tf_config, train_command, wait_all
from tfrs_lab.config import load_config
from tfrs_lab.data.movielens import load_movielens
from tfrs_lab.data.synthetic import SyntheticSpec
from tfrs_lab.train import main

pytestmark = pytest.mark.slow

EPOCHS = ["--epochs", "3", "--set", "train.early_stopping_patience=10"]
CLUSTER_TIMEOUT = 400.0  # seconds for a whole cluster run (~10-30 s on an idle 2-core machine; minutes when loaded)
LOSS_RTOL = 1e-3  # per-epoch training loss, relative: the same computation up to float summation order
METRIC_ATOL = 0.01  # test hit rates, absolute


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The synthetic data prepared once, before any cluster starts (tasks only read the cache)."""
    path = tmp_path_factory.mktemp("tfds")
    cfg = load_config("retrieval", [], [a for a in SYNTHETIC[3::2]])
    load_movielens("synthetic", data_dir=path, synthetic=SyntheticSpec(**asdict(cfg.data.synthetic)))
    return path


def epoch_losses(run_dir: Path) -> list[float]:
    """The ``epoch_loss`` curve TensorBoard recorded under ``run_dir/logs/train``."""
    values = {}
    for f in sorted((run_dir / "logs" / "train").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                if v.tag == "epoch_loss":
                    values[event.step] = float(tf.make_ndarray(v.tensor))
    return [values[k] for k in sorted(values)]


def export_files(run_dir: Path) -> set[str]:
    base = run_dir / "export"
    return {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()}


def load_export(run_dir: Path):
    return tf.saved_model.load(str(run_dir / "export" / "retrieval" / "1"))


def run_cluster(tmp_path: Path, name: str, cluster: dict, roles: list[tuple[str, int]], args: list[str],
                data_dir: Path) -> list[Path]:
    """Runs one task per role to completion; returns their logs."""
    cmd = train_command(tmp_path / name, data_dir, *args)
    logs = [tmp_path / f"{name}-{t}{i}.log" for t, i in roles]
    procs = [launch(cmd, log, tf_config(cluster, t, i)) for (t, i), log in zip(roles, logs)]
    codes = wait_all(procs, CLUSTER_TIMEOUT, logs)
    assert codes == [0] * len(procs), "\n".join(log.read_text()[-3000:] for log in logs)
    return logs


def test_two_workers_match_one_worker_with_the_same_global_batch(tmp_path, data_dir):
    # Reference: the default single-device strategy, batch 256, through the same CLI in-process.
    single = tmp_path / "single"
    assert main(["retrieval", *SYNTHETIC, "--data-dir", str(data_dir), "--output-dir", str(single),
                 "--set", "export.index=brute_force", *EPOCHS]) == 0
    # Two workers, global batch 256 = 2 x 128 per replica; each softmax still sees all 256 candidates.
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    run_cluster(tmp_path, "multi", {"worker": workers}, [("worker", 0), ("worker", 1)],
                       ["--set", "train.distribution=multi_worker_mirrored", *EPOCHS], data_dir)
    multi = tmp_path / "multi"

    want, got = epoch_losses(single), epoch_losses(multi)
    assert len(want) == len(got) == 3
    np.testing.assert_allclose(got, want, rtol=LOSS_RTOL)
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (single, multi))
    for key in ("hit_rate@10", "hit_rate@50", "hit_rate@100"):
        assert abs(m1[key] - m2[key]) <= METRIC_ATOL, (key, m1[key], m2[key])
    assert m2["num_workers"] == 2 and m2["resumed_at_epoch"] == 1
    assert m1["hit_rate@10"] > 0.1  # really learned (popularity-free synthetic clusters)

    # Only the chief (worker 0) wrote a run directory; the export has the single-machine layout.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".multi")) == []
    assert export_files(multi) == export_files(single)
    summary = json.loads((multi / "distribution.json").read_text())
    assert summary["num_replicas_in_sync"] == 2 and summary["task"] == {"type": "worker", "index": 0}
    a, b = load_export(single), load_export(multi)
    assert set(a.signatures) == set(b.signatures)
    users = tf.constant(["1", "2", "3", "unknown-user"])
    out_a, out_b = a.signatures["serving_default"](user_id=users), b.signatures["serving_default"](user_id=users)
    assert out_b["item_ids"].shape == out_a["item_ids"].shape == (4, 100)
    np.testing.assert_allclose(out_b["scores"].numpy()[:, :10], out_a["scores"].numpy()[:, :10], atol=1e-3)


def test_parameter_servers_hold_the_embedding_shards_and_the_coordinator_exports(tmp_path, data_dir):
    addresses = [f"127.0.0.1:{p}" for p in free_ports(5)]
    cluster = {"chief": addresses[:1], "worker": addresses[1:3], "ps": addresses[3:]}
    cmd = train_command(tmp_path / "ps", data_dir, "--set", "train.distribution=parameter_server",
                        "--set", "train.ps_min_shard_bytes=1024", "--epochs", "2", "--set", "export.verify=false")
    servers = [launch(cmd, tmp_path / f"{t}{i}.log", tf_config(cluster, t, i))
               for t, i in (("ps", 0), ("ps", 1), ("worker", 0), ("worker", 1))]
    try:
        chief_log = tmp_path / "chief.log"
        assert wait_all([launch(cmd, chief_log, tf_config(cluster, "chief", 0))], CLUSTER_TIMEOUT,
                        [chief_log]) == [0], chief_log.read_text()[-3000:]
        assert all(p.poll() is None for p in servers), "worker/ps tasks serve until they are stopped"
    finally:
        stop(servers)
    run = tmp_path / "ps"
    summary = json.loads((run / "distribution.json").read_text())
    tables = {v["shape"][0]: v["devices"] for v in summary["variables"] if len(v["shape"]) == 2}
    both = ["/job:ps/replica:0/task:0/device:CPU:0", "/job:ps/replica:0/task:1/device:CPU:0"]
    users, movies = 200 + 1, 300 + 1  # vocabulary + out-of-vocabulary row
    assert sorted(tables[users]) == both and sorted(tables[movies]) == both
    assert all(d.startswith("/job:ps/") for v in summary["variables"] for d in v["devices"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_trained"] == 2 and metrics["hit_rate@10"] > 0.05
    model = load_export(run)
    out = model.signatures["serving_default"](user_id=tf.constant(["1", "nobody"]))
    assert out["item_ids"].shape == (2, 100) and out["item_ids"].dtype == tf.string


def test_killed_worker_restarts_from_the_backup_not_from_zero(tmp_path, data_dir):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    cluster = {"worker": workers}
    args = ["--set", "train.distribution=multi_worker_mirrored", "--epochs", "6",
            "--set", "train.early_stopping_patience=20", "--set", "export.verify=false"]
    cmd = train_command(tmp_path / "run", data_dir, *args)
    logs = [tmp_path / "w0-first.log", tmp_path / "w1-first.log"]
    procs = [launch(cmd, log, tf_config(cluster, "worker", i)) for i, log in enumerate(logs)]
    try:
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        while "epoch 2: validation" not in logs[0].read_text():  # epochs 1-2 are backed up
            assert time.monotonic() < deadline and procs[0].poll() is None, logs[0].read_text()[-3000:]
            time.sleep(0.2)
        procs[1].kill()  # worker 1 dies mid-training
        procs[1].wait(timeout=30)
        try:  # the chief's next collective fails; a cluster manager would restart it too
            procs[0].wait(timeout=60)
        except subprocess.TimeoutExpired:  # still blocked in a collective: stop it like a scheduler would
            pass
    finally:
        stop(procs)
    assert procs[0].returncode != 0 and not (tmp_path / "run").exists()
    first = logs[0].read_text()
    done = max(e for e in range(1, 7) if f"epoch {e}: validation" in first)
    assert 2 <= done < 6
    # Restart both workers with the same command: training continues after the last backup.
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]  # new ports: the old ones may linger
    logs = [tmp_path / "w0-again.log", tmp_path / "w1-again.log"]
    procs = [launch(cmd, log, tf_config({"worker": workers}, "worker", i)) for i, log in enumerate(logs)]
    assert wait_all(procs, CLUSTER_TIMEOUT, logs) == [0, 0], logs[0].read_text()[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["resumed_at_epoch"] == done + 1
    assert metrics["epochs_trained"] == 6
    assert f"resumed from the backup at epoch {done + 1}" in logs[0].read_text()
    assert "epoch 1: validation" not in logs[0].read_text()
    assert not (tmp_path / ".run.backup").exists()  # a finished run leaves no backup behind
