"""Warm-up: replay ``assets.extra/tf_serving_warmup_requests`` on a freshly loaded servable
before it serves (TF Serving's ``--enable_model_warmup``)."""

from __future__ import annotations

import os

import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import prediction_log_pb2

from tfrs_lab.export import signatures as sig_names

from . import inference
from .errors import ServingError, invalid_argument
from .servable import Servable

__all__ = ["MAX_WARMUP_RECORDS", "replay_warmup", "warmup_path"]

MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


def warmup_path(version_path: str) -> str:
    """Path of the warm-up records file of a version directory."""
    return os.path.join(version_path, "assets.extra", sig_names.WARMUP_FILE)


def replay_warmup(servable: Servable) -> int:
    """Run every PredictionLog in ``assets.extra/tf_serving_warmup_requests``; return how many."""
    path = warmup_path(servable.path)
    if not os.path.exists(path):
        return 0
    count = 0
    try:
        records = list(tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS + 1).as_numpy_iterator())
    except tf.errors.OpError as e:
        raise invalid_argument(f"Failed to read warm-up records {path}: {e.message}; re-export the version") from e
    if len(records) > MAX_WARMUP_RECORDS:
        raise invalid_argument(f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}")
    for record in records:
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(record)
        except DecodeError as e:
            raise invalid_argument(f"Malformed warm-up record in {path}: {e}") from e
        kind = log.WhichOneof("log_type")
        try:
            if kind == "predict_log":
                inference.predict(servable, log.predict_log.request)
            elif kind == "classify_log":
                inference.classify(servable, log.classify_log.request)
            elif kind == "regress_log":
                inference.regress(servable, log.regress_log.request)
            elif kind == "multi_inference_log":
                inference.multi_inference(servable, log.multi_inference_log.request)
            else:
                raise invalid_argument(f"Unsupported log_type for warmup: {kind}")
        except ServingError as e:
            raise ServingError(e.code, f"Warm-up request {count} in {path} failed: {e.message}") from e
        count += 1
    return count
