"""Tasks under the new splits, end to end through the CLI: ranking on ``time`` beats the global mean,
sequential on ``held-out-users`` reports Mult-VAE's metrics, and a task that cannot honour a split
refuses it with one line naming ``data.split`` (exit code 2, nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfrs_lab import train
from tfrs_lab.data.movielens import load_movielens
from tfrs_lab.data.splits import make_split
from tfrs_lab.data.synthetic import SyntheticSpec

SPEC = SyntheticSpec(num_users=300, num_movies=120, ratings_per_user=30, seed=0)
SYNTHETIC = ["--dataset", "synthetic", "--set", f"data.synthetic.num_users={SPEC.num_users}",
             "--set", f"data.synthetic.num_movies={SPEC.num_movies}",
             "--set", f"data.synthetic.ratings_per_user={SPEC.ratings_per_user}"]


@pytest.mark.slow
def test_ranking_on_the_time_split_beats_the_global_mean(tmp_path, capsys):
    out = tmp_path / "run"
    code = train.main(["ranking", *SYNTHETIC, "--split", "time", "--epochs", "8", "--output-dir", str(out),
                       "--set", "model.architecture=mf", "--set", "model.history_length=0",
                       "--set", "model.embedding_l2=0.05", "--set", "train.learning_rate=0.01",
                       "--set", "export.verify=false"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "time" and {"rmse", "mae", "validation_rmse"} <= set(metrics)
    data = load_movielens("synthetic", synthetic=SPEC)
    split = make_split("time", data.ratings)
    ts, r = data.ratings["timestamp"], data.ratings["user_rating"]
    assert ts[split.train].max() < ts[split.test].min()  # the run's test rows are the newest ratings
    mean_rmse = float(np.sqrt(np.mean((r[split.test] - r[split.train].mean()) ** 2)))
    assert metrics["rmse"] < mean_rmse - 0.05, (metrics["rmse"], mean_rmse)


@pytest.mark.slow
def test_sequential_on_held_out_users_reports_mult_vae_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    code = train.main(["sequential", "--dataset", "synthetic", "--split", "held-out-users", "--epochs", "2",
                       "--output-dir", str(out), "--set", "data.synthetic.num_users=100",
                       "--set", "data.synthetic.num_movies=60", "--set", "data.synthetic.ratings_per_user=20",
                       "--set", "model.architecture=gru", "--set", "model.max_length=20",
                       "--set", "model.embedding_dim=16", "--set", "export.index=brute_force",
                       "--set", "export.k=10", "--set", "export.max_exclude=20", "--set", "export.verify=false"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "held-out-users"
    assert {"recall@20", "recall@50", "ndcg@100", "validation_ndcg@100"} <= set(metrics) and "mrr" not in metrics
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("recall@20", "recall@50", "ndcg@100"))


@pytest.mark.parametrize("args, message", [
    (["ranking", "--split", "held-out-users"],
     "data.split=held-out-users is not supported by this task: choose hash, leave-last-out, time, predefined"),
    (["retrieval", "--split", "held-out-users"], "data.split=held-out-users is not supported by this task"),
    (["sequential", "--split", "time"], "data.split=time is not supported by this task: choose leave-last-out, "
                                        "held-out-users"),
    (["autoencoder", "--split", "held-out-users"],
     "data.split must be hash or time or predefined (or auto) for model.architecture=autorec"),
    (["ranking", "--split", "predefined"], "data.predefined is required with data.split=predefined"),
    (["ranking", "--split", "predefined", "--set", "data.predefined=u1"],
     "data.predefined=u1 is a split of the MovieLens 100K archive"),
    (["ranking", "--set", "data.predefined=u1"], "data.predefined is only read with data.split=predefined"),
    (["ranking", "--split", "time", "--set", "data.time_cutoff.test=yesterday"],
     "data.time_cutoff.test='yesterday' is not an ISO-8601 date"),
    (["ranking", "--split", "time", "--set", "data.time_cutoff.validation=0.95"],
     "data.time_cutoff.validation (0.95) must not be after data.time_cutoff.test (0.9)"),
    (["sequential", "--split", "held-out-users", "--set", "data.held_out_users.test=0.95"],
     "data.held_out_users.validation + data.held_out_users.test must be < 1"),
])
def test_a_split_a_task_cannot_honour_is_refused_in_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code = train.main([*args, "--dataset", "synthetic", "--output-dir", str(out)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not out.exists()
