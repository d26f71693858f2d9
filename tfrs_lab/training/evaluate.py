"""Evaluation of a retrieval model on a split, per docs/architecture.md#metric-definitions (full catalogue, no sampling)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_lab.data.features import Vocabularies, movie_rows
from tfrs_lab.evaluation.metrics import hit_rate, paired_target_ranks, ranking_metrics, target_ranks

__all__ = ["evaluate", "known_rows", "query_embeddings", "seen_lists"]


def query_embeddings(model, columns: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """float32 [n, d] query vectors for rating rows given as raw columns (all length n)."""
    n = len(columns["user_id"])
    out = []
    for s in range(0, n, batch_size):
        batch = {k: tf.constant(v[s : s + batch_size]) for k, v in columns.items()}
        out.append(model.query_embedding(batch).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.hp.embedding_dim), np.float32)


def seen_lists(users: np.ndarray, history_users: np.ndarray, history_items: np.ndarray) -> list[np.ndarray]:
    """For each entry of ``users``, the catalogue rows that user has in the history (int arrays)."""
    order = np.argsort(history_users, kind="stable")
    sorted_users, sorted_items = history_users[order], history_items[order]
    starts = np.searchsorted(sorted_users, users, side="left")
    stops = np.searchsorted(sorted_users, users, side="right")
    return [sorted_items[a:b] for a, b in zip(starts, stops)]


def known_rows(vocab: Vocabularies, users: np.ndarray, history: dict[str, np.ndarray]) -> list[np.ndarray]:
    """For each of ``users``, the catalogue rows of its movies in ``history`` (raw ``user_id`` /
    ``movie_id`` columns), movies missing from the catalogue dropped: what a ranking excludes."""
    seen = seen_lists(users, history["user_id"], movie_rows(vocab, history["movie_id"]))
    return [e[e >= 0] for e in seen]


def evaluate(
    model,
    vocab: Vocabularies,
    columns: dict[str, np.ndarray],
    *,
    protocol: str,
    ks: tuple[int, ...],
    history: dict[str, np.ndarray] | None = None,
    batch_size: int = 1024,
    seen_excluded: bool = False,
) -> dict[str, float]:
    """Metrics of ``model`` on the rating rows ``columns``.

    Args:
      columns: raw feature columns of the evaluated rows (one query per row; its movie is the target).
      protocol: ``"hash"`` -> ``hit_rate@K`` (seen not excluded); ``"leave-last-out"`` ->
        ``recall@K``, ``ndcg@K``, ``mrr`` with ``history`` (raw ``user_id``/``movie_id`` columns of
        the user's earlier rows) excluded from the ranking.
      seen_excluded: on ``hash``, also ``hit_rate_seen_excluded@K``: the same hit rate with the
        ``history`` rows' movies removed from each user's ranking (what an export that excludes
        seen items serves).
    """
    targets = movie_rows(vocab, columns["movie_id"])
    keep = targets >= 0  # ratings of movies missing from the catalogue cannot be ranked
    columns = {k: v[keep] for k, v in columns.items()}
    queries = query_embeddings(model, columns)
    items = model.catalogue_embeddings()
    exclude = None
    if protocol == "leave-last-out" or seen_excluded:
        if history is None:
            raise ValueError("evaluation with seen items excluded needs the users' history")
        exclude = known_rows(vocab, columns["user_id"], history)
    if protocol == "leave-last-out":
        return ranking_metrics(target_ranks(queries, items, targets[keep], exclude=exclude, batch_size=batch_size), ks)
    if not seen_excluded:
        return hit_rate(target_ranks(queries, items, targets[keep], batch_size=batch_size), ks)
    plain, ranks = paired_target_ranks(queries, items, targets[keep], exclude, batch_size=batch_size)
    metrics = hit_rate(plain, ks)
    metrics.update({key.replace("hit_rate@", "hit_rate_seen_excluded@"): v for key, v in hit_rate(ranks, ks).items()})
    return metrics
