"""The multitask task: both heads learn planted structure, loss weights decide what trains, one
SavedModel answers retrieval and ranking like the in-memory model, the CLI end to end, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.config import load_config
from tfrs_lab.data.features import build_vocabularies, movie_rows
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.movielens import DataError, load_movielens
from tfrs_lab.data.splits import make_split
from tfrs_lab.data.synthetic import SyntheticSpec
from tfrs_lab.evaluation.metrics import hit_rate, rating_metrics, target_ranks
from tfrs_lab.export import signatures as sig
from tfrs_lab.export.index import IndexSettings
from tfrs_lab.export.multitask import export_multitask
from tfrs_lab.export.verify import answer_in_fresh_process
from tfrs_lab.training.common import make_dataset
from tfrs_lab.training.evaluate import evaluate, query_embeddings
from tfrs_lab.training.multitask import TASK
from tfrs_lab.training.ranking import explicit_metrics
from tfrs_lab.models.multitask import MultitaskModel
from tfrs_lab.training.retrieval import (concat_columns, hyperparameters, resolve_history_length, seen_table,
                                        serving_user_table, split_columns)
from tfrs_lab.train import main

SPEC = SyntheticSpec(num_users=300, num_movies=120, ratings_per_user=30, seed=0)
"""As the ranking tests' spec: enough ratings per user for a rating regressor to beat the mean."""


@dataclasses.dataclass
class Fitted:
    model: object
    vocab: object
    cols: dict
    initial_rating_head: list[np.ndarray]
    initial_towers: list[np.ndarray]


def columns(data, split, hp) -> dict[str, dict[str, np.ndarray]]:
    """The retrieval columns of each split plus ``label`` (the rating the head regresses): the
    features the task's stream batches (tests/training/test_stream.py checks they are equal)."""
    cols = split_columns(data, split, hp)
    for name in cols:
        cols[name]["label"] = data.ratings["user_rating"][getattr(split, name)].astype(np.float32)
    return cols


@pytest.fixture(scope="module")
def data(synthetic_data_dir):
    return load_movielens("synthetic", synthetic=SPEC, data_dir=synthetic_data_dir)


@pytest.fixture(scope="module")
def fit(data):
    """``fit(retrieval_weight, rating_weight)``: a multitask model trained 6 epochs on the hash
    split (seeded), with its rating head's and towers' weights before training; cached per weights."""
    cache: dict[tuple[float, float], Fitted] = {}
    split = make_split("hash", data.ratings)
    vocab = build_vocabularies(data.ratings, data.movies, split.train, has_user_features=True,
                               title_vocab_size=200, title_max_tokens=8, timestamp_buckets=20)

    def train(retrieval_weight: float, rating_weight: float) -> Fitted:
        if (retrieval_weight, rating_weight) not in cache:
            cfg = load_config("multitask", overrides=[f"model.retrieval_weight={retrieval_weight}",
                                                      f"model.rating_weight={rating_weight}",
                                                      "model.rating_layers=[64, 32]"])
            tf.keras.utils.set_random_seed(0)
            hp = hyperparameters(resolve_history_length(cfg, data, split.train), True)  # history auto, as a run
            cols = columns(data, split, hp)
            model = MultitaskModel(vocab, hp, global_offset=float(np.mean(cols["train"]["label"])))
            model.predict_scores({k: tf.constant(v[:2]) for k, v in cols["train"].items()})  # build every layer
            head = [w.copy() for w in model.rating_head.get_weights()]
            towers = [w.copy() for w in model.query_tower.get_weights()]
            model.compile(optimizer=tf.keras.optimizers.Adam(0.005))
            model.fit(make_dataset(cols["train"], 128, 20_000, seed=0), epochs=6, verbose=0)
            cache[retrieval_weight, rating_weight] = Fitted(model, vocab, cols, head, towers)
        return cache[retrieval_weight, rating_weight]

    return train


def _retrieval(f: Fitted) -> dict[str, float]:
    return evaluate(f.model, f.vocab, f.cols["test"], protocol="hash", ks=(10, 50))


def _popularity(f: Fitted) -> dict[str, float]:
    """Every test row ranked by training counts over the whole catalogue, seen not excluded."""
    targets = movie_rows(f.vocab, f.cols["test"]["movie_id"])
    targets = targets[targets >= 0]
    counts = f.vocab.item_counts[1:].astype(np.float32)[:, None]
    return hit_rate(target_ranks(np.ones((len(targets), 1), np.float32), counts, targets), (10, 50))


def _mean_rating_rmse(f: Fitted) -> float:
    mean = float(f.cols["train"]["label"].mean())
    return rating_metrics(np.full(len(f.cols["test"]["label"]), mean), f.cols["test"]["label"])["rmse"]


