"""InfraValidator: loads the candidate in our serving engine and sends it real requests.

The model is served by :class:`tfrs_lab.serving.server.ModelServer` (the TF-Serving-protocol
server ``python -m tfrs_lab.serving.start`` runs) on ``127.0.0.1`` with a free gRPC port; the
component asks for its signatures, sends ``num_requests`` Predict requests to ``serving_default``
built from its input names (user ids and item ids from the Examples when given), and checks each
answer holds every output with one row per query. Writes ``INFRA_BLESSED`` or
``INFRA_NOT_BLESSED`` (with the reason in ``infra_validation.json``); with ``make_warmup`` also
``assets.extra/tf_serving_warmup_requests`` built from the requests that succeeded, which the
Pusher copies into the pushed version.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.base import Channel, Component, ExecutionContext, Param

__all__ = ["InfraValidator", "REPORT_FILE", "sample_inputs"]

logger = logging.getLogger(__name__)

REPORT_FILE = "infra_validation.json"


def sample_inputs(signature: dict[str, Any], users: list[str], movies: list[str], rows: int) -> dict[str, np.ndarray] | None:
    """Inputs for a signature (``SignatureDef`` as JSON) by input name; ``None`` if an input is unknown."""
    from tfrs_lab.export import signatures as sig

    out: dict[str, np.ndarray] = {}
    for name, info in signature.get("inputs", {}).items():
        dims = info.get("tensor_shape", {}).get("dim", [])
        if name == sig.USER_ID:
            out[name] = np.array(users[:rows], dtype=object)
        elif name == sig.ITEM_ID:
            out[name] = np.array(movies[:rows], dtype=object)
        elif len(dims) == 2 and info.get("dtype") == "DT_STRING":
            out[name] = np.array([movies[i:i + 3] for i in range(rows)], dtype=object)
        elif name == sig.TIMESTAMP:
            out[name] = np.full(rows, 888_000_000, dtype=np.int64)
        else:
            return None
    return out


class InfraValidator(Component):
    """Serves the candidate on 127.0.0.1 and checks real gRPC answers."""

    INPUTS = {"model": Channel(A.MODEL), "examples": Channel(A.EXAMPLES, optional=True)}
    OUTPUTS = {"blessing": Channel(A.INFRA_BLESSING)}
    PARAMETERS = {
        "num_requests": Param(int, 3, "Predict requests to send"),
        "batch_size": Param(int, 4, "queries per request"),
        "timeout_s": Param(float, 30.0, "deadline of each request"),
        "make_warmup": Param(bool, False, "write warm-up records from the requests that succeeded"),
    }

    def execute(self, ctx: ExecutionContext) -> None:
        from tfrs_lab.export import signatures as sig
        from tfrs_lab.export.warmup import write_warmup_records
        from tfrs_lab.serving.client import ServingClient
        from tfrs_lab.serving.config import ModelConfig
        from tfrs_lab.serving.server import ModelServer, ServerOptions

        model = ctx.inputs["model"]
        name = model.properties.get("model_name", "model")
        p = self.parameters
        users, movies = ["1", "2", "3", "unknown-user"], ["1", "2", "3", "4", "5", "6"]
        if ctx.inputs.get("examples") is not None:
            from tfrs_lab.components.example_gen import read_examples

            loaded = read_examples(ctx.inputs["examples"])
            test = loaded.splits.get("test", np.arange(loaded.data.num_ratings))[: p["batch_size"] + 8]
            user_ids, item_ids = loaded.ids(test)  # own data: a few ids gathered from the prepared codes
            users = [str(u) for u in user_ids] + ["unknown-user"]
            movies = [str(m) for m in item_ids] + ["unknown-item"] * 3
        rows = max(1, min(p["batch_size"], len(users) - 1))
        report: dict[str, Any] = {"model": name, "requests": []}
        good: list[dict[str, list]] = []
        blessed = False
        with tempfile.TemporaryDirectory(prefix="infra-") as tmp:
            base = Path(tmp) / name
            base.mkdir()
            os.symlink(model.serving_dir.absolute(), base / "1")
            server = ModelServer([ModelConfig(name=name, base_path=str(base))],
                                 ServerOptions(host="127.0.0.1", grpc_port=0, rest_port=None, warmup=True))
            try:
                server.start()
                with ServingClient(f"127.0.0.1:{server.grpc_port}", timeout_s=p["timeout_s"], retries=1) as client:
                    signatures = client.signature_defs(name)
                    signature = signatures.get(sig.SERVING_DEFAULT)
                    if signature is None:
                        raise RuntimeError(f"no {sig.SERVING_DEFAULT} signature (has {', '.join(signatures)})")
                    outputs = set(signature.get("outputs", {}))
                    for i in range(p["num_requests"]):
                        shift = i % max(1, len(users) - rows)
                        inputs = sample_inputs(signature, users[shift:], movies[shift:], rows)
                        if inputs is None:
                            raise RuntimeError(f"cannot build inputs for {sig.SERVING_DEFAULT} inputs "
                                               f"{', '.join(signature.get('inputs', {}))}")
                        answer = client.predict(name, inputs)
                        if set(answer) != outputs or any(len(v) != rows for v in answer.values()):
                            raise RuntimeError(f"request {i}: got outputs {sorted(answer)} with "
                                               f"{[len(v) for v in answer.values()]} rows, want {sorted(outputs)} x {rows}")
                        report["requests"].append({k: v.tolist() if v.dtype != object else [str(x) for x in v]
                                                   for k, v in inputs.items()})
                        good.append({k: [x.decode() if isinstance(x, bytes) else x for x in v.tolist()]
                                     for k, v in inputs.items() if v.dtype == object})
                blessed = True
            except Exception as e:  # any failure to load or answer is the verdict, not a crash
                report["error"] = f"{type(e).__name__}: {e}"
                logger.warning("%s: infra validation failed: %s", ctx.component_id, report["error"])
            finally:
                server.stop(grace_s=1.0)
        out = ctx.outputs["blessing"]
        A.write_blessing(out, blessed)
        (out.path / REPORT_FILE).write_text(json.dumps(report, indent=1, default=str))
        if blessed and p["make_warmup"] and good:
            write_warmup_records(out.path / "assets.extra" / sig.WARMUP_FILE, name, good)
        out.properties["model_uri"] = model.uri
        logger.info("%s: %s", ctx.component_id, "INFRA_BLESSED" if blessed else "INFRA_NOT_BLESSED")
