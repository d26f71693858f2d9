"""Tuner -> Trainer: the search runs on the pipeline's Examples and the Trainer trains with its best
hyperparameters; the lineage store links the serving-candidate model to them."""

from __future__ import annotations

import json

import pytest
import yaml

from tfrs_lab.components import artifacts as A
from tfrs_lab.components import lineage as L
from tfrs_lab.components.runner import build_pipeline, run_pipeline

pytestmark = pytest.mark.slow


def test_trainer_uses_the_tuners_best_hyperparameters(tmp_path, synthetic_data_dir, first_run):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "task": "retrieval", "objective": "hit_rate@100",
        "trial_config": {"train": {"epochs": 1}, "export": {"verify": False, "index": "brute_force", "k": 20,
                                                           "max_exclude": 20}},
        "hyperparameters": {"model.embedding_dim": {"type": "choice", "values": [8, 16]}}}))
    small = {"export.verify": False, "export.k": 20, "export.max_exclude": 20, "export.index": "brute_force"}
    spec = {"name": "tuned", "components": {
        "example_gen": {"type": "ExampleGen", "parameters": {
            "dataset": "synthetic", "data_dir": str(synthetic_data_dir),
            "synthetic": {"num_users": 120, "num_movies": 80, "ratings_per_user": 25, "seed": 0}}},
        "tuner": {"type": "Tuner", "inputs": {"examples": "example_gen.examples"},
                  "parameters": {"task": "retrieval", "space_file": str(space), "tuner": "grid", "max_trials": 2,
                                 "overrides": small}},
        "trainer": {"type": "Trainer", "inputs": {"examples": "example_gen.examples",
                                                  "hyperparameters": "tuner.best_hyperparameters"},
                    "parameters": {"task": "retrieval", "overrides": {**small, "train.epochs": 1}}},
        "pusher": {"type": "Pusher", "inputs": {"model": "trainer.model"},
                   "parameters": {"push_destination": str(tmp_path / "serving")}}}}
    # same root as the end-to-end run: its ExampleGen output is reused from the cache
    result = run_pipeline(build_pipeline(spec, pipeline_root=first_run.pipeline.root))
    assert result.results["example_gen"].state == L.CACHED
    best = result.output("tuner", "best_hyperparameters")
    tfx_format = json.loads((best.path / A.HYPERPARAMETERS_FILE).read_text())
    chosen = tfx_format["values"]["model.embedding_dim"]
    assert chosen in (8, 16) and best.properties["num_trials"] == 2
    ranked = json.loads((result.output("tuner", "tuner_results").path / A.TUNER_RESULTS_FILE).read_text())
    assert len(ranked) == 2 and ranked[0]["score"] >= ranked[1]["score"]
    run_config = yaml.safe_load((result.output("trainer", "model_run").path / "config.yaml").read_text())
    assert run_config["model"]["embedding_dim"] == chosen
    with L.LineageStore(result.pipeline.db_path) as store:
        prov = L.serving_provenance(store, "tuned")
    assert prov.hyperparameters.id == best.id
