"""Full-catalogue ranking metrics (docs/architecture.md#metric-definitions), computed with batched matrix products.

Every query is scored against the *whole* catalogue: no sampled negatives. The rank of a target
is pessimistic: ``rank = #{items scoring higher} + #{other items scoring the same}`` (0-based), so a
model that gives every item the same score ranks every target last rather than first.

* ``hit_rate@K`` (hash split): share of queries whose target has rank < K; seen items are *not*
  excluded (comparable with TFRS's factorized top-K accuracy).
* ``recall@K`` / ``ndcg@K`` / ``mrr`` (leave-last-out): one target per user, the user's train and
  validation items excluded; ``ndcg@K = 1 / log2(rank + 2)`` if rank < K else 0 (one relevant item,
  so the ideal DCG is 1); ``mrr = mean(1 / (rank + 1))`` over the full ranking.
* ``recall@K`` / ``ndcg@K`` (held-out-users, Mult-VAE's definitions): several targets per user, the
  fold-in items excluded; ``recall@K = hits / min(K, #targets)``, ``ndcg@K = DCG@K / IDCG@K`` with
  ``IDCG@K = sum_{i < min(K, #targets)} 1 / log2(i + 2)``; averaged over users.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

__all__ = ["EARLY_STOPPING_METRIC", "REQUIRED_KS", "beyond_accuracy", "hit_rate", "hits_at_k", "metric_ks",
           "multi_target_metrics", "paired_target_ranks", "ranking_metrics", "ranks_from_scores", "rating_metrics", "target_ranks"]

REQUIRED_KS = {"hash": (10, 50, 100), "leave-last-out": (10, 50), "held-out-users": (20, 50, 100)}
"""Cut-offs whose metrics ``metrics.json`` must always hold, per evaluation protocol (docs/architecture.md)."""
EARLY_STOPPING_METRIC = {"hash": "hit_rate@100", "leave-last-out": "ndcg@50", "held-out-users": "ndcg@100"}
"""The validation metric top-K tasks early-stop on, per evaluation protocol."""


def metric_ks(protocol: str, eval_ks) -> tuple[int, ...]:
    """The sorted cut-offs to report under ``protocol``: the config's ``eval.ks`` plus :data:`REQUIRED_KS`."""
    return tuple(sorted(set(eval_ks) | set(REQUIRED_KS[protocol])))


def target_ranks(
    queries: np.ndarray,
    items: np.ndarray,
    targets: np.ndarray,
    exclude: Sequence[np.ndarray] | None = None,
    batch_size: int = 1024,
) -> np.ndarray:
    """Ranks (0-based) of each query's target item among all catalogue items.

    Args:
      queries: float32 [Q, d] query embeddings.
      items: float32 [N, d] candidate embeddings of the whole catalogue.
      targets: int [Q] row of each query's target in ``items``.
      exclude: optional length-Q sequence of int arrays: catalogue rows removed from query q's
        ranking (its seen items). The target itself is never removed.
      batch_size: queries per matrix product (memory is ``batch_size * N`` floats).

    Returns:
      int64 [Q] ranks.
    """
    return _ranked(queries, items, targets, exclude, batch_size, plain_too=False)[-1]


