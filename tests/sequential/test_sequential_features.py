"""Typed item features in the sequential model: on the cold catalogue (tfrs_lab.data.cold_catalogue,
``cold_clicks=2``) every user's validation and test items are items nobody clicked in training, so
only their category (an item feature) places them; item vectors = id embedding + projected
features, on the history side and the scored side alike. User and context features are refused
with one line (exit 2, nothing written), from files and from ``from_frame`` data."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import yaml

import tfrs_lab
from tfrs_lab.config import ConfigError
from tfrs_lab.data.cold_catalogue import write_cold_catalogue
from tfrs_lab.export import signatures as sig
from tfrs_lab.train import main

CATEGORIES, WARM, COLD = 4, 6, 20
FAST = {"data": {"dataset": "own"},
        "model": {"embedding_dim": 16, "max_length": 10, "dropout": 0.1},
        "train": {"epochs": 30, "learning_rate": 0.01, "seed": 0},
        "export": {"index": "brute_force", "k": 10, "max_exclude": 10}}


def _source(directory, **kwargs) -> dict:
    return write_cold_catalogue(directory, users=80, categories=CATEGORIES, warm=WARM, cold=COLD, seed=0, **kwargs)


def _items_only(source: dict) -> dict:
    return {**source, "features": [f for f in source["features"] if f["table"] == "items"]}


def _config(source: dict, data_dir) -> dict:
    return {**FAST, "data": {**FAST["data"], "source": source, "data_dir": str(data_dir)}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The run with the five item features (export verified in a fresh process) and without (ids only)."""
    d = tmp_path_factory.mktemp("cold-seq")
    source = _items_only(_source(d / "files", cold_clicks=2))
    featured = tfrs_lab.train("sequential", config=_config(source, d / "dd"), output_dir=d / "featured", verbose=0)
    plain = tfrs_lab.train("sequential", config=_config({**source, "features": []}, d / "dd"),
                           output_dir=d / "plain", overrides=["export.verify=false"], verbose=0)
    return featured, plain


@pytest.mark.slow
def test_item_features_place_cold_items_that_ids_cannot(runs):
    featured, plain = runs
    # ceiling about 10 / 19: a random one of the category's other cold items
    assert featured.metrics["recall@10"] >= 0.35, featured.metrics
    assert plain.metrics["recall@10"] <= 0.15, plain.metrics  # a cold item's id embedding is never a target
    assert featured.metrics["recall@10"] >= 3 * plain.metrics["recall@10"]
    assert featured.metrics["validation_ndcg@10"] > plain.metrics["validation_ndcg@10"]


def _index(sku: str) -> int:
    """The model's item index of ``sku-<c>-<j>``: catalogue (items.csv) row + 1."""
    _, c, j = sku.split("-")
    return int(c) * (WARM + COLD) + int(j) + 1


@pytest.mark.slow
def test_export_reloads_and_answers_like_the_in_memory_model(runs):
    featured, _ = runs
    loaded = tf.saved_model.load(str(featured.export_path))
    histories = [[f"sku-{c}-{j:03d}" for j in range(WARM)] for c in range(CATEGORIES)]
    out = loaded.signatures[sig.SERVING_DEFAULT](history=tf.constant(histories))
    ids, scores = out[sig.ITEM_IDS].numpy().astype(str), out[sig.SCORES].numpy()
    items = tf.constant([[_index(s) for s in h] for h in histories], tf.int32)
    queries = featured.model.query_embedding(items).numpy()
    table = featured.model.item_embeddings().numpy()
    for c in range(CATEGORIES):
        expected = table[[_index(s) - 1 for s in ids[c]]] @ queries[c]
        np.testing.assert_allclose(scores[c], expected, rtol=1e-4, atol=1e-4)
        assert not set(ids[c]) & set(histories[c])  # the history is excluded
        assert np.mean([s.startswith(f"sku-{c}-") for s in ids[c]]) >= 0.8, ids[c]  # the category's cold items


@pytest.mark.parametrize("table", ["users", "interactions"])
def test_user_and_context_features_are_refused_with_one_line(tmp_path, capsys, table):
    source = _source(tmp_path / "files")
    source["features"] = [f for f in source["features"] if f["table"] in ("items", table)]
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(source))
    out = tmp_path / "run"
    assert main(["sequential", "--data", str(spec), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    side = {"users": "country (user)", "interactions": "device (context)"}[table]
    assert err.startswith("error: task sequential reads item features only, not data.source.features") and side in err
    assert "train retrieval or multitask" in err
    assert not out.exists()


def test_from_frame_user_features_are_refused_before_training(tmp_path):
    import pandas as pd

    source = _source(tmp_path / "files")
    files = tmp_path / "files"
    data = tfrs_lab.data.from_frame(
        pd.read_csv(files / "clicks.csv"), columns={"user": "uid", "item": "sku", "time": "ts"},
        items=pd.read_csv(files / "items.csv"), item_columns={"id": "sku"}, users=pd.read_csv(files / "users.csv"),
        user_columns={"id": "uid"}, features=[f for f in source["features"] if f["name"] in ("category", "age")])
    with pytest.raises(ConfigError, match=r"^task sequential reads item features only, not data.source.features age \(user\)"):
        tfrs_lab.train("sequential", data=data, output_dir=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()
