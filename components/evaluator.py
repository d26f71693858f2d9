"""Evaluator: the candidate's test metrics, and a blessing by value and change thresholds.

Metrics are the trainer's test-split metrics (``metrics.json`` of the ModelRun: full-catalogue
``hit_rate@K`` for hash-split retrieval, ``recall@K``/``ndcg@K``/``mrr`` for leave-last-out, ``rmse``/
``mae`` for rating models; DESIGN.md §4). Blessing (TFX semantics):

* ``thresholds``: ``{metric: {lower_bound: x, upper_bound: y}}`` — the value must lie within;
* ``change_thresholds``: ``{metric: tolerance}`` — compared with the latest *blessed* model of
  the pipeline (from the lineage store), the candidate may be worse by at most ``tolerance``
  (absolute; ``rmse``/``mae`` are lower-is-better, everything else higher-is-better). The first
  model of a pipeline has no baseline and passes the change checks.

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


class Evaluator(Component):
    """Blesses the candidate model when every threshold passes."""

    INPUTS = {"model": Channel(A.MODEL), "model_run": Channel(A.MODEL_RUN)}
    OUTPUTS = {"evaluation": Channel(A.MODEL_EVALUATION), "blessing": Channel(A.MODEL_BLESSING)}
    PARAMETERS = {
        "thresholds": Param(dict, {}, "metric -> {lower_bound, upper_bound}"),
        "change_thresholds": Param(dict, {}, "metric -> tolerated worsening vs the latest blessed model"),
    }

    def execute(self, ctx: ExecutionContext) -> None:
        metrics = json.loads(ctx.inputs["model_run"].properties[METRICS])
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
