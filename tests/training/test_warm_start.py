"""Warm start (``--warm-start RUN``): the previous run's vocabularies and weights, then training on new data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import tfrs_lab
from tfrs_lab.data.movielens import load_movielens
from tfrs_lab.data.synthetic import SyntheticSpec
from tfrs_lab.models.retrieval import RetrievalModel
from tfrs_lab.train import main
from tfrs_lab.training.retrieval import hyperparameters
from tfrs_lab.training.runner import prepare
from tfrs_lab.training.task import get_task
from tfrs_lab.training.warm_start import load_warm_start

pytestmark = pytest.mark.slow

SMALL = ["data.synthetic.num_users=120", "data.synthetic.num_movies=80", "data.synthetic.ratings_per_user=25"]
FAST = ["model.embedding_dim=16", "export.index=brute_force", "export.verify=false", *SMALL]
TINY_LR = "train.learning_rate=0.000000000001"  # (YAML reads 1e-12 as a string)


def _sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


@pytest.fixture(scope="module")
def previous(tmp_path_factory):
    cfg = tfrs_lab.load_config("retrieval", overrides=["train.epochs=3", *FAST], dataset="synthetic")
    return tfrs_lab.train("retrieval", config=cfg, output_dir=tmp_path_factory.mktemp("warm") / "previous", verbose=0)


def test_restore_loads_the_previous_weights_exactly(previous):
    task = get_task("retrieval")

    def prepared(cfg):
        p = prepare(task, cfg)
        return p.vocab, len(p.split.train)

    warm = load_warm_start(task, previous.run_dir, prepared)
    assert list(warm.vocab.user_ids) == [str(u) for u in previous.model.user_lookup.get_vocabulary()[1:]]
    hp = hyperparameters(previous.config, warm.vocab.has_user_features)
    model = RetrievalModel(warm.vocab, hp)
    sample = previous._trained.state.stream.features("train", np.arange(2))  # two training rows
    model.compute_loss(sample)
    assert not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), previous.model.get_weights()))
    warm.restore(model, lambda: RetrievalModel(warm.vocab, hp), sample)
    got, want = model.get_weights(), previous.model.get_weights()
    assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want))


def test_a_warm_started_run_starts_where_the_previous_one_ended(previous, tmp_path):
    """Same data, a learning rate too small to move the weights: the test metrics are the previous
    run's (a from-scratch model with the same settings is far off)."""
    cfg = tfrs_lab.load_config("retrieval", overrides=["train.epochs=1", TINY_LR, *FAST], dataset="synthetic")
    warm = tfrs_lab.train("retrieval", config=cfg, output_dir=tmp_path / "warm", warm_start=previous.run_dir, verbose=0)
    for key in ("hit_rate@10", "hit_rate@50", "hit_rate_seen_excluded@10"):
        assert warm.metrics[key] == pytest.approx(previous.metrics[key], abs=1e-6), key
    for a, b in zip(warm.model.get_weights(), previous.model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert warm.metrics["warm_start_oov_rows"] == 0 and warm.config.train.warm_start == str(previous.run_dir)
    scratch = tfrs_lab.train("retrieval", config=cfg, output_dir=tmp_path / "scratch", verbose=0)
    assert abs(scratch.metrics["hit_rate@10"] - previous.metrics["hit_rate@10"]) > 1e-3


def test_cli_warm_start_on_new_data_counts_the_unknown_users(previous, tmp_path, capsys, caplog):
    """New data with 30 more users: the previous vocabularies stay, the new users' rows are counted."""
    out = tmp_path / "more"
    more = ["data.synthetic.num_users=150", "data.synthetic.num_movies=80", "data.synthetic.ratings_per_user=25"]
    args = ["retrieval", "--dataset", "synthetic", "--epochs", "1", "--warm-start", str(previous.run_dir),
            "--output-dir", str(out), *_sets(*FAST, *more)]
    with caplog.at_level("INFO", logger="tfrs_lab"):
        assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    data = load_movielens("synthetic", synthetic=SyntheticSpec(num_users=150, num_movies=80, ratings_per_user=25))
    from tfrs_lab.data.splits import make_split

    train = make_split("hash", data.ratings).train
    new_users = data.ratings["user_id"][train].astype(int) > 120  # every movie id stays 1..80
    assert metrics["warm_start_oov_rows"] == int(new_users.sum()) > 0
    assert f"{int(new_users.sum())} of {len(train)} training rows" in caplog.text
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["warm_start"] == str(previous.run_dir)
    assert "run directory:" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--set", "model.embedding_dim=32"], "model.embedding_dim=16 but this config has 32"),
    (["--set", "model.tower_layers=[8]"], "model.tower_layers=() but this config has (8,)"),
])
def test_a_run_with_another_model_shape_is_refused(previous, tmp_path, capsys, extra, message):
    out = tmp_path / "refused"
    args = ["retrieval", "--dataset", "synthetic", "--warm-start", str(previous.run_dir), "--output-dir", str(out),
            *_sets(*FAST), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "--warm-start" in err[0], err
    assert not out.exists()


def test_not_a_run_or_a_run_of_another_task_is_refused(tmp_path, capsys):
    other = tmp_path / "ranking-run"
    other.mkdir()
    (other / "config.yaml").write_text(yaml.safe_dump({"task": "ranking"}))
    for run, message in ((tmp_path, "not a run directory"), (other, "is a ranking run, not retrieval")):
        out = tmp_path / "out"
        assert main(["retrieval", "--dataset", "synthetic", "--warm-start", str(run), "--output-dir", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.exists()
