"""Transform: fits the vocabularies and feature statistics once, as an artifact.

The ``TransformGraph`` artifact holds ``vocabularies.npz`` + ``vocabularies.json`` (a
:class:`tfrs_lab.data.features.Vocabularies` fitted on the training split by the task's own
``Task.vocabularies`` — the function every ``train`` run fits with —, with the task's fit
parameters: ``Task.vocabulary_fit``) and ``feature_stats.json``. On your own data (Examples that
reference a prepared dataset) the fit reads the preparation's codes and vocabularies
(``Interactions.vocabularies``): no second encoding of the ids.
The Trainer hands it to the run as ``TaskInputs.vocabularies``, so the model is built — and
exported, lookup tables included — from exactly these vocabularies (train/serve parity); a Trainer
whose config asks for a different fit fails with the differing parameter named.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.artifacts import Artifact
from tfrs_lab.components.base import Channel, Component, ComponentError, ExecutionContext, Param

__all__ = ["config_file_text", "examples_overrides", "FEATURE_STATS", "load_vocabularies", "nest_overrides", "save_vocabularies",
           "task_config", "Transform", "VOCAB_ARRAYS", "VOCAB_META"]

VOCAB_ARRAYS = "vocabularies.npz"
VOCAB_META = "vocabularies.json"
FEATURE_STATS = "feature_stats.json"

def config_file_text(path: str | None, task: str | None = None) -> str:
    """The content of the config file a component reads, part of its cache key: its ``config``
    parameter's file, else ``task``'s default ``configs/<task>.yaml`` (an edited default config
    re-runs the component); '' for none."""
    from tfrs_lab.config import default_config_file

    if not path and task:
        path = str(default_config_file(task))
    return Path(path).read_text() if path and Path(path).is_file() else ""


def task_config(component: str, task: str, config: str | None, overrides: dict[str, Any],
                examples: Artifact | None = None):
    """The task's resolved config (``configs/<task>.yaml`` unless ``config``) with ``overrides``
    (dotted key -> value) and, given ``examples``, the data fields set to what ExampleGen split them
    with (:func:`examples_overrides`)."""
    from tfrs_lab.config import TASKS, default_config_file, load_config

    if task not in TASKS:
        raise ComponentError(f"{component}.task: must be one of {', '.join(TASKS)}, got {task!r}")
    files = [config] if config else [default_config_file(task)]
    extra = examples_overrides(component, overrides, examples)
    try:
        return load_config(task, files, (), extra=extra)
    except ValueError as e:
        if examples is not None and str(e).startswith("data.split"):  # a task refuses a split it cannot use
            raise ComponentError(f"{component}.examples: ExampleGen's {e}") from e
        raise ComponentError(f"{component}.overrides: {e}") from e


def examples_overrides(component: str, overrides: dict[str, Any], examples: Artifact | None) -> dict[str, Any]:
    """The nested config values of a component reading ``examples``: the ``data`` settings the
    Examples were split with (:func:`~tfrs_lab.components.example_gen.data_section`: split, cut-offs,
    held-out shares, predefined files), so the run re-splits identically, then ``overrides``.
    An override of one of those settings that disagrees with the Examples raises ComponentError
    naming it: the split is ExampleGen's parameter."""
    from tfrs_lab.components.example_gen import data_section

    if examples is None:
        return nest_overrides(component, overrides, {})
    section = data_section(examples)
    given = nest_overrides(component, overrides, {})

    def check(have: Any, want: Any, dotted: str) -> None:
        if isinstance(have, dict) and isinstance(want, dict):
            for k in have.keys() & want.keys():
                check(have[k], want[k], f"{dotted}.{k}")
        elif have != want:
            raise ComponentError(f"{component}.overrides.{dotted}: {want!r} disagrees with the Examples, which "
                                 f"ExampleGen split with {dotted}={have!r}: set the split on ExampleGen, or drop "
                                 f"the override")

    check(section, given.get("data", {}), "data")
    return nest_overrides(component, overrides, {"data": section})


