"""Ranking, sequential and multitask on a real ``parameter_server`` cluster (127.0.0.1): one chief
(the coordinator), two workers and two parameter servers, each ``python -m tfrs_lab.train <task>``
with its ``TF_CONFIG`` (retrieval: test_cluster_training.py).

Per task (ranking twice: explicit, and implicit with its negatives drawn inside ``tf.data``), on the
tiny seeded synthetic data of test_task_clusters.py, beside a single-process run of the same command:

* the run finishes; the id embedding tables are split row-wise over both parameter servers
  (``train.ps_min_shard_bytes=1024`` makes these tiny tables big enough to split), every variable
  lives on a parameter server, and only the chief wrote a run directory;
* the validation metrics match the single process's within the tolerance of asynchronous training
  (docs/distributed.md#parameter-servers-per-task: workers apply stale gradients, each draws whole
  batches from its own shard of the data, so the trajectory is not the single machine's; the logged
  epoch loss is the last step's, one batch of one worker, so it is not compared);
* the export has the single process's files and signatures.

A worker killed mid-epoch does not stop the run: the coordinator reschedules its steps on the other
worker, and the run publishes a complete run directory.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from distributed_cluster import free_ports, launch, stop, tf_config, train_command, wait_all
from test_task_clusters import CASES, TINY, data_dir, export_layout  # noqa: F401  (data_dir: the fixture)
from tfrs_lab.train import main

pytestmark = pytest.mark.slow

TIMEOUT = 420.0  # seconds for one cluster run (about 30-60 s on a 2-core machine; minutes when it is loaded)
PS_ARGS = ["--set", "train.distribution=parameter_server", "--set", "train.ps_min_shard_bytes=1024"]
ROLES = [("ps", 0), ("ps", 1), ("worker", 0), ("worker", 1)]  # the tasks that serve until stopped
EXPLICIT_MF = ["--set", "model.architecture=mf", "--set", "model.objective=explicit", "--set", "train.loss=pointwise",
               "--set", "train.batch_size=64", "--set", "model.embedding_l2=0.01"]
PS_CASES = {  # case (task[-variant]) -> (its arguments, {validation metric: allowed difference, relative to the
    # single process's})
    # lazy_adam (train.optimizer: auto above the size rule's threshold) on the row-sharded id tables; adam: below
    "ranking": ([*EXPLICIT_MF, "--set", "train.optimizer=lazy_adam"], {"validation_rmse": 0.03}),
    # implicit: each worker draws its batches' negatives inside tf.data (listwise over 1 + 4 per positive);
    # leave-last-out (one validation row per user: 60) and a learning rate that learns in 2 epochs
    "ranking-implicit": ([*CASES["ranking"], "--split", "leave-last-out", "--set", "train.learning_rate=0.02"],
                         {"validation_ndcg@50": 0.3}),
    "sequential": (CASES["sequential"], {"validation_ndcg@50": 0.15, "validation_recall@50": 0.15}),
    "multitask": (CASES["multitask"], {"validation_rmse": 0.05, "validation_hit_rate@50": 0.15}),
}
LEARNED = {  # case -> {validation metric: what both runs must reach}: the tolerance alone could pass untrained runs
    # one process: ndcg@10 0.18 / 0.21, ndcg@50 0.27 / 0.30 (seeds 42, 7; parameter servers 0.24 / 0.33, seed 42);
    # a random ranking of a user's ~67 unseen movies scores about 0.07 and 0.19
    "ranking-implicit": {"validation_ndcg@10": 0.13, "validation_ndcg@50": 0.23},
}
ARGS = [*TINY, "--epochs", "2", "--set", "train.early_stopping_patience=10", "--set", "export.verify=false"]
NUM_USERS, NUM_ITEMS = 60, 80  # TINY's sizes: the id tables have one more row (out of vocabulary)


@dataclasses.dataclass
class PsCluster:
    """The ``TF_CONFIG`` cluster and its running worker and ps tasks (which serve any chief)."""

    cluster: dict[str, list[str]]
    servers: dict[tuple[str, int], subprocess.Popen]

    def chief(self, cmd: list[str], log: Path) -> subprocess.Popen:
        return launch(cmd, log, tf_config(self.cluster, "chief", 0))


@pytest.fixture(scope="module")
def ps_cluster(tmp_path_factory, data_dir) -> Iterator[PsCluster]:
    """Two workers and two parameter servers on 127.0.0.1, started once for this module's runs: they
    only serve (the same command whatever the task: a task's role comes from its chief), and each
    chief connects to them afresh, as successive jobs on a standing cluster do."""
    logs = tmp_path_factory.mktemp("ps-cluster")
    addresses = [f"127.0.0.1:{p}" for p in free_ports(5)]
    cluster = {"chief": addresses[:1], "worker": addresses[1:3], "ps": addresses[3:]}
    cmd = train_command(logs / "unused", data_dir, *PS_ARGS)  # any valid parameter_server command serves
    servers = {role: launch(cmd, logs / f"{role[0]}{role[1]}.log", tf_config(cluster, *role)) for role in ROLES}
    try:
        time.sleep(1.0)
        assert all(p.poll() is None for p in servers.values()), [p.read_text()[-2000:] for p in logs.glob("*.log")]
        yield PsCluster(cluster, servers)
    finally:
        stop(list(servers.values()))


@pytest.mark.parametrize("case", sorted(PS_CASES))
def test_parameter_servers_train_like_one_process(case, tmp_path, data_dir, ps_cluster):
    args, tolerances = PS_CASES[case]
    task = case.partition("-")[0]
    args = [*args, *ARGS]
    run, single = tmp_path / "ps", tmp_path / "single"
    log = tmp_path / "chief.log"
    chief = ps_cluster.chief(train_command(run, data_dir, *PS_ARGS, *args, task=task), log)
    try:
        code = main(train_command(single, data_dir, *args, task=task)[3:])  # the reference, meanwhile, in-process
    except BaseException:
        stop([chief])
        raise
    assert code == 0
    assert wait_all([chief], TIMEOUT, [log]) == [0], log.read_text()[-3000:]
    assert all(p.poll() is None for p in ps_cluster.servers.values()), "worker/ps tasks serve until they are stopped"

    both = ["/job:ps/replica:0/task:0/device:CPU:0", "/job:ps/replica:0/task:1/device:CPU:0"]
    summary = json.loads((run / "distribution.json").read_text())
    id_tables = [v for v in summary["variables"]
                 if len(v["shape"]) == 2 and v["shape"][0] in (NUM_USERS + 1, NUM_ITEMS + 1) and v["shape"][1] >= 8]
    assert id_tables, summary["variables"]
    for table in id_tables:  # every id embedding table is split over both parameter servers
        assert sorted(table["devices"]) == both, table
    assert all(d.startswith("/job:ps/") for v in summary["variables"] for d in v["devices"])

    got, want = (json.loads((d / "metrics.json").read_text()) for d in (run, single))
    assert got["num_workers"] == 2 and got["epochs_trained"] == want["epochs_trained"] == 2
    for key, rtol in tolerances.items():
        assert abs(got[key] - want[key]) <= rtol * max(abs(want[key]), 1e-6), (key, got[key], want[key])
    for key, floor in LEARNED.get(case, {}).items():
        assert min(got[key], want[key]) >= floor, (key, got[key], want[key])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # nothing staged or backed up
    assert export_layout(run) == export_layout(single)


def test_a_killed_worker_leaves_its_steps_to_the_other_and_the_run_completes(tmp_path, data_dir, ps_cluster):
    # runs last in this module: it kills one of the module's workers
    epochs = 3
    args = [*EXPLICIT_MF, *TINY, "--set", "train.batch_size=16", "--epochs", str(epochs),
            "--set", "train.early_stopping_patience=10", "--set", "export.verify=false"]
    run = tmp_path / "ps"
    log = tmp_path / "chief.log"
    chief = ps_cluster.chief(train_command(run, data_dir, *PS_ARGS, *args, task="ranking"), log)
    try:
        deadline = time.monotonic() + TIMEOUT
        while "Epoch 2/" not in log.read_text(errors="replace"):  # epoch 2 has begun: its steps are in flight
            assert chief.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        ps_cluster.servers[("worker", 1)].kill()  # a worker dies mid-epoch
        ps_cluster.servers[("worker", 1)].wait(timeout=30)
    except BaseException:
        stop([chief])
        raise
    assert wait_all([chief], TIMEOUT, [log]) == [0], log.read_text()[-3000:]
    text = log.read_text(errors="replace")
    assert "Worker /job:worker/replica:0/task:1 failed" in text  # the coordinator saw it go ...
    metrics = json.loads((run / "metrics.json").read_text())  # ... and published a complete run
    assert metrics["epochs_trained"] == epochs and metrics["resumed_at_epoch"] == 1 and metrics["num_workers"] == 2
    for e in range(1, epochs + 1):
        assert f"epoch {e}: validation" in text
    assert (run / "report.html").is_file() and list((run / "export" / "ranking").glob("1/saved_model.pb"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no backup, nothing staged
