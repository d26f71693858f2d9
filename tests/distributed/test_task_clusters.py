"""Every task besides retrieval on a real two-worker ``multi_worker_mirrored`` cluster (127.0.0.1):
the same command as a single-process run, ``TF_CONFIG`` picking the worker, trains the same model.

Each case trains one process (the CLI in-process, default strategy) and two worker processes with
the same global batch on the same tiny seeded synthetic data, then checks the per-epoch training
losses agree (the loss of the global batch: cross_replica.global_mean / global_candidates), that
only the chief wrote a run directory (with ``distribution.json``), and that both exports have the
same files and signatures. Dropout is switched off: its random masks are drawn per replica, which is
the one part of these models that does not reproduce the single-machine run draw for draw.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from distributed_cluster import BRUTE_FORCE, SYNTHETIC, free_ports, launch, tf_config, train_command, wait_all
from tfrs_lab.train import main

pytestmark = pytest.mark.slow

CLUSTER_TIMEOUT = 150.0  # seconds for both workers of one case
LOSS_RTOL = 1e-3  # per-epoch training loss, relative: the same computation up to float summation order
TINY = ["--set", "data.synthetic.num_users=60", "--set", "data.synthetic.num_movies=80",
        "--set", "data.synthetic.ratings_per_user=15"]  # overrides SYNTHETIC's sizes (later --set wins)
COMMON = [*TINY, "--epochs", "2", "--set", "train.early_stopping_patience=5", "--set", "export.verify=false"]

CASES = {  # task -> its arguments; each exercises a batch-dependent loss
    "ranking": ["--set", "model.architecture=mf", "--set", "model.objective=implicit", "--set", "train.loss=listwise",
                "--set", "train.batch_size=64", "--set", "model.embedding_l2=0.01"],  # listwise + per-row L2 means
    "sequential": ["--set", "model.dropout=0", "--set", "model.max_length=10", "--set", "model.embedding_dim=16",
                   "--set", "train.batch_size=16"],  # full softmax over every target position of the global batch
    "autoencoder": ["--set", "model.autorec.dropout=0", "--set", "model.autorec.hidden_units=32",
                    "--set", "train.batch_size=16"],  # masked MSE over the global batch + Keras L2 shared by replicas
    "multitask": ["--set", "train.batch_size=64", "--set", "model.rating_weight=1.0"],  # in-batch softmax + MSE
}


def epoch_losses(run_dir: Path) -> list[float]:
    """The ``epoch_loss`` curve TensorBoard recorded under ``run_dir/logs/[<label>/]train``."""
    values = {}
    for f in sorted(run_dir.glob("logs/**/train/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                if v.tag == "epoch_loss":
                    values[event.step] = float(tf.make_ndarray(v.tensor))
    return [values[k] for k in sorted(values)]


def export_layout(run_dir: Path) -> tuple[set[str], dict[str, str]]:
    """(every file under ``export/`` except variable shards, {signature: its structured outputs})."""
    base = run_dir / "export"
    files = {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()}
    (saved,) = [p.parent for p in base.rglob("saved_model.pb")]
    model = tf.saved_model.load(str(saved))
    return files, {name: repr(fn.structured_outputs) for name, fn in model.signatures.items()}


@pytest.mark.parametrize("task", sorted(CASES))
def test_two_workers_train_like_one_process(task, tmp_path):
    args = [*COMMON, *CASES[task]]
    data_dir = tmp_path / "tfds"
    single = tmp_path / "single"
    assert main([task, *SYNTHETIC, "--data-dir", str(data_dir), "--output-dir", str(single),
                 *BRUTE_FORCE.get(task, ()), *args]) == 0  # also prepares the data the workers read

    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    cmd = train_command(tmp_path / "multi", data_dir, "--set", "train.distribution=multi_worker_mirrored", *args,
                        task=task)
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    procs = [launch(cmd, log, tf_config({"worker": workers}, "worker", i)) for i, log in enumerate(logs)]
    codes = wait_all(procs, CLUSTER_TIMEOUT, logs)  # kills both on timeout
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    multi = tmp_path / "multi"

    want, got = epoch_losses(single), epoch_losses(multi)
    assert len(want) == len(got) == 2
    np.testing.assert_allclose(got, want, rtol=LOSS_RTOL)
    metrics = json.loads((multi / "metrics.json").read_text())
    assert metrics["num_workers"] == 2 and metrics["epochs_trained"] == 2
    summary = json.loads((multi / "distribution.json").read_text())
    assert summary["num_replicas_in_sync"] == 2 and summary["task"] == {"type": "worker", "index": 0}
    # Only the chief (worker 0) wrote a run directory; nothing staged or backed up is left behind.
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert export_layout(multi) == export_layout(single)
