"""The nearest-neighbour index every export serves from: a TFRS top-k layer over item vectors,
ScaNN (sized from the catalogue) or brute force, and ScaNN's recall against exact search.

Used by the exporters (:mod:`~tfrs_lab.export.retrieval`, :mod:`~tfrs_lab.export.sequential`,
:mod:`~tfrs_lab.export.autoencoder`), by :mod:`~tfrs_lab.export.similar` and by the index benchmarks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_lab.native_logs import quiet_native_stderr

__all__ = ["IndexSettings", "build_index", "index_recall", "scann_parameters", "scann_recall"]


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
