"""`python -m tfrs_lab.tune` end to end through the real `main()` on tiny synthetic trials."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import write_space

from tfrs_lab.config import default_config_file
from tfrs_lab.train import main as train_main
from tfrs_lab.tune import main


def read_trials(out: Path) -> list[dict[str, str]]:
    with open(out / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def planted(tmp_path_factory, data_args) -> Path:
    """Grid search over an embedding far too small (1) vs adequate (32), with the final fit."""
    tmp = tmp_path_factory.mktemp("planted")
    space = write_space(tmp / "space.yaml", {"model.embedding_dim": {"type": "choice", "values": [1, 32]}})
    out = tmp / "search"
    assert main(["retrieval", *data_args, "--space", str(space), "--tuner", "grid", "--final-fit",
                 "--set", "export.index=brute_force", "--set", "export.verify=false", "--output-dir", str(out)]) == 0
    return out


@pytest.mark.slow
def test_search_finds_the_planted_better_setting(planted):
    overlay = yaml.safe_load((planted / "best_hyperparameters.yaml").read_text())
    assert overlay == {"task": "retrieval", "model": {"embedding_dim": 32}}
    rows = read_trials(planted)
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
    by_dim = {r["model.embedding_dim"]: float(r["validation_hit_rate@10"]) for r in rows}
    assert by_dim["32"] > by_dim["1"] + 0.05
    assert all(r["seed"] == "42" and float(r["seconds"]) > 0 and r["best_epoch"] for r in rows)


@pytest.mark.slow
def test_tfx_tuner_outputs(planted):
    import keras_tuner as kt

    best = kt.HyperParameters.from_config(json.loads((planted / "best_hyperparameters.txt").read_text()))
    assert best.get("model.embedding_dim") == 32
    results = json.loads((planted / "tuner_results.json").read_text())
    assert [set(r) for r in results] == [{"trial_id", "score", "model.embedding_dim"}] * 2
    assert results[0]["model.embedding_dim"] == 32 and results[0]["score"] > results[1]["score"]
    assert (planted / "keras_tuner" / "search" / "oracle.json").is_file()


@pytest.mark.slow
def test_trials_optimise_validation_and_final_fit_tests_once(planted):
    trial = json.loads(next((planted / "keras_tuner" / "search").glob("trial_*/run/metrics.json")).read_text())
    assert {"validation_hit_rate@10", "validation_hit_rate@100"} <= set(trial)
    assert trial["test_evaluated"] is False and "hit_rate@10" not in trial  # trials never see the test split
    assert not list((planted / "keras_tuner" / "search").glob("trial_*/run/export"))
    final = json.loads((planted / "final" / "metrics.json").read_text())
    cfg = yaml.safe_load((planted / "final" / "config.yaml").read_text())
    best_epoch = next(r for r in read_trials(planted) if r["model.embedding_dim"] == "32")["best_epoch"]
    assert cfg["train"]["include_validation"] is True and cfg["model"]["embedding_dim"] == 32
    assert cfg["train"]["epochs"] == int(best_epoch) and final["epochs_trained"] == int(best_epoch)
    assert not any(k.startswith("validation_") for k in final) and 0 <= final["hit_rate@10"] <= 1
    assert (planted / "final" / "export" / "retrieval" / "1" / "saved_model.pb").is_file()


@pytest.mark.slow
def test_best_overlay_is_accepted_by_train(planted, data_args, tmp_path):
    out = tmp_path / "run"
    args = ["retrieval", "--config", str(default_config_file("retrieval")), "--config",
            str(planted / "best_hyperparameters.yaml"), *data_args, "--epochs", "1",
            "--set", "export.index=brute_force", "--set", "export.verify=false", "--output-dir", str(out)]
    assert train_main(args) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["embedding_dim"] == 32


@pytest.mark.slow
def test_failed_trial_is_recorded_and_the_search_goes_on(tmp_path, data_args):
    # rating_min 4 with rating_max 3 is only invalid in combination: that trial fails at run time.
    space = write_space(tmp_path / "space.yaml", {
        "model.rating_min": {"type": "choice", "values": [1.0, 4.0]},
        "model.rating_max": {"type": "choice", "values": [3.0]}},
        task="ranking", objective="rmse",
        trial_config={"train": {"epochs": 1}, "model": {"history_length": 0}, "export": {"verify": False}})
    out = tmp_path / "search"
    assert main(["ranking", *data_args, "--space", str(space), "--tuner", "grid", "--output-dir", str(out)]) == 0
    rows = {r["model.rating_min"]: r for r in read_trials(out)}
    assert rows["1.0"]["status"] == "COMPLETED" and float(rows["1.0"]["validation_rmse"]) > 0
    assert rows["4.0"]["status"] == "FAILED" and "rating_max" in rows["4.0"]["error"]
    assert yaml.safe_load((out / "best_hyperparameters.yaml").read_text())["model"]["rating_min"] == 1.0


@pytest.mark.slow
def test_hyperband_budget_becomes_train_epochs(tmp_path, data_args):
    space = write_space(tmp_path / "space.yaml", {"train.learning_rate": {"type": "float", "min": 0.001,
                                                                          "max": 0.01, "sampling": "log"}},
                        hyperband={"max_epochs": 3, "factor": 3})
    out = tmp_path / "search"
    assert main(["retrieval", *data_args, "--space", str(space), "--tuner", "hyperband", "--max-trials", "2",
                 "--output-dir", str(out)]) == 0
    rows = read_trials(out)
    assert len(rows) == 2
    for row in rows:
        cfg = yaml.safe_load((out / "keras_tuner" / "search" / f"trial_{row['trial_id']}" / "run" / "config.yaml")
                             .read_text())
        assert cfg["train"]["epochs"] == int(row["tuner/epochs"]) <= 3


# --------------------------------------------------------------------------- bad input


BAD_SPACES = [
    ({"model.embeding_dim": {"type": "int", "min": 4, "max": 8}}, {}, "unknown hyperparameter name 'model.embeding_dim'"),
    ({}, {}, "hyperparameters is empty"),
    ({"model.embedding_dim": {"type": "int", "min": 4, "max": 8}}, {"objective": "rmse"},
     "objective 'rmse' is not a validation metric"),
    ({"model.embedding_dim": {"type": "int", "min": 0, "max": 8}}, {}, "model.embedding_dim must be > 0"),
    ({"data.split": {"type": "choice", "values": ["hash"]}}, {}, "only model.* and train.* config keys"),
    ({"train.learning_rate": {"type": "float", "min": 0.01, "max": 0.001}}, {}, "hyperparameters.train.learning_rate.min"),
]


@pytest.mark.parametrize("hyperparameters, more, message", BAD_SPACES)
def test_bad_space_is_rejected_before_any_work(tmp_path, data_args, capsys, hyperparameters, more, message):
    space = write_space(tmp_path / "space.yaml", hyperparameters, **more)
    out = tmp_path / "search"
    assert main(["retrieval", *data_args, "--space", str(space), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--max-trials", "0"], "--max-trials must be >= 1, got 0"),
    (["--tuner", "grid"], "grid search needs a finite space: hyperparameters.train.learning_rate"),
    (["--resume"], "holds no search to resume"),
    (["--final-fit", "--set", "train.lr_schedule=plateau"], "train.lr_schedule plateau needs validation data"),
])
def test_bad_arguments_exit_2(tmp_path, data_args, capsys, args, message):
    space = write_space(tmp_path / "space.yaml", {"train.learning_rate": {"type": "float", "min": 0.001,
                                                                          "max": 0.01}},
                        task="ranking", objective="rmse", trial_config={})
    assert main(["ranking", *data_args, "--space", str(space), *args, "--output-dir", str(tmp_path / "s")]) == 2
    assert message in capsys.readouterr().err


SHIPPED_OBJECTIVES = {"retrieval": "validation_hit_rate@100", "ranking": "validation_rmse",
                      "sequential": "validation_ndcg@10", "autoencoder": "validation_rmse",
                      "multitask": "validation_hit_rate@100"}


def test_every_registered_task_has_a_shipped_space():
    from tfrs_lab.config import TASKS

    assert set(SHIPPED_OBJECTIVES) == set(TASKS)


@pytest.mark.parametrize("task, objective", sorted(SHIPPED_OBJECTIVES.items()))
def test_shipped_spaces_are_valid(task, objective):
    from tfrs_lab.tuning import load_space

    space = load_space(task, config_files=[default_config_file(task)])
    assert space.objective.key == objective and space.hyperparameters
    assert space.keras_tuner_space().space  # converts to Keras Tuner hyperparameters


def test_tune_autoencoder_runs_a_trial(tmp_path, data_args):
    """``tune autoencoder`` works end to end (its split is ``auto`` until the task resolves it)."""
    out = tmp_path / "s"
    assert main(["autoencoder", *data_args, "--tuner", "random", "--max-trials", "1", "--epochs", "2",
                 "--set", "model.autorec.hidden_units=16", "--output-dir", str(out)]) == 0
    trials = (out / "trials.csv").read_text().splitlines()
    assert len(trials) == 2 and ",COMPLETED," in trials[1]


def test_oracle_seed_spreads_the_first_trials():
    """Keras Tuner seeds value i with seed + i; with raw small seeds one hyperparameter (drawn every
    8th value in an 8-hyperparameter space) lands near the same quantile in the first trials."""
    import random

    from tfrs_lab.tuning.search import oracle_seed

    raw = [random.Random(42 + i).random() for i in range(4, 52, 8)]
    hashed = [random.Random(oracle_seed(42) + i).random() for i in range(4, 52, 8)]
    assert max(raw) - min(raw) < 0.2  # the correlation this guards against
    assert max(hashed) - min(hashed) > 0.5
