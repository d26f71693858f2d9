"""BulkInferrer: top-K items for every user of the Examples, from the exported SavedModel.

Writes ``top_k.jsonl`` (one ``{"user_id", "item_ids", "scores"}`` line per user, best first), for
every user with a row in the Examples (your own data: the prepared dataset's user vocabulary).
Retrieval and sequential models are asked through their user-id signature (``serving_default``
or ``recommend_for_user``); rating models score the whole catalogue per user through
``serving_default(user_id, item_id)``.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.base import Channel, Component, ComponentError, ExecutionContext, Param

__all__ = ["BulkInferrer"]

logger = logging.getLogger(__name__)


class BulkInferrer(Component):
    INPUTS = {"model": Channel(A.MODEL), "examples": Channel(A.EXAMPLES),
              "model_blessing": Channel(A.MODEL_BLESSING, optional=True)}
    OUTPUTS = {"inference_result": Channel(A.INFERENCE_RESULT)}
    PARAMETERS = {"k": Param(int, 10, "items per user"), "batch_size": Param(int, 256, "users per call")}

    def execute(self, ctx: ExecutionContext) -> None:
        import tensorflow as tf

        from tfrs_lab.components.example_gen import read_examples
        from tfrs_lab.export import signatures as sig
        from tfrs_lab.serving.servable import register_scann_ops

        k, bs = self.parameters["k"], self.parameters["batch_size"]
        if k < 1 or bs < 1:
            raise ComponentError(f"{ctx.component_id}.k: k and batch_size must be >= 1")
        out = ctx.outputs["inference_result"]
        blessing = ctx.inputs.get("model_blessing")
        if blessing is not None and not blessing.blessed:
            (out.path / A.INFERENCE_FILE).write_text("")
            out.properties.update({"num_users": 0, "skipped": "model not blessed"})
            return
        register_scann_ops()
        loaded = tf.saved_model.load(str(ctx.inputs["model"].serving_dir))
        examples = read_examples(ctx.inputs["examples"])  # own data: the prepared codes, never to_data()
        data = examples.data
        users = examples.users().astype(str)
        fns = loaded.signatures
        by_user = next((fns[n] for n in (sig.SERVING_DEFAULT, sig.RECOMMEND_FOR_USER) if n in fns
                        and set(fns[n].structured_input_signature[1]) == {sig.USER_ID}), None)
        with (out.path / A.INFERENCE_FILE).open("w") as f:
            for start in range(0, len(users), bs):
                batch = users[start:start + bs]
                if by_user is not None:
                    res = by_user(**{sig.USER_ID: tf.constant(batch)})
                    ids, scores = res[sig.ITEM_IDS].numpy()[:, :k], res[sig.SCORES].numpy()[:, :k]
                else:
                    ids, scores = self._rank_catalogue(fns[sig.SERVING_DEFAULT], batch, data.movies["movie_id"].astype(str), k)
                for u, i_row, s_row in zip(batch, ids, scores):
                    f.write(json.dumps({"user_id": str(u), "item_ids": [x.decode() if isinstance(x, bytes) else str(x) for x in i_row],
                                        "scores": [round(float(s), 6) for s in s_row]}) + "\n")
        out.properties.update({"num_users": int(len(users)), "k": k})

    @staticmethod
    def _rank_catalogue(fn, users: np.ndarray, movies: np.ndarray, k: int):
        import tensorflow as tf

        from tfrs_lab.export import signatures as sig

        ids, scores = [], []
        for u in users:
            res = fn(**{sig.USER_ID: tf.constant(np.full(len(movies), u)), sig.ITEM_ID: tf.constant(movies)})
            s = next(iter(res.values())).numpy().reshape(-1)
            top = np.argsort(-s, kind="stable")[:k]
            ids.append(movies[top])
            scores.append(s[top])
        return np.array(ids, dtype=object), np.array(scores)
