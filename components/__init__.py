"""TFX-style pipeline components (installed as ``tfrs_lab.components``).

The standard components import like ``tfx.components``::

    from tfrs_lab.components import ExampleGen, StatisticsGen, Trainer

They load lazily (PEP 562): ``import tfrs_lab.components`` imports no component module and no
TensorFlow; TensorFlow loads only when a component runs.

Modules:

* ``artifacts``: typed artifacts with TFX type names and on-disk conventions;
* ``base``: component specs (``Channel``, ``Param``, ``Component``), the ``@component`` decorator;
  ``code_closure``: the ``tfrs_lab`` sources a component reaches (its cache key's code part);
* ``runner``: pipelines from YAML, dependency order, caching; ``run``: its CLI;
* ``lineage``: the SQLite lineage store (ML Metadata's entities), ``serving_provenance``;
  ``lineage_cli``: its CLI; ``processes``: whether an execution's process still lives;
* standard components: ``example_gen``, ``data_validation`` (StatisticsGen, SchemaGen,
  ExampleValidator), ``transform``, ``tuner``, ``trainer``, ``evaluator``, ``infra_validator``,
  ``pusher``, ``bulk_inferrer``, ``cascade`` (retrieve -> rank in one SavedModel);
* ``kfp``: compile a pipeline to a Kubeflow Pipelines v2 spec; ``entrypoint``: one component in a
  container.

Nothing here is imported by ``tfrs_lab`` itself.
"""

from __future__ import annotations

import importlib
from typing import Any

COMPONENT_MODULES: dict[str, str] = {
    "ExampleGen": "example_gen",
    "StatisticsGen": "data_validation",
    "SchemaGen": "data_validation",
    "ExampleValidator": "data_validation",
    "Transform": "transform",
    "Tuner": "tuner",
    "Trainer": "trainer",
    "Evaluator": "evaluator",
    "InfraValidator": "infra_validator",
    "Pusher": "pusher",
    "BulkInferrer": "bulk_inferrer",
    "Cascade": "cascade",
}
"""The standard components: class name -> module of this package defining it (the one registry;
the pipeline runner resolves ``type: Trainer`` through it)."""

__all__ = list(COMPONENT_MODULES)


def __getattr__(name: str) -> Any:
    module = COMPONENT_MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
