"""Ranking on your own data from the prepared dataset's integer columns, with typed features.

Planted data (:func:`write_cold_ratings`): every user likes the items of one category (rating about
4.5) and dislikes the others (about 1.5); the test rows rate items nobody rated before them (cold
items, placed last in time so the ``time`` split keeps them out of training). Only a model that
knows an item's category (an item feature) can rate them; ids alone cannot (a cold item's id
embedding and bias were never trained).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import yaml

import tfrs_lab
from tfrs_lab.config import ConfigError, NegativeSamplingConfig, load_config, to_dict
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.prepared import PreparedDataset, prepare_dataset
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.schema import build
from tfrs_lab.data.splits import make_split
from tfrs_lab.export import signatures as sig
from tfrs_lab.train import main
from tfrs_lab.export.tables import ItemTable
from tfrs_lab.models.ranking import NEGATIVE_MOVIE_ID
from tfrs_lab.training.common import make_dataset
from tfrs_lab.training.ranking import (TASK, code_rating_table, explicit_dataset, explicit_metrics, hyperparameters,
                                       implicit_dataset, implicit_indices, item_rating_table, make_model,
                                       negative_sampler, ranking_eval, ranking_stream, serving_user_table,
                                       split_columns, stream_explicit_metrics, stream_ranking_eval)
from tfrs_lab.training.runner import prepare

pytestmark = pytest.mark.slow

FEATURES = [
    {"name": "category", "table": "items", "column": "category", "type": "categorical"},
    {"name": "country", "table": "users", "column": "country", "type": "categorical"},
    {"name": "device", "table": "interactions", "column": "device", "type": "categorical"},
    {"name": "dwell", "table": "interactions", "column": "dwell", "type": "numeric"},
]
"""The item feature carries the signal; the user and context features are noise."""

FAST = {"model": {"architecture": "dcn", "features": [], "history_length": 0, "embedding_dim": 16,
                  "feature_embedding_dim": 8, "deep_layers": [32], "cross_layers": 1, "dropout": 0.0,
                  "embedding_l2": 0.0},
        "train": {"epochs": 25, "batch_size": 64, "learning_rate": 0.01, "lr_schedule": "constant", "seed": 0,
                  "early_stopping_patience": 4}}


def write_cold_ratings(directory, *, users: int = 120, categories: int = 3, warm: int = 15, cold: int = 10,
                       rated_warm: int = 16, rated_cold: int = 2, seed: int = 0) -> dict:
    """Writes ``ratings.csv`` (uid, sku, stars, ts, device, dwell), ``items.csv`` (sku, category) and
    ``users.csv`` (uid, country) into ``directory``; returns their ``data.source`` mapping with
    :data:`FEATURES`. User u likes category ``u % categories``: stars 4.5 there, 1.5 elsewhere
    (+ N(0, 0.25) noise, clipped to 1..5). Every user rates ``rated_warm`` random warm items first
    (all users' warm rows, interleaved, come before any cold row), then ``rated_cold`` random cold items."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    cats = {f"w{c}-{j}": c for c in range(categories) for j in range(warm)}
    cold_cats = {f"c{c}-{j}": c for c in range(categories) for j in range(cold)}
    (directory / "items.csv").write_text("sku,category\n" + "".join(
        f"{sku},cat{c}\n" for sku, c in {**cats, **cold_cats}.items()))
    (directory / "users.csv").write_text("uid,country\n" + "".join(
        f"u{u:03d},{['de', 'fr'][rng.integers(0, 2)]}\n" for u in range(users)))
    lines, t = ["uid,sku,stars,ts,device,dwell"], 1_600_000_000
    for pool, count in ((cats, rated_warm), (cold_cats, rated_cold)):
        skus = np.array(list(pool))
        pairs = [(u, sku) for u in range(users) for sku in rng.choice(skus, count, replace=False)]
        for i in rng.permutation(len(pairs)):  # users interleaved in time
            u, sku = pairs[i]
            stars = np.clip((4.5 if pool[sku] == u % categories else 1.5) + rng.normal(0, 0.25), 1, 5)
            t += 60
            lines.append(f"u{u:03d},{sku},{stars:.2f},{t},{['web', 'app'][rng.integers(0, 2)]},"
                         f"{rng.uniform(0, 60):.1f}")
    (directory / "ratings.csv").write_text("\n".join(lines) + "\n")
    return {"name": "cold-ratings",
            "interactions": {"path": str(directory / "ratings.csv"),
                             "columns": {"user": "uid", "item": "sku", "rating": "stars", "time": "ts"}},
            "items": {"path": str(directory / "items.csv"), "columns": {"id": "sku"}},
            "users": {"path": str(directory / "users.csv"), "columns": {"id": "uid"}},
            "features": FEATURES}


def _config(source: dict, data_dir) -> dict:
    return {"data": {"dataset": "own", "source": source, "split": "time", "data_dir": str(data_dir)}, **FAST}


@pytest.fixture(scope="module")
def cold_runs(tmp_path_factory):
    """The same data with the typed features and without them (ids only), same model and seed; the
    featured run counts ``to_data`` calls (none: it reads the integer columns)."""
    d = tmp_path_factory.mktemp("cold-ratings")
    source = write_cold_ratings(d / "files")
    calls = []
    original = PreparedDataset.to_data
    PreparedDataset.to_data = lambda self: calls.append(1) or original(self)
    try:  # export.verify on: reloaded in a fresh process, rerank and score_with_context compared
        featured = tfrs_lab.train("ranking", config=_config(source, d / "dd"), output_dir=d / "featured", verbose=0)
    finally:
        PreparedDataset.to_data = original
    plain = tfrs_lab.train("ranking", config=_config({**source, "features": []}, d / "dd"),
                           output_dir=d / "plain", overrides=["export.verify=false"], verbose=0)
    return featured, plain, calls, source


def test_own_data_ranking_never_converts_the_prepared_dataset(cold_runs):
    featured, _, calls, _ = cold_runs
    assert calls == []
    assert featured.metrics["dataset"] == "cold-ratings" and featured.metrics["split"] == "time"


def test_item_feature_rates_cold_items_that_ids_cannot(cold_runs):
    featured, plain, _, source = cold_runs
    cold = sum(1 for line in open(source["interactions"]["path"]) if ",c" in line)
    assert featured.metrics["num_test_examples"] <= cold  # every test row rates a cold item
    # ids only: a cold item gets the user's mean; the category tells like (4.5) from dislike (1.5)
    assert plain.metrics["rmse"] > 1.0, plain.metrics
    assert featured.metrics["rmse"] < 0.5, featured.metrics
    assert featured.metrics["rmse"] < 0.4 * plain.metrics["rmse"]


def test_export_scores_with_context_features_after_reload(cold_runs):
    featured, _, _, _ = cold_runs
    loaded = tf.saved_model.load(str(featured.export_path))
    assert set(loaded.signatures) == {sig.SERVING_DEFAULT, sig.SCORE_WITH_FEATURES, sig.RERANK, sig.SCORE_CONTEXT}
    fn = loaded.signatures[sig.SCORE_CONTEXT]
    assert {k: (v.dtype, v.shape.rank) for k, v in fn.structured_input_signature[1].items()} == {
        "user_id": (tf.string, 1), "item_id": (tf.string, 1), "device": (tf.string, 1), "dwell": (tf.float32, 1)}
    users = tf.constant(["u000", "u001", "u002", "nobody"])
    items = tf.constant(["c0-1", "c0-1", "c2-3", "c1-0"])  # cold items: only their category is known
    context = {"device": tf.constant(["web", "app", "tv", ""]), "dwell": tf.constant([3.0, 40.0, np.nan, 1.0])}
    served = fn(user_id=users, item_id=items, **context)[sig.RATING].numpy()
    now = tf.fill([4], tf.cast(tf.timestamp(), tf.int64))
    expected = featured.model.predict_scores({"user_id": users, "movie_id": items, "timestamp": now, **context}).numpy()
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
    assert served[0] > 3.5 and served[1] < 2.5 and served[2] > 3.5  # u000 likes cat0, u001 cat1, u002 cat2
    default = loaded.signatures[sig.SERVING_DEFAULT](user_id=users, item_id=items)[sig.RATING].numpy()
    missing = featured.model.predict_scores({"user_id": users, "movie_id": items, "timestamp": now}).numpy()
    np.testing.assert_allclose(default, missing, rtol=1e-5, atol=1e-5)  # serving_default: context missing


def _tf(columns: dict) -> dict:
    """Columns as a batch comes out of TF (strings as bytes)."""
    return {k: tf.constant(v).numpy() for k, v in columns.items()}


def _assert_same(got: dict, want: dict, what: str) -> None:
    assert set(got) == set(want), (what, set(got) ^ set(want))
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=f"{what} {key}")


