"""StatisticsGen, SchemaGen and ExampleValidator (TFDV's roles, on our Examples).

* ``ExampleStatistics``: ``Split-<name>/FeatureStats.json`` per split: for every feature
  ``count``, ``missing`` (empty strings / NaN), numeric ``min``/``max``/``mean``/``std``,
  categorical ``num_unique`` (vocabulary size) and ``value_counts`` (when at most 5000 values).
* ``Schema``: ``schema.json``: each feature's kind, whether it is required, a numeric domain
  (``min``/``max`` from the training split) for ``range_features``, and a categorical domain
  (the training vocabulary) for string features with at most ``max_domain_size`` values.
* ``ExampleAnomalies``: ``Split-<name>/SchemaDiff.json`` listing missing features, out-of-range
  values and unseen categorical values above ``max_unseen_fraction``. Anomalies fail the pipeline
  unless ``fail_on_anomalies: false``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.base import Channel, Component, ComponentError, ExecutionContext, Param

__all__ = ["coded_statistics", "ExampleValidator", "feature_statistics", "find_anomalies", "MAX_VALUE_COUNTS",
           "read_statistics", "SchemaGen", "StatisticsGen"]

logger = logging.getLogger(__name__)

MAX_VALUE_COUNTS = 5000


def feature_statistics(values: np.ndarray) -> dict[str, Any]:
    """Statistics of one column (``[n]`` or ``[n, w]``)."""
    n = int(values.shape[0])
    if values.dtype == object:
        strings = values.astype(str)
        missing = int((strings == "").sum())
        uniq, counts = np.unique(strings, return_counts=True)
        stats: dict[str, Any] = {"kind": "bytes", "count": n, "missing": missing, "num_unique": int(len(uniq))}
        if len(uniq) <= MAX_VALUE_COUNTS:
            stats["value_counts"] = {str(u): int(c) for u, c in zip(uniq, counts)}
        return stats
    x = values.astype(np.float64).reshape(n, -1)
    finite = np.isfinite(x).all(axis=1)
    good = x[finite]
    stats = {"kind": "float" if values.dtype.kind == "f" else "int", "count": n, "missing": int((~finite).sum()),
             "width": int(x.shape[1]) if values.ndim == 2 else 0}
    if len(good):
        stats.update(min=float(good.min()), max=float(good.max()), mean=float(good.mean()), std=float(good.std()))
    return stats


def coded_statistics(codes: np.ndarray, ids: np.ndarray) -> dict[str, Any]:
    """:func:`feature_statistics` of the string column ``ids[codes]`` without building it: counts of
    the codes (int ``[n]``) by ``np.bincount``, one string per distinct id (``ids``: object ``[V]``)."""
    counts = np.bincount(np.asarray(codes, np.int64), minlength=len(ids))
    used = np.flatnonzero(counts)
    values, n = ids[used].astype(str), int(len(codes))
    stats: dict[str, Any] = {"kind": "bytes", "count": n, "missing": int(counts[used][values == ""].sum()),
                             "num_unique": int(len(used))}
    if len(used) <= MAX_VALUE_COUNTS:
        stats["value_counts"] = {str(v): int(c) for v, c in zip(values, counts[used])}
    return stats


def _split_statistics(loaded: Any, rows: np.ndarray) -> dict[str, dict[str, Any]]:
    """Every feature's statistics over ``rows`` of Examples read back: the string columns, or for a
    prepared dataset (your own data) the same columns (``user_id``, ``movie_id``, ``user_rating``,
    ``timestamp``) computed from its codes."""
    d = loaded.data
    if loaded.prepared is None:
        return {k: feature_statistics(v[rows]) for k, v in d.ratings.items()}
    return {"user_id": coded_statistics(d.user[rows], d.user_ids), "movie_id": coded_statistics(d.item[rows], d.item_ids),
            "user_rating": feature_statistics(np.asarray(d.rating[rows], np.float32)),
            "timestamp": feature_statistics(np.asarray(d.timestamp[rows], np.int64))}


class StatisticsGen(Component):
    """Per-split feature statistics of an ``Examples`` artifact."""

    INPUTS = {"examples": Channel(A.EXAMPLES)}
    OUTPUTS = {"statistics": Channel(A.EXAMPLE_STATISTICS)}

    def execute(self, ctx: ExecutionContext) -> None:
        from tfrs_lab.components.example_gen import read_examples

        loaded = read_examples(ctx.inputs["examples"])
        out = ctx.outputs["statistics"]
        for split, rows in loaded.splits.items():
            stats = _split_statistics(loaded, rows)
            stats["movie_id"]["catalogue_size"] = int(len(loaded.data.movies["movie_id"]))
            out.split_uri(split).mkdir(parents=True, exist_ok=True)
            (out.split_uri(split) / A.STATISTICS_FILE).write_text(json.dumps(stats, indent=1, sort_keys=True))
        out.properties[A.SPLIT_NAMES] = json.dumps(list(loaded.splits))


def read_statistics(stats: A.Artifact, split: str) -> dict[str, Any]:
    return json.loads((stats.split_uri(split) / A.STATISTICS_FILE).read_text())


class SchemaGen(Component):
    """Infers a schema from the training split's statistics."""

    INPUTS = {"statistics": Channel(A.EXAMPLE_STATISTICS)}
    OUTPUTS = {"schema": Channel(A.SCHEMA)}
    PARAMETERS = {
        "range_features": Param(list, ["user_rating", "bucketized_user_age", "user_gender", "user_occupation_label"],
                                "numeric features whose training [min, max] becomes their domain"),
        "max_domain_size": Param(int, 2000, "string features with more training values get no domain"),
    }

    def execute(self, ctx: ExecutionContext) -> None:
        stats = read_statistics(ctx.inputs["statistics"], "train")
        features = {}
        for name, s in stats.items():
            f: dict[str, Any] = {"kind": s["kind"], "required": True}
            if s["kind"] != "bytes" and name in self.parameters["range_features"] and "min" in s:
                f["domain"] = {"min": s["min"], "max": s["max"]}
            if s["kind"] == "bytes" and "value_counts" in s and s["num_unique"] <= self.parameters["max_domain_size"]:
                f["values"] = sorted(s["value_counts"])
            features[name] = f
        (ctx.outputs["schema"].path / A.SCHEMA_FILE).write_text(json.dumps({"features": features}, indent=1))


