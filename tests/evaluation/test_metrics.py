"""Metric math on hand-worked examples (docs/architecture.md#metric-definitions)."""

import math

import numpy as np
import pytest

from tfrs_lab.evaluation.metrics import hit_rate, paired_target_ranks, ranking_metrics, target_ranks

# Four items on a line: item i scores i for the query [1].
ITEMS = np.array([[0.0], [1.0], [2.0], [3.0]], dtype=np.float32)


def test_rank_counts_higher_scoring_items():
    queries = np.ones((3, 1), np.float32)
    ranks = target_ranks(queries, ITEMS, np.array([3, 1, 0]))
    np.testing.assert_array_equal(ranks, [0, 2, 3])


def test_ties_rank_pessimistically():
    items = np.zeros((5, 2), np.float32)  # every item scores 0
    ranks = target_ranks(np.ones((1, 2), np.float32), items, np.array([2]))
    assert ranks.tolist() == [4]  # a constant model ranks the target last, not first


def test_exclusion_removes_seen_items_but_never_the_target():
    queries = np.ones((2, 1), np.float32)
    # query 0: target 1, items 2 and 3 seen -> rank 0; query 1: target 0 listed as seen too -> kept.
    ranks = target_ranks(queries, ITEMS, np.array([1, 0]), exclude=[np.array([2, 3]), np.array([0, 3])])
    np.testing.assert_array_equal(ranks, [0, 2])


def test_batching_gives_the_same_ranks():
    rng = np.random.default_rng(0)
    q, items = rng.normal(size=(37, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    targets = rng.integers(0, 50, 37)
    exclude = [rng.choice(50, 5, replace=False) for _ in range(37)]
    a = target_ranks(q, items, targets, exclude=exclude, batch_size=4)
    b = target_ranks(q, items, targets, exclude=exclude, batch_size=1000)
    np.testing.assert_array_equal(a, b)


def test_paired_ranks_equal_ranking_without_and_with_the_exclusions():
    rng = np.random.default_rng(1)
    q = rng.integers(-2, 3, size=(23, 4)).astype(np.float32)  # small integers: many tied scores
    items = rng.integers(-2, 3, size=(30, 4)).astype(np.float32)
    targets = rng.integers(0, 30, 23)
    exclude = [rng.integers(0, 30, size=rng.integers(0, 9)) for _ in range(23)]  # duplicates, the target too

    for batch in (5, 1000):
        plain, excluded = paired_target_ranks(q, items, targets, exclude, batch_size=batch)
        np.testing.assert_array_equal(plain, target_ranks(q, items, targets, batch_size=batch))
        np.testing.assert_array_equal(excluded, target_ranks(q, items, targets, exclude=exclude, batch_size=batch))
        assert (excluded <= plain).all() and (excluded < plain).any()


def test_hit_rate_by_hand():
    assert hit_rate(np.array([0, 9, 10, 99]), (10, 100)) == {"hit_rate@10": 0.5, "hit_rate@100": 1.0}


def test_ranking_metrics_by_hand():
    out = ranking_metrics(np.array([0, 1, 20]), (10,))
    assert out["recall@10"] == pytest.approx(2 / 3)
    # ndcg: rank 0 -> 1/log2(2) = 1; rank 1 -> 1/log2(3); rank 20 -> 0 (outside the cut-off).
    assert out["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert out["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 21) / 3)


def test_shape_errors_are_reported():
    with pytest.raises(ValueError, match="targets must have shape"):
        target_ranks(np.ones((2, 1)), ITEMS, np.array([0]))
