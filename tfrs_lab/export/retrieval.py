"""Export a trained retrieval model as a TF Serving SavedModel with a ScaNN (or brute-force) index.

Layout: ``<export_base>/<model_name>/<version>/`` with ``saved_model.pb``, ``variables/``,
``assets/`` and ``assets.extra/tf_serving_warmup_requests``.

Signatures (names in :mod:`tfrs_lab.export.signatures`), all returning ``item_ids`` (string
[batch, k]) and ``scores`` (float32 [batch, k], higher is better):

* ``serving_default(user_id: string [batch])``: user features known at training time are looked up
  inside the model (with the user's latest known items as history); the time context is the
  serving time (clipped to the training range). With a ``seen`` table (``export.exclude_seen``, the
  default) the items the user is known to have rated are never returned (exact for up to
  ``max_exclude`` of them, the newest; fewer than k answers, '' padded, only when the catalogue runs
  out). Unknown users get the most popular items of the training data (``scores`` = their training
  share).
* ``query_with_features(user_id, timestamp, bucketized_user_age, user_gender, user_occupation_label,
  history)``: every query feature explicit, each [batch] (history string [batch, h], the
  user's recent items in any order — the model averages them — '' pads).
* ``recommend_excluding(user_id [batch], exclude_item_ids string [batch, m])``: as the default but
  never returns the given items either ('' pads ragged rows). Exact for up to ``max_exclude`` ids
  per row (the caller's and, with a ``seen`` table, the user's known items together); a longer list
  is answered with fewer exclusions guaranteed, never an error.
* ``query_with_context(user_id [batch], <each context feature by name>)``: only when the model
  reads typed context features (``data.source.features`` of the interactions table): the
  ``serving_default`` answer (same exclusions and fallback) for the given context; inputs as
  :func:`tfrs_lab.models.features.context_signature` declares them. ``serving_default`` answers
  with every context feature missing.
* ``explain(user_id: string [batch])``: the ``serving_default`` answer plus ``because_ids`` (string
  [batch, k, e], e = min(3, stored history width)) and ``because_scores`` (float32 [batch, k, e]):
  the items of the user's stored history (their newest known items, as excluded by default) most
  similar to each recommended item by cosine similarity of the candidate tower's vectors, most
  similar first; '' / -inf pads (unknown users have no history: all pads).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import tensorflow as tf

from tfrs_lab.export import signatures as sig
from tfrs_lab.export.index import IndexSettings, build_index, index_recall
from tfrs_lab.export.result import ExportResult
from tfrs_lab.export.similar import SimilarItems
from tfrs_lab.export.tables import ItemTable, UserTable
from tfrs_lab.export.titles import write_item_titles
from tfrs_lab.export.verify import Check, require_same_answers
from tfrs_lab.export.warmup import write_warmup_records
from tfrs_lab.models.features import context_signature
from tfrs_lab.staging import staged_directory

__all__ = ["ExportResult", "IndexSettings", "RetrievalServer", "SignatureExtension", "context_sample", "export_retrieval"]
"""``IndexSettings`` and ``ExportResult`` are re-exported: they are ``export_retrieval``'s argument and result."""

logger = logging.getLogger(__name__)


class SignatureExtension(Protocol):
    """Signatures another exporter adds to a retrieval SavedModel (one model, several heads)."""

    def attach(self, server: "RetrievalServer") -> dict[str, Any]:
        """Attaches its modules to ``server`` (so they are saved) and returns name -> signature function."""

    def warmup_requests(self) -> dict[str, list[dict[str, list]]]:
        """Signature name -> warm-up requests (input name -> values)."""

    def verify(self, path: Path, *, import_scann: bool) -> None:
        """Raises unless the SavedModel at ``path``, reloaded in a fresh process (with the ScaNN ops
        registered when ``import_scann``), answers as in memory."""