@pytest.mark.slow
def test_balanced_model_beats_popularity_and_the_mean_rating(fit):
    f = fit(1.0, 1.0)
    ours, pop = _retrieval(f), _popularity(f)
    assert ours["hit_rate@10"] > 1.5 * pop["hit_rate@10"] and ours["hit_rate@50"] > pop["hit_rate@50"] + 0.05, (ours, pop)
    rating, baseline = explicit_metrics(f.model, f.cols["test"]), _mean_rating_rmse(f)
    # Planted: in-taste movies are rated ~1.5 stars higher, which the shared towers can tell.
    assert rating["rmse"] < baseline - 0.04, (rating, baseline)


@pytest.mark.slow
def test_rating_weight_zero_leaves_the_rating_head_untrained(fit):
    retrieval_only, balanced = fit(1.0, 0.0), fit(1.0, 1.0)
    for before, after in zip(retrieval_only.initial_rating_head, retrieval_only.model.rating_head.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert any(not np.array_equal(b, a) for b, a in zip(balanced.initial_rating_head,
                                                         balanced.model.rating_head.get_weights()))
    assert any(not np.array_equal(b, a) for b, a in zip(retrieval_only.initial_towers,
                                                         retrieval_only.model.query_tower.get_weights()))
    untrained = explicit_metrics(retrieval_only.model, retrieval_only.cols["test"])["rmse"]
    trained = explicit_metrics(balanced.model, balanced.cols["test"])["rmse"]
    assert trained < untrained - 0.05, (trained, untrained)


@pytest.mark.slow
def test_retrieval_weight_zero_loses_retrieval_quality(fit):
    """Rating only (0/1) trains the towers for ratings alone: the in-batch softmax is what makes
    them good at finding the movies a user rates (the tutorial's finding)."""
    rating_only, balanced = fit(0.0, 1.0), fit(1.0, 1.0)
    assert _retrieval(balanced)["hit_rate@10"] > _retrieval(rating_only)["hit_rate@10"] + 0.05
    assert explicit_metrics(rating_only.model, rating_only.cols["test"])["rmse"] < _mean_rating_rmse(rating_only)


@pytest.fixture(scope="module")
def exported(fit, data, tmp_path_factory):
    f = fit(1.0, 1.0)
    users = [str(u) for u in f.vocab.user_ids[:6]]
    counts = f.vocab.item_counts[1:].astype(np.float64)
    result = export_multitask(
        f.model, tmp_path_factory.mktemp("export"), sample_movies=[str(m) for m in f.vocab.movie_ids[:4]],
        user_table=serving_user_table(data, f.vocab, f.model.hp), popularity=counts / counts.sum(),
        model_name="multitask", version=2, settings=IndexSettings(kind="brute_force", k=10, max_exclude=50),
        sample_users=users, recall_queries=query_embeddings(f.model, f.cols["test"]),
        seen=seen_table(data, f.vocab, 50), verify=False)  # the CLI test runs the exporter's own checks
    return f, result.path, users


@pytest.mark.slow
def test_export_answers_retrieval_and_ranking_like_the_in_memory_model(exported, data):
    f, path, users = exported
    loaded = tf.saved_model.load(str(path))
    assert {sig.SERVING_DEFAULT, sig.EXCLUDE_SEEN, sig.QUERY_FEATURES, sig.SIMILAR_ITEMS, sig.RATE, sig.RERANK,
            sig.SCORE_WITH_FEATURES} <= set(loaded.signatures)
    # Retrieval: the top 10 never holds a movie the user is known to have rated.
    top = loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant(users))[sig.ITEM_IDS].numpy().astype(str)
    known = concat_columns(f.cols["train"], concat_columns(f.cols["validation"], f.cols["test"]))
    for user, row in zip(users, top):
        assert not set(row) & set(known["movie_id"][known["user_id"] == user].astype(str)), user
    # Ranking: the predicted rating equals the in-memory model's on the user's training-time
    # features with the serving time clipped to the last training timestamp.
    movies = [str(m) for m in f.vocab.movie_ids[10:16]]
    rated = loaded.signatures[sig.RATE](user_id=tf.constant(users), item_id=tf.constant(movies))[sig.RATING].numpy()
    table = serving_user_table(data, f.vocab, f.model.hp)
    idx = f.model.user_lookup(tf.constant(users)).numpy()
    feats = {name: tf.constant(col[idx]) for name, col in table.items()}
    feats.update(user_id=tf.constant(users), movie_id=tf.constant(movies),
                 timestamp=tf.constant(np.full(len(users), f.vocab.timestamp_max, np.int64)))
    np.testing.assert_allclose(rated, f.model.predict_scores(feats).numpy(), rtol=1e-5, atol=1e-5)
    assert rated.min() >= 1.0 and rated.max() <= 5.0 and np.ptp(rated) > 0
    # rerank in a fresh process: the candidates sorted by that rating, '' padding last.
    fresh = answer_in_fresh_process(path, import_scann=False, signature=sig.RERANK,
                                    inputs={sig.USER_ID: users[:1], sig.CANDIDATE_ITEM_IDS: [movies + [""]]})
    first = {**{k: tf.repeat(v[:1], len(movies), axis=0) for k, v in feats.items()}, "movie_id": tf.constant(movies)}
    order = np.argsort(-f.model.predict_scores(first).numpy(), kind="stable")
    assert fresh[sig.ITEM_IDS][0] == [movies[i] for i in order] + [""]
    assert fresh[sig.SCORES][0][-1] == -np.inf


