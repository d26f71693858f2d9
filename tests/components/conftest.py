"""Fixtures for the component tests: tiny synthetic pipelines on 127.0.0.1."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import tfrs_lab  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)


DOCS = Path(__file__).resolve().parents[2] / "docs" / "pipelines.md"
DOCS_MODULE = "my_components"  # the module name docs/pipelines.md gives its custom component


def docs_blocks(section: str, language: str) -> list[str]:
    """The ``language`` code blocks of ``section`` (a ``###`` heading) of docs/pipelines.md, verbatim."""
    text = DOCS.read_text()
    body = text[text.index(f"### {section}\n"):]
    body = body[:body.find("\n### ", 1)] if "\n### " in body[1:] else body
    return re.findall(rf"```{language}\n(.*?)```", body, flags=re.S)


@pytest.fixture(scope="session")
def docs_components(tmp_path_factory) -> str:
    """docs/pipelines.md's custom component module, written as is and importable; returns its name."""
    where = tmp_path_factory.mktemp("docs-module")
    (where / f"{DOCS_MODULE}.py").write_text(docs_blocks("A custom component", "python")[0])
    sys.path.insert(0, str(where))
    yield DOCS_MODULE
    sys.path.remove(str(where))
    sys.modules.pop(DOCS_MODULE, None)


def pipeline_spec(data_dir: Path, *, name: str = "tiny_retrieval") -> dict:
    """The retrieval pipeline of configs/pipelines on the conftest's small synthetic spec, 2 epochs."""
    return {
        "name": name,
        "components": {
            "example_gen": {"type": "ExampleGen", "parameters": {
                "dataset": "synthetic", "data_dir": str(data_dir),
                "synthetic": {"num_users": 120, "num_movies": 80, "ratings_per_user": 25, "seed": 0}}},
            "statistics_gen": {"type": "StatisticsGen", "inputs": {"examples": "example_gen.examples"}},
            "schema_gen": {"type": "SchemaGen", "inputs": {"statistics": "statistics_gen.statistics"}},
            "example_validator": {"type": "ExampleValidator", "parameters": {"max_unseen_fraction": 0.2},
                                  "inputs": {"statistics": "statistics_gen.statistics", "schema": "schema_gen.schema"}},
            "transform": {"type": "Transform", "inputs": {"examples": "example_gen.examples"},
                          "parameters": {"task": "retrieval"}},
            "trainer": {"type": "Trainer", "inputs": {"examples": "example_gen.examples",
                                                      "transform_graph": "transform.transform_graph"},
                        "parameters": {"task": "retrieval", "overrides": {
                            "train.epochs": 2, "export.verify": False, "export.k": 20, "export.max_exclude": 20}}},
            # hit_rate@10 bar: a random ranking of the 80 movies scores ~0.125 (an untrained model 0.108), this
            # 2-epoch model 0.223; so the blessing says the model learned something
            "evaluator": {"type": "Evaluator", "inputs": {"model": "trainer.model", "model_run": "trainer.model_run",
                                                          "examples": "example_gen.examples"},
                          "parameters": {"thresholds": {"hit_rate@10": {"lower_bound": 0.15}},
                                         "change_thresholds": {"hit_rate@10": 0.0}}},
            "infra_validator": {"type": "InfraValidator", "parameters": {"make_warmup": True},
                                "inputs": {"model": "trainer.model", "examples": "example_gen.examples"}},
            "pusher": {"type": "Pusher", "inputs": {"model": "trainer.model", "model_blessing": "evaluator.blessing",
                                                    "infra_blessing": "infra_validator.blessing"}},
            "bulk_inferrer": {"type": "BulkInferrer", "parameters": {"k": 5},
                              "inputs": {"model": "trainer.model", "examples": "example_gen.examples",
                                         "model_blessing": "evaluator.blessing"}},
        },
    }


@pytest.fixture(scope="session")
def tiny_pipeline_file(tmp_path_factory, synthetic_data_dir) -> Path:
    import yaml

    path = tmp_path_factory.mktemp("pipeline-file") / "tiny.yaml"
    path.write_text(yaml.safe_dump(pipeline_spec(synthetic_data_dir), sort_keys=False))
    return path


@pytest.fixture(scope="session")
def first_run(tmp_path_factory, tiny_pipeline_file):
    """The tiny pipeline run once, cold, into a fresh root (returns the PipelineResult)."""
    from tfrs_lab.components.runner import load_pipeline, run_pipeline

    root = tmp_path_factory.mktemp("pipeline-root")
    return run_pipeline(load_pipeline(tiny_pipeline_file, pipeline_root=root))
