"""`python -m tfrs_lab.train ranking` end to end through the real `main()`, and its bad input."""

import json

import pytest
import tensorflow as tf

from tfrs_lab.export import signatures as sig
from tfrs_lab.train import main

SMALL = ["--dataset", "synthetic", "--set", "data.synthetic.num_users=150", "--set", "data.synthetic.num_movies=100",
         "--set", "data.synthetic.ratings_per_user=25"]


@pytest.mark.slow
def test_explicit_dcn_run_directory_and_metrics(tmp_path):
    out = tmp_path / "run"
    assert main(["ranking", *SMALL, "--set", "model.architecture=dcn", "--set", "model.cross_low_rank=4",
                 "--set", "model.history_length=8", "--epochs", "2", "--output-dir", str(out)]) == 0
    assert (out / "config.yaml").is_file() and any((out / "logs").rglob("events.out.tfevents*"))
    version = out / "export" / "ranking" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "assets.extra" / sig.WARMUP_FILE).is_file()
    titles = (version / "assets.extra" / sig.ITEM_TITLES_FILE).read_text().splitlines()
    assert len(titles) > 0 and all(len(line.split("\t")) == 2 for line in titles)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "ranking" and metrics["split"] == "hash" and metrics["architecture"] == "dcn"
    for key in ("train_seconds", "train_examples_per_second", "rmse", "mae"):
        assert isinstance(metrics[key], (int, float)) and metrics[key] > 0, key
    assert 0.3 < metrics["mae"] < metrics["rmse"] < 2.0
    loaded = tf.saved_model.load(str(version))
    assert set(loaded.signatures) == {sig.SERVING_DEFAULT, sig.SCORE_WITH_FEATURES, sig.RERANK}
    assert "history" in loaded.signatures[sig.SCORE_WITH_FEATURES].structured_input_signature[1]


@pytest.mark.slow
def test_autorec_export_predicts_the_test_split_as_evaluated(tmp_path):
    """The exported autorec scores test pairs from the ratings known before the test split: its
    served RMSE on the test rows is the run's test RMSE; unknown ids are still answered."""
    import numpy as np

    from tfrs_lab.config import load_config
    from tfrs_lab.training.runner import prepare

    out = tmp_path / "run"
    args = [*SMALL, "--set", "model.architecture=autorec", "--set", "model.autorec.hidden_units=64", "--epochs", "3"]
    assert main(["ranking", *args, "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["architecture"] == "autorec" and 0.3 < metrics["mae"] < metrics["rmse"] < 2.0
    cfg = load_config("ranking", [out / "config.yaml"])
    prepared = prepare("ranking", cfg)
    data, split = prepared.data, prepared.split
    serve = tf.saved_model.load(str(out / "export" / "ranking" / "1")).signatures[sig.SERVING_DEFAULT]
    users, movies = data.ratings["user_id"][split.test], data.ratings["movie_id"][split.test]
    rating = serve(user_id=tf.constant(users.astype(str)), item_id=tf.constant(movies.astype(str)))["rating"].numpy()
    truth = data.ratings["user_rating"][split.test]
    assert np.sqrt(np.mean((rating - truth) ** 2)) == pytest.approx(metrics["rmse"], abs=1e-4)
    unknown = serve(user_id=tf.constant(["no-such-user"]), item_id=tf.constant(["no-such-movie"]))["rating"].numpy()
    assert np.all((unknown >= 1.0) & (unknown <= 5.0))


@pytest.mark.slow
def test_implicit_neumf_with_pretraining_on_leave_last_out(tmp_path):
    out = tmp_path / "run"
    assert main(["ranking", *SMALL, "--split", "leave-last-out", "--set", "model.objective=implicit",
                 "--set", "model.architecture=neumf", "--set", "model.neumf_pretrain=true",
                 "--set", "train.negatives.distribution=popularity", "--set", "export.verify=false",
                 "--epochs", "1", "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["epochs_trained"] == 3  # GMF, MLP, then NeuMF: one epoch each
    assert {p.name for p in (out / "logs").iterdir()} == {"gmf", "mlp", "neumf"}
    loaded = tf.saved_model.load(str(out / "export" / "ranking" / "1"))
    score = loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant(["1"]), item_id=tf.constant(["1"]))
    assert list(score) == [sig.SCORE]


@pytest.mark.parametrize("args, message", [
    (["--set", "model.architecture=fm"], "model.architecture has unknown value 'fm'"),
    (["--set", "train.negatives.count=0"], "train.negatives.count must be >= 1"),
    (["--set", "model.mlp_layers=[16, 0]"], "model.mlp_layers[1] must be > 0, got 0"),
    (["--set", "model.deep_layers=[-8]"], "model.deep_layers[0] must be > 0"),
    (["--set", "model.rating_min=5", "--set", "model.rating_max=1"],
     "model.rating_max (1.0) must be > model.rating_min"),
    (["--set", "model.objective=pairwise"], "model.objective must be one of explicit, implicit"),
    (["--set", "train.negatives.distribution=zipf"], "train.negatives.distribution must be one of"),
    (["--set", "model.features=[age, shoe_size]"], "model.features has unknown value 'shoe_size'"),
    (["--set", "model.history_length=-1"], "model.history_length must be >= 0, got -1"),
    (["--set", "model.architecture=autorec", "--set", "model.objective=implicit"],
     "model.architecture=autorec reconstructs ratings: set model.objective=explicit"),
    (["--set", "model.autorec.hidden_units=0"], "model.autorec.hidden_units must be > 0, got 0"),
    (["--set", "model.autorec.dropout=1"], "model.autorec.dropout must be in [0, 1), got 1"),
    (["--set", "model.objective=implicit", "--set", "model.architecture=mf", "--set", "train.loss=triplet"],
     "train.loss must be one of pointwise, pairwise, listwise"),
    (["--set", "train.loss=pairwise"], "train.loss=pairwise ranks sampled negatives: set model.objective=implicit"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["ranking", "--dataset", "synthetic", *args, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert err.strip().count("\n") == 0, err
    assert list(tmp_path.iterdir()) == []


def test_autorec_above_the_table_size_limit_is_refused(tmp_path, capsys, monkeypatch):
    """Ranking autorec's dense [movies x users] table: above ``AUTOREC_MAX_CELLS`` the run stops
    before training with one line naming model.architecture and the alternatives, exit 2, nothing written."""
    from tfrs_lab.training import ranking as ranking_training

    monkeypatch.setattr(ranking_training, "AUTOREC_MAX_CELLS", 1000)  # synthetic: 101 x 151 = 15,251 cells
    out = tmp_path / "run"
    assert main(["ranking", *SMALL, "--set", "model.architecture=autorec", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err  # the data is loaded first (the sizes come from its vocabularies)
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].strip().startswith("error: model.architecture: autorec holds a dense [movies x users] rating "
                                        "table of 15,251 cells (101 x 151), over the 1,000 limit: use the "
                                        "autoencoder task"), err
    assert list(tmp_path.iterdir()) == []