def _column_batches(cols: dict, vocab, indices: list[dict], grouped: bool):
    """The implicit batches built from the in-memory string columns (the reference) for the ints the
    stream drew (:func:`implicit_indices`: positions, negatives as catalogue rows)."""
    base = {k: v for k, v in cols.items() if k != "label"}
    for batch in indices:
        take, negative = batch["position"], batch["negative"]
        rows = {name: col[take] for name, col in base.items()}
        if grouped:
            yield _tf({**rows, NEGATIVE_MOVIE_ID: vocab.movie_ids[negative]})
            continue
        drawn = negative >= 0
        yield _tf({**rows, "movie_id": np.where(drawn, vocab.movie_ids[np.maximum(negative, 0)], rows["movie_id"]),
                   "label": (~drawn).astype(np.float32)})


def _assert_streamed_like_columns(data, coded, split, hp, vocab) -> None:
    """The streamed batches of ``coded`` equal the in-memory string columns of ``data``: every split's
    features, the explicit training batches (same shuffle, two epochs), the implicit ones (pointwise
    and grouped, same negatives), and the metrics computed from either."""
    stream, cols = ranking_stream(coded, split, hp), split_columns(data, split, hp)
    for part in ("train", "validation", "test"):
        _assert_same(stream.features(part, np.arange(len(getattr(split, part)))), _tf(cols[part]), part)
    streamed = explicit_dataset(stream, 16, 50, seed=3)
    in_memory = make_dataset(cols["train"], 16, 50, seed=3)
    for epoch in range(2):  # reshuffled each epoch, identically
        pairs = list(zip(streamed.as_numpy_iterator(), in_memory.as_numpy_iterator(), strict=True))
        for i, (got, want) in enumerate(pairs):
            _assert_same(got, want, f"explicit epoch {epoch} batch {i}")
    sampler = negative_sampler(stream, vocab, NegativeSamplingConfig(count=2), seed=5)
    n = len(split.train)
    for grouped in (False, True):
        got = list(implicit_dataset(stream, vocab, sampler, 24, seed=7, grouped=grouped).as_numpy_iterator())
        indices = list(implicit_indices(stream, sampler, 24, seed=7, grouped=grouped).as_numpy_iterator())
        want = list(_column_batches(cols["train"], vocab, indices, grouped))
        assert len(got) == len(want) > 1
        positions = np.concatenate([b["position"] for b in indices])  # each positive once, with its 2 negatives
        assert np.array_equal(np.bincount(positions, minlength=n), np.full(n, 1 if grouped else 3))
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"implicit grouped={grouped} batch {i}")
    tf.keras.utils.set_random_seed(0)
    model = make_model(vocab, hp, cols["train"], 3.0)
    model(next(iter(make_dataset(cols["train"], 4, 1, 0))))
    for layer in model.weights:  # away from the initial values, so every input moves the scores
        layer.assign(tf.random.normal(layer.shape, stddev=0.3))
    assert stream_explicit_metrics(model, stream, "test") == explicit_metrics(model, cols["test"])
    history = {k: np.concatenate([cols["train"][k], cols["validation"][k]]) for k in ("user_id", "movie_id")}
    for protocol in ("hash", "leave-last-out"):
        assert (stream_ranking_eval(model, stream, "test", protocol=protocol, ks=(5, 10), batch_size=7)
                == ranking_eval(model, vocab, cols["test"], protocol=protocol, ks=(5, 10), history=history,
                                batch_size=7)), protocol


