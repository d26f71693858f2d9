"""Helpers for the serving tests: tiny SavedModels in TF Serving's versioned layout, warm-up
records, and servers on 127.0.0.1 with free ports."""

from __future__ import annotations

import os
import shutil

import tfrs_lab  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from tfrs_lab.export import signatures as sig
from tfrs_lab.serving.config import ModelConfig
from tfrs_lab.serving.server import ModelServer, ServerOptions

K = 5
N_ITEMS = 20


class TableRetrieval(tf.Module):
    """user_id -> K movie ids ``v{version}_m{j}`` picked by hashing the user id."""

    def __init__(self, version: int) -> None:
        super().__init__()
        self.movies = tf.constant([f"v{version}_m{j}" for j in range(N_ITEMS)])
        self.item_scores = tf.constant(np.linspace(1.0, 0.0, N_ITEMS, dtype=np.float32))

    def _top(self, user_id: tf.Tensor, exclude: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        offset = tf.strings.to_hash_bucket_fast(user_id, N_ITEMS)
        idx = (offset[:, None] + tf.range(K, dtype=tf.int64)[None, :]) % N_ITEMS
        return {sig.ITEM_IDS: tf.gather(self.movies, idx), sig.SCORES: tf.gather(self.item_scores, idx)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID)])
    def serve(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._top(user_id)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=sig.USER_ID),
        tf.TensorSpec([None, None], tf.string, name=sig.EXCLUDE_ITEM_IDS),
    ])
    def excluding(self, user_id: tf.Tensor, exclude_item_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._top(user_id)


class ExampleModel(tf.Module):
    """Regress/classify over serialized tf.Examples with a float feature ``x``."""

    def _x(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32)})["x"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": 2.0 * self._x(inputs)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        x = self._x(inputs)
        n = tf.shape(x)[0]
        return {"classes": tf.tile(tf.constant([["neg", "pos"]]), [n, 1]), "scores": tf.stack([1.0 - x, x], axis=1)}


def wait_for(predicate, timeout_s: float = 30.0) -> bool:
    """Polls ``predicate`` every 50 ms until it is true (True) or ``timeout_s`` passes (False)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def predict_request(model: str, user_ids: list[str]) -> predict_pb2.PredictRequest:
    """A serving_default PredictRequest."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs[sig.USER_ID].CopyFrom(tf.make_tensor_proto(user_ids, dtype=tf.string))
    return request


def write_warmup(version_dir: str, model: str, n: int = 3) -> None:
    """Write ``n`` PredictionLog warm-up records."""
    extra = os.path.join(version_dir, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(extra, sig.WARMUP_FILE)) as writer:
        for i in range(n):
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=predict_request(model, [str(i), "unknown"]))
            )
            writer.write(log.SerializeToString())


def save_table_model(version_dir: str, version: int, *, warmup: int = 3) -> str:
    """Save a TableRetrieval model into ``version_dir``."""
    module = TableRetrieval(version)
    tf.saved_model.save(module, version_dir, signatures={
        sig.SERVING_DEFAULT: module.serve, sig.EXCLUDE_SEEN: module.excluding,
    })
    if warmup:
        write_warmup(version_dir, "retrieval", warmup)
    return version_dir


class PreRenameRetrieval(tf.Module):
    """A retrieval export as written before the item names: ``movie_ids`` out, ``exclude_movie_ids`` in."""

    def __init__(self) -> None:
        super().__init__()
        self.table = TableRetrieval(1)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID)])
    def serve(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        top = self.table._top(user_id)
        return {"movie_ids": top[sig.ITEM_IDS], sig.SCORES: top[sig.SCORES]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID),
                                  tf.TensorSpec([None, None], tf.string, name="exclude_movie_ids")])
    def excluding(self, user_id: tf.Tensor, exclude_movie_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.serve(user_id)


def save_pre_rename_model(version_dir: str) -> str:
    """A pre-rename retrieval export in ``version_dir`` (``movie_ids``, ``exclude_movie_ids``,
    ``assets.extra/movie_titles.tsv``)."""
    module = PreRenameRetrieval()
    tf.saved_model.save(module, version_dir, signatures={
        sig.SERVING_DEFAULT: module.serve, sig.EXCLUDE_SEEN: module.excluding,
    })
    os.makedirs(os.path.join(version_dir, "assets.extra"), exist_ok=True)
    with open(os.path.join(version_dir, "assets.extra", sig.LEGACY_TITLES_FILE), "w", encoding="utf-8") as f:
        f.write("".join(f"v1_m{j}\tOld Movie {j}\n" for j in range(N_ITEMS)))
    return version_dir


def _set_method_names(version_dir: str, methods: dict[str, str]) -> None:
    path = os.path.join(version_dir, "saved_model.pb")
    proto = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        proto.ParseFromString(f.read())
    for name, method in methods.items():
        proto.meta_graphs[0].signature_def[name].method_name = method
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


def save_scann_model(version_dir: str) -> str:
    """A ScaNN retrieval model over 200 random 16-d item embeddings."""
    import scann  # noqa: F401
    import tensorflow_recommenders as tfrs

    users = [str(i) for i in range(50)]
    query = tf.keras.Sequential([
        tf.keras.layers.StringLookup(vocabulary=users),
        tf.keras.layers.Embedding(len(users) + 1, 16, embeddings_initializer=tf.keras.initializers.RandomNormal(seed=1)),
    ])
    items = tf.random.stateless_normal((200, 16), seed=(1, 2))
    index = tfrs.layers.factorized_top_k.ScaNN(query, k=K, num_leaves=10, num_leaves_to_search=5)
    index.index(items, tf.constant([f"m{i}" for i in range(200)]))
    index(tf.constant(["1"]))

    class Serve(tf.Module):
        def __init__(self, layer: tf.keras.layers.Layer) -> None:
            super().__init__()
            self.layer = layer

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID)])
        def serve(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
            scores, ids = self.layer(user_id)
            return {sig.ITEM_IDS: ids, sig.SCORES: scores}

    module = Serve(index)
    tf.saved_model.save(module, version_dir, signatures={sig.SERVING_DEFAULT: module.serve},
                        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))
    write_warmup(version_dir, "scann", 2)
    return version_dir


def install_version(src: str, base: str, version: int) -> str:
    """Copy a built version dir to ``base/<version>`` atomically (copy + rename)."""
    os.makedirs(base, exist_ok=True)
    tmp = os.path.join(base, f".tmp-{version}")
    shutil.copytree(src, tmp)
    dst = os.path.join(base, str(version))
    os.rename(tmp, dst)
    return dst


def make_server(models: list[ModelConfig], **options: object) -> ModelServer:
    """A started server on 127.0.0.1 with free ports."""
    opts = dict(host="127.0.0.1", grpc_port=0, rest_port=0, max_workers=8, poll_interval_s=0.2)
    opts.update(options)
    return ModelServer(models, ServerOptions(**opts)).start()  # type: ignore[arg-type]


