"""The Python API: ``tfrs_lab.train(...)`` runs what the CLI runs and returns a usable Run."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

import tfrs_lab
from tfrs_lab.config import ConfigError
from tfrs_lab.training import rundir

SYNTHETIC = {"dataset": "synthetic", "synthetic": {"num_users": 120, "num_movies": 80, "ratings_per_user": 25}}
FAST = ["train.epochs=2", "model.embedding_dim=16", "export.index=brute_force", "export.verify=false"]


def test_import_exposes_the_api_without_loading_tensorflow():
    code = ("import sys, tfrs_lab; names = sorted(tfrs_lab.__all__); "
            "print(names, 'tensorflow' in sys.modules, callable(tfrs_lab.data.from_frame))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['Run', 'TaskInputs', 'load_config', 'tasks', 'train'] False True"
    assert set(tfrs_lab.tasks()) == {"retrieval", "ranking", "sequential", "autoencoder", "multitask"}


@pytest.fixture(scope="module")
def api_run(tmp_path_factory, synthetic_data):
    cfg = tfrs_lab.load_config("retrieval", overrides=FAST, **SYNTHETIC)
    out = tmp_path_factory.mktemp("api") / "run"
    return tfrs_lab.train("retrieval", config=cfg, data=synthetic_data, output_dir=out, verbose=0)


def test_train_returns_the_run_the_cli_would_write(api_run):
    run = api_run
    assert run.task == "retrieval" and run.run_dir.is_dir()
    assert json.loads((run.run_dir / "metrics.json").read_text()) == run.metrics
    assert (run.export_path / "saved_model.pb").is_file()
    assert run.metrics["hit_rate@100"] > 0 and run.model is not None


def test_evaluate_on_demand_equals_the_recorded_test_metrics(api_run):
    again = api_run.evaluate()
    for key, value in again.items():
        assert api_run.metrics[key] == pytest.approx(value, abs=1e-6), key


def test_export_on_demand_writes_a_second_copy(api_run, tmp_path):
    path = api_run.export(tmp_path / "exports")
    assert path == tmp_path / "exports" / "retrieval" / "1" and (path / "saved_model.pb").is_file()
    with pytest.raises(rundir.RunDirError, match="already exists"):
        api_run.export(tmp_path / "exports")


def test_train_refuses_a_non_empty_output_dir_like_the_cli(api_run, synthetic_data):
    before = (api_run.run_dir / "metrics.json").read_text()
    with pytest.raises(rundir.RunDirError, match="not empty"):
        tfrs_lab.train("retrieval", config={"data": SYNTHETIC}, data=synthetic_data, output_dir=api_run.run_dir)
    assert (api_run.run_dir / "metrics.json").read_text() == before


def test_unknown_task_names_the_choices():
    with pytest.raises(ConfigError, match="choose one of retrieval"):
        tfrs_lab.load_config("clustering")


def test_a_second_run_into_a_directory_in_use_is_refused(tmp_path):
    """The run lock: while one run holds the output directory, another is refused at once."""
    out = tmp_path / "run"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with rundir.run_lock(out):
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(30)
        with pytest.raises(rundir.RunDirError, match="in use by another run"):
            with rundir.run_lock(out):
                pass
    finally:
        release.set()
        t.join(30)
    with rundir.run_lock(out):  # free again once the first run ended
        pass
    assert not list(tmp_path.iterdir())  # the lock file is removed with the lock
