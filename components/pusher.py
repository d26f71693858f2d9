"""Pusher: copies a model to ``<push_destination>/<unix-time version>/`` when every blessing
present is blessed.

``push_destination`` defaults to ``<pipeline_root>/serving/<model_name>``: the base path the
serving launcher polls (``python -m tfrs_lab.serving.start --model NAME=<that dir>``), which loads
the new version and unloads the old. The version directory is written atomically (staged, then
renamed). Output ``pushed_model`` (PushedModel) with properties ``pushed`` (0/1),
``pushed_destination`` and ``pushed_version``.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.base import Channel, Component, ExecutionContext, Param

__all__ = ["Pusher"]

logger = logging.getLogger(__name__)


class Pusher(Component):
    INPUTS = {"model": Channel(A.MODEL), "model_blessing": Channel(A.MODEL_BLESSING, optional=True),
              "infra_blessing": Channel(A.INFRA_BLESSING, optional=True)}
    OUTPUTS = {"pushed_model": Channel(A.PUSHED_MODEL)}
    PARAMETERS = {"push_destination": Param(str, "", "serving base path (default <pipeline_root>/serving/<model_name>)")}

    def execute(self, ctx: ExecutionContext) -> None:
        from tfrs_lab.export import signatures as sig
        from tfrs_lab.staging import staged_directory

        model = ctx.inputs["model"]
        name = model.properties.get("model_name", "model")
        dest = Path(self.parameters["push_destination"] or ctx.pipeline_root / "serving" / name).absolute()
        out = ctx.outputs["pushed_model"]
        refused = [k for k in ("model_blessing", "infra_blessing") if ctx.inputs.get(k) is not None
                   and not ctx.inputs[k].blessed]
        if refused:
            logger.info("%s: not pushing, %s not blessed", ctx.component_id, " and ".join(refused))
            (out.path / "NOT_PUSHED").write_text(f"not blessed: {', '.join(refused)}\n")
            out.properties.update({A.PUSHED: 0, A.PUSHED_DESTINATION: "", "model_uri": model.uri})
            return
        dest.mkdir(parents=True, exist_ok=True)
        existing = [int(p.name) for p in dest.iterdir() if p.name.isdigit()]
        version = max([int(time.time()), *[v + 1 for v in existing]])
        with staged_directory(dest / str(version)) as stage:
            shutil.copytree(model.serving_dir, stage, dirs_exist_ok=True)
            infra = ctx.inputs.get("infra_blessing")
            warmup = None if infra is None else infra.path / "assets.extra" / sig.WARMUP_FILE
            if warmup is not None and warmup.is_file():
                (stage / "assets.extra").mkdir(exist_ok=True)
                shutil.copy2(warmup, stage / "assets.extra" / sig.WARMUP_FILE)
        (out.path / "PUSHED").write_text(f"{dest / str(version)}\n")
        out.properties.update({A.PUSHED: 1, A.PUSHED_DESTINATION: str(dest / str(version)), A.PUSHED_VERSION: version,
                               "model_uri": model.uri, "model_name": name})
        logger.info("%s: pushed %s version %d to %s", ctx.component_id, name, version, dest)