def test_streamed_batches_equal_the_string_columns(tmp_path):
    """Own data: the batches gathered from the codes give what the string columns (``to_data``) give:
    ids, labels, DCN's timestamp, leakage-free histories, the training batches in the same order,
    the metrics; and the autorec table and the served user table."""
    source = write_cold_ratings(tmp_path / "files", users=30, rated_warm=8)
    prepared = prepare_dataset(build(SourceSpec, {**source, "features": []}), cache_dir=tmp_path / "cache")
    codes, strings = Interactions.from_prepared(prepared), prepared.to_data()
    cfg = load_config("ranking", overrides=["model.architecture=dcn", "model.history_length=4", "model.dropout=0.0"])
    hp = hyperparameters(cfg)
    for name in ("time", "hash", "leave-last-out"):
        split = make_split(name, strings.ratings)
        assert all(np.array_equal(getattr(split, p), getattr(codes.split(name), p)) for p in ("train", "test"))
        vocab = TASK.vocabularies(cfg, codes, split.train)
        _assert_streamed_like_columns(strings, codes, split, hp, vocab)
    np.testing.assert_array_equal(code_rating_table(codes, vocab, split.train),
                                  item_rating_table(vocab, split_columns(strings, split, hp)["train"]))
    for key, column in serving_user_table(codes, split.train, vocab, 4).items():
        if key == "history":  # int32 codes for the export; the strings of the in-memory path
            assert isinstance(column, ItemTable) and column.codes.dtype == np.int32
            column = column.strings()
        expected = serving_user_table(strings, split.train, vocab, 4)[key]
        np.testing.assert_array_equal(column, expected.strings() if isinstance(expected, ItemTable) else expected)


