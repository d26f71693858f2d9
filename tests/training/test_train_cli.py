"""`python -m tfrs_lab.train retrieval` end to end through the real `main()`, and its bad input."""

import json
from pathlib import Path

import pytest

from tfrs_lab.train import main

SMALL = ["--dataset", "synthetic", "--set", "data.synthetic.num_users=150", "--set", "data.synthetic.num_movies=100",
         "--set", "data.synthetic.ratings_per_user=25", "--set", "export.k=20", "--set", "export.max_exclude=20"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["retrieval", *SMALL, "--epochs", "2", "--output-dir", str(out)]) == 0
    return out


def test_run_directory_contract(run_dir):
    assert (run_dir / "config.yaml").is_file()
    assert any((run_dir / "logs").rglob("events.out.tfevents*"))
    version = run_dir / "export" / "retrieval" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert (version / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    assert not list(run_dir.parent.glob(".run.partial-*"))


def test_metrics_json_has_the_hash_split_keys(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["task"] == "retrieval" and metrics["dataset"] == "synthetic" and metrics["split"] == "hash"
    for key in ("train_seconds", "train_examples_per_second", "hit_rate@10", "hit_rate@50", "hit_rate@100",
                "scann_recall@10"):
        assert isinstance(metrics[key], (int, float)), key
    assert 0.0 <= metrics["hit_rate@10"] <= metrics["hit_rate@50"] <= metrics["hit_rate@100"] <= 1.0
    assert metrics["train_examples_per_second"] > 0


def test_metrics_json_times_every_phase(run_dir):
    from tfrs_lab.training.rundir import PHASES

    metrics = json.loads((run_dir / "metrics.json").read_text())
    seconds = [metrics[f"phase_{p}_seconds"] for p in PHASES]
    peaks = [metrics[f"phase_{p}_peak_rss_bytes"] for p in PHASES]
    assert all(s > 0 for s in seconds) and sum(seconds) > metrics["train_seconds"]  # train phase includes the fit
    assert peaks == sorted(peaks) and peaks[0] > 100 * 2**20  # a high-water mark; TensorFlow alone is > 100 MiB
    assert 0 < metrics["num_test_examples"] < metrics["num_train_examples"]


def test_resolved_config_reflects_flags(run_dir):
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert cfg["train"]["epochs"] == 2 and cfg["data"]["dataset"] == "synthetic"
    assert cfg["data"]["synthetic"]["num_users"] == 150


def test_leave_last_out_writes_ranking_keys(tmp_path):
    out = tmp_path / "lllo"
    args = ["retrieval", *SMALL, "--split", "leave-last-out", "--epochs", "1", "--output-dir", str(out),
            "--set", "export.index=brute_force"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert "scann_recall@10" not in metrics  # brute force has nothing to compare


@pytest.mark.parametrize("args, message", [
    (["--dataset", "movielens/2k-ratings"], "unknown dataset"),
    (["--data-zip", "/nonexistent/ml-100k.zip"], "/nonexistent/ml-100k.zip"),
    (["--dataset", "synthetic", "--epochs", "0"], "train.epochs must be > 0"),
    (["--dataset", "synthetic", "--set", "model.embedding_dim=-4"], "model.embedding_dim must be > 0"),
    (["--dataset", "synthetic", "--config", "/nonexistent.yaml"], "does not exist"),
    (["--dataset", "synthetic", "--split", "random"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["retrieval", *args, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_zip_and_unwritable_output(tmp_path, capsys):
    not_a_zip = tmp_path / "ml-100k.zip"
    not_a_zip.write_text("this is not a zip archive")
    assert main(["retrieval", "--data-zip", str(not_a_zip), "--output-dir", str(tmp_path / "r1")]) == 2
    assert "ml-100k.zip" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["retrieval", *SMALL, "--output-dir", str(blocker / "run")]) == 2
    assert "--output-dir" in capsys.readouterr().err
    assert not (tmp_path / "r1").exists()


def test_existing_run_is_not_overwritten_without_flag(run_dir, capsys):
    before = (run_dir / "metrics.json").read_text()
    assert main(["retrieval", *SMALL, "--output-dir", str(run_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run_dir / "metrics.json").read_text() == before