def test_implicit_data_is_refused_with_the_fix(data):
    ones = dataclasses.replace(data, ratings={**data.ratings, "user_rating": np.ones_like(data.ratings["user_rating"])})
    split = make_split("hash", ones.ratings)
    hp = hyperparameters(resolve_history_length(load_config("multitask"), ones, split.train), True)
    codes = Interactions.of(ones)
    with pytest.raises(DataError, match="model.rating_weight=0"):
        TASK.stream_label(codes, split, hp)
    no_rating = dataclasses.replace(hp, rating_weight=0.0)
    assert TASK.stream_label(codes, split, no_rating) is True


# --------------------------------------------------------------------------- CLI

SMALL = ["--dataset", "synthetic", "--set", "data.synthetic.num_users=150", "--set", "data.synthetic.num_movies=100",
         "--set", "data.synthetic.ratings_per_user=25", "--set", "export.k=20", "--set", "export.max_exclude=20",
         "--set", "model.rating_layers=[32]"]


@pytest.mark.slow
def test_cli_end_to_end_writes_both_heads_metrics_and_one_export(tmp_path):
    out = tmp_path / "run"
    assert main(["multitask", *SMALL, "--epochs", "2", "--set", "model.rating_weight=0.5",
                 "--set", "export.index=brute_force", "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "multitask" and metrics["split"] == "hash"
    assert metrics["retrieval_weight"] == 1.0 and metrics["rating_weight"] == 0.5
    for key in ("hit_rate@10", "hit_rate@50", "hit_rate@100", "hit_rate_seen_excluded@10", "rmse", "mae",
                "validation_hit_rate@100", "validation_rmse", "coverage@10"):
        assert isinstance(metrics[key], float), key
    assert 0 < metrics["hit_rate@10"] <= metrics["hit_rate@50"] <= metrics["hit_rate@100"] <= 1
    assert 0 < metrics["mae"] < metrics["rmse"] < 2
    assert "validation_neg_rmse" not in metrics
    version = out / "export" / "multitask" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "assets.extra" / sig.WARMUP_FILE).stat().st_size
    records = list(tf.data.TFRecordDataset(str(version / "assets.extra" / sig.WARMUP_FILE)))
    assert len(records) == 4  # serving_default x 2, rate, rerank
    assert (out / "report.html").is_file() and (out / "config.yaml").is_file()


@pytest.mark.slow
def test_api_on_leave_last_out_reports_ranking_and_rating_metrics(tmp_path):
    import tfrs_lab

    small = [o for o in SMALL[3::2] if o.startswith("data.")]  # the CLI test's data: prepared once per session
    cfg = tfrs_lab.load_config("multitask", overrides=[*small, "train.epochs=1", "export.verify=false",
                                                       "export.index=brute_force", "model.rating_layers=[16]",
                                                       "data.split=leave-last-out"], dataset="synthetic")
    run = tfrs_lab.train("multitask", config=cfg, output_dir=tmp_path / "llo")
    for key in ("recall@10", "ndcg@10", "recall@50", "mrr", "rmse", "mae", "validation_ndcg@50", "validation_rmse"):
        assert 0 <= run.metrics[key] < 5, key
    assert run.evaluate()["rmse"] == pytest.approx(run.metrics["rmse"], abs=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--set", "model.rating_weight=-1"], "model.rating_weight must be >= 0, got -1"),
    (["--set", "model.retrieval_weight=0", "--set", "model.rating_weight=0"],
     "model.retrieval_weight and model.rating_weight are both 0"),
    (["--set", "model.rating_layers=[64, 0]"], "model.rating_layers[1] must be > 0"),
    (["--set", "model.rating_max=1"], "model.rating_max (1.0) must be > model.rating_min (1.0)"),
    (["--set", "model.rating_wieght=1"], "model.rating_wieght"),
    (["--set", "train.distribution=parameter_server"], "train.distribution=parameter_server needs the TF_CONFIG"),
])
def test_bad_config_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["multitask", "--dataset", "synthetic", *args, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.strip().count("\n") == 0, err
    assert list(tmp_path.iterdir()) == []


def test_tuning_can_target_either_head():
    from tfrs_lab.tuning.space import validation_metric_names

    names = validation_metric_names(load_config("multitask"))
    assert {"hit_rate@100", "rmse", "mae"} <= names
    assert "rmse" not in validation_metric_names(load_config("retrieval"))
