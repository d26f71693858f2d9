"""Evaluator: the candidate's test metrics, and a blessing by value and change thresholds.

Metrics are the trainer's test-split metrics (``metrics.json`` of the ModelRun: full-catalogue
``hit_rate@K`` for hash-split retrieval, ``recall@K``/``ndcg@K``/``mrr`` for leave-last-out, ``rmse``/
``mae`` for rating models; docs/architecture.md#metricsjson). Blessing (TFX semantics):

* ``thresholds``: ``{metric: {lower_bound: x, upper_bound: y}}`` — the value must lie within;
* ``change_thresholds``: ``{metric: tolerance}`` — compared with the latest *blessed* model of
  the pipeline (from the lineage store), the candidate may be worse by at most ``tolerance``
  (absolute; ``rmse``/``mae`` are lower-is-better, everything else higher-is-better). The first
  model of a pipeline has no baseline and passes the change checks.

With the ``examples`` input the Evaluator also evaluates the exported SavedModel itself — the
artifact that will be served — on the test split, and reports ``served_<metric>``: for retrieval on a
rating-level split (protocol ``hash``: the ``hash``, ``time`` and ``predefined`` splits)
``served_hit_rate@K`` (K up to the export's top-K) through the ``query_with_features``
signature fed the same features the trainer evaluated with (histories from train + validation),
for explicit rating models ``served_rmse``/``served_mae`` through ``serving_default`` (the user
features the model stored at export, timestamp = serving time). Close agreement with the
trainer's numbers is the train/serve parity check; thresholds may name either.

Outputs ``evaluation`` (ModelEvaluation: ``metrics.json`` with metrics, baseline and each check)
and ``blessing`` (ModelBlessing: ``BLESSED`` or ``NOT_BLESSED``; properties ``blessed``,
``metrics``, ``model_uri``, ``baseline_model_uri``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.base import Channel, Component, ComponentError, ExecutionContext, Param
from tfrs_lab.components.trainer import METRICS

__all__ = ["check_blessing", "Evaluator", "LOWER_IS_BETTER", "served_metrics"]

logger = logging.getLogger(__name__)

LOWER_IS_BETTER = frozenset({"rmse", "mae", "loss"})


def check_blessing(metrics: dict[str, float], thresholds: dict[str, Any], change_thresholds: dict[str, Any],
                   baseline: dict[str, float] | None, component: str = "Evaluator") -> list[dict[str, Any]]:
    """Every check as ``{metric, kind, value, bound, passed}``; raises :class:`ComponentError` for
    a threshold on a metric the model does not report."""
    checks = []
    for name, t in thresholds.items():
        if name not in metrics:
            raise ComponentError(f"{component}.thresholds.{name}: the model reports no such metric "
                                 f"(has {', '.join(sorted(k for k, v in metrics.items() if isinstance(v, (int, float))))})")
        if not isinstance(t, dict) or not set(t) <= {"lower_bound", "upper_bound"} or not t:
            raise ComponentError(f"{component}.thresholds.{name}: give lower_bound and/or upper_bound, got {t!r}")
        v = float(metrics[name])
        lo, hi = t.get("lower_bound"), t.get("upper_bound")
        passed = (lo is None or v >= lo) and (hi is None or v <= hi)
        checks.append({"metric": name, "kind": "value", "value": v, "bound": [lo, hi], "passed": passed})
    for name, tol in change_thresholds.items():
        if name not in metrics:
            raise ComponentError(f"{component}.change_thresholds.{name}: the model reports no such metric")
        if not isinstance(tol, (int, float)) or tol < 0:
            raise ComponentError(f"{component}.change_thresholds.{name}: must be a number >= 0, got {tol!r}")
        if baseline is None or name not in baseline:
            checks.append({"metric": name, "kind": "change", "value": float(metrics[name]), "bound": None, "passed": True})
            continue
        base, v = float(baseline[name]), float(metrics[name])
        lower = name in LOWER_IS_BETTER
        bound = base + tol if lower else base - tol
        passed = v <= bound if lower else v >= bound
        checks.append({"metric": name, "kind": "change", "value": v, "baseline": base, "bound": bound, "passed": passed})
    return checks


def served_metrics(model: A.Artifact, model_run: A.Artifact, examples: A.Artifact, batch_size: int = 1024
                   ) -> dict[str, float]:
    """Test-split metrics of the exported SavedModel (see the module docstring); ``{}`` for tasks
    and protocols without a served evaluation (sequential, leave-last-out retrieval, implicit ranking)."""
    import numpy as np
    import tensorflow as tf

    from tfrs_lab.components.example_gen import read_examples
    from tfrs_lab.config import load_config
    from tfrs_lab.data.splits import HASH, PROTOCOLS, Split
    from tfrs_lab.evaluation.metrics import hits_at_k, rating_metrics
    from tfrs_lab.export import signatures as sig
    from tfrs_lab.serving.servable import register_scann_ops

    task = model.properties.get("task")
    cfg = load_config(task, [model_run.path / "config.yaml"])
    loaded = read_examples(examples)
    test = loaded.splits["test"]
    if not len(test):
        return {}
    register_scann_ops()
    saved = tf.saved_model.load(str(model.serving_dir))
    data = loaded.data
    if task == "retrieval" and PROTOCOLS[loaded.protocol] == HASH:  # hash, time, predefined: rating-level
        from tfrs_lab.training.retrieval import hyperparameters

        hp = hyperparameters(cfg, data.has_user_features)
        split = Split(loaded.protocol, loaded.splits["train"], loaded.splits["validation"], test)
        batch = _test_features(data, split, hp, loaded.prepared is not None)
        fn = saved.signatures[sig.QUERY_FEATURES]
        defaults = {"bucketized_user_age": np.float32, "user_gender": np.int64, "user_occupation_label": np.int64}
        found = []
        for start in range(0, len(test), batch_size):
            cols = batch(np.arange(start, min(start + batch_size, len(test))))
            n = len(cols["user_id"])
            inputs = {sig.USER_ID: cols["user_id"], sig.TIMESTAMP: np.asarray(cols["timestamp"], np.int64),
                      **{k: np.asarray(cols[k] if k in cols else np.zeros(n), t) for k, t in defaults.items()},
                      sig.HISTORY: cols["history"] if "history" in cols else np.full((n, 1), "", dtype=object)}
            found.append(fn(**{k: tf.constant(v) for k, v in inputs.items()})[sig.ITEM_IDS].numpy().astype(str))
        ids = np.concatenate(found)
        ks = [k for k in sorted(set(cfg.eval.ks)) if k <= ids.shape[1]]
        targets = loaded.ids(test)[1].astype(str)
        return {f"served_{k}": round(v, 6) for k, v in hits_at_k(ids, targets, ks).items()}
    if task == "ranking" and cfg.model.objective == "explicit":
        fn = saved.signatures[sig.SERVING_DEFAULT]
        preds = []
        for start in range(0, len(test), batch_size):
            users, items = loaded.ids(test[start:start + batch_size])
            out = fn(**{sig.USER_ID: tf.constant(users.astype(str)), sig.ITEM_ID: tf.constant(items.astype(str))})
            preds.append(np.asarray(out[sig.RATING]).reshape(-1))
        m = rating_metrics(np.concatenate(preds), loaded.labels(test))
        return {f"served_{k}": round(v, 6) for k, v in m.items()}
    return {}


def _test_features(data, split, hp, coded: bool):
    """``f(positions) -> columns`` of the test rows ``split.test[positions]`` the trainer evaluated
    with (ids, timestamp, demographics, the history from train + validation rows): for your own data
    gathered from the codes by the retrieval stream (:class:`tfrs_lab.training.stream.RetrievalStream`,
    what the trainer itself read), else the string columns of ``split_columns``."""
    if coded:
        from tfrs_lab.training.stream import RetrievalStream

        stream = RetrievalStream(data, split, hp.history_length if "history" in hp.query_features else 0)
        return lambda positions: stream.features("test", positions)
    from tfrs_lab.training.retrieval import split_columns

    cols = split_columns(data, split, hp)["test"]
    return lambda positions: {k: v[positions] for k, v in cols.items()}


class Evaluator(Component):
    """Blesses the candidate model when every threshold passes."""

    INPUTS = {"model": Channel(A.MODEL), "model_run": Channel(A.MODEL_RUN),
              "examples": Channel(A.EXAMPLES, optional=True)}
    OUTPUTS = {"evaluation": Channel(A.MODEL_EVALUATION), "blessing": Channel(A.MODEL_BLESSING)}
    PARAMETERS = {
        "thresholds": Param(dict, {}, "metric -> {lower_bound, upper_bound}"),
        "change_thresholds": Param(dict, {}, "metric -> tolerated worsening vs the latest blessed model"),
    }

    def execute(self, ctx: ExecutionContext) -> None:
        metrics = json.loads(ctx.inputs["model_run"].properties[METRICS])
        if ctx.inputs.get("examples") is not None:
            split = ctx.inputs["examples"].properties.get("split", "hash")
            if metrics.get("split", split) != split:  # served metrics on another test set would not compare
                raise ComponentError(f"{ctx.component_id}.examples: split {split}, but the model was trained and tested "
                                     f"on the {metrics['split']} split: wire the Examples the Trainer read")
            served = served_metrics(ctx.inputs["model"], ctx.inputs["model_run"], ctx.inputs["examples"])
            for k, v in served.items():
                logger.info("%s: %s = %.4f (trainer: %s)", ctx.component_id, k, v, metrics.get(k.removeprefix("served_")))
            metrics = {**metrics, **served}
        baseline_art = None
        if ctx.store is not None and ctx.pipeline:
            baseline_art = ctx.store.latest_blessed(ctx.pipeline, exclude_execution=ctx.execution_id)
        baseline = json.loads(baseline_art.properties[METRICS]) if baseline_art is not None else None
        checks = check_blessing(metrics, self.parameters["thresholds"], self.parameters["change_thresholds"], baseline,
                                ctx.component_id)
        blessed = all(c["passed"] for c in checks)
        for c in checks:
            logger.info("%s: %s %s = %.4f %s (bound %s)", ctx.component_id, c["kind"], c["metric"], c["value"],
                        "ok" if c["passed"] else "FAILED", c["bound"])
        numeric = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        ev = ctx.outputs["evaluation"]
        (ev.path / A.EVALUATION_FILE).write_text(json.dumps(
            {"metrics": numeric, "baseline": baseline, "checks": checks, "blessed": blessed}, indent=1, sort_keys=True))
        ev.properties.update({METRICS: json.dumps(numeric, sort_keys=True), A.BLESSED: int(blessed)})
        bl = ctx.outputs["blessing"]
        A.write_blessing(bl, blessed)
        bl.properties.update({METRICS: json.dumps(numeric, sort_keys=True), "model_uri": ctx.inputs["model"].uri,
                              "baseline_model_uri": "" if baseline_art is None else baseline_art.properties.get("model_uri", "")})
        logger.info("%s: model %s", ctx.component_id, "BLESSED" if blessed else "NOT_BLESSED")
