"""``similar_items``: "more like this item" from a model's item representations.

Every retrieval, sequential and autoencoder export carries the signature
``similar_items(item_id: string [batch]) -> item_ids string [batch, k], scores float32 [batch, k]``:
the ``k`` items whose vectors have the highest cosine similarity with the query item's vector,
the query itself excluded, served through the same index machinery as the model's
recommendations (:func:`build_index` over the L2-normalised vectors). The similar-items index is
always exact (brute force), whatever ``export.index`` says: a reloaded SavedModel with two ScaNN
searchers routes the second one's queries to the first searcher (``SCANN_RET_CHECK_EQ`` failure,
or silently wrong neighbours when the dimensions match), and an item-to-item lookup of k + 1 rows
costs one [N, d] matrix-vector product per query.
Unknown ids (and items the model has no representation for) get an empty answer: ``''`` ids
and ``-inf`` scores, never an error.

:func:`similar_items` is the library side of ``python -m tfrs_lab.similar``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfrs_lab.export import signatures as sig
from tfrs_lab.export.index import IndexSettings, build_index
from tfrs_lab.export.titles import read_titles

__all__ = ["SimilarItems", "SimilarItemsError", "similar_items", "version_dir"]


class SimilarItemsError(ValueError):
    """A model directory or item id ``similar_items`` cannot answer for; the message says why."""


class SimilarItems(tf.Module):
    """Cosine top-k over item vectors; attach to an exported module and save :meth:`serve` as
    the :data:`~tfrs_lab.export.signatures.SIMILAR_ITEMS` signature."""

    def __init__(self, item_vectors: np.ndarray, item_ids: np.ndarray, settings: IndexSettings, k: int) -> None:
        """``item_vectors`` float [N, d] labelled by ``item_ids`` string [N]; all-zero rows (no
        representation) are left out, so they are neither answered nor queried."""
        super().__init__()
        vectors = np.asarray(item_vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1)
        keep = norms > 0
        ids = np.asarray(item_ids, dtype=object)[keep]
        if not len(ids):
            raise ValueError("similar_items needs at least one item with a non-zero vector")
        unit = vectors[keep] / norms[keep, None]
        self.k = int(min(k, max(len(ids) - 1, 1)))
        fetch = min(self.k + 1, len(ids))
        # Always exact (brute force): after reloading, a SavedModel holding two ScaNN searchers
        # answers the second from the first one's searcher (a crash, or silently wrong neighbours
        # when the dimensions match), and the model's own index is ScaNN by default.
        self.index = build_index(unit, ids, dataclasses.replace(settings, kind="brute_force", k=fetch), fetch)
        self.fetch = fetch
        self.vectors = tf.constant(np.concatenate([np.zeros((1, unit.shape[1]), np.float32), unit]))  # [N + 1, d]
        self.lookup = tf.keras.layers.StringLookup(vocabulary=[str(i) for i in ids], mask_token=None)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.ITEM_ID)])
    def serve(self, item_id: tf.Tensor) -> dict[str, tf.Tensor]:
        row = self.lookup(item_id)  # 0 = unknown
        scores, ids = self.index(tf.gather(self.vectors, row), k=self.fetch)
        drop = tf.equal(ids, item_id[:, None]) | tf.equal(ids, "") | tf.equal(row, 0)[:, None]
        masked = tf.where(drop, tf.fill(tf.shape(scores), -np.inf), scores)
        top_scores, pos = tf.math.top_k(masked, k=self.k)
        top_ids = tf.gather(ids, pos, batch_dims=1)
        return {sig.ITEM_IDS: tf.where(tf.math.is_finite(top_scores), top_ids, ""), sig.SCORES: top_scores}

    def because(self, history: tf.Tensor, item_ids: tf.Tensor, e: int = sig.MAX_BECAUSE) -> dict[str, tf.Tensor]:
        """The explanation of each recommendation: the ``e`` items of ``history`` (string [B, h], ''
        pads) with the highest cosine similarity to each of ``item_ids`` (string [B, k]), most
        similar first. Returns :data:`~tfrs_lab.export.signatures.BECAUSE_IDS` (string [B, k, e'],
        e' = min(e, h), '' pads) and :data:`~tfrs_lab.export.signatures.BECAUSE_SCORES` (float32
        [B, k, e'], -inf at pads). History items without a vector, and '' recommendations, are
        explained by nothing; an item repeated in the history counts once."""
        hist_rows = self.lookup(history)  # [B, h], 0 = unknown or pad
        rec_rows = self.lookup(item_ids)  # [B, k]
        sim = tf.einsum("bkd,bhd->bkh", tf.gather(self.vectors, rec_rows), tf.gather(self.vectors, hist_rows))
        # A repeated history item: keep its first occurrence only.
        h = tf.shape(history)[1]
        same = tf.equal(hist_rows[:, :, None], hist_rows[:, None, :])  # [B, h, h]
        earlier = tf.linalg.band_part(tf.ones([h, h], tf.bool), -1, 0) & ~tf.eye(h, dtype=tf.bool)  # j < i
        repeated = tf.reduce_any(same & earlier[None], axis=2)  # [B, h]
        usable = (hist_rows > 0) & ~repeated
        valid = usable[:, None, :] & (rec_rows > 0)[:, :, None]  # [B, k, h]
        masked = tf.where(valid, sim, tf.fill(tf.shape(sim), -np.inf))
        width = history.shape[1]
        top = min(e, width) if width is not None else e
        top_scores, pos = tf.math.top_k(masked, k=tf.minimum(top, h))
        k = tf.shape(item_ids)[1]
        ids = tf.gather(tf.tile(history[:, None, :], [1, k, 1]), pos, batch_dims=2)
        return {sig.BECAUSE_IDS: tf.where(tf.math.is_finite(top_scores), ids, ""), sig.BECAUSE_SCORES: top_scores}


# --------------------------------------------------------------------------- reading exports


def version_dir(model_dir: str | Path) -> Path:
    """The SavedModel directory of ``model_dir``: a version dir itself, a model dir holding
    numbered versions (the highest wins), or a run directory with ``export/<name>/<version>/``."""
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise SimilarItemsError(f"--model-dir {str(path)!r} is not a directory: pass an export or run directory")
    if (path / "saved_model.pb").is_file():
        return path
    candidates = [path]
    if (path / "export").is_dir():
        candidates = [d for d in sorted((path / "export").iterdir()) if d.is_dir()]
    for base in candidates:
        versions = sorted((d for d in base.iterdir() if d.is_dir() and d.name.isdigit()
                           and (d / "saved_model.pb").is_file()), key=lambda d: int(d.name))
        if versions:
            return versions[-1]
    raise SimilarItemsError(f"--model-dir {str(path)!r} holds no SavedModel: pass export/<name>/<version>, "
                            f"export/<name> or a run directory")


def similar_items(model_dir: str | Path, item_id: str, k: int) -> tuple[str, list[tuple[str, str, float]]]:
    """The ``k`` items most similar to ``item_id`` according to the export under ``model_dir``.

    Returns ``(query title, [(item_id, title, cosine), ...] best first)``; titles are ``''`` when
    the export has no title file. Raises :class:`SimilarItemsError` for a directory without a
    ``similar_items`` signature, an unknown item id, or ``k`` above what the export returns.
    """
    path = version_dir(model_dir)
    old = sig.pre_rename_export(path)
    if old:
        raise SimilarItemsError(sig.pre_rename_error(f"the model at {str(path)!r}", old))
    import scann  # noqa: F401  (registers the ScaNN ops a ScaNN export needs)

    loaded = tf.saved_model.load(str(path))
    if sig.SIMILAR_ITEMS not in loaded.signatures:
        raise SimilarItemsError(f"the model at {str(path)!r} has no {sig.SIMILAR_ITEMS} signature "
                                f"(signatures: {', '.join(sorted(loaded.signatures))}): re-export it")
    out = loaded.signatures[sig.SIMILAR_ITEMS](**{sig.ITEM_ID: tf.constant([str(item_id)])})
    ids = [m.decode() for m in out[sig.ITEM_IDS].numpy()[0]]
    scores = out[sig.SCORES].numpy()[0].tolist()
    if k > len(ids):
        raise SimilarItemsError(f"--k must be <= {len(ids)} (the export's k), got {k}")
    answer = [(m, s) for m, s in zip(ids, scores) if m][:k]
    if not answer:
        raise SimilarItemsError(f"--item-id {item_id} is not an item the model knows: pass an id from its catalogue")
    titles = read_titles(path)
    return titles.get(str(item_id), ""), [(m, titles.get(m, ""), float(s)) for m, s in answer]
