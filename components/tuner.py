"""Tuner: Keras Tuner search over the pipeline's Examples with :func:`tfrs_lab.tuning.run_search`.

Every trial runs the task's own trainer (as ``python -m tfrs_lab.tune`` does) on the Examples
read back from ExampleGen (handed over explicitly as ``TaskInputs``; your own data as the Trainer
reads it, :func:`~tfrs_lab.components.trainer.run_data`); the
objective is a validation metric (the search space's, ``configs/tuning/<task>.yaml`` by default).

Outputs (TFX's Tuner contract):

* ``best_hyperparameters`` (HyperParameters): ``best_hyperparameters.txt`` (TFX format:
  ``json.dumps(HyperParameters.get_config())``) and ``best_hyperparameters.yaml`` (the config
  overlay) — the Trainer applies it when wired to its ``hyperparameters`` input;
* ``tuner_results`` (TunerResults): ``tuner_results.json`` (trials best first), ``trials.csv``
  and the search directory (Keras Tuner state, per-trial run directories).
"""

from __future__ import annotations

import json
import logging
import shutil

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.base import Channel, Component, ComponentError, ExecutionContext, Param
from tfrs_lab.components.trainer import BEST_OVERLAY_FILE, run_data
from tfrs_lab.components.transform import config_file_text, examples_overrides

__all__ = ["Tuner"]

logger = logging.getLogger(__name__)


class Tuner(Component):
    INPUTS = {"examples": Channel(A.EXAMPLES)}
    OUTPUTS = {"best_hyperparameters": Channel(A.HYPERPARAMETERS), "tuner_results": Channel(A.TUNER_RESULTS)}
    PARAMETERS = {
        "task": Param(str, "retrieval", "a registered task (tfrs_lab.config.TASKS)"),
        "config": Param(str, None, "task config YAML (default configs/<task>.yaml)"),
        "overrides": Param(dict, {}, "dotted config key -> value for every trial"),
        "space_file": Param(str, None, "search space YAML (default configs/tuning/<task>.yaml)"),
        "tuner": Param(str, "random", "random | bayesian | hyperband | grid"),
        "max_trials": Param(int, 4, "trials to run"),
        "seed": Param(int, None, "the tuner's sampling seed (default train.seed)"),
    }

    def fingerprint_extra(self) -> str:
        """The config and search-space files the search reads (the task's defaults when not given)."""
        from pathlib import Path

        from tfrs_lab.tuning.space import default_space_file

        p = self.parameters
        space = Path(p["space_file"] or default_space_file(p["task"]))
        return config_file_text(p["config"], p["task"]) + (space.read_text() if space.is_file() else "")

    def execute(self, ctx: ExecutionContext) -> None:
        from tfrs_lab.components.example_gen import read_examples
        from tfrs_lab.components.transform import task_config
        from tfrs_lab.config import TASKS
        from tfrs_lab.training.task import TaskInputs
        from tfrs_lab.tuning import run_search

        p = self.parameters
        if p["task"] not in TASKS:
            raise ComponentError(f"{ctx.component_id}.task: must be one of {', '.join(TASKS)}, got {p['task']!r}")
        examples = ctx.inputs["examples"]
        extra = examples_overrides(ctx.component_id, p["overrides"], examples)
        loaded = read_examples(examples)
        results = ctx.outputs["tuner_results"]
        search_dir = results.path / "search"
        logger.info("%s: %s search of %s, %d trials", ctx.component_id, p["tuner"], p["task"], p["max_trials"])
        try:
            result = run_search(p["task"], search_dir, space_file=p["space_file"],
                                config_files=[p["config"]] if p["config"] else (), extra=extra, tuner=p["tuner"],
                                max_trials=p["max_trials"], seed=p["seed"], overwrite=True,
                                inputs=TaskInputs(run_data(p["task"], task_config(
                                    ctx.component_id, p["task"], p["config"], p["overrides"], examples), loaded)))
        except RuntimeError as e:  # no trial completed
            raise ComponentError(f"{ctx.component_id}.max_trials: {e}") from e
        best = ctx.outputs["best_hyperparameters"]
        shutil.copy2(result.best_hyperparameters_txt, best.path / A.HYPERPARAMETERS_FILE)
        shutil.copy2(result.best_overlay_yaml, best.path / BEST_OVERLAY_FILE)
        shutil.copy2(result.tuner_results_json, results.path / A.TUNER_RESULTS_FILE)
        shutil.copy2(result.trials_csv, results.path / "trials.csv")
        summary = {"objective": result.objective, "direction": result.direction, "best_value": result.best_value,
                   "best_trial": result.best_trial_id, "num_trials": len(result.trials)}
        best.properties.update({**summary, "overlay": json.dumps(result.best_overlay, sort_keys=True, default=str)})
        results.properties.update(summary)
