"""`python -m tfrs_lab.train sequential` end to end through the real `main()`, and its bad input."""

import json

import pytest

from tfrs_lab.export import signatures as sig
from tfrs_lab.train import main

SMALL = ["--dataset", "synthetic", "--set", "data.synthetic.num_users=100", "--set", "data.synthetic.num_movies=60",
         "--set", "data.synthetic.ratings_per_user=20", "--set", "model.max_length=20", "--set", "model.embedding_dim=16",
         "--set", "model.num_blocks=1", "--set", "export.k=10", "--set", "export.max_exclude=20"]


@pytest.mark.slow
@pytest.mark.parametrize("architecture, loss, index", [("transformer", "sampled_softmax", "brute_force"),
                                                       ("gru", "softmax", "brute_force")])
def test_train_evaluate_export_end_to_end(tmp_path, architecture, loss, index):
    out = tmp_path / "run"
    args = ["sequential", *SMALL, "--epochs", "2", "--output-dir", str(out), "--set", f"model.architecture={architecture}",
            "--set", f"model.loss={loss}", "--set", "model.num_negatives=16", "--set", f"export.index={index}",
            "--set", f"export.verify={'true' if architecture == 'transformer' else 'false'}"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "sequential" and metrics["split"] == "leave-last-out"
    assert metrics["dataset"] == "synthetic" and metrics["architecture"] == architecture
    for key in ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["recall@10"] <= metrics["recall@50"] and metrics["train_examples_per_second"] > 0
    assert metrics["train_seconds"] > 0 and metrics["epochs_trained"] == 2
    version = out / "export" / "sequential" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "assets.extra" / sig.WARMUP_FILE).stat().st_size > 0
    assert (out / "config.yaml").is_file() and any((out / "logs").rglob("events.out.tfevents*"))
    assert not list(tmp_path.glob(".run.partial-*"))


@pytest.mark.parametrize("args, message", [
    (["--set", "model.max_length=1"], "model.max_length must be >= 2, got 1"),
    (["--set", "model.window_stride=300"],
     "model.window_stride must be in [0, model.max_length=200] (0 = the newest window only), got 300"),
    (["--set", "model.num_heads=3"], "model.num_heads (3) must divide model.embedding_dim (64)"),
    (["--set", "model.dropout=-0.1"], "model.dropout must be in [0, 1), got -0.1"),
    (["--set", "model.architecture=lstm"], "model.architecture must be one of transformer, gru"),
    (["--split", "hash"], "data.split=hash is not supported by this task: choose leave-last-out, held-out-users"),
])
def test_bad_config_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["sequential", "--dataset", "synthetic", *args, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    assert list(tmp_path.iterdir()) == []
