"""Mult-DAE under ``held-out-users`` (Mult-VAE's strong generalisation): trained without the held-out
users, folded in from their older ratings at evaluation, it beats popularity on the planted clusters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfrs_lab.data.splits import SplitOptions, make_split
from tfrs_lab.evaluation.metrics import multi_target_metrics, ranks_from_scores
from tfrs_lab.training.runner import run_task

from autoencoder_fixtures import autoencoder_config

pytestmark = pytest.mark.slow

SHARES = ["data.split=held-out-users", "data.held_out_users.validation=0.2", "data.held_out_users.test=0.2"]


def _popularity(data) -> dict[str, float]:
    """Most-rated-in-training ranking of the test users' targets, their fold-in movies excluded."""
    split = make_split("held-out-users", data.ratings, SplitOptions(validation_users=0.2, test_users=0.2))
    movies = data.ratings["movie_id"].astype(str)
    catalogue = np.unique(movies)
    col = np.searchsorted(catalogue, movies)
    counts = np.bincount(col[split.train], minlength=len(catalogue)).astype(np.float64)
    users = data.ratings["user_id"].astype(str)
    _, target_user = np.unique(users[split.test], return_inverse=True)
    seen = {u: col[split.fold_in_test][users[split.fold_in_test] == u] for u in set(users[split.test])}
    exclude = [seen[u] for u in users[split.test]]
    ranks = ranks_from_scores(np.tile(counts, (len(split.test), 1)), col[split.test], exclude)
    return multi_target_metrics(ranks, target_user, (20, 50, 100))


def test_dae_on_held_out_users_beats_popularity(tmp_path, synthetic_spec, synthetic_data_dir, synthetic_data):
    cfg = autoencoder_config("dae", synthetic_spec, synthetic_data_dir, *SHARES, "export.verify=true")
    run = run_task("autoencoder", cfg, tmp_path / "run", verbose=0)
    m = run.metrics
    assert m["split"] == "held-out-users"
    assert {"recall@20", "recall@50", "ndcg@100", "validation_ndcg@100"} <= set(m) and "mrr" not in m
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == m
    popularity = _popularity(synthetic_data)
    assert m["recall@20"] > popularity["recall@20"] + 0.1, (m["recall@20"], popularity)
    assert m["ndcg@100"] > popularity["ndcg@100"] + 0.05, (m["ndcg@100"], popularity)
    # The test users never trained: none of them is in the model's user vocabulary.
    split = make_split("held-out-users", synthetic_data.ratings, SplitOptions(validation_users=0.2, test_users=0.2))
    test_users = set(synthetic_data.ratings["user_id"][split.test].astype(str))
    assert test_users and not test_users & set(run._context.vocab.user_ids.astype(str))
