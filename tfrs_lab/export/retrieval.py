"""Export a trained retrieval model as a TF Serving SavedModel with a ScaNN (or brute-force) index.

Layout: ``<export_base>/<model_name>/<version>/`` with ``saved_model.pb``, ``variables/``,
``assets/`` and ``assets.extra/tf_serving_warmup_requests``.

Signatures (names in :mod:`tfrs_lab.export.signatures`), all returning ``movie_ids`` (string
[batch, k]) and ``scores`` (float32 [batch, k], higher is better):

* ``serving_default(user_id: string [batch])``: user features known at training time are looked up
  inside the model (with the user's latest known movies as history); the time context is the
  serving time (clipped to the training range). Unknown
  users get the most popular movies of the training data (``scores`` = their training share).
* ``query_with_features(user_id, timestamp, bucketized_user_age, user_gender, user_occupation_label,
  history_movie_ids)``: every query feature explicit, each [batch] (history string [batch, h], the
  user's recent movies in any order — the model averages them — '' pads).
* ``recommend_excluding(user_id [batch], exclude_movie_ids string [batch, m])``: as the default but
  never returns the given movies ('' pads ragged rows). Exact for up to ``max_exclude`` ids per row.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_lab.export import signatures as sig
from tfrs_lab.native_logs import quiet_native_stderr
from tfrs_lab.staging import staged_directory

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class IndexSettings:
    """Index type and ScaNN knobs (0 = choose from the catalogue size)."""

    kind: str = "scann"  # "scann" | "brute_force"
    k: int = 100
    max_exclude: int = 500
    num_leaves: int = 0
    num_leaves_to_search: int = 0
    num_reordering_candidates: int = 0
    dimensions_per_block: int = 2


@dataclass(frozen=True)
class ExportResult:
    path: Path  # the version directory
    scann_recall_at_10: float | None  # None for brute force


def scann_parameters(num_items: int, s: IndexSettings, k: int | None = None) -> dict[str, int]:
    """ScaNN tree/reordering sizes for an index returning ``k`` neighbours (default ``s.k``);
    settings left at 0 are chosen from the catalogue size N.

    Tiny catalogues (N <= 1000): every leaf is searched (exact up to re-scoring). Small ones
    (N <= 20k, e.g. MovieLens): ~sqrt(N)/2 leaves, half of them searched, so recall@10 stays near 1
    where speed hardly matters. Larger ones: ~sqrt(N) leaves (at most 2000), 1/20 of them searched
    (at least 10). The best ``max(4k, 200)`` candidates are re-scored exactly. ScaNN returns at
    most its re-scored candidates, so re-scoring never covers fewer than ``k`` (whatever is asked).
    """
    k = s.k if k is None else k
    if num_items <= 20_000:
        leaves = s.num_leaves or max(1, round(math.sqrt(num_items) / 2))
        search = s.num_leaves_to_search or (leaves if num_items <= 1000 else max(1, leaves // 2))
    else:
        leaves = s.num_leaves or min(2000, round(math.sqrt(num_items)))
        search = s.num_leaves_to_search or max(10, leaves // 20)
    reorder = max(s.num_reordering_candidates or max(4 * k, 200), k)
    return {"num_leaves": leaves, "num_leaves_to_search": min(search, leaves),
            "num_reordering_candidates": min(reorder, num_items)}


def build_index(item_vectors: np.ndarray, item_ids: np.ndarray, s: IndexSettings, k: int) -> tfrs.layers.factorized_top_k.TopK:
    """A TFRS top-``k`` layer over ``item_vectors`` float32 [N, d] labelled by ``item_ids`` string [N]."""
    n = len(item_ids)
    ids = tf.constant(list(item_ids), dtype=tf.string)
    vectors = tf.constant(item_vectors, dtype=tf.float32)
    if s.kind == "brute_force":
        index = tfrs.layers.factorized_top_k.BruteForce(k=k)
    else:
        p = scann_parameters(n, s, k)
        index = tfrs.layers.factorized_top_k.ScaNN(
            k=k, distance_measure="dot_product", num_leaves=p["num_leaves"],
            num_leaves_to_search=p["num_leaves_to_search"], dimensions_per_block=s.dimensions_per_block,
            num_reordering_candidates=p["num_reordering_candidates"])
    with quiet_native_stderr(s.kind == "scann"):
        index.index(vectors, ids)
    return index


class RetrievalServer(tf.Module):
    """The exported object: the retrieval model, its index, and the serving signatures."""

    def __init__(self, model, index, *, k: int, max_exclude: int, user_table: dict[str, np.ndarray],
                 popular: np.ndarray, popular_scores: np.ndarray):
        super().__init__()
        self.model = model
        self.index = index
        self.k = k
        self.fetch = k + max_exclude
        self.popular_ids = tf.constant(list(popular[: self.fetch]), dtype=tf.string)  # [fetch]
        self.popular_scores = tf.constant(popular_scores[: self.fetch], dtype=tf.float32)  # [fetch]
        self.user_table = {name: tf.constant(col) for name, col in user_table.items()}  # [U + 1] each

    def _known_user_features(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        """Training-time user features of each user (defaults for unknown users), serving time as context."""
        idx = self.model.user_lookup(user_id)
        feats = {name: tf.gather(col, idx) for name, col in self.user_table.items()}
        feats["user_id"] = user_id
        now = tf.cast(tf.timestamp(), tf.int64)
        feats["timestamp"] = tf.fill(tf.shape(user_id), now)
        return feats

    def _answer(self, features: dict[str, tf.Tensor], fetch: int) -> tuple[tf.Tensor, tf.Tensor]:
        query = self.model.query_embedding(features)
        scores, ids = self.index(query, k=fetch)
        return scores, ids

    def _with_fallback(self, user_id: tf.Tensor, scores: tf.Tensor, ids: tf.Tensor) -> dict[str, tf.Tensor]:
        unknown = tf.expand_dims(tf.equal(self.model.user_lookup(user_id), 0), -1)  # [B, 1]
        batch = tf.shape(user_id)[0]
        pop_ids = tf.tile(tf.expand_dims(self.popular_ids[: self.k], 0), [batch, 1])
        pop_scores = tf.tile(tf.expand_dims(self.popular_scores[: self.k], 0), [batch, 1])
        return {sig.MOVIE_IDS: tf.where(unknown, pop_ids, ids[:, : self.k]),
                sig.SCORES: tf.where(unknown, pop_scores, scores[:, : self.k])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID)])
    def serve(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        scores, ids = self._answer(self._known_user_features(user_id), self.k)
        return self._with_fallback(user_id, scores, ids)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=sig.USER_ID),
        tf.TensorSpec([None], tf.int64, name=sig.TIMESTAMP),
        tf.TensorSpec([None], tf.float32, name="bucketized_user_age"),
        tf.TensorSpec([None], tf.int64, name="user_gender"),
        tf.TensorSpec([None], tf.int64, name="user_occupation_label"),
        tf.TensorSpec([None, None], tf.string, name=sig.HISTORY_MOVIE_IDS),
    ])
    def serve_with_features(self, user_id, timestamp, bucketized_user_age, user_gender, user_occupation_label,
                            history_movie_ids):
        features = {"user_id": user_id, "timestamp": timestamp, "bucketized_user_age": bucketized_user_age,
                    "user_gender": user_gender, "user_occupation_label": user_occupation_label,
                    "history": history_movie_ids}
        scores, ids = self._answer(features, self.k)
        return {sig.MOVIE_IDS: ids, sig.SCORES: scores}

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=sig.USER_ID),
        tf.TensorSpec([None, None], tf.string, name=sig.EXCLUDE_MOVIE_IDS),
    ])
    def serve_excluding(self, user_id: tf.Tensor, exclude_movie_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        scores, ids = self._answer(self._known_user_features(user_id), self.fetch)
        # Unknown users: rank the popular list instead, through the same exclusion below.
        unknown = tf.expand_dims(tf.equal(self.model.user_lookup(user_id), 0), -1)
        batch = tf.shape(user_id)[0]
        ids = tf.where(unknown, tf.tile(self.popular_ids[None], [batch, 1]), ids)
        scores = tf.where(unknown, tf.tile(self.popular_scores[None], [batch, 1]), scores)
        hit = tf.reduce_any(tf.equal(ids[:, :, None], exclude_movie_ids[:, None, :]), axis=-1)  # [B, fetch]
        hit = hit | tf.equal(ids, "")
        masked = tf.where(hit, tf.fill(tf.shape(scores), -np.inf), scores)
        top_scores, pos = tf.math.top_k(masked, k=self.k)
        top_ids = tf.gather(ids, pos, batch_dims=1)
        valid = tf.math.is_finite(top_scores)
        return {sig.MOVIE_IDS: tf.where(valid, top_ids, ""), sig.SCORES: top_scores}


def _warmup_records(path: Path, user_ids: list[str], model_name: str) -> None:
    """Writes TF Serving warm-up records (PredictionLog of Predict requests on ``serving_default``)."""
    write_warmup_records(path, model_name, [{sig.USER_ID: user_ids[:1]}, {sig.USER_ID: user_ids[:8]}])


def write_movie_titles(version_dir: Path, movie_ids, titles) -> None:
    """Writes ``assets.extra/movie_titles.tsv`` (``movie_id<TAB>title`` per movie) for clients."""
    lines = (f"{m}\t{' '.join(str(t).split())}\n" for m, t in zip(movie_ids, titles))
    path = Path(version_dir) / "assets.extra" / sig.MOVIE_TITLES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")


def write_warmup_records(path: Path, model_name: str, requests: list[dict[str, list]],
                         signature_name: str = sig.SERVING_DEFAULT) -> None:
    """Writes one PredictionLog per entry of ``requests`` (input name -> string values) to ``path``."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for inputs in requests:
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


