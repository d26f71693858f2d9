"""Every task besides retrieval on a real two-worker ``multi_worker_mirrored`` cluster (127.0.0.1):
the same command as a single-process run, ``TF_CONFIG`` picking the worker, trains the same model.

Each case runs one process (default strategy) and, at the same time, two worker processes with
the same global batch on the same tiny seeded synthetic data, then checks the per-epoch training
losses agree to float rounding (the loss of the global batch: cross_replica.global_mean /
global_candidates; a per-replica mean would double it, and a whole regularization loss per replica
would change the second epoch), that
only the chief wrote a run directory (with ``distribution.json``), and that both exports have the
same files and signatures. Dropout is switched off: its random masks are drawn per replica, which is
the one part of these models that does not reproduce the single-machine run draw for draw.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from distributed_cluster import SYNTHETIC, free_ports, launch, tf_config, train_command, wait_all
from tfrs_lab.config import load_config
from tfrs_lab.data.movielens import load_movielens
from tfrs_lab.data.synthetic import SyntheticSpec

pytestmark = pytest.mark.slow

CLUSTER_TIMEOUT = 300.0  # seconds for the three processes of one case (minutes on a loaded 2-core machine)
LOSS_RTOL = 1e-5  # per-epoch training losses, relative: the same computation up to float summation order
TINY = ["--set", "data.synthetic.num_users=60", "--set", "data.synthetic.num_movies=80",
        "--set", "data.synthetic.ratings_per_user=15"]  # overrides SYNTHETIC's sizes (later --set wins)
# one epoch of many steps: its last loss follows every earlier step's gradients
COMMON = [*TINY, "--epochs", "1", "--set", "export.verify=false"]

CASES = {  # task -> its arguments; each exercises a batch-dependent loss
    "ranking": ["--set", "model.architecture=mf", "--set", "model.objective=implicit", "--set", "train.loss=listwise",
                "--set", "train.batch_size=64", "--set", "model.embedding_l2=0.01",  # listwise + per-row L2 means
                "--set", "train.optimizer=lazy_adam"],  # train.optimizer: auto's pick above its threshold: row updates
    "sequential": ["--set", "model.dropout=0", "--set", "model.max_length=10", "--set", "model.embedding_dim=16",
                   "--set", "train.batch_size=16"],  # full softmax over every target position of the global batch
    "autoencoder": ["--set", "model.autorec.dropout=0", "--set", "model.autorec.hidden_units=32",
                    "--set", "train.batch_size=16"],  # masked MSE over the global batch + Keras L2 shared by replicas
    "multitask": ["--set", "train.batch_size=64", "--set", "model.rating_weight=1.0"],  # in-batch softmax + MSE
}


def epoch_losses(run_dir: Path, tag: str = "epoch_loss") -> list[float]:
    """The ``tag`` curve TensorBoard recorded under ``run_dir/logs/[<label>/]train``."""
    values = {}
    for f in sorted(run_dir.glob("logs/**/train/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                if v.tag == tag:
                    values[event.step] = float(tf.make_ndarray(v.tensor))
    return [values[k] for k in sorted(values)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The tiny synthetic data prepared once, before any process starts (they only read the cache)."""
    path = tmp_path_factory.mktemp("tfds")
    cfg = load_config("retrieval", [], [*SYNTHETIC[3::2], *TINY[1::2]])
    load_movielens("synthetic", data_dir=path, synthetic=SyntheticSpec(**asdict(cfg.data.synthetic)))
    return path


def export_layout(run_dir: Path) -> tuple[set[str], dict[str, str]]:
    """(every file under ``export/`` except variable shards, {signature: its structured outputs})."""
    base = run_dir / "export"
    files = {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()}
    (saved,) = [p.parent for p in base.rglob("saved_model.pb")]
    model = tf.saved_model.load(str(saved))
    return files, {name: repr(fn.structured_outputs) for name, fn in model.signatures.items()}


@pytest.mark.parametrize("task", sorted(CASES))
def test_two_workers_train_like_one_process(task, tmp_path, data_dir):
    args = [*CASES[task], *COMMON]
    single, multi = tmp_path / "single", tmp_path / "multi"
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    cluster_cmd = train_command(multi, data_dir, "--set", "train.distribution=multi_worker_mirrored", *args, task=task)
    logs = [tmp_path / "single.log", tmp_path / "worker0.log", tmp_path / "worker1.log"]
    procs = [launch(train_command(single, data_dir, *args, task=task), logs[0], None),  # the reference, meanwhile
             *(launch(cluster_cmd, log, tf_config({"worker": workers}, "worker", i)) for i, log in enumerate(logs[1:]))]
    codes = wait_all(procs, CLUSTER_TIMEOUT, logs)  # kills all of them on timeout
    assert codes == [0, 0, 0], "\n".join(log.read_text()[-3000:] for log in logs)

    for tag in ("epoch_loss", "epoch_total_loss"):  # total: + the regularization losses
        want, got = epoch_losses(single, tag), epoch_losses(multi, tag)
        assert len(want) == len(got) == 1, tag
        np.testing.assert_allclose(got, want, rtol=LOSS_RTOL, err_msg=tag)
    metrics = json.loads((multi / "metrics.json").read_text())
    assert metrics["num_workers"] == 2 and metrics["epochs_trained"] == 1
    summary = json.loads((multi / "distribution.json").read_text())
    assert summary["num_replicas_in_sync"] == 2 and summary["task"] == {"type": "worker", "index": 0}
    # Only the chief (worker 0) wrote a run directory; nothing staged or backed up is left behind.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert export_layout(multi) == export_layout(single)