def test_movielens_streams_its_demographics_and_zip_codes_like_its_columns(ranking_data):
    """MovieLens (encoded once from its string columns) gives DCN the same per-row demographics and
    zip codes through the stream, with the catalogue ranked as before."""
    cfg = load_config("ranking", overrides=["model.architecture=dcn", "model.history_length=3", "model.dropout=0.0"])
    hp = hyperparameters(cfg)
    split = make_split("leave-last-out", ranking_data.ratings)
    vocab = TASK.vocabularies(cfg, ranking_data, split.train)
    assert {"user_zip_code", "bucketized_user_age", "timestamp"} <= set(ranking_stream(ranking_data, split, hp).raw)
    _assert_streamed_like_columns(ranking_data, ranking_data, split, hp, vocab)


def _spec(tmp_path, **extra) -> str:
    source = write_cold_ratings(tmp_path / "files", users=12, rated_warm=4)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**source, **extra}))
    return str(path)


def test_features_with_an_architecture_without_their_input_are_refused(tmp_path, capsys):
    out = tmp_path / "run"
    spec = _spec(tmp_path)
    assert main(["ranking", "--data", spec, "--output-dir", str(out)]) == 2  # default: autorec
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.architecture=autorec does not read data.source.features" in err[0], err
    assert "set model.architecture to dcn, mlp or neumf" in err[0]
    assert not out.exists() and not (tmp_path / "cache").exists()
    source = yaml.safe_load(open(spec))
    for arch in ("mf", "gmf"):
        with pytest.raises(ConfigError, match=f"model.architecture={arch} does not read data.source.features"):
            load_config("ranking", extra={"data": {"dataset": "own", "source": source}}, overrides=[
                f"model.architecture={arch}"])


def test_a_feature_named_after_a_ranking_batch_column_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    spec = _spec(tmp_path, features=[{"name": "label", "table": "interactions", "column": "device",
                                      "type": "categorical"}])
    assert main(["ranking", "--data", spec, "--set", "model.architecture=dcn", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'label' is reserved" in err[0] and "rename the feature" in err[0], err
    assert not out.exists()


def test_prepare_reads_features_for_ranking_without_the_ignore_warning(tmp_path, caplog):
    source = write_cold_ratings(tmp_path / "files", users=12, rated_warm=4)
    cfg = load_config("ranking", extra={"data": {"dataset": "own", "source": source, "split": "time",
                                                 "data_dir": str(tmp_path / "dd")}},
                      overrides=["model.architecture=dcn"])
    with caplog.at_level("WARNING"):
        p = prepare("ranking", cfg)
    assert isinstance(p.data, Interactions) and [f.name for f in p.vocab.typed] == [f["name"] for f in FEATURES]
    assert "ignores them" not in caplog.text
    filtered = load_config("ranking", [], ["data.min_user_interactions=2"], extra=to_dict(cfg))
    with caplog.at_level("WARNING"):
        p = prepare("ranking", filtered)  # minimum counts: the string columns, without the features
    assert not p.vocab.typed
    assert ("typed features (category, country, device, dwell) are read by retrieval, ranking, multitask, "
            "sequential on the splits computed from codes only" in caplog.text and "this run ignores them" in caplog.text)


def test_from_frame_features_reach_ranking_or_are_refused_in_one_line(tmp_path):
    """``from_frame`` data's typed features (not in the config) train a DCN that serves
    ``score_with_context``; an architecture without their input is refused before training."""
    import pandas as pd

    source = write_cold_ratings(tmp_path / "files", users=24, rated_warm=6)
    data = tfrs_lab.data.from_frame(
        pd.read_csv(source["interactions"]["path"]), columns=source["interactions"]["columns"],
        items=pd.read_csv(source["items"]["path"]), item_columns={"id": "sku"},
        users=pd.read_csv(source["users"]["path"]), user_columns={"id": "uid"}, features=FEATURES)
    config = {"data": {"split": "time"}, **FAST, "train": {**FAST["train"], "epochs": 2}}
    run = tfrs_lab.train("ranking", config=config, data=data, output_dir=tmp_path / "run", verbose=0)
    assert sig.SCORE_CONTEXT in tf.saved_model.load(str(run.export_path)).signatures
    assert [f.name for f in run.model.context_features] == ["device", "dwell"]
    with pytest.raises(ConfigError, match=r"^model.architecture=mf does not read data.source.features \(category, "):
        tfrs_lab.train("ranking", config={**config, "model": {"architecture": "mf"}}, data=data,
                       output_dir=tmp_path / "mf", verbose=0)
    assert not (tmp_path / "mf").exists()