_VERIFY_SCRIPT = """
import json, os, sys
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1"); os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
path, needs_scann, inputs = sys.argv[1], sys.argv[2] == "1", json.loads(sys.argv[3])
signature = sys.argv[4] if len(sys.argv) > 4 else "serving_default"
if needs_scann:
    import scann  # registers the Scann ops before loading
import tensorflow as tf
loaded = tf.saved_model.load(path)
def _dtype(v):
    flat = v
    while isinstance(flat, list) and flat:
        flat = flat[0]
    return tf.float32 if isinstance(flat, (int, float)) else tf.string
out = loaded.signatures[signature](**{k: tf.constant(v, dtype=_dtype(v)) for k, v in inputs.items()})
print(json.dumps({"movie_ids": [[m.decode() for m in row] for row in out["movie_ids"].numpy()],
                  "scores": out["scores"].numpy().tolist(),
                  "scann_imported": "scann" in sys.modules}))
"""


def answer_in_fresh_process(path: Path, user_ids: list[str] | None = None, *, import_scann: bool, timeout: float = 300,
                            inputs: dict[str, list] | None = None, signature: str = sig.SERVING_DEFAULT) -> dict:
    """Loads the SavedModel at ``path`` in a new Python process and returns its answer for ``user_ids``
    (or for ``inputs``: input name -> string or number values, nested lists for [batch, n] inputs;
    numbers are sent as float32) on ``signature``."""
    inputs = {sig.USER_ID: user_ids} if inputs is None else inputs
    proc = subprocess.run(
        [sys.executable, "-c", _VERIFY_SCRIPT, str(path), "1" if import_scann else "0", json.dumps(inputs), signature],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-5:]
        raise RuntimeError(f"the exported model at {path} failed to load in a fresh process: {' | '.join(tail)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def export_retrieval(
    model,
    export_base: Path,
    *,
    user_table: dict[str, np.ndarray],
    popularity: np.ndarray,
    titles: np.ndarray | None = None,
    model_name: str,
    version: int,
    settings: IndexSettings,
    sample_users: list[str],
    recall_queries: np.ndarray,
    verify: bool = True,
) -> ExportResult:
    """Writes ``export_base/model_name/version/`` and checks it.

    Args:
      model: a trained ``RetrievalModel``.
      user_table: raw user features per user index ([U + 1] each, row 0 = unknown user defaults).
      popularity: float [M] training share of each catalogue movie (fallback for unknown users).
      titles: str [M] catalogue titles, written to ``assets.extra/movie_titles.tsv`` for clients.
      sample_users: known user ids used for warm-up records and the fresh-process check.
      recall_queries: float32 [Q, d] query vectors used to measure ScaNN recall@10 vs brute force.
    """
    item_vectors = model.catalogue_embeddings()
    item_ids = np.array([m.decode() for m in model.movie_ids.numpy()], dtype=object)
    k = min(settings.k, len(item_ids))
    fetch = min(k + settings.max_exclude, len(item_ids))
    index = build_index(item_vectors, item_ids, settings, fetch)
    order = np.argsort(-popularity, kind="stable")
    server = RetrievalServer(model, index, k=k, max_exclude=fetch - k, user_table=user_table,
                             popular=item_ids[order], popular_scores=popularity[order])
    from tfrs_lab.export.similar import SimilarItems  # imports this module

    server.similar = SimilarItems(item_vectors, item_ids, settings, k)
    version_dir = Path(export_base) / model_name / str(version)
    with staged_directory(version_dir) as tmp:
        options = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])
        tf.saved_model.save(server, str(tmp), options=options, signatures={
            sig.SERVING_DEFAULT: server.serve,
            sig.QUERY_FEATURES: server.serve_with_features,
            sig.EXCLUDE_SEEN: server.serve_excluding,
            sig.SIMILAR_ITEMS: server.similar.serve,
        })
        _warmup_records(tmp / "assets.extra" / sig.WARMUP_FILE, sample_users, model_name)
        if titles is not None:
            write_movie_titles(tmp, item_ids, titles)
        if verify:
            fresh = answer_in_fresh_process(tmp, sample_users[:4], import_scann=settings.kind == "scann")
            here = server.serve(tf.constant(sample_users[:4]))
            here_ids = [[m.decode() for m in row] for row in here[sig.MOVIE_IDS].numpy()]
            if fresh["movie_ids"] != here_ids:
                raise RuntimeError("the reloaded model answers differently from the in-memory model")
    logger.info("exported %s/%s/%d (%s index over %d movies)", Path(export_base).name, model_name, version,
                settings.kind, len(item_ids))
    return ExportResult(path=version_dir, scann_recall_at_10=index_recall(item_vectors, settings, recall_queries))


def index_recall(item_vectors: np.ndarray, settings: IndexSettings, queries: np.ndarray) -> float | None:
    """ScaNN recall@10 against brute force for ``settings``' index over ``item_vectors`` [N, d],
    on ``queries`` [Q, d]; ``None`` for a brute-force index or no queries."""
    if settings.kind != "scann" or not len(queries):
        return None
    index = build_index(item_vectors, np.arange(len(item_vectors)).astype(str), settings, 10)
    return scann_recall(item_vectors, index, queries)


def scann_recall(item_vectors: np.ndarray, index, queries: np.ndarray, k: int = 10) -> float:
    """Share of the exact top-``k`` rows of ``item_vectors`` [N, d] that ``index`` (labelled by row
    number as a string) also returns, averaged over ``queries`` float32 [Q, d]."""
    exact = np.argsort(-(queries @ item_vectors.T), axis=1, kind="stable")[:, :k]
    _, found = index(tf.constant(queries, tf.float32), k=k)
    found = found.numpy().astype(np.int64)
    return float(np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact)]))
