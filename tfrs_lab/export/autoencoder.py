"""Export a trained autoencoder as a TF Serving SavedModel that folds in any user.

Layout as for retrieval (:mod:`tfrs_lab.export.retrieval`): ``<export_base>/<model_name>/<version>/``
with ``saved_model.pb``, ``variables/``, ``assets.extra/tf_serving_warmup_requests`` and
``assets.extra/item_titles.tsv``.

Every recommendation is a maximum-inner-product search, so it goes through the same index
machinery as retrieval (:func:`~tfrs_lab.export.index.build_index`, ScaNN or brute force):

* Mult-DAE / Mult-VAE: ``logit_i = g(x) . W_i + b_i`` where ``g(x)`` are the decoder's last
  activations for the user's multi-hot input ``x``; the index holds ``[W_i, b_i]``, the query is
  ``[g(x), 1]``.
* I-AutoRec: ``rating(u, i) = h_i . w_u + b_u`` with item codes ``h_i`` (the encoder's output for
  the item's known ratings) and user u's decoder row ``w_u``, ``b_u``. A user is folded in as the
  average training user (mean decoder row and bias) plus a deviation fitted by ridge regression
  (``fold_in_l2``) of their residual ratings on the centred codes of the items they rated; the
  index holds ``[h_i, 1]``, the query is ``[w, b]``. This works for users never seen in training.

Signatures (names in :mod:`tfrs_lab.export.signatures`); item ids unknown to the model are
ignored, '' pads, nothing raises:

* ``serving_default(seen_item_ids string [batch, n][, seen_ratings float32 [batch, n] for autorec])``
  -> ``item_ids`` string [batch, k], ``scores`` float32 [batch, k] (logits, or predicted ratings
  for autorec), the seen items excluded (exact for up to ``max_exclude`` of them). Rows with no
  known item get the most popular training items (``scores`` = their training share).
* ``predict_ratings`` (autorec): ``seen_item_ids``, ``seen_ratings``, ``candidate_item_ids``
  string [batch, m] -> ``ratings`` float32 [batch, m], clipped to the training rating range
  (an unknown candidate is rated like an average item).
* ``similar_items(item_id string [batch])`` -> cosine top-k over the item codes (autorec) or the
  output-layer vectors ``W_i`` (dae/vae), see :mod:`tfrs_lab.export.similar`.
Only items with training interactions are indexed (the model knows nothing about the others).
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
from tfrs_lab.export.titles import write_item_titles
from tfrs_lab.export.verify import require_same_answers
from tfrs_lab.export.warmup import write_warmup_records
from tfrs_lab.staging import staged_directory

__all__ = ["AutoRecServer", "AutoencoderServer", "FoldIn", "MultServer", "export_autoencoder", "multi_hot"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FoldIn:
    """What an AutoRec export needs besides the index: item codes and the average user.

    ``codes`` float32 [N, d] are the indexed items' codes (same order as the index ids);
    ``mean_row`` float32 [d] and ``mean_bias`` are the average training user's decoder row and bias.
    """

    codes: np.ndarray
    mean_row: np.ndarray
    mean_bias: float
    rating_min: float
    rating_max: float
    l2: float


class AutoencoderServer(tf.Module):
    """The exported object's common part: index over the trained items, lookups, popularity."""

    def __init__(self, index, *, item_ids: np.ndarray, k: int, fetch: int, popular: np.ndarray,
                 popular_scores: np.ndarray):
        super().__init__()
        self.index = index
        self.k, self.fetch = k, fetch
        # Indexed items: row i + 1 (0 = unknown / no training interactions).
        self.item_lookup = tf.keras.layers.StringLookup(vocabulary=[str(i) for i in item_ids], mask_token=None)
        self.popular_ids = tf.constant([str(p) for p in popular[:fetch]], dtype=tf.string)
        self.popular_scores = tf.constant(popular_scores[:fetch], dtype=tf.float32)

    def recommend(self, query: tf.Tensor, known: tf.Tensor, seen: tf.Tensor) -> dict[str, tf.Tensor]:
        """Top-k of the index for ``query``, popularity where no item is ``known``, ``seen`` excluded."""
        scores, ids = self.index(query, k=self.fetch)
        batch, found = tf.shape(query)[0], tf.shape(ids)[1]
        ids = tf.where(known, ids, tf.tile(self.popular_ids[None, :found], [batch, 1]))
        scores = tf.where(known, scores, tf.tile(self.popular_scores[None, :found], [batch, 1]))
        drop = tf.reduce_any(tf.equal(ids[:, :, None], seen[:, None, :]), axis=-1) | tf.equal(ids, "")
        top_scores, pos = tf.math.top_k(tf.where(drop, tf.fill(tf.shape(scores), -np.inf), scores), k=self.k)
        top_ids = tf.gather(ids, pos, batch_dims=1)
        return {sig.ITEM_IDS: tf.where(tf.math.is_finite(top_scores), top_ids, ""), sig.SCORES: top_scores}


