"""``train.max_steps_per_epoch``: each epoch stops after the budget, and throughput counts only the
examples trained."""

import json
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.config import load_config
from tfrs_lab.train import main
from tfrs_lab.training.common import capped_steps, learning_rate
from tfrs_lab.training.task import RunContext

SMALL = ["--dataset", "synthetic", "--set", "data.synthetic.num_users=150", "--set", "data.synthetic.num_movies=100",
         "--set", "data.synthetic.ratings_per_user=25", "--set", "export.k=20", "--set", "export.max_exclude=20",
         "--set", "export.verify=false"]


def _context(cfg, tmp_path) -> RunContext:
    return RunContext(cfg=cfg, data=None, split=None, vocab=None, stage=tmp_path, output_dir=tmp_path, verbose=0,
                      distribution=None)


def _fit(tmp_path, max_steps):
    cfg = load_config("retrieval", overrides=["train.epochs=2", "train.early_stopping_patience=0",
                                              *([] if max_steps is None else [f"train.max_steps_per_epoch={max_steps}"])])
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(4)  # 10 steps per epoch
    fit = _context(cfg, tmp_path).fit(model, dataset, steps_per_epoch=10, validate=lambda: {"score": 0.0},
                                      monitor="score")
    return model, fit


def test_each_epoch_stops_after_the_budget(tmp_path):
    model, fit = _fit(tmp_path, 3)
    assert int(model.optimizer.iterations.numpy()) == 2 * 3  # two epochs of three steps, not of ten
    assert fit.epoch_fraction == pytest.approx(0.3)


def test_without_a_budget_whole_epochs_run(tmp_path):
    model, fit = _fit(tmp_path, None)
    assert int(model.optimizer.iterations.numpy()) == 2 * 10 and fit.epoch_fraction == 1.0


def test_a_budget_above_the_epoch_changes_nothing(tmp_path):
    model, fit = _fit(tmp_path, 50)
    assert int(model.optimizer.iterations.numpy()) == 2 * 10 and fit.epoch_fraction == 1.0


def test_cosine_schedule_decays_over_the_capped_steps():
    t = SimpleNamespace(learning_rate=0.01, min_learning_rate=0.0001, lr_schedule="cosine", epochs=2,
                        max_steps_per_epoch=5)
    assert capped_steps(t, 100) == 5
    schedule = learning_rate(t, 100)
    assert float(schedule(10)) == pytest.approx(0.0001)  # 2 epochs x 5 steps: fully decayed at step 10


def test_cli_run_records_the_epoch_fraction(tmp_path, caplog):
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO):
        assert main(["retrieval", *SMALL, "--epochs", "1", "--set", "train.batch_size=64",
                     "--set", "train.max_steps_per_epoch=2", "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    steps = -(-metrics["num_train_examples"] // 64)
    assert metrics["epoch_fraction"] == pytest.approx(2 / steps, abs=1e-6)
    assert metrics["train_examples_per_second"] > 0
    assert f"train.max_steps_per_epoch: 2 of {steps} steps per epoch" in caplog.text
