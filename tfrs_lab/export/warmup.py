"""TF Serving warm-up records (``assets.extra/tf_serving_warmup_requests``): Predict requests the
model server replays when it loads a version, so the first real request does not pay for tracing."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import tensorflow as tf

from tfrs_lab.export import signatures as sig

__all__ = ["read_warmup_requests", "write_warmup_records"]


def write_warmup_records(path: Path, model_name: str, requests: list[dict[str, list]],
                         signature_name: str = sig.SERVING_DEFAULT,
                         more: Mapping[str, list[dict[str, list]]] | None = None) -> None:
    """Writes one PredictionLog per entry of ``requests`` (input name -> values: strings, numbers, or a
    numpy array whose dtype is kept) to ``path``, then one per request of each further signature in
    ``more`` (signature name -> requests)."""
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
    """The dtype of a request input: a numeric numpy array keeps its own (e.g. int32 ``k``);
    otherwise float32 for (nested lists of) numbers, else string."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        return tf.as_dtype(values.dtype)
    flat = np.asarray(values, dtype=object).ravel()
    numeric = len(flat) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat)
    return tf.float32 if numeric else tf.string


def read_warmup_requests(path: Path) -> list[tuple[str, dict[str, np.ndarray]]]:
    """``(signature name, input name -> array)`` of every Predict request in the warm-up records at
    ``path`` (``[]`` when there is no such file)."""
    from tensorflow_serving.apis import prediction_log_pb2

    if not Path(path).is_file():
        return []
    out = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        if log.WhichOneof("log_type") == "predict_log":
            request = log.predict_log.request
            out.append((request.model_spec.signature_name,
                        {name: tf.make_ndarray(t) for name, t in request.inputs.items()}))
    return out
