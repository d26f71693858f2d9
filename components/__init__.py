"""TFX-style pipeline components (installed as ``tfrs_lab.components``).

Modules:

* ``artifacts``: typed artifacts with TFX type names and on-disk conventions;
* ``base``: component specs (``Channel``, ``Param``, ``Component``), the ``@component`` decorator;
* ``runner``: pipelines from YAML, dependency order, caching; ``run``: its CLI;
* ``lineage``: the SQLite lineage store (ML Metadata's entities), ``serving_provenance``;
  ``lineage_cli``: its CLI;
* standard components: ``example_gen``, ``data_validation`` (StatisticsGen, SchemaGen,
  ExampleValidator), ``transform``, ``tuner``, ``trainer``, ``evaluator``, ``infra_validator``,
  ``pusher``, ``bulk_inferrer``;
* ``kfp``: compile a pipeline to a Kubeflow Pipelines v2 spec; ``entrypoint``: one component in a
  container.

Nothing here is imported by ``tfrs_lab`` itself; TensorFlow loads only when a component runs.
"""