def nest_overrides(component: str, overrides: dict[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    """``{"train.epochs": 3}`` merged into ``into`` as ``{"train": {"epochs": 3}}`` (values kept as
    given, not re-parsed as text: YAML 1.1 would read ``1e-09`` as a string)."""
    for dotted, value in overrides.items():
        node = into
        *parents, leaf = str(dotted).split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ComponentError(f"{component}.overrides.{dotted}: {part} is not a section")
        node[leaf] = value
    return into


def save_vocabularies(vocab: Any, fit: dict[str, Any], directory: Path) -> None:
    arrays, meta = {}, {"fit": fit, "scalars": {}, "object_arrays": [], "user_table": []}
    for field in dataclasses.fields(vocab):
        value = getattr(vocab, field.name)
        if isinstance(value, np.ndarray):
            arrays[field.name] = value.astype(str) if value.dtype == object else value
            if value.dtype == object:
                meta["object_arrays"].append(field.name)
        elif isinstance(value, dict):
            for k, v in value.items():
                arrays[f"user_table.{k}"] = v.astype(str) if v.dtype == object else v
                meta["user_table"].append([k, v.dtype == object])
        else:
            meta["scalars"][field.name] = value.item() if hasattr(value, "item") else value
    np.savez(directory / VOCAB_ARRAYS, **arrays)
    (directory / VOCAB_META).write_text(json.dumps(meta, indent=1))


def load_vocabularies(transform_graph: Artifact) -> tuple[Any, dict[str, Any]]:
    """``(Vocabularies, fit parameters)`` of a TransformGraph artifact."""
    from tfrs_lab.data.features import Vocabularies

    meta = json.loads((transform_graph.path / VOCAB_META).read_text())
    with np.load(transform_graph.path / VOCAB_ARRAYS, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    kwargs: dict[str, Any] = dict(meta["scalars"])
    for k, v in arrays.items():
        if not k.startswith("user_table."):
            kwargs[k] = v.astype(object) if k in meta["object_arrays"] else v
    kwargs["user_table"] = {k: (arrays[f"user_table.{k}"].astype(object) if is_obj else arrays[f"user_table.{k}"])
                            for k, is_obj in meta["user_table"]}
    return Vocabularies(**kwargs), meta["fit"]


class Transform(Component):
    """Fits the task's vocabularies on the training split of ``examples``."""

    INPUTS = {"examples": Channel(A.EXAMPLES)}
    OUTPUTS = {"transform_graph": Channel(A.TRANSFORM_GRAPH)}
    PARAMETERS = {
        "task": Param(str, "retrieval", "a registered task (tfrs_lab.config.TASKS): whose features to fit"),
        "config": Param(str, None, "task config YAML (default configs/<task>.yaml)"),
        "overrides": Param(dict, {}, "dotted config key -> value, as the Trainer's"),
    }

    def fingerprint_extra(self) -> str:
        return config_file_text(self.parameters["config"], self.parameters["task"])

    def execute(self, ctx: ExecutionContext) -> None:
        from tfrs_lab.components.example_gen import read_examples
        from tfrs_lab.training.task import get_task, rows_digest

        p = self.parameters
        examples = ctx.inputs["examples"]
        cfg = task_config(ctx.component_id, p["task"], p["config"], p["overrides"], examples)
        loaded = read_examples(examples)
        train = loaded.splits["train"]
        task = get_task(p["task"])
        fit = task.vocabulary_fit(cfg, loaded.data.has_user_features)
        vocab = task.vocabularies(cfg, loaded.data, train)  # the run's own fit: from the codes for own data
        out = ctx.outputs["transform_graph"]
        save_vocabularies(vocab, {**fit, "train_rows_sha256": rows_digest(train)}, out.path)
        stats = {"num_users": len(vocab.user_ids), "num_movies": len(vocab.movie_ids),
                 "title_vocab_size": vocab.title_vocab_size, "timestamp_mean": vocab.timestamp_mean,
                 "timestamp_std": vocab.timestamp_std, "timestamp_min": vocab.timestamp_min,
                 "timestamp_max": vocab.timestamp_max, "num_train_examples": int(len(train))}
        (out.path / FEATURE_STATS).write_text(json.dumps(stats, indent=1))
        out.properties.update({"task": p["task"], **{k: v for k, v in stats.items() if k.startswith("num_")}})
