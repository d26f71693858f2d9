"""Each autoencoder learns the planted clusters; its export folds in new users and answers
``similar_items`` with cluster-mates; the SavedModel answers the same in a fresh process."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.data.splits import make_split
from tfrs_lab.evaluation.metrics import ranking_metrics, ranks_from_scores
from tfrs_lab.export import signatures as sig
from tfrs_lab.export.verify import answer_in_fresh_process
from tfrs_lab.training.runner import run_task

from autoencoder_fixtures import autoencoder_config, cluster_members, rating_counts

pytestmark = pytest.mark.slow

ARCHITECTURES = ("autorec", "dae", "vae")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_spec, synthetic_data_dir):
    """architecture -> (metrics, loaded serving_default-bearing SavedModel, export dir)."""
    import scann  # noqa: F401

    out = {}
    for arch in ARCHITECTURES:
        index = "scann" if arch == "vae" else "brute_force"
        # autorec's exporter reloads it in a fresh process and checks the answers (export.verify).
        verify = "export.verify=" + ("true" if arch == "autorec" else "false")
        cfg = autoencoder_config(arch, synthetic_spec, synthetic_data_dir, verify, index=index)
        run_dir = tmp_path_factory.mktemp(f"ae-{arch}") / "run"
        metrics = run_task("autoencoder", cfg, run_dir, verbose=0).metrics
        export = run_dir / "export" / "autoencoder" / "1"
        out[arch] = (metrics, tf.saved_model.load(str(export)), export)
    return out


def _popularity_metrics(data) -> dict[str, float]:
    """Most-rated-in-training ranking on leave-last-out, train + validation items excluded."""
    split = make_split("leave-last-out", data.ratings)
    movies = np.unique(data.ratings["movie_id"])
    col = {m: i for i, m in enumerate(movies)}
    counts = np.zeros(len(movies))
    for m in data.ratings["movie_id"][split.train]:
        counts[col[m]] += 1
    users = data.ratings["user_id"]
    known = np.concatenate([split.train, split.validation])
    seen: dict[str, list[int]] = {}
    for r in known:
        seen.setdefault(users[r], []).append(col[data.ratings["movie_id"][r]])
    targets = np.array([col[data.ratings["movie_id"][r]] for r in split.test])
    exclude = [np.array(seen.get(users[r], []), dtype=np.int64) for r in split.test]
    scores = np.tile(counts, (len(targets), 1))
    return ranking_metrics(ranks_from_scores(scores, targets, exclude), (10,))


def test_run_dir_and_metrics_keys(runs):
    metrics, _, export = runs["autorec"]
    assert {"task", "dataset", "split", "train_seconds", "train_examples_per_second", "rmse", "mae"} <= set(metrics)
    assert metrics["split"] == "hash" and metrics["task"] == "autoencoder"
    run_dir = export.parents[2]
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics
    assert (run_dir / "config.yaml").is_file() and (run_dir / "logs").is_dir()
    for arch in ("dae", "vae"):
        m = runs[arch][0]
        assert m["split"] == "leave-last-out"
        assert {"recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr"} <= set(m)


def test_autorec_beats_global_mean(runs, synthetic_data):
    split = make_split("hash", synthetic_data.ratings)
    r = synthetic_data.ratings["user_rating"]
    mean_rmse = float(np.sqrt(np.mean((r[split.test] - r[split.train].mean()) ** 2)))
    metrics = runs["autorec"][0]
    assert metrics["rmse"] < mean_rmse - 0.05, (metrics["rmse"], mean_rmse)


@pytest.mark.parametrize("arch", ["dae", "vae"])
def test_mult_beats_popularity(runs, synthetic_data, arch):
    pop = _popularity_metrics(synthetic_data)
    ours = runs[arch][0]
    assert ours["recall@10"] > 1.5 * pop["recall@10"], (ours, pop)
    assert ours["ndcg@10"] > pop["ndcg@10"]


def _new_user(movie_cluster, counts, cluster: int, n: int = 5) -> list[str]:
    return cluster_members(movie_cluster, counts, cluster)[:n]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fold_in_new_user_gets_their_cluster_first(runs, synthetic_data, movie_cluster, arch):
    _, loaded, _ = runs[arch]
    counts = rating_counts(synthetic_data)
    clusters = range(4)
    seen = [_new_user(movie_cluster, counts, c) + ["no-such-movie", ""] for c in clusters]
    inputs = {sig.SEEN_ITEM_IDS: tf.constant(seen)}
    if arch == "autorec":
        inputs[sig.SEEN_RATINGS] = tf.constant([[5.0] * 5 + [1.0, 0.0]] * len(seen))
    out = loaded.signatures[sig.SERVING_DEFAULT](**inputs)
    ids = out[sig.ITEM_IDS].numpy().astype(str)
    for c, row, s in zip(clusters, ids, seen):
        assert not set(row) & set(s), "seen movies must be excluded"
        top3 = [movie_cluster[m] for m in row[:3]]
        assert top3 == [c, c, c], (arch, c, list(row[:5]))


def test_autorec_predict_ratings(runs, synthetic_data, movie_cluster):
    _, loaded, _ = runs["autorec"]
    counts = rating_counts(synthetic_data)
    members = cluster_members(movie_cluster, counts, 0)
    others = [m for m, c in movie_cluster.items() if c != 0][:5]
    seen = [members[:5]]
    candidates = [members[5:8] + others + ["no-such-movie"]]
    predict = loaded.signatures[sig.PREDICT_RATINGS]
    out = predict(seen_item_ids=tf.constant(seen), seen_ratings=tf.constant([[5.0] * 5]),
                  candidate_item_ids=tf.constant(candidates))[sig.RATINGS].numpy()[0]
    assert out.shape == (9,) and np.all((out >= 1.0) & (out <= 5.0))
    assert out[:3].mean() > out[3:8].mean() + 0.3, out
    # Unknown seen ids are ignored: the answer is the same as without them.
    again = predict(seen_item_ids=tf.constant([members[:5] + ["nope", ""]]),
                    seen_ratings=tf.constant([[5.0] * 5 + [1.0, 3.0]]),
                    candidate_item_ids=tf.constant(candidates))[sig.RATINGS].numpy()[0]
    np.testing.assert_allclose(again, out, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_similar_items_are_cluster_mates_never_the_query(runs, synthetic_data, movie_cluster, arch):
    _, loaded, _ = runs[arch]
    counts = rating_counts(synthetic_data)
    queries = [cluster_members(movie_cluster, counts, c)[0] for c in range(8)]
    out = loaded.signatures[sig.SIMILAR_ITEMS](item_id=tf.constant(queries + ["no-such-movie"]))
    ids = out[sig.ITEM_IDS].numpy().astype(str)
    scores = out[sig.SCORES].numpy()
    mates = [np.mean([movie_cluster[m] == movie_cluster[q] for m in row[:3]]) for q, row in zip(queries, ids)]
    assert np.mean(mates) >= 0.8, (arch, mates)
    for q, row in zip(queries, ids):
        assert q not in row
    assert list(ids[-1]) == [""] * ids.shape[1] and np.all(np.isneginf(scores[-1]))
    assert np.all(np.diff(scores[0]) <= 1e-6)


def test_export_round_trip_in_fresh_process(runs):
    # autorec: the exporter already compared a fresh process's serving_default with the model's
    # (export.verify; it raises on a mismatch), so its export exists only if they agreed.
    assert (runs["autorec"][2] / "saved_model.pb").is_file()
    # The VAE export has a ScaNN index: similar_items must still answer after it in a fresh process.
    _, loaded, export = runs["vae"]
    similar = answer_in_fresh_process(export, import_scann=True, signature=sig.SIMILAR_ITEMS,
                                      inputs={sig.ITEM_ID: ["1", "2", "no-such-movie"]})
    here = loaded.signatures[sig.SIMILAR_ITEMS](item_id=tf.constant(["1", "2", "no-such-movie"]))
    assert similar["item_ids"] == here[sig.ITEM_IDS].numpy().astype(str).tolist()
    np.testing.assert_allclose(similar["scores"], here[sig.SCORES].numpy(), rtol=1e-5)
    assert similar["item_ids"][2] == [""] * 10
