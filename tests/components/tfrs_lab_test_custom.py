"""Custom components the tests import by ``module:attr`` path (as users' pipeline files do); the
documented one (HighRatings) comes from docs/pipelines.md itself (conftest ``docs_components``)."""

from __future__ import annotations


from tfrs_lab.components.base import ExampleAnomalies, Examples, InputArtifact, OutputArtifact, Schema, component


@component
def Loop(anomalies: InputArtifact[ExampleAnomalies], examples: OutputArtifact[Examples]) -> None:  # noqa: N802
    """Only used to build a cycle."""


@component
def EmptySchema(schema: OutputArtifact[Schema]) -> None:  # noqa: N802
    """A component that needs nothing and no TensorFlow: writes an empty schema."""
    from tfrs_lab.components import artifacts as A

    (schema.path / A.SCHEMA_FILE).write_text("{}")