class AutoRecServer(AutoencoderServer):
    """I-AutoRec export: fold-in by ridge regression on the item codes."""

    def __init__(self, index, *, fold_in: FoldIn, **kwargs):
        super().__init__(index, **kwargs)
        codes = np.asarray(fold_in.codes, np.float32)
        mean_code = codes.mean(axis=0)
        d = codes.shape[1]
        zero = np.zeros((1, d + 1), np.float32)
        centred = np.concatenate([codes - mean_code, np.ones((len(codes), 1), np.float32)], axis=1)
        self.centred = tf.constant(np.concatenate([zero, centred]))  # [N + 1, d + 1]; row 0 = unknown
        self.codes = tf.constant(np.concatenate([zero[:, :d], codes]))  # [N + 1, d]
        self.mean_code = tf.constant(mean_code)  # [d]
        self.mean_row = tf.constant(np.asarray(fold_in.mean_row, np.float32))  # [d]
        self.mean_bias = tf.constant(fold_in.mean_bias, tf.float32)
        self.rating_range = tf.constant([fold_in.rating_min, fold_in.rating_max], tf.float32)
        self.ridge = tf.constant(fold_in.l2 * np.eye(d + 1, dtype=np.float32))

    def fold_in(self, seen_item_ids: tf.Tensor, seen_ratings: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """AutoRec: (query float32 [B, d + 1] against the index's ``[h_i, 1]``, any-known bool [B, 1]).

        The average training user predicts ``h_i . mean_row + mean_bias``; the user's deviation
        from it is a ridge regression (``l2``) of their residual ratings on the centred codes
        ``[h_i - mean(h), 1]`` of the known items they rated. No known item: the average user.
        """
        idx = self.item_lookup(seen_item_ids)  # [B, n]
        mask = tf.cast(idx > 0, tf.float32)
        phi = tf.gather(self.centred, idx) * mask[..., None]  # [B, n, d + 1]
        average = tf.einsum("bnd,d->bn", tf.gather(self.codes, idx), self.mean_row) + self.mean_bias
        target = (tf.cast(seen_ratings, tf.float32) - average) * mask  # [B, n]
        gram = tf.einsum("bnd,bne->bde", phi, phi) + self.ridge  # [B, d + 1, d + 1]
        rhs = tf.einsum("bnd,bn->bd", phi, target)[..., None]
        delta = tf.linalg.cholesky_solve(tf.linalg.cholesky(gram), rhs)[..., 0]  # [B, d + 1]
        # h.(mean_row + dw) + mean_bias + db - mean_code.dw  ==  [h, 1] . query
        dw, db = delta[:, :-1], delta[:, -1:]
        offset = self.mean_bias + db - tf.reduce_sum(dw * self.mean_code, axis=1, keepdims=True)
        query = tf.concat([self.mean_row[None, :] + dw, offset], axis=1)
        return query, tf.reduce_any(idx > 0, axis=1, keepdims=True)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name=sig.SEEN_ITEM_IDS),
                                  tf.TensorSpec([None, None], tf.float32, name=sig.SEEN_RATINGS)])
    def serve(self, seen_item_ids: tf.Tensor, seen_ratings: tf.Tensor) -> dict[str, tf.Tensor]:
        query, known = self.fold_in(seen_item_ids, seen_ratings)
        return self.recommend(query, known, seen_item_ids)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name=sig.SEEN_ITEM_IDS),
                                  tf.TensorSpec([None, None], tf.float32, name=sig.SEEN_RATINGS),
                                  tf.TensorSpec([None, None], tf.string, name=sig.CANDIDATE_ITEM_IDS)])
    def predict_ratings(self, seen_item_ids: tf.Tensor, seen_ratings: tf.Tensor,
                        candidate_item_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        query, _ = self.fold_in(seen_item_ids, seen_ratings)
        idx = self.item_lookup(candidate_item_ids)  # [B, m]
        predicted = tf.einsum("bmd,bd->bm", tf.gather(self.codes, idx), query[:, :-1]) + query[:, -1:]
        # An unknown candidate is rated like the average item (the mean code).
        average_movie = tf.reduce_sum(query[:, :-1] * self.mean_code, axis=1, keepdims=True) + query[:, -1:]
        baseline = tf.broadcast_to(average_movie, tf.shape(predicted))
        predicted = tf.where(idx > 0, predicted, baseline)
        return {sig.RATINGS: tf.clip_by_value(predicted, self.rating_range[0], self.rating_range[1])}


def multi_hot(rows: tf.Tensor, num_catalogue: int) -> tf.Tensor:
    """float32 [B, M]: 1 at each catalogue row of ``rows`` (int64 [B, n], row i + 1 = catalogue item i,
    0 = unknown or padding, repeats allowed), scattered into [B, M + 1] and the unknown column dropped.
    Never a [B, n, M + 1] one-hot: 8 users with 500 seen items of a 59k catalogue made 0.9 GB."""
    shape = tf.shape(rows, out_type=tf.int64)  # [B, n]
    users = tf.broadcast_to(tf.range(shape[0])[:, None], shape)
    counts = tf.scatter_nd(tf.stack([users, rows], axis=-1), tf.ones_like(rows, tf.float32),
                           tf.stack([shape[0], tf.constant(num_catalogue + 1, tf.int64)]))  # [B, M + 1]
    return tf.minimum(counts[:, 1:], 1.0)


class MultServer(AutoencoderServer):
    """Mult-DAE / Mult-VAE export: the model encodes the user's multi-hot vector."""

    def __init__(self, index, *, model, catalogue_ids: np.ndarray, **kwargs):
        super().__init__(index, **kwargs)
        self.model = model
        # Whole catalogue: the model's input columns (row i + 1 = catalogue_ids[i]).
        self.catalogue_lookup = tf.keras.layers.StringLookup(vocabulary=[str(i) for i in catalogue_ids],
                                                             mask_token=None)
        self.num_catalogue = len(catalogue_ids)

    def multi_hot(self, seen_item_ids: tf.Tensor) -> tf.Tensor:
        """Model input float32 [B, M]: 1 for each known seen catalogue item (:func:`multi_hot`)."""
        return multi_hot(self.catalogue_lookup(seen_item_ids), self.num_catalogue)

    def query(self, seen_item_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(query float32 [B, d + 1] = [decoder activations, 1], any-known bool [B, 1])."""
        x = self.multi_hot(seen_item_ids)
        g = self.model.query_vectors(x)
        query = tf.concat([g, tf.ones_like(g[:, :1])], axis=1)
        return query, tf.reduce_any(x > 0, axis=1, keepdims=True)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name=sig.SEEN_ITEM_IDS)])
    def serve(self, seen_item_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        query, known = self.query(seen_item_ids)
        return self.recommend(query, known, seen_item_ids)


def export_autoencoder(
    export_base: Path,
    *,
    item_ids: np.ndarray,
    index_vectors: np.ndarray,
    similarity_vectors: np.ndarray,
    catalogue_ids: np.ndarray,
    popularity: np.ndarray,
    model_name: str,
    version: int,
    settings: IndexSettings,
    sample_inputs: dict[str, list],
    recall_queries: np.ndarray,
    model=None,
    fold_in: FoldIn | None = None,
    titles: np.ndarray | None = None,
    verify: bool = True,
) -> ExportResult:
    """Writes ``export_base/model_name/version/`` and checks it.

    Args:
      item_ids: str [N] the indexed items (those with training interactions).
      index_vectors: float32 [N, d + 1] MIPS item vectors (``[W_i, b_i]`` or ``[h_i, 1]``).
      similarity_vectors: float32 [N, e] item representations for ``similar_items``.
      catalogue_ids: str [M] the whole catalogue (the DAE/VAE input columns; titles).
      popularity: float [N] training share of each indexed item (fallback for empty inputs).
      sample_inputs: ``serving_default`` inputs (nested lists, a few rows) for warm-up and the check.
      recall_queries: float32 [Q, d + 1] queries used to measure ScaNN recall@10 vs brute force.
      model: the trained ``MultAutoencoder`` (dae/vae); ``None`` with ``fold_in`` for autorec.
    """
    item_ids = np.asarray(item_ids, dtype=object)
    k = min(settings.k, len(item_ids))
    fetch = min(k + settings.max_exclude, len(item_ids))
    index = build_index(index_vectors, item_ids, dataclasses.replace(settings, k=fetch), fetch)
    order = np.argsort(-np.asarray(popularity), kind="stable")
    common = dict(item_ids=item_ids, k=k, fetch=fetch, popular=item_ids[order],
                  popular_scores=np.asarray(popularity)[order])
    if fold_in is not None:
        server = AutoRecServer(index, fold_in=fold_in, **common)
        signatures = {sig.SERVING_DEFAULT: server.serve, sig.PREDICT_RATINGS: server.predict_ratings}
    else:
        server = MultServer(index, model=model, catalogue_ids=catalogue_ids, **common)
        signatures = {sig.SERVING_DEFAULT: server.serve}
    server.similar = SimilarItems(similarity_vectors, item_ids, settings, k)
    serve = server.serve
    signatures[sig.SIMILAR_ITEMS] = server.similar.serve
    version_dir = Path(export_base) / model_name / str(version)
    with staged_directory(version_dir) as tmp:
        options = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])
        tf.saved_model.save(server, str(tmp), options=options, signatures=signatures)
        first = {name: rows[:1] for name, rows in sample_inputs.items()}
        write_warmup_records(tmp / "assets.extra" / sig.WARMUP_FILE, model_name, [first, sample_inputs])
        if titles is not None:
            write_item_titles(tmp, catalogue_ids, titles)
        if verify:
            here = serve(**{name: tf.constant(rows, tf.float32 if name == sig.SEEN_RATINGS else tf.string)
                            for name, rows in sample_inputs.items()})
            require_same_answers(tmp, here, inputs=sample_inputs, import_scann=settings.kind == "scann")
    logger.info("exported %s/%s/%d (%s index over %d items)", Path(export_base).name, model_name, version,
                settings.kind, len(item_ids))
    return ExportResult(path=version_dir, scann_recall_at_10=index_recall(index_vectors, settings, recall_queries))
