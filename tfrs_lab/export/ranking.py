"""Export a trained ranking model as a TF Serving SavedModel.

Layout: ``<export_base>/<model_name>/<version>/`` with ``saved_model.pb``, ``variables/``,
``assets/`` and ``assets.extra/tf_serving_warmup_requests``.

Signatures (names in :mod:`tfrs_lab.export.signatures`); the output is ``rating`` (explicit
objective: float32, clipped to the rating range) or ``score`` (implicit: float32 logit):

* ``serving_default(user_id: string [batch], item_id: string [batch])``: user features known at
  training time (age, gender, occupation, zip) are looked up inside the model; the time context is
  the serving time (clipped to the training range).
* ``score_with_features(user_id, item_id, timestamp, bucketized_user_age, user_gender,
  user_occupation_label, user_zip_code)``: every feature explicit, each [batch]; the model ignores
  those its architecture does not use. A model with SVD++ implicit feedback (``history_length > 0``)
  also takes ``history`` (string [batch, n]: the user's latest items, most recent first, ''
  padding); ``serving_default`` and ``rerank`` look it up per user inside the model.
* ``rerank(user_id: string [batch], candidate_item_ids: string [batch, n])``: each user's candidates
  (e.g. from retrieval) sorted best first -> ``item_ids`` string [batch, n] and ``scores`` float32
  [batch, n]; '' pads ragged rows and comes back last with score ``-inf``.
* ``score_with_context(user_id, item_id, <each context feature by name>)``: only when the model reads
  typed context features (``data.source.features`` of the interactions table): ``serving_default``
  for the given context (inputs as :func:`tfrs_lab.models.features.context_signature` declares
  them); ``serving_default`` and ``rerank`` answer with every context feature missing. Typed user
  and item features are tables inside the model.

Unknown users and items are answered through the model's out-of-vocabulary rows (zero embeddings:
the known side's bias decides), never an error.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_lab.export import signatures as sig
from tfrs_lab.export.retrieval import context_sample
from tfrs_lab.export.tables import ItemTable, UserTable
from tfrs_lab.export.titles import write_item_titles
from tfrs_lab.export.verify import Check, require_same_answers
from tfrs_lab.export.warmup import write_warmup_records
from tfrs_lab.models.features import context_signature
from tfrs_lab.staging import staged_directory

__all__ = ["FEATURE_INPUTS", "RankingServer", "export_ranking", "probe_pairs", "verify_rerank"]

logger = logging.getLogger(__name__)

FEATURE_INPUTS = {
    sig.TIMESTAMP: tf.int64,
    "bucketized_user_age": tf.float32,
    "user_gender": tf.int64,
    "user_occupation_label": tf.int64,
    "user_zip_code": tf.string,
}
"""``score_with_features`` inputs besides ``user_id`` and ``item_id`` (raw TFDS column names); models
with SVD++ implicit feedback also take :data:`tfrs_lab.export.signatures.HISTORY`."""


class RankingServer(tf.Module):
    """The exported object: the ranking model, the per-user feature table, and the signatures."""

    def __init__(self, model, user_table: dict[str, np.ndarray | ItemTable | UserTable]) -> None:
        """``user_table``: per user index [U + 1] each (``history`` [U + 1, H]); row 0 the unknown user.
        Kept as variables (saved once, not copied into every signature's graph), strings as int32
        codes plus the names (:class:`~tfrs_lab.export.tables.UserTable`; one given as a
        ``UserTable`` is shared, not copied)."""
        super().__init__()
        self.model = model
        self.output_name = sig.RATING if model.hp.objective == "explicit" else sig.SCORE
        self.user_table = {name: col if isinstance(col, UserTable) else UserTable(col)
                           for name, col in user_table.items()}  # [U + 1] each
        specs = [tf.TensorSpec([None], tf.string, name=sig.USER_ID), tf.TensorSpec([None], tf.string, name=sig.ITEM_ID),
                 *[tf.TensorSpec([None], dtype, name=name) for name, dtype in FEATURE_INPUTS.items()]]
        if model.uses_history:
            specs.append(tf.TensorSpec([None, None], tf.string, name=sig.HISTORY))
        self.serve_with_features = tf.function(self._score_with_features, input_signature=specs)
        self.context = tuple(getattr(model, "context_features", ()))
        if self.context:
            self.serve_context = tf.function(self._score_with_context, input_signature=[
                tf.TensorSpec([None], tf.string, name=sig.USER_ID), tf.TensorSpec([None], tf.string, name=sig.ITEM_ID),
                *(context_signature(f) for f in self.context)])

    def _known_features(self, user_id: tf.Tensor, item_id: tf.Tensor) -> dict[str, tf.Tensor]:
        idx = self.model.user_lookup(user_id)
        feats = {name: col.gather(idx) for name, col in self.user_table.items()}
        feats["user_id"], feats["movie_id"] = user_id, item_id  # the model's feature keys
        feats["timestamp"] = tf.fill(tf.shape(user_id), tf.cast(tf.timestamp(), tf.int64))
        return feats

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID),
                                  tf.TensorSpec([None], tf.string, name=sig.ITEM_ID)])
    def serve(self, user_id: tf.Tensor, item_id: tf.Tensor) -> dict[str, tf.Tensor]:
        return {self.output_name: self.model.predict_scores(self._known_features(user_id, item_id))}

    def _score_with_context(self, user_id: tf.Tensor, item_id: tf.Tensor, *context: tf.Tensor) -> dict[str, tf.Tensor]:
        """``serving_default`` with the typed context features given (``score_with_context``)."""
        feats = {**self._known_features(user_id, item_id), **{f.name: v for f, v in zip(self.context, context)}}
        return {self.output_name: self.model.predict_scores(feats)}

    def _score_with_features(self, user_id, item_id, *features) -> dict[str, tf.Tensor]:
        names = [*FEATURE_INPUTS, sig.HISTORY] if self.model.uses_history else list(FEATURE_INPUTS)
        feats = {"user_id": user_id, "movie_id": item_id, **dict(zip(names, features))}
        return {self.output_name: self.model.predict_scores(feats)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID),
                                  tf.TensorSpec([None, None], tf.string, name=sig.CANDIDATE_ITEM_IDS)])
    def rerank(self, user_id: tf.Tensor, candidate_item_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        shape = tf.shape(candidate_item_ids)
        users = tf.repeat(user_id, shape[1])
        feats = self._known_features(users, tf.reshape(candidate_item_ids, [-1]))
        scores = tf.reshape(self.model.predict_scores(feats), shape)
        scores = tf.where(tf.equal(candidate_item_ids, ""), tf.constant(-np.inf, tf.float32), scores)
        top, pos = tf.math.top_k(scores, k=shape[1])
        return {sig.ITEM_IDS: tf.gather(candidate_item_ids, pos, batch_dims=1), sig.SCORES: top}


def probe_pairs(sample_users: list[str], sample_movies: list[str]) -> tuple[list[str], list[str]]:
    """Equal-length user and item id lists for warm-up and the reload check: the samples plus an
    unknown user and an unknown item."""
    users = [*sample_users, "<unknown-user>", sample_users[0]]
    movies = [*sample_movies[: len(sample_users)], sample_movies[0], "<unknown-item>"]
    movies += [sample_movies[0]] * (len(users) - len(movies))
    return users, movies


def verify_rerank(server: RankingServer, path: Path, users: list[str], movies: list[str], *,
                  import_scann: bool = False) -> None:
    """The SavedModel at ``path``, reloaded in a fresh process, must re-rank ``items`` (and their
    reverse) for the first two ``users`` exactly as ``server`` does, scores included: the ``rerank``
    signature exercises scoring and sorting together; with typed context features, its
    ``score_with_context`` must score the pairs with sample context values as ``server`` does too
    (same process). ``import_scann``: the SavedModel holds a ScaNN index."""
    inputs = {sig.USER_ID: users[:2], sig.CANDIDATE_ITEM_IDS: [movies, movies[::-1]]}
    here = server.rerank(tf.constant(inputs[sig.USER_ID]), tf.constant(inputs[sig.CANDIDATE_ITEM_IDS]))
    also = []
    if server.context:
        request = {sig.USER_ID: users, sig.ITEM_ID: movies, **context_sample(server.context, len(users))}
        answer = server.serve_context(*(tf.constant(v, dtype=s.dtype) for v, s in zip(
            request.values(), server.serve_context.input_signature)))
        also.append(Check(sig.SCORE_CONTEXT, request, answer, compare_numbers=True))
    require_same_answers(path, here, inputs=inputs, import_scann=import_scann, signature=sig.RERANK,
                         compare_scores=True, also=also)


def export_ranking(model, export_base: Path, *, user_table: dict[str, np.ndarray | ItemTable], model_name: str,
                   version: int, sample_users: list[str], sample_movies: list[str], verify: bool = True,
                   movie_titles: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Writes ``export_base/model_name/version/`` and returns that directory.

    Args:
      model: a trained ``RankingModel``.
      user_table: raw user features per user index ([U + 1] each, row 0 = unknown-user defaults; the
        SVD++ ``history`` [U + 1, H], best as an :class:`~tfrs_lab.export.tables.ItemTable` of codes).
        Stored as :class:`~tfrs_lab.export.tables.UserTable` variables: strings as int32 codes.
      sample_users, sample_movies: known ids for the warm-up records and the fresh-process check
        (which also asks about an unknown user and an unknown item).
      verify: reload in a fresh process and require the same re-ranking as the in-memory model.
      movie_titles: ``(item_ids, titles)`` of the catalogue, written to ``assets.extra/item_titles.tsv``.
    """
    server = RankingServer(model, user_table)
    version_dir = Path(export_base) / model_name / str(version)
    users, movies = probe_pairs(sample_users, sample_movies)
    with staged_directory(version_dir) as tmp:
        signatures = {sig.SERVING_DEFAULT: server.serve, sig.SCORE_WITH_FEATURES: server.serve_with_features,
                      sig.RERANK: server.rerank}
        if server.context:
            signatures[sig.SCORE_CONTEXT] = server.serve_context
        tf.saved_model.save(server, str(tmp), signatures=signatures)
        if movie_titles is not None:
            write_item_titles(tmp, *movie_titles)
        write_warmup_records(tmp / "assets.extra" / sig.WARMUP_FILE, model_name,
                             [{sig.USER_ID: users[:1], sig.ITEM_ID: movies[:1]},
                              {sig.USER_ID: users, sig.ITEM_ID: movies}])
        if verify:
            verify_rerank(server, tmp, users, movies)
    logger.info("exported %s/%s/%d", Path(export_base).name, model_name, version)
    return version_dir
