"""Custom components the tests import by ``module:attr`` path (as users' pipeline files do)."""

from __future__ import annotations


from tfrs_lab.components.base import (ExampleAnomalies, Examples, InputArtifact, OutputArtifact, Parameter, Schema,
                                      component)


@component
def Loop(anomalies: InputArtifact[ExampleAnomalies], examples: OutputArtifact[Examples]) -> None:  # noqa: N802
    """Only used to build a cycle."""


@component
def HighRatings(examples: InputArtifact[Examples], filtered: OutputArtifact[Examples],
                min_rating: Parameter[float] = 4.0) -> None:  # noqa: N802
    """Keeps ratings >= min_rating: a custom component in the README's example."""
    from tfrs_lab.components.example_gen import CATALOGUE_COLUMNS, COLUMNS, ROW, read_examples, write_records
    from tfrs_lab.components import artifacts as A
    import numpy as np

    loaded = read_examples(examples)
    keep = loaded.data.ratings["user_rating"] >= min_rating
    columns = {**loaded.data.ratings, ROW: np.arange(loaded.data.num_ratings)}
    for split, rows in loaded.splits.items():
        write_records(filtered.split_uri(split) / A.EXAMPLES_FILE, columns, rows[keep[rows]])
    write_records(filtered.path / A.CATALOGUE_DIR / A.EXAMPLES_FILE, loaded.data.movies,
                  np.arange(len(loaded.data.movies["movie_id"])))
    filtered.properties.update({k: examples.properties[k] for k in (A.SPLIT_NAMES, COLUMNS, CATALOGUE_COLUMNS, "split")})
    filtered.properties["num_kept"] = int(keep.sum())


@component
def EmptySchema(schema: OutputArtifact[Schema]) -> None:  # noqa: N802
    """A component that needs nothing and no TensorFlow: writes an empty schema."""
    from tfrs_lab.components import artifacts as A

    (schema.path / A.SCHEMA_FILE).write_text("{}")