class RetrievalServer(tf.Module):
    """The exported object: the retrieval model, its index, and the serving signatures."""

    def __init__(self, model, index, *, k: int, max_exclude: int, user_table: dict[str, np.ndarray | ItemTable],
                 popular: np.ndarray, popular_scores: np.ndarray, seen: np.ndarray | ItemTable | None = None,
                 history: np.ndarray | ItemTable | None = None):
        """``user_table``: per user index [U + 1] (a history [U + 1, h]) each. ``seen``: optional
        str [U + 1, s] items each user index is known to have rated, '' pads (row 0, the unknown
        user, empty): ``serving_default`` never returns them. ``history``: optional str [U + 1, h]
        the same for explanations (``explain``; defaults to ``seen``, the same table then). String
        tables are kept as int32 codes (:class:`~tfrs_lab.export.tables.ItemTable`, given or
        encoded here): [U + 1, s] int32 plus the item names, never a string per entry."""
        super().__init__()
        self.model = model
        self.index = index
        self.k = k
        self.fetch = k + max_exclude
        self.popular_ids = tf.constant(list(popular[: self.fetch]), dtype=tf.string)  # [fetch]
        self.popular_scores = tf.constant(popular_scores[: self.fetch], dtype=tf.float32)  # [fetch]
        # Per-user tables are variables (saved once in the checkpoint, not copied into the graph of
        # every signature that reads them), strings as int32 codes (tables.UserTable).
        self.user_table = {name: UserTable(col) for name, col in user_table.items()}  # [U + 1] each
        self.seen = None if seen is None else UserTable(seen)  # [U + 1, s]
        if history is None or history is seen:  # one table serves both: stored once
            self.history = self.seen
        else:
            self.history = UserTable(history)  # [U + 1, h]
        if self.history is not None:  # saving traces every tf.function of the module: only with a history
            self.explain = tf.function(self._explain,
                                       input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID)])
        self.context = tuple(getattr(model, "context_features", ()))
        if self.context:
            self.serve_context = tf.function(self._serve_context, input_signature=[
                tf.TensorSpec([None], tf.string, name=sig.USER_ID), *(context_signature(f) for f in self.context)])

    def _serve_context(self, user_id: tf.Tensor, *context: tf.Tensor) -> dict[str, tf.Tensor]:
        """``serving_default`` with the typed context features given (``query_with_context``)."""
        features = {**self._known_user_features(user_id), **{f.name: v for f, v in zip(self.context, context)}}
        if self.seen is not None:
            return self._excluding(user_id, self._seen(user_id), features)
        scores, ids = self._answer(features, self.k)
        return self._with_fallback(user_id, scores, ids)

    def _known_user_features(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        """Training-time user features of each user (defaults for unknown users), serving time as context."""
        idx = self.model.user_lookup(user_id)
        feats = {name: col.gather(idx) for name, col in self.user_table.items()}
        feats["user_id"] = user_id
        now = tf.cast(tf.timestamp(), tf.int64)
        feats["timestamp"] = tf.fill(tf.shape(user_id), now)
        return feats

    def _answer(self, features: dict[str, tf.Tensor], fetch: int) -> tuple[tf.Tensor, tf.Tensor]:
        """scores, ids [B, fetch]; padded with -inf / '' when the index returns fewer (ScaNN returns
        at most the points in the leaves it searched, which can be fewer than ``fetch``)."""
        query = self.model.query_embedding(features)
        scores, ids = self.index(query, k=fetch)
        short = tf.maximum(fetch - tf.shape(ids)[1], 0)
        return (tf.pad(scores, [[0, 0], [0, short]], constant_values=-np.inf),
                tf.pad(ids, [[0, 0], [0, short]], constant_values=""))

    def _with_fallback(self, user_id: tf.Tensor, scores: tf.Tensor, ids: tf.Tensor) -> dict[str, tf.Tensor]:
        unknown = tf.expand_dims(tf.equal(self.model.user_lookup(user_id), 0), -1)  # [B, 1]
        batch = tf.shape(user_id)[0]
        pop_ids = tf.tile(tf.expand_dims(self.popular_ids[: self.k], 0), [batch, 1])
        pop_scores = tf.tile(tf.expand_dims(self.popular_scores[: self.k], 0), [batch, 1])
        return {sig.ITEM_IDS: tf.where(unknown, pop_ids, ids[:, : self.k]),
                sig.SCORES: tf.where(unknown, pop_scores, scores[:, : self.k])}

    def _seen(self, user_id: tf.Tensor) -> tf.Tensor:
        """str [B, s] the known items of each user ('' for unknown users)."""
        return self.seen.gather(self.model.user_lookup(user_id))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID)])
    def serve(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        if self.seen is not None:
            return self._excluding(user_id, self._seen(user_id))
        scores, ids = self._answer(self._known_user_features(user_id), self.k)
        return self._with_fallback(user_id, scores, ids)

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=sig.USER_ID),
        tf.TensorSpec([None], tf.int64, name=sig.TIMESTAMP),
        tf.TensorSpec([None], tf.float32, name="bucketized_user_age"),
        tf.TensorSpec([None], tf.int64, name="user_gender"),
        tf.TensorSpec([None], tf.int64, name="user_occupation_label"),
        tf.TensorSpec([None, None], tf.string, name=sig.HISTORY),
    ])
    def serve_with_features(self, user_id, timestamp, bucketized_user_age, user_gender, user_occupation_label,
                            history):
        features = {"user_id": user_id, "timestamp": timestamp, "bucketized_user_age": bucketized_user_age,
                    "user_gender": user_gender, "user_occupation_label": user_occupation_label,
                    "history": history}
        scores, ids = self._answer(features, self.k)
        return {sig.ITEM_IDS: ids, sig.SCORES: scores}

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=sig.USER_ID),
        tf.TensorSpec([None, None], tf.string, name=sig.EXCLUDE_ITEM_IDS),
    ])
    def serve_excluding(self, user_id: tf.Tensor, exclude_item_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        if self.seen is not None:
            exclude_item_ids = tf.concat([exclude_item_ids, self._seen(user_id)], axis=1)
        return self._excluding(user_id, exclude_item_ids)

    def _explain(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        """``serving_default``'s answer and, per item, the most similar items of the user's history
        (``explain``; only an export with a history table has it)."""
        answer = self.serve(user_id)
        history = self.history.gather(self.model.user_lookup(user_id))  # [B, h]
        return {**answer, **self.similar.because(history, answer[sig.ITEM_IDS])}

    def _excluding(self, user_id: tf.Tensor, exclude_item_ids: tf.Tensor,
                   features: dict[str, tf.Tensor] | None = None) -> dict[str, tf.Tensor]:
        """Top k of the ``fetch`` nearest items (popular ones for unknown users) that are not in
        ``exclude_item_ids`` (str [B, m], '' pads); '' / -inf where fewer than k remain. ``features``:
        the query features (default: the user's known ones, :meth:`_known_user_features`)."""
        scores, ids = self._answer(self._known_user_features(user_id) if features is None else features, self.fetch)
        # Unknown users: rank the popular list instead, through the same exclusion below.
        unknown = tf.expand_dims(tf.equal(self.model.user_lookup(user_id), 0), -1)
        batch = tf.shape(user_id)[0]
        ids = tf.where(unknown, tf.tile(self.popular_ids[None], [batch, 1]), ids)
        scores = tf.where(unknown, tf.tile(self.popular_scores[None], [batch, 1]), scores)
        hit = tf.reduce_any(tf.equal(ids[:, :, None], exclude_item_ids[:, None, :]), axis=-1)  # [B, fetch]
        hit = hit | tf.equal(ids, "")
        masked = tf.where(hit, tf.fill(tf.shape(scores), -np.inf), scores)
        top_scores, pos = tf.math.top_k(masked, k=self.k)
        top_ids = tf.gather(ids, pos, batch_dims=1)
        valid = tf.math.is_finite(top_scores)
        return {sig.ITEM_IDS: tf.where(valid, top_ids, ""), sig.SCORES: top_scores}


def context_sample(context: tuple, batch: int) -> dict[str, list]:
    """Request values of the context features (``query_with_context`` inputs) for ``batch`` rows:
    the most frequent value, the mean, the latest training time, zeros (for the reload check)."""
    out: dict[str, list] = {}
    for f in context:
        first = f.vocabulary[0] if f.vocabulary else ""
        value = {"categorical": first, "multi_categorical": [first], "numeric": f.mean if f.normalize != "log" else 1.0,
                 "timestamp": int(f.maximum), "dense": [0.0] * f.size}[f.type]
        out[f.name] = [value] * batch
    return out


def export_retrieval(
    model,
    export_base: Path,
    *,
    user_table: dict[str, np.ndarray | ItemTable],
    popularity: np.ndarray,
    titles: np.ndarray | None = None,
    model_name: str,
    version: int,
    settings: IndexSettings,
    sample_users: list[str],
    recall_queries: np.ndarray,
    seen: np.ndarray | ItemTable | None = None,
    verify: bool = True,
    extension: SignatureExtension | None = None,
    history: np.ndarray | ItemTable | None = None,
) -> ExportResult:
    """Writes ``export_base/model_name/version/`` and checks it.

    Args:
      model: a trained ``RetrievalModel``.
      user_table: raw user features per user index ([U + 1] each, row 0 = unknown user defaults;
        ``history`` [U + 1, h] str or an :class:`~tfrs_lab.export.tables.ItemTable`).
      popularity: float [M] training share of each catalogue item (fallback for unknown users).
      titles: str [M] catalogue titles, written to ``assets.extra/item_titles.tsv`` for clients.
      sample_users: known user ids used for warm-up records and the fresh-process check.
      recall_queries: float32 [Q, d] query vectors used to measure ScaNN recall@10 vs brute force.
      seen: optional str [U + 1, s] known items per user index ('' pads, row 0 empty) that
        ``serving_default`` excludes, or the same as an :class:`~tfrs_lab.export.tables.ItemTable`
        (int32 codes: what a large export passes); ``None`` keeps the plain top-k.
      extension: further signatures saved in the same SavedModel (the multitask export's ranking
        signatures), with their warm-up requests and reload check.
      history: optional str [U + 1, h] (or :class:`~tfrs_lab.export.tables.ItemTable`) known items
        per user index that ``explain`` draws its explanations from (default ``seen``; the same
        object as ``seen`` is stored once); without either, the export has no ``explain``.
    """
    item_vectors = model.catalogue_embeddings()
    item_ids = np.array([m.decode() for m in model.movie_ids.numpy()], dtype=object)
    k = min(settings.k, len(item_ids))
    fetch = min(k + settings.max_exclude, len(item_ids))
    index = build_index(item_vectors, item_ids, settings, fetch)
    order = np.argsort(-popularity, kind="stable")
    server = RetrievalServer(model, index, k=k, max_exclude=fetch - k, user_table=user_table,
                             popular=item_ids[order], popular_scores=popularity[order], seen=seen,
                             history=history)
    server.similar = SimilarItems(item_vectors, item_ids, settings, k)
    signatures = {
        sig.SERVING_DEFAULT: server.serve,
        sig.QUERY_FEATURES: server.serve_with_features,
        sig.EXCLUDE_SEEN: server.serve_excluding,
        sig.SIMILAR_ITEMS: server.similar.serve,
    }
    if server.history is not None:
        signatures[sig.EXPLAIN] = server.explain
    if server.context:
        signatures[sig.QUERY_CONTEXT] = server.serve_context
    if extension is not None:
        signatures.update(extension.attach(server))
    version_dir = Path(export_base) / model_name / str(version)
    with staged_directory(version_dir) as tmp:
        options = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])
        tf.saved_model.save(server, str(tmp), options=options, signatures=signatures)
        write_warmup_records(tmp / "assets.extra" / sig.WARMUP_FILE, model_name,
                             [{sig.USER_ID: sample_users[:1]}, {sig.USER_ID: sample_users[:8]}],
                             more=None if extension is None else extension.warmup_requests())
        if titles is not None:
            write_item_titles(tmp, item_ids, titles)
        if verify:
            users = {sig.USER_ID: sample_users[:4]}
            also = [] if server.history is None else [
                Check(sig.EXPLAIN, users, server.explain(tf.constant(sample_users[:4])))]
            if server.context:
                inputs = {**users, **context_sample(server.context, len(users[sig.USER_ID]))}
                answer = server.serve_context(*(tf.constant(v, dtype=s.dtype) for v, s in zip(
                    inputs.values(), server.serve_context.input_signature)))
                also.append(Check(sig.QUERY_CONTEXT, inputs, answer))
            require_same_answers(tmp, server.serve(tf.constant(sample_users[:4])), inputs=users,
                                 import_scann=settings.kind == "scann", also=also)
            if extension is not None:
                extension.verify(tmp, import_scann=settings.kind == "scann")
    logger.info("exported %s/%s/%d (%s index over %d items)", Path(export_base).name, model_name, version,
                settings.kind, len(item_ids))
    return ExportResult(path=version_dir, scann_recall_at_10=index_recall(item_vectors, settings, recall_queries))


