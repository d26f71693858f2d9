"""Typed features learn: on the cold catalogue (tfrs_lab.data.cold_catalogue) the test item of every
user is an item nobody clicked in training, so only its category (an item feature) can place it;
retrieval with the spec's features ranks it in the top 10 far more often than popularity (which
never can) or chance, and its export answers ``query_with_context`` with the context features by name."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfrs_lab
from tfrs_lab.data.cold_catalogue import write_cold_catalogue
from tfrs_lab.export import signatures as sig

FAST = ["model.query_features=[timestamp]", "model.embedding_dim=16", "model.id_embedding_dim=16", "model.feature_embedding_dim=8",
        "export.index=brute_force", "export.k=10", "export.max_exclude=10"]


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("cold")
    source = write_cold_catalogue(d / "files", users=80, categories=4, warm=6, cold=20, seed=0)
    run = tfrs_lab.train("retrieval", config={
        "data": {"dataset": "own", "source": source, "split": "leave-last-out"},
        "train": {"epochs": 8, "batch_size": 64, "seed": 0, "learning_rate": 0.05, "include_validation": True}},
        output_dir=d / "run", overrides=FAST, verbose=0)  # export.verify on: reloaded in a fresh process
    return run, d / "files"


def popularity_recall_at_10(files) -> float:
    """Leave-last-out recall@10 of the most clicked items (training + validation rows), the user's
    own items excluded, ties broken pessimistically: what popularity gets on the same split."""
    clicks = np.genfromtxt(files / "clicks.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    items = np.genfromtxt(files / "items.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")["sku"]
    hits, users = 0, np.unique(clicks["uid"])
    last = {u: np.flatnonzero(clicks["uid"] == u)[-1] for u in users}
    known = np.ones(len(clicks), bool)
    known[list(last.values())] = False
    counts = {s: int((clicks["sku"][known] == s).sum()) for s in items}
    for u, row in last.items():
        seen = set(clicks["sku"][known & (clicks["uid"] == u)])
        target = clicks["sku"][row]
        better = sum(1 for s in items if s not in seen and s != target and counts[s] >= counts[target])
        hits += better < 10
    return hits / len(users)


def test_item_category_ranks_cold_items_that_popularity_cannot(cold_run):
    run, files = cold_run
    popularity = popularity_recall_at_10(files)
    chance = 10 / (20 * 4 + 6 * 3)  # the user's 6 warm items are excluded
    assert popularity == 0.0
    assert run.metrics["recall@10"] >= 0.3, run.metrics  # at most 10 / 20: a random one of the category's cold items
    assert run.metrics["recall@10"] >= 2.5 * chance


def test_export_reloads_and_answers_with_context_features_by_name(cold_run):
    run, _ = cold_run
    loaded = tf.saved_model.load(str(run.export_path))
    fn = loaded.signatures[sig.QUERY_CONTEXT]
    specs = fn.structured_input_signature[1]
    assert {k: (v.dtype, v.shape.rank) for k, v in specs.items()} == {
        "user_id": (tf.string, 1), "device": (tf.string, 1), "dwell": (tf.float32, 1), "clicked_at": (tf.int64, 1)}
    users = tf.constant(["u000", "u001", "u002"])
    context = {"device": tf.constant(["web", "app", "tv"]), "dwell": tf.constant([3.0, 40.0, np.nan], tf.float32),
               "clicked_at": tf.constant([1_600_000_000, 1_600_030_000, 0], tf.int64)}
    out = fn(user_id=users, **context)
    ids = out[sig.ITEM_IDS].numpy().astype(str)
    assert ids.shape == (3, 10) and (ids != "").all()
    # the reloaded scores are the in-memory model's: query (with this context) . candidate vectors
    now = tf.fill([3], tf.cast(tf.timestamp(), tf.int64))  # the serving time, as the export uses
    query = run.model.query_embedding({"user_id": users, "timestamp": now, **context}).numpy()
    for b in range(3):
        expected = run.model.candidate_embedding(tf.constant(ids[b])).numpy() @ query[b]
        np.testing.assert_allclose(out[sig.SCORES].numpy()[b], expected, rtol=1e-4, atol=1e-4)
    # every user's top items are of their category (user index % 4), their clicked warm items excluded
    for b, cat in enumerate((0, 1, 2)):
        assert np.mean([i.startswith(f"sku-{cat}-") for i in ids[b]]) >= 0.8, ids[b]
    default = loaded.signatures[sig.SERVING_DEFAULT](user_id=users)[sig.ITEM_IDS].numpy()
    assert default.shape == (3, 10)


def test_reindex_refuses_a_run_with_item_features(cold_run, tmp_path):
    from tfrs_lab.export.reindex import ReindexError, reindex

    run, files = cold_run
    with pytest.raises(ReindexError, match=r"was trained with item features .*train again$"):
        reindex(run.run_dir, files / "items.csv", item_columns="id=sku")


def test_from_frame_features_learn_as_the_files_do(cold_run, tmp_path):
    """The same tables as DataFrames through tfrs_lab.data.from_frame(features=...): retrieval reads
    the features (the cold items' category places them) and exports the context signature."""
    import pandas as pd

    run, files = cold_run
    frames = {t: pd.read_csv(files / f"{t}.csv") for t in ("clicks", "items", "users")}
    source = write_cold_catalogue(tmp_path / "again", users=80, categories=4, warm=6, cold=20, seed=0)
    data = tfrs_lab.data.from_frame(frames["clicks"], columns={"user": "uid", "item": "sku", "time": "ts"},
                                    items=frames["items"], item_columns={"id": "sku"}, users=frames["users"],
                                    user_columns={"id": "uid"}, features=source["features"], name="cold-catalogue")
    framed = tfrs_lab.train("retrieval", config={
        "data": {"split": "leave-last-out"},
        "train": {"epochs": 8, "batch_size": 64, "seed": 0, "learning_rate": 0.05, "include_validation": True}},
        data=data, output_dir=tmp_path / "run", overrides=FAST + ["export.verify=false"], verbose=0)
    assert framed.metrics["recall@10"] >= 0.3, framed.metrics
    assert abs(framed.metrics["recall@10"] - run.metrics["recall@10"]) <= 0.1, (framed.metrics, run.metrics)
    specs = tf.saved_model.load(str(framed.export_path)).signatures[sig.QUERY_CONTEXT].structured_input_signature[1]
    assert set(specs) == {"user_id", "device", "dwell", "clicked_at"}
