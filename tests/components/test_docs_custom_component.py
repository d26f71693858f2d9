"""The custom component of docs/pipelines.md, exactly as written there, runs into a Trainer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from tfrs_lab.components import lineage as L
from tfrs_lab.components.example_gen import read_examples
from tfrs_lab.components.runner import build_pipeline, run_pipeline

from conftest import docs_blocks, pipeline_spec

pytestmark = pytest.mark.slow


def test_docs_custom_component_feeds_the_trainer(tmp_path, docs_components, synthetic_data_dir):
    spec = yaml.safe_load(docs_blocks("A custom component", "yaml")[0])  # the documented pipeline, verbatim
    assert spec["components"]["high"]["type"] == f"{docs_components}:HighRatings"
    # only the data source and the training budget change: the conftest's small synthetic dataset, one epoch
    synthetic = pipeline_spec(synthetic_data_dir)["components"]["example_gen"]["parameters"]
    overrides = [f"example_gen.{k}={json.dumps(v)}" for k, v in synthetic.items()]
    overrides += [f"trainer.overrides.{k}={v}" for k, v in
                  {"train.epochs": 1, "export.verify": "false", "export.k": 20, "export.max_exclude": 20}.items()]
    result = run_pipeline(build_pipeline(spec, pipeline_root=tmp_path / "root", overrides=overrides))

    assert {k: r.state for k, r in result.results.items()} == dict.fromkeys(spec["components"], L.COMPLETE)
    min_rating = spec["components"]["high"]["parameters"]["min_rating"]
    everything, filtered = result.output("example_gen", "examples"), result.output("high", "filtered")
    kept = read_examples(filtered)
    assert np.all(kept.data.ratings["user_rating"] >= min_rating)
    assert 0 < kept.data.num_ratings < read_examples(everything).data.num_ratings
    assert filtered.properties["split_config"] == everything.properties["split_config"]
    # the Trainer trained on the filtered training split, and exported a model
    metrics = json.loads(result.output("trainer", "model_run").properties["metrics"])
    assert metrics["num_train_examples"] == len(kept.splits["train"]) == filtered.properties["num_train"]
    assert (result.output("trainer", "model").serving_dir / "saved_model.pb").is_file()