def paired_target_ranks(
    queries: np.ndarray,
    items: np.ndarray,
    targets: np.ndarray,
    exclude: Sequence[np.ndarray],
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`target_ranks` without and with ``exclude``, from one score matrix per block of queries
    (the catalogue is scored once: what the ``hash`` split's ``hit_rate@K`` and
    ``hit_rate_seen_excluded@K`` read).

    Args: as :func:`target_ranks` (``exclude`` required).

    Returns:
      (plain int64 [Q], excluded int64 [Q]): equal to ``target_ranks(..)`` and
      ``target_ranks(.., exclude=exclude)``.
    """
    plain, excluded = _ranked(queries, items, targets, exclude, batch_size, plain_too=True)
    return plain, excluded


def _ranked(queries, items, targets, exclude, batch_size: int, *, plain_too: bool) -> list[np.ndarray]:
    """[ranks with ``exclude``] or, with ``plain_too``, [plain ranks, ranks with ``exclude``] (int64
    [Q] each), scoring each block of ``batch_size`` queries against ``items`` once."""
    queries = np.asarray(queries, dtype=np.float32)
    items = np.asarray(items, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.int64)
    if queries.ndim != 2 or items.ndim != 2 or queries.shape[1] != items.shape[1]:
        raise ValueError(f"queries {queries.shape} and items {items.shape} must be [Q, d] and [N, d]")
    if targets.shape != (queries.shape[0],):
        raise ValueError(f"targets must have shape [{queries.shape[0]}], got {targets.shape}")
    if exclude is not None and len(exclude) != len(targets):
        raise ValueError(f"exclude must have one entry per query ({len(targets)}), got {len(exclude)}")
    out = [np.empty(len(targets), dtype=np.int64) for _ in range(2 if plain_too else 1)]
    for start in range(0, len(targets), batch_size):
        stop = min(start + batch_size, len(targets))
        scores = queries[start:stop] @ items.T  # [B, N]
        if plain_too:  # without exclusions first: ranks_from_scores leaves the scores as they are then
            out[0][start:stop] = ranks_from_scores(scores, targets[start:stop])
        out[-1][start:stop] = ranks_from_scores(
            scores, targets[start:stop], None if exclude is None else exclude[start:stop])
    return out


def ranks_from_scores(
    scores: np.ndarray,
    targets: np.ndarray,
    exclude: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """Ranks (0-based, pessimistic on ties) of each row's target in a score matrix.

    For scorers that do not factorise into query and item vectors (NeuMF, DCN): the caller scores
    a block of queries against the whole catalogue and passes the block here. :func:`target_ranks`
    uses the same function, so both share one tie and exclusion rule.

    Args:
      scores: float [B, N] scores of every catalogue item for each query (modified in place when
        ``exclude`` is given).
      targets: int [B] column of each row's target.
      exclude: optional length-B sequence of int arrays: columns removed from row b's ranking
        (its seen items). The target itself is never removed.

    Returns:
      int64 [B] ranks.
    """
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(f"scores {scores.shape} must be [B, N] with one target per row, got {targets.shape}")
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets]
    if exclude is not None:
        if len(exclude) != len(targets):
            raise ValueError(f"exclude must have one entry per row ({len(targets)}), got {len(exclude)}")
        lists = [np.asarray(e, dtype=np.int64) for e in exclude]
        counts = np.fromiter((len(e) for e in lists), dtype=np.int64, count=len(lists))
        if counts.sum():
            scores[np.repeat(rows, counts), np.concatenate(lists)] = -np.inf
            scores[rows, targets] = target_scores
    not_lower = scores >= target_scores[:, None]
    # ">=" counts the target itself once: subtract it (it was never excluded: its score is finite).
    return (not_lower.sum(axis=1) - 1).astype(np.int64)


def hit_rate(ranks: np.ndarray, ks: Iterable[int]) -> dict[str, float]:
    """``{"hit_rate@K": share of ranks < K}`` for each K."""
    ranks = np.asarray(ranks)
    return {f"hit_rate@{k}": float(np.mean(ranks < k)) if len(ranks) else 0.0 for k in ks}


def ranking_metrics(ranks: np.ndarray, ks: Iterable[int]) -> dict[str, float]:
    """``recall@K``, ``ndcg@K`` for each K, and ``mrr``, for one target per query."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    if not len(ranks):
        return {**{f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg")}, "mrr": 0.0}
    for k in ks:
        hit = ranks < k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    out["mrr"] = float(np.mean(1.0 / (ranks + 1.0)))
    return out


def multi_target_metrics(ranks: np.ndarray, query: np.ndarray, ks: Iterable[int]) -> dict[str, float]:
    """``recall@K`` and ``ndcg@K`` (Mult-VAE's definitions) for queries with several targets.

    Args:
      ranks: int [T] 0-based rank of every target among its query's candidates (the other targets
        compete: a rank is the target's position in the query's full list).
      query: int [T] the query (user) of each target, values in ``[0, Q)``; every query has >= 1 target.
      ks: cut-offs.

    Returns:
      per K, the mean over queries of ``hits / min(K, #targets)`` and of ``DCG@K / IDCG@K``.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    query = np.asarray(query, dtype=np.int64)
    if not len(ranks):
        return {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg")}
    _, query = np.unique(query, return_inverse=True)
    n_targets = np.bincount(query)
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        hits = np.bincount(query, weights=hit.astype(np.float64), minlength=len(n_targets))
        dcg = np.bincount(query, weights=np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0), minlength=len(n_targets))
        ideal = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))[np.minimum(n_targets, k) - 1]
        out[f"recall@{k}"] = float(np.mean(hits / np.minimum(n_targets, k)))
        out[f"ndcg@{k}"] = float(np.mean(dcg / ideal))
    return out


def rating_metrics(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``rmse`` and ``mae`` of predicted ratings (float [n]) against the true ratings (float [n]),
    computed in float64; both 0.0 for no rows."""
    if not len(truth):
        return {"rmse": 0.0, "mae": 0.0}
    err = np.asarray(predicted, np.float64) - np.asarray(truth, np.float64)
    return {"rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err)))}


def hits_at_k(top_ids: np.ndarray, targets: np.ndarray, ks: Iterable[int]) -> dict[str, float]:
    """``{"hit_rate@K": share of rows whose target is among the first K of top_ids}`` for served
    top-K answers: ``top_ids`` [n, k] (best first), ``targets`` [n] (same dtype)."""
    top_ids, targets = np.asarray(top_ids), np.asarray(targets)
    return {f"hit_rate@{k}": float(np.any(top_ids[:, :k] == targets[:, None], axis=1).mean()) if len(targets) else 0.0
            for k in ks}


def beyond_accuracy(recommendations: np.ndarray, item_counts: np.ndarray, k: int = 10,
                    item_categories: np.ndarray | None = None) -> dict[str, float]:
    """What a top-k list is like besides accurate, over the users it was made for.

    Args:
      recommendations: int [U, >= k] catalogue rows, best first, one row per user.
      item_counts: [M] training interactions per catalogue row (popularity).
      item_categories: optional float [M, G] multi-hot categories (genres) per catalogue row.

    Returns:
      ``coverage@k``: share of the catalogue recommended to anyone; ``popular_share@k``: share of
      slots taken by the 10 % most popular items; ``popularity_percentile@k``: mean popularity
      percentile of the recommended items (1.0 = the most popular item, 0.0 = the least);
      ``novelty@k``: mean self-information ``-log2 p(item)`` in bits, ``p`` the add-one smoothed
      training share; with categories, ``diversity@k``: mean over users of the average pairwise
      ``1 - cosine`` of the items' category vectors (items without a category count as dissimilar).
    """
    recs = np.asarray(recommendations)[:, :k]
    counts = np.asarray(item_counts, np.float64)
    m = len(counts)
    names = [f"coverage@{k}", f"popular_share@{k}", f"popularity_percentile@{k}", f"novelty@{k}"]
    if item_categories is not None:
        names.append(f"diversity@{k}")
    if not recs.size or not m:
        return dict.fromkeys(names, 0.0)
    order = np.argsort(-counts, kind="stable")
    popular = np.zeros(m, bool)
    popular[order[: max(1, int(round(0.1 * m)))]] = True
    percentile = np.empty(m)
    percentile[order] = 1.0 - np.arange(m) / max(m - 1, 1)
    share = (counts + 1.0) / (counts.sum() + m)
    out = {names[0]: float(len(np.unique(recs)) / m), names[1]: float(popular[recs].mean()),
           names[2]: float(percentile[recs].mean()), names[3]: float(-np.log2(share[recs]).mean())}
    if item_categories is not None:
        cats = np.asarray(item_categories, np.float64)[recs]  # [U, k, G]
        norms = np.linalg.norm(cats, axis=-1, keepdims=True)
        unit = np.divide(cats, norms, out=np.zeros_like(cats), where=norms > 0)
        sims = unit @ unit.transpose(0, 2, 1)  # [U, k, k]
        width = recs.shape[1]
        pairs = max(width * (width - 1), 1)
        out[names[4]] = float(np.mean(1.0 - (sims.sum(axis=(1, 2)) - np.trace(sims, axis1=1, axis2=2)) / pairs))
    return out
