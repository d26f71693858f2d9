"""Model-selection guard (issue 19): training and validation never read the test split.

Each task is trained twice on data that differ only in the test rows' values (their ratings
scrambled, and for protocols that key on rows rather than on time, their timestamps too): the
training figures and every validation metric must be identical, so nothing of the test split
reached the model before the final evaluation. The test metrics must differ where the scrambled
values are what the test measures (explicit ratings), which shows the scrambling took effect.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import tfrs_lab
from tfrs_lab.training.runner import prepare, run_task
from tfrs_lab.training.task import TaskInputs

SYNTHETIC = {"dataset": "synthetic", "synthetic": {"num_users": 120, "num_movies": 80, "ratings_per_user": 25}}
FAST = ["train.epochs=2", "export.verify=false"]
INDEX = ["export.index=brute_force"]

CASES = {
    "retrieval": ("retrieval", [*INDEX, "model.embedding_dim=16"]),
    "ranking-explicit": ("ranking", ["model.architecture=mf", "model.history_length=0"]),
    "autorec": ("autoencoder", [*INDEX, "model.architecture=autorec"]),
    "dae": ("autoencoder", [*INDEX, "model.architecture=dae"]),
    "sequential": ("sequential", INDEX),
    "multitask": ("multitask", [*INDEX, "model.embedding_dim=16"]),
}


def _scrambled(data, test_rows: np.ndarray, shuffle_time: bool):
    """A copy of ``data`` whose test rows hold other ratings (and, for ``shuffle_time``, timestamps)."""
    rng = np.random.default_rng(7)
    ratings = {k: v.copy() for k, v in data.ratings.items()}
    stars = ratings["user_rating"]
    stars[test_rows] = 6.0 - stars[test_rows]  # 1 <-> 5, 2 <-> 4: same range, different values
    if shuffle_time:
        ratings["timestamp"][test_rows] = rng.permutation(ratings["timestamp"][test_rows])
    return dataclasses.replace(data, ratings=ratings)


def _selection_figures(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith("validation_") and k != "validation_seconds"} | {
        "best_epoch": metrics["best_epoch"], "epochs_trained": metrics["epochs_trained"],
        "num_train_examples": metrics["num_train_examples"]}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_training_never_reads_the_test_split(case, synthetic_data, tmp_path):
    task, overrides = CASES[case]
    cfg = tfrs_lab.load_config(task, overrides=[*FAST, *overrides], **SYNTHETIC)
    split = prepare(task, cfg, TaskInputs(synthetic_data)).split
    assert len(split.test) > 0
    # Row-keyed protocols may move the test rows in time; time-ordered ones keep their order (the
    # split itself depends on it).
    scrambled = _scrambled(synthetic_data, split.test, shuffle_time=split.protocol == "hash")
    assert len(prepare(task, cfg, TaskInputs(scrambled)).split.test) == len(split.test)
    a = run_task(task, cfg, tmp_path / "a", TaskInputs(synthetic_data), verbose=0).metrics
    b = run_task(task, cfg, tmp_path / "b", TaskInputs(scrambled), verbose=0).metrics
    assert _selection_figures(a) == _selection_figures(b)
    if "rmse" in a:  # explicit ratings: the test measures the scrambled values
        assert a["rmse"] != b["rmse"]
