"""Typed artifacts with TFX's type names and on-disk conventions.

An artifact is a directory (``uri``) plus typed properties, recorded in the lineage store. The
conventions follow TFX so tools that know TFX's layout find their way:

* ``Examples``: ``Split-<name>/data_tfrecord-00000-of-00001.gz`` (GZIP TFRecords of
  ``tf.train.Example``), property ``split_names`` (JSON list);
* ``Model``: ``Format-Serving/`` holds the SavedModel;
* ``ModelBlessing``: an empty ``BLESSED`` or ``NOT_BLESSED`` file, property ``blessed`` (0/1);
* ``InfraBlessing``: ``INFRA_BLESSED`` or ``INFRA_NOT_BLESSED``, property ``blessed``;
* ``PushedModel``: properties ``pushed``, ``pushed_destination``, ``pushed_version`` (unix seconds).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

__all__ = ["ANOMALIES_FILE", "Artifact", "ARTIFACT_TYPES", "BLESSED", "BLESSED_FILE", "CATALOGUE_DIR",
           "EVALUATION_FILE", "EXAMPLE_ANOMALIES", "EXAMPLE_STATISTICS", "EXAMPLES", "EXAMPLES_FILE",
           "HYPERPARAMETERS", "HYPERPARAMETERS_FILE", "INFERENCE_FILE", "INFERENCE_RESULT", "INFRA_BLESSED_FILE",
           "INFRA_BLESSING", "INFRA_NOT_BLESSED_FILE", "MODEL", "MODEL_BLESSING", "MODEL_EVALUATION", "MODEL_RUN",
           "NOT_BLESSED_FILE", "PUSHED", "PUSHED_DESTINATION", "PUSHED_MODEL", "PUSHED_VERSION", "SCHEMA",
           "SCHEMA_FILE", "SERVING_DIR", "SPLIT_NAMES", "SPLIT_PREFIX", "STATISTICS_FILE", "TRANSFORM_GRAPH",
           "TUNER_RESULTS", "TUNER_RESULTS_FILE", "write_blessing"]

# TFX artifact type names (tfx.types.standard_artifacts).
EXAMPLES = "Examples"
EXAMPLE_STATISTICS = "ExampleStatistics"
SCHEMA = "Schema"
EXAMPLE_ANOMALIES = "ExampleAnomalies"
TRANSFORM_GRAPH = "TransformGraph"
MODEL = "Model"
MODEL_RUN = "ModelRun"
HYPERPARAMETERS = "HyperParameters"
TUNER_RESULTS = "TunerResults"
MODEL_EVALUATION = "ModelEvaluation"
MODEL_BLESSING = "ModelBlessing"
INFRA_BLESSING = "InfraBlessing"
PUSHED_MODEL = "PushedModel"
INFERENCE_RESULT = "InferenceResult"

ARTIFACT_TYPES = (EXAMPLES, EXAMPLE_STATISTICS, SCHEMA, EXAMPLE_ANOMALIES, TRANSFORM_GRAPH, MODEL, MODEL_RUN,
                  HYPERPARAMETERS, TUNER_RESULTS, MODEL_EVALUATION, MODEL_BLESSING, INFRA_BLESSING, PUSHED_MODEL,
                  INFERENCE_RESULT)

# On-disk names (TFX's).
SPLIT_PREFIX = "Split-"
SERVING_DIR = "Format-Serving"
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"
INFRA_BLESSED_FILE = "INFRA_BLESSED"
INFRA_NOT_BLESSED_FILE = "INFRA_NOT_BLESSED"
EXAMPLES_FILE = "data_tfrecord-00000-of-00001.gz"
CATALOGUE_DIR = "catalogue"  # our addition to Examples: the movie catalogue, same record format
STATISTICS_FILE = "FeatureStats.json"
SCHEMA_FILE = "schema.json"
ANOMALIES_FILE = "SchemaDiff.json"
HYPERPARAMETERS_FILE = "best_hyperparameters.txt"
TUNER_RESULTS_FILE = "tuner_results.json"
EVALUATION_FILE = "metrics.json"
INFERENCE_FILE = "top_k.jsonl"

# Property names.
SPLIT_NAMES = "split_names"
BLESSED = "blessed"
PUSHED = "pushed"
PUSHED_DESTINATION = "pushed_destination"
PUSHED_VERSION = "pushed_version"


@dataclasses.dataclass
class Artifact:
    """One artifact: ``type_name`` (a TFX type name), ``uri`` (a directory) and JSON-able
    ``properties``. ``id`` is the lineage store's id once recorded; ``fingerprint`` identifies the
    artifact for caching (derived from the producing execution's cache key)."""

    type_name: str
    uri: str
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    id: int | None = None
    fingerprint: str = ""

    @property
    def path(self) -> Path:
        return Path(self.uri)

    # -- TFX conventions ------------------------------------------------------------------------

    def split_uri(self, split: str) -> Path:
        """``<uri>/Split-<split>`` (Examples, ExampleStatistics, ExampleAnomalies)."""
        return self.path / f"{SPLIT_PREFIX}{split}"

    @property
    def split_names(self) -> list[str]:
        return list(json.loads(self.properties.get(SPLIT_NAMES, "[]")))

    @property
    def serving_dir(self) -> Path:
        """``<uri>/Format-Serving`` (Model)."""
        return self.path / SERVING_DIR

    @property
    def blessed(self) -> bool:
        """ModelBlessing / InfraBlessing: whether the blessed file is there (and the property says so)."""
        files = {MODEL_BLESSING: BLESSED_FILE, INFRA_BLESSING: INFRA_BLESSED_FILE}
        if self.type_name not in files:
            raise TypeError(f"{self.type_name} artifacts have no blessing")
        return bool(self.properties.get(BLESSED)) and (self.path / files[self.type_name]).exists()

    @property
    def pushed(self) -> bool:
        return bool(self.properties.get(PUSHED))

    @property
    def pushed_destination(self) -> str:
        return str(self.properties.get(PUSHED_DESTINATION, ""))

    @property
    def pushed_version(self) -> int | None:
        v = self.properties.get(PUSHED_VERSION)
        return None if v is None else int(v)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type_name, "uri": self.uri, "properties": self.properties, "id": self.id,
                "fingerprint": self.fingerprint}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Artifact":
        return cls(d["type"], d["uri"], dict(d.get("properties") or {}), d.get("id"), d.get("fingerprint", ""))


def write_blessing(artifact: Artifact, blessed: bool) -> None:
    """Writes the ``BLESSED``/``NOT_BLESSED`` (or ``INFRA_…``) file and the ``blessed`` property."""
    names = {MODEL_BLESSING: (BLESSED_FILE, NOT_BLESSED_FILE), INFRA_BLESSING: (INFRA_BLESSED_FILE, INFRA_NOT_BLESSED_FILE)}
    yes, no = names[artifact.type_name]
    artifact.path.mkdir(parents=True, exist_ok=True)
    for name in (yes, no):
        (artifact.path / name).unlink(missing_ok=True)
    (artifact.path / (yes if blessed else no)).touch()
    artifact.properties[BLESSED] = int(blessed)
