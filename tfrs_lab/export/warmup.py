"""TF Serving warm-up records (``assets.extra/tf_serving_warmup_requests``): Predict requests the
model server replays when it loads a version, so the first real request does not pay for tracing."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import tensorflow as tf

from tfrs_lab.export import signatures as sig

__all__ = ["write_warmup_records"]


def write_warmup_records(path: Path, model_name: str, requests: list[dict[str, list]],
                         signature_name: str = sig.SERVING_DEFAULT,
                         more: Mapping[str, list[dict[str, list]]] | None = None) -> None:
    """Writes one PredictionLog per entry of ``requests`` (input name -> string values) to ``path``,
    then one per request of each further signature in ``more`` (signature name -> requests)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    batches = [(signature_name, requests), *(more or {}).items()]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature_name, inputs in ((name, r) for name, reqs in batches for r in reqs):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
            for name, values in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=_request_dtype(values)))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def _request_dtype(values) -> tf.DType:
    """float32 for (nested lists of) numbers, else string: the dtype of a request input."""
    flat = np.asarray(values, dtype=object).ravel()
    numeric = len(flat) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat)
    return tf.float32 if numeric else tf.string
