"""Trainer: runs one of ``tfrs_lab.train``'s tasks on the pipeline's Examples (and Transform).

Outputs: ``model`` (TFX ``Model``: the SavedModel in ``Format-Serving/``, properties ``task``,
``model_name``) and ``model_run`` (``ModelRun``: the run directory — ``config.yaml``,
``metrics.json``, TensorBoard ``logs/`` — with the test metrics as properties).

The run is the library's own (:func:`tfrs_lab.training.runner.run_task` for the registered
``task``); the Examples are read back (TFRecords into a ``MovieLensData``; your own data's prepared
dataset through :func:`~tfrs_lab.training.runner.prepared_data`, the function ``train`` reads it with:
its codes as ``Interactions`` for a task that streams, as ``train`` gives them) and, with the
TransformGraph's vocabularies, handed to it explicitly as :class:`tfrs_lab.training.task.TaskInputs`; the run re-splits
them with the split and options ExampleGen recorded (:func:`~tfrs_lab.components.transform.examples_overrides`;
an override that disagrees is refused, a task refuses a split it cannot use) and must train on exactly
``Split-train``'s rows (sequential models excepted: they count predicted positions); on ``held-out-users``
the fold-in rows are splits of their own, never training rows. A Tuner's
``best_hyperparameters`` are applied as config overrides below the component's own ``overrides``.
"""

from __future__ import annotations

import json
import logging
import shutil
from typing import Any

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.base import Channel, Component, ComponentError, ExecutionContext, Param
from tfrs_lab.components.example_gen import DEFAULT_SPLIT_CONFIG
from tfrs_lab.components.transform import config_file_text, task_config

__all__ = ["BEST_OVERLAY_FILE", "METRICS", "read_hyperparameters", "run_data", "Trainer"]

logger = logging.getLogger(__name__)

METRICS = "metrics"  # ModelRun / ModelEvaluation property: the metrics as JSON
BEST_OVERLAY_FILE = "best_hyperparameters.yaml"


def read_hyperparameters(artifact: A.Artifact) -> dict[str, Any]:
    """The Tuner's best configuration as dotted config overrides (``{"model.embedding_dim": 64}``),
    from ``best_hyperparameters.yaml`` (the config overlay ``tfrs_lab.tuning`` writes next to TFX's
    ``best_hyperparameters.txt``)."""
    from tfrs_lab.config import load_yaml_text

    overlay = load_yaml_text((artifact.path / BEST_OVERLAY_FILE).read_text()) or {}
    overlay.pop("task", None)
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v

    walk(overlay, "")
    return flat


def run_data(task: str, cfg, loaded):
    """The data a run of ``task`` with ``cfg`` trains on from Examples read back (``LoadedExamples``):
    the table as read, or for your own data what ``train`` reads from the same prepared dataset
    (:func:`tfrs_lab.training.runner.prepared_data`: ``Interactions`` when the task streams on this
    split, else the string columns)."""
    from tfrs_lab.training.runner import prepared_data
    from tfrs_lab.training.task import get_task

    if loaded.prepared is None:
        return loaded.data
    t = get_task(task)
    return prepared_data(loaded.prepared, compact=t.streams(t.resolve_config(cfg)))


class Trainer(Component):
    """Trains, evaluates and exports a model with the library's trainer for ``task``."""

    INPUTS = {"examples": Channel(A.EXAMPLES), "transform_graph": Channel(A.TRANSFORM_GRAPH, optional=True),
              "hyperparameters": Channel(A.HYPERPARAMETERS, optional=True)}
    OUTPUTS = {"model": Channel(A.MODEL), "model_run": Channel(A.MODEL_RUN)}
    PARAMETERS = {
        "task": Param(str, "retrieval", "a registered task (tfrs_lab.config.TASKS)"),
        "config": Param(str, None, "task config YAML (default configs/<task>.yaml)"),
        "overrides": Param(dict, {}, "dotted config key -> value, e.g. {train.epochs: 3}"),
    }

    def fingerprint_extra(self) -> str:
        return config_file_text(self.parameters["config"], self.parameters["task"])

    def execute(self, ctx: ExecutionContext) -> None:
        from tfrs_lab.components.example_gen import read_examples
        from tfrs_lab.components.transform import load_vocabularies
        from tfrs_lab.training import rundir
        from tfrs_lab.training.runner import run_task
        from tfrs_lab.training.task import TaskInputs

        p = self.parameters
        examples = ctx.inputs["examples"]
        split_config = json.loads(examples.properties.get("split_config", "{}"))
        if examples.properties.get("split") == "hash" and split_config != DEFAULT_SPLIT_CONFIG:
            raise ComponentError(f"{ctx.component_id}.examples: the trainers split as docs/architecture.md#splits defines "
                                 f"(hash buckets {DEFAULT_SPLIT_CONFIG}); ExampleGen used {split_config}")
        overrides = dict(p["overrides"])
        hp = ctx.inputs.get("hyperparameters")
        if hp is not None:
            overrides = {**read_hyperparameters(hp), **overrides}
        cfg = task_config(ctx.component_id, p["task"], p["config"], overrides, examples)
        loaded = read_examples(examples)
        data = run_data(p["task"], cfg, loaded)
        vocab, fit = (None, None)
        if ctx.inputs.get("transform_graph") is not None:
            vocab, fit = load_vocabularies(ctx.inputs["transform_graph"])
        run_dir = ctx.outputs["model_run"].path
        shutil.rmtree(run_dir)  # the trainer writes it atomically (staged, then renamed)
        logger.info("%s: training %s on %d ratings", ctx.component_id, p["task"], data.num_ratings)
        metrics = run_task(p["task"], cfg, run_dir, TaskInputs(data, vocab, fit)).metrics
        export = run_dir / rundir.EXPORT_DIR / cfg.export.model_name / str(cfg.export.version)
        if not (export / "saved_model.pb").is_file():
            raise ComponentError(f"{ctx.component_id}.model: the trainer exported no SavedModel at {export}")
        if p["task"] != "sequential" and metrics.get("num_train_examples") not in (None, len(loaded.splits["train"])):
            raise ComponentError(f"{ctx.component_id}.examples: trained on {metrics['num_train_examples']} examples but "
                                 f"Split-train holds {len(loaded.splits['train'])}")
        model = ctx.outputs["model"]
        shutil.copytree(export, model.serving_dir)
        model.properties.update({"task": p["task"], "model_name": cfg.export.model_name})
        ctx.outputs["model_run"].properties.update({"task": p["task"], METRICS: json.dumps(metrics, sort_keys=True)})
