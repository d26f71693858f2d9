"""Export a trained next-item model as a TF Serving SavedModel with a ScaNN (or brute-force) index.

Layout as for retrieval (:mod:`tfrs_lab.export.retrieval`): ``<export_base>/<model_name>/<version>/``
with ``saved_model.pb``, ``variables/`` and ``assets.extra/tf_serving_warmup_requests``.

Signatures (names in :mod:`tfrs_lab.export.signatures`), both returning ``item_ids`` (string
[batch, k]) and ``scores`` (float32 [batch, k], higher is better):

* ``serving_default(history: string [batch, L])``: the user's recent items, oldest first, newest
  last; '' pads (anywhere, any amount, so rows of different lengths fit one batch); unknown ids are
  ignored; only the latest ``max_length`` known items feed the model, but every item of the
  history is excluded from the answer (exactly for up to ``max_exclude`` distinct items). Empty
  or all-unknown histories get the most popular items of the training data (``scores`` = their
  training share), never an error.
* ``recommend_for_user(user_id: string [batch])``: the same, with the user's latest history stored
  in the model at export time (all known ratings; int32 item codes [U, H] plus the item names,
  :class:`~tfrs_lab.export.tables.UserTable`, so only the requested users' histories become
  strings); unknown users get the popularity answer.
* ``explain(history: string [batch, L])``: the ``serving_default`` answer plus ``because_ids``
  (string [batch, k, e], e = min(3, L)) and ``because_scores`` (float32 [batch, k, e]): the items of
  the given history most similar to each recommended item by cosine similarity of the model's item
  embeddings, most similar first; '' / -inf pads.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

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
from tfrs_lab.staging import staged_directory

__all__ = ["SequentialServer", "export_sequential"]

logger = logging.getLogger(__name__)


class SequentialServer(tf.Module):
    """The exported object: the next-item model, its index, lookups, and the serving signatures."""

    def __init__(self, model, index, *, movie_ids: np.ndarray, k: int, fetch: int, popular: np.ndarray,
                 popular_scores: np.ndarray, user_ids: np.ndarray, user_histories: np.ndarray | ItemTable):
        super().__init__()
        self.model = model
        self.index = index
        self.k, self.fetch = k, fetch
        self.max_length = model.hp.max_length
        # '' and unknown ids map to index 0 = the model's padding index.
        self.movie_lookup = tf.keras.layers.StringLookup(vocabulary=list(movie_ids), mask_token=None)
        self.user_lookup = tf.keras.layers.StringLookup(vocabulary=list(user_ids), mask_token=None)
        # [U, H] int32 codes + names (a variable saved once; strings only for the requested rows)
        self.user_histories = UserTable(user_histories)
        self.popular_ids = tf.constant(list(popular[:fetch]), dtype=tf.string)  # [fetch]
        self.popular_scores = tf.constant(popular_scores[:fetch], dtype=tf.float32)  # [fetch]

    def model_inputs(self, history: tf.Tensor) -> tf.Tensor:
        """int64 [B, max_length]: the latest ``max_length`` known items of each row, left-padded with 0."""
        idx = self.movie_lookup(history)  # [B, T]
        newest_first = tf.reverse(idx, axis=[1])
        known = tf.ragged.boolean_mask(newest_first, newest_first > 0)
        dense = known.to_tensor(default_value=0, shape=[None, self.max_length])  # keeps the newest max_length
        return tf.reverse(dense, axis=[1])

    def recommend(self, history: tf.Tensor) -> dict[str, tf.Tensor]:
        items = self.model_inputs(history)
        scores, ids = self.index(self.model.query_embedding(items), k=self.fetch)
        empty = tf.logical_not(tf.reduce_any(items > 0, axis=1, keepdims=True))  # [B, 1]
        batch, found = tf.shape(history)[0], tf.shape(ids)[1]
        ids = tf.where(empty, tf.tile(self.popular_ids[None, :found], [batch, 1]), ids)
        scores = tf.where(empty, tf.tile(self.popular_scores[None, :found], [batch, 1]), scores)
        seen = tf.reduce_any(tf.equal(ids[:, :, None], history[:, None, :]), axis=-1) | tf.equal(ids, "")
        top_scores, pos = tf.math.top_k(tf.where(seen, tf.fill(tf.shape(scores), -np.inf), scores), k=self.k)
        top_ids = tf.gather(ids, pos, batch_dims=1)
        return {sig.ITEM_IDS: tf.where(tf.math.is_finite(top_scores), top_ids, ""), sig.SCORES: top_scores}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name=sig.HISTORY)])
    def serve(self, history: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.recommend(history)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name=sig.HISTORY)])
    def explain(self, history: tf.Tensor) -> dict[str, tf.Tensor]:
        """``serving_default``'s answer and, per item, the most similar items of ``history``."""
        answer = self.recommend(history)
        return {**answer, **self.similar.because(history, answer[sig.ITEM_IDS])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID)])
    def serve_user(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        index = self.user_lookup(user_id)  # 0: unknown user -> an empty history (the popularity answer)
        known = self.user_histories.gather(tf.maximum(index - 1, 0))
        return self.recommend(tf.where((index > 0)[:, None], known, ""))


def export_sequential(
    model,
    export_base: Path,
    *,
    movie_ids: np.ndarray,
    popularity: np.ndarray,
    user_ids: np.ndarray,
    user_histories: np.ndarray | ItemTable,
    model_name: str,
    version: int,
    settings: IndexSettings,
    sample_histories: list[list[str]],
    recall_queries: np.ndarray,
    titles: np.ndarray | None = None,
    verify: bool = True,
) -> ExportResult:
    """Writes ``export_base/model_name/version/`` and checks it.

    Args:
      model: a trained ``SequentialModel`` over ``item_ids`` (index i + 1 = ``movie_ids[i]``).
      popularity: float [M] training share of each catalogue item (fallback for empty histories).
      user_ids: str [U] users whose history ``recommend_for_user`` knows.
      user_histories: str [U, H] each user's latest items, oldest first, '' padding, or the same as
        an :class:`~tfrs_lab.export.tables.ItemTable` of int32 codes (stored as codes either way).
      sample_histories: histories (lists of item ids) for warm-up records and the fresh-process check.
      recall_queries: float32 [Q, d] query vectors used to measure ScaNN recall@10 vs brute force.
    """
    item_vectors = model.item_embeddings().numpy()
    movie_ids = np.asarray(movie_ids, dtype=object)
    k = min(settings.k, len(movie_ids))
    fetch = min(k + settings.max_exclude, len(movie_ids))
    # ScaNN returns at most its re-scored candidates: size them for ``fetch`` answers, not ``k``.
    index = build_index(item_vectors, movie_ids, dataclasses.replace(settings, k=fetch), fetch)
    order = np.argsort(-np.asarray(popularity), kind="stable")
    server = SequentialServer(model, index, movie_ids=movie_ids, k=k, fetch=fetch, popular=movie_ids[order],
                              popular_scores=np.asarray(popularity)[order], user_ids=user_ids,
                              user_histories=user_histories)
    server.similar = SimilarItems(item_vectors, movie_ids, settings, k)
    width = max([len(h) for h in sample_histories] + [1])
    samples = [list(h) + [""] * (width - len(h)) for h in sample_histories]
    version_dir = Path(export_base) / model_name / str(version)
    with staged_directory(version_dir) as tmp:
        options = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])
        tf.saved_model.save(server, str(tmp), options=options, signatures={
            sig.SERVING_DEFAULT: server.serve, sig.RECOMMEND_FOR_USER: server.serve_user,
            sig.SIMILAR_ITEMS: server.similar.serve, sig.EXPLAIN: server.explain})
        write_warmup_records(tmp / "assets.extra" / sig.WARMUP_FILE, model_name,
                             [{sig.HISTORY: samples[:1]}, {sig.HISTORY: samples[:8]}])
        if titles is not None:
            write_item_titles(tmp, movie_ids, titles)
        if verify:
            histories = {sig.HISTORY: samples[:4]}
            require_same_answers(tmp, server.serve(tf.constant(samples[:4], tf.string)), inputs=histories,
                                 import_scann=settings.kind == "scann",
                                 also=[Check(sig.EXPLAIN, histories, server.explain(tf.constant(samples[:4], tf.string)))])
    logger.info("exported %s/%s/%d (%s index over %d items)", Path(export_base).name, model_name, version,
                settings.kind, len(movie_ids))
    return ExportResult(path=version_dir, scann_recall_at_10=index_recall(item_vectors, settings, recall_queries))