def find_anomalies(stats: dict[str, Any], schema: dict[str, Any], max_unseen_fraction: float) -> dict[str, str]:
    """``{feature: description}`` of the split ``stats`` against ``schema``."""
    found = {}
    for name, f in schema["features"].items():
        s = stats.get(name)
        if s is None:
            found[name] = "feature missing from the data"
            continue
        if f.get("required") and s["missing"]:
            found[name] = f"{s['missing']} of {s['count']} examples have no value"
            continue
        dom = f.get("domain")
        if dom and "min" in s and (s["min"] < dom["min"] or s["max"] > dom["max"]):
            found[name] = f"values in [{s['min']:g}, {s['max']:g}] outside the schema domain [{dom['min']:g}, {dom['max']:g}]"
            continue
        if "values" in f and "value_counts" in s and s["count"]:
            known = set(f["values"])
            unseen = sum(c for v, c in s["value_counts"].items() if v not in known)
            if unseen / s["count"] > max_unseen_fraction:
                found[name] = (f"{unseen} of {s['count']} values ({unseen / s['count']:.1%}) are not in the schema's "
                               f"vocabulary (allowed {max_unseen_fraction:.1%})")
    for name in stats:
        if name not in schema["features"]:
            found[name] = "feature not in the schema"
    return found


class ExampleValidator(Component):
    """Checks every split's statistics against the schema."""

    INPUTS = {"statistics": Channel(A.EXAMPLE_STATISTICS), "schema": Channel(A.SCHEMA)}
    OUTPUTS = {"anomalies": Channel(A.EXAMPLE_ANOMALIES)}
    PARAMETERS = {
        "max_unseen_fraction": Param(float, 0.05, "share of unseen categorical values tolerated per feature"),
        "fail_on_anomalies": Param(bool, True, "false: record anomalies and let the pipeline go on"),
    }

    def execute(self, ctx: ExecutionContext) -> None:
        stats_art = ctx.inputs["statistics"]
        schema = json.loads((ctx.inputs["schema"].path / A.SCHEMA_FILE).read_text())
        out = ctx.outputs["anomalies"]
        total, first = 0, None
        for split in stats_art.split_names:
            found = find_anomalies(read_statistics(stats_art, split), schema, self.parameters["max_unseen_fraction"])
            out.split_uri(split).mkdir(parents=True, exist_ok=True)
            (out.split_uri(split) / A.ANOMALIES_FILE).write_text(json.dumps(found, indent=1, sort_keys=True))
            total += len(found)
            if found and first is None:
                name = sorted(found)[0]
                first = f"{split}.{name}: {found[name]}"
            for name, what in sorted(found.items()):
                logger.warning("%s: anomaly in split %s, feature %s: %s", ctx.component_id, split, name, what)
        out.properties.update({A.SPLIT_NAMES: stats_art.properties.get(A.SPLIT_NAMES, "[]"), "num_anomalies": total})
        if total and self.parameters["fail_on_anomalies"]:
            raise ComponentError(f"{ctx.component_id}.{first} ({total} anomalies in all; details in {out.uri}; "
                                 "set fail_on_anomalies: false to go on anyway)")
