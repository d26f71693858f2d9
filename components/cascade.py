"""Cascade: builds the retrieve -> rank cascade SavedModel from a retrieval Trainer's and a ranking
Trainer's runs (:func:`tfrs_lab.export.cascade.export_cascade`).

Inputs ``retrieval_run`` and ``ranking_run`` (``ModelRun``: each Trainer's run directory, which holds
its ``config.yaml`` and ``export/``); output ``model`` (``Model``: the cascade in ``Format-Serving/``,
properties ``task: cascade``, ``model_name``, ``candidates``, ``k``), so a Pusher and the
InfraValidator take it like any Trainer's model. Runs of the wrong task or on different catalogues
fail the component with the exporter's one-line reason.
"""

from __future__ import annotations

import logging
import shutil

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.base import Channel, Component, ComponentError, ExecutionContext, Param

__all__ = ["Cascade"]

logger = logging.getLogger(__name__)


class Cascade(Component):
    INPUTS = {"retrieval_run": Channel(A.MODEL_RUN), "ranking_run": Channel(A.MODEL_RUN)}
    OUTPUTS = {"model": Channel(A.MODEL)}
    PARAMETERS = {
        "candidates": Param(int, 0, "retrieval candidates per request (0 = the retrieval export's export.k)"),
        "k": Param(int, 10, "movies serving_default returns"),
        "model_name": Param(str, "cascade", "the model name (the Pusher's default destination folder)"),
        "verify": Param(bool, True, "reload in a fresh process and require the same answers"),
    }

    def execute(self, ctx: ExecutionContext) -> None:
        from tfrs_lab.export.cascade import CascadeError, export_cascade

        p = self.parameters
        model = ctx.outputs["model"]
        build = model.path / ".build"
        try:
            version_dir = export_cascade(ctx.inputs["retrieval_run"].path, ctx.inputs["ranking_run"].path, build,
                                         candidates=p["candidates"] or None, k=p["k"], version=1,
                                         model_name=p["model_name"], verify=p["verify"])
        except CascadeError as e:
            raise ComponentError(f"{ctx.component_id}: {e}") from e
        version_dir.rename(model.serving_dir)
        shutil.rmtree(build)
        model.properties.update({"task": "cascade", "model_name": p["model_name"], "candidates": p["candidates"],
                                 "k": p["k"]})
        logger.info("%s: cascade written to %s", ctx.component_id, model.serving_dir)
