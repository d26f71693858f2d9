"""Typed features in the multitask task: on planted data (tfrs_lab.data.cold_catalogue.write_rated_catalogue,
column names that are not MovieLens's) every test row reviews a product nobody reviewed in training,
so only its ``family`` (an item feature) can rate it; the towers read the spec's features as
retrieval's do, the export answers with them after a reload, and the CLI runs end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
import yaml

import tfrs_lab
from tfrs_lab.data.cold_catalogue import write_rated_catalogue
from tfrs_lab.export import signatures as sig
from tfrs_lab.train import main

pytestmark = pytest.mark.slow

FAST = {"data": {"dataset": "own", "split": "time"},
        "model": {"query_features": ["timestamp"], "embedding_dim": 16, "id_embedding_dim": 16,
                  "feature_embedding_dim": 8, "rating_layers": [32]},
        "train": {"epochs": 15, "batch_size": 64, "learning_rate": 0.01, "seed": 0, "include_validation": True},
        "export": {"index": "brute_force", "k": 10, "max_exclude": 10}}
"""A fixed 15 epochs (no early stopping: with 75 products ``hit_rate@100`` saturates on validation)."""


def _config(source: dict, data_dir) -> dict:
    return {**FAST, "data": {**FAST["data"], "source": source, "data_dir": str(data_dir)}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The featured run (export verified in a fresh process) and the same run without features (ids only)."""
    d = tmp_path_factory.mktemp("rated")
    source = write_rated_catalogue(d / "files")
    featured = tfrs_lab.train("multitask", config=_config(source, d / "dd"), output_dir=d / "featured", verbose=0)
    plain = tfrs_lab.train("multitask", config=_config({**source, "features": []}, d / "dd"),
                           output_dir=d / "plain", overrides=["export.verify=false"], verbose=0)
    return featured, plain, source


def test_item_family_rates_cold_products_that_ids_cannot(runs):
    featured, plain, source = runs
    with open(source["interactions"]["path"]) as f:
        cold = sum(1 for line in f if ",c" in line)
    assert featured.metrics["num_test_examples"] <= cold  # every test row reviews a cold product
    # ids only: a cold product gets about the member's mean; the family tells like (4.5) from dislike (1.5)
    assert plain.metrics["rmse"] > 1.2, plain.metrics
    assert featured.metrics["rmse"] < 0.8, featured.metrics
    assert featured.metrics["rmse"] < 0.55 * plain.metrics["rmse"], (featured.metrics, plain.metrics)
    for key in ("hit_rate@10", "hit_rate_seen_excluded@10", "mae"):  # both heads evaluated
        assert 0 < featured.metrics[key] < 5, key


def test_export_reloads_and_answers_like_the_in_memory_model(runs):
    featured, _, _ = runs
    loaded = tf.saved_model.load(str(featured.export_path))
    assert {sig.SERVING_DEFAULT, sig.QUERY_CONTEXT, sig.RATE, sig.RERANK, sig.SCORE_CONTEXT} <= set(loaded.signatures)
    for name, extra in ((sig.QUERY_CONTEXT, {}), (sig.SCORE_CONTEXT, {"item_id": (tf.string, 1)})):
        specs = loaded.signatures[name].structured_input_signature[1]
        assert {k: (v.dtype, v.shape.rank) for k, v in specs.items()} == {
            "user_id": (tf.string, 1), "channel": (tf.string, 1), **extra}, name
    members = tf.constant(["m000", "m001", "m002", "nobody"])
    products = tf.constant(["c0-1", "c0-1", "c2-3", "c1-0"])  # cold: only their family is known
    channel = tf.constant(["web", "app", "tv", ""])
    now = tf.fill([4], tf.cast(tf.timestamp(), tf.int64))  # the serving time, as the export uses
    # score_with_context: the in-memory rating head on the same inputs
    served = loaded.signatures[sig.SCORE_CONTEXT](user_id=members, item_id=products, channel=channel)[sig.RATING]
    expected = featured.model.predict_scores({"user_id": members, "movie_id": products, "timestamp": now,
                                              "channel": channel})
    np.testing.assert_allclose(served.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    assert served[0] > 3.5 and served[1] < 2.5 and served[2] > 3.5  # m000 likes f0, m001 f1, m002 f2
    # rate (serving_default of the rating head) = the context missing
    rated = loaded.signatures[sig.RATE](user_id=members, item_id=products)[sig.RATING].numpy()
    missing = featured.model.predict_scores({"user_id": members, "movie_id": products, "timestamp": now}).numpy()
    np.testing.assert_allclose(rated, missing, rtol=1e-4, atol=1e-4)
    # query_with_context: the top 10 scored by the in-memory towers
    out = loaded.signatures[sig.QUERY_CONTEXT](user_id=members[:3], channel=channel[:3])
    ids = out[sig.ITEM_IDS].numpy().astype(str)
    query = featured.model.query_embedding({"user_id": members[:3], "timestamp": now[:3], "channel": channel[:3]})
    for b in range(3):
        scores = featured.model.candidate_embedding(tf.constant(ids[b])).numpy() @ query.numpy()[b]
        np.testing.assert_allclose(out[sig.SCORES].numpy()[b], scores, rtol=1e-4, atol=1e-4)


def test_cli_end_to_end_with_features_and_other_column_names(runs, tmp_path):
    _, _, source = runs
    spec = tmp_path / "reviews.yaml"
    spec.write_text(yaml.safe_dump(source))
    out = tmp_path / "run"
    assert main(["multitask", "--data", str(spec), "--split", "time", "--epochs", "2", "--seed", "0",
                 "--data-dir", str(tmp_path / "dd"), "--set", "model.rating_layers=[16]", "--set", "export.k=10",
                 "--set", "export.max_exclude=10", "--set", "export.index=brute_force",
                 "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "multitask" and metrics["dataset"] == "rated-catalogue" and metrics["split"] == "time"
    for key in ("hit_rate@10", "rmse", "mae", "validation_rmse", "validation_hit_rate@100"):
        assert isinstance(metrics[key], float), key
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["source"]["features"][0]["name"] == "family"
    signatures = set(tf.saved_model.load(str(out / "export" / "multitask" / "1")).signatures)
    assert {sig.QUERY_CONTEXT, sig.SCORE_CONTEXT, sig.RATE, sig.RERANK} <= signatures
