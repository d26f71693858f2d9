"""``train.optimizer: lazy_adam`` (tfrs_lab.training.optimizers.LazyAdam): Adam's update on dense
gradients and on sparse ones that touch every row once, only the named rows otherwise (duplicates
summed), accepted and validated by the config; a CLI run with it exports a model that answers
(tests/training/test_stream.py: trained with it on the stream, retrieval beats popularity on planted
structure)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.config import ConfigError, load_config
from tfrs_lab.training.common import optimizer
from tfrs_lab.training.optimizers import LazyAdam


def _steps(opt: tf.keras.optimizers.Optimizer, gradients: list, start: np.ndarray) -> tuple[np.ndarray, ...]:
    """``start`` after applying each gradient in turn: (variable, first moment, second moment)."""
    var = tf.Variable(start)
    for g in gradients:
        opt.apply_gradients([(g, var)])
    key = opt._index_dict[opt._var_key(var)]  # pylint: disable=protected-access
    return var.numpy(), opt._momentums[key].numpy(), opt._velocities[key].numpy()  # pylint: disable=protected-access


def _rng_rows(seed: int, shape=(6, 3)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_dense_gradients_and_sparse_gradients_over_every_row_update_exactly_as_adam():
    start = _rng_rows(0)
    dense = [tf.constant(_rng_rows(s)) for s in (1, 2, 3)]
    for got, want in zip(_steps(LazyAdam(0.01), dense, start), _steps(tf.keras.optimizers.Adam(0.01), dense, start)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)  # float32: Adam orders its sums differently
    order = np.array([3, 0, 5, 1, 4, 2])  # every row once, in any order
    sparse = [tf.IndexedSlices(tf.constant(_rng_rows(s)[order]), tf.constant(order)) for s in (4, 5, 6)]
    for got, want in zip(_steps(LazyAdam(0.01), sparse, start), _steps(tf.keras.optimizers.Adam(0.01), sparse, start)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)  # float32: Adam orders its sums differently


def test_sparse_gradients_move_only_their_rows_and_sum_duplicates():
    start = _rng_rows(0)
    g = _rng_rows(7, (3, 3))
    dup = tf.IndexedSlices(tf.constant(g), tf.constant([4, 1, 4]))  # row 4 twice
    var, m, v = _steps(LazyAdam(0.01), [dup], start)
    untouched = [0, 2, 3, 5]
    np.testing.assert_array_equal(var[untouched], start[untouched])
    assert not m[untouched].any() and not v[untouched].any()
    # the touched rows: Adam's first step on the summed gradient of each row
    summed = np.zeros_like(start)
    summed[1], summed[4] = g[1], g[0] + g[2]
    want, want_m, want_v = _steps(tf.keras.optimizers.Adam(0.01), [tf.constant(summed)], start)
    np.testing.assert_allclose(var[[1, 4]], want[[1, 4]], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m[[1, 4]], want_m[[1, 4]], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(v[[1, 4]], want_v[[1, 4]], rtol=1e-4, atol=1e-6)
    # after a dense step every row has momentum: Adam keeps moving the rows a sparse step leaves out
    dense = tf.constant(_rng_rows(8))
    once = _steps(LazyAdam(0.01), [dense], start)[0]
    lazy = _steps(LazyAdam(0.01), [dense, dup], start)[0]
    adam = _steps(tf.keras.optimizers.Adam(0.01), [dense, dup], start)[0]
    np.testing.assert_array_equal(lazy[untouched], once[untouched])
    assert (np.abs(adam[untouched] - once[untouched]) > 1e-4).all()


def test_config_accepts_lazy_adam_and_rejects_an_unknown_optimizer_naming_the_field():
    assert load_config("retrieval", overrides=["train.optimizer=lazy_adam"]).train.optimizer == "lazy_adam"
    assert isinstance(optimizer("lazy_adam", 0.001), LazyAdam)
    with pytest.raises(ConfigError, match=r"train\.optimizer must be one of adam, lazy_adam, adagrad, sgd"):
        load_config("retrieval", overrides=["train.optimizer=lazyadam"])
    with pytest.raises(ValueError, match="amsgrad"):
        LazyAdam(0.001, amsgrad=True)


@pytest.mark.slow
def test_cli_run_with_lazy_adam_exports_a_model_that_answers(tmp_path, synthetic_data, synthetic_data_dir,
                                                             synthetic_spec):
    from tfrs_lab.export import signatures as sig
    from tfrs_lab.train import main

    out = tmp_path / "run"
    spec = [f"data.synthetic.{k}={getattr(synthetic_spec, k)}"
            for k in ("num_users", "num_movies", "ratings_per_user", "seed")]  # the session's prepared data
    sets = [*spec, "train.optimizer=lazy_adam", "train.epochs=1", "model.embedding_dim=16", "model.id_embedding_dim=16",
            "export.index=brute_force", "export.k=10", "export.max_exclude=10", "export.verify=false"]
    assert main(["retrieval", "--dataset", "synthetic", "--data-dir", str(synthetic_data_dir), "--output-dir",
                 str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_trained"] == 1 and 0 <= metrics["hit_rate@10"] <= 1
    loaded = tf.saved_model.load(str(out / "export" / "retrieval" / "1"))
    ids = loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant([str(synthetic_data.ratings["user_id"][0])]))[sig.ITEM_IDS].numpy()
    assert ids.shape == (1, 10) and len(set(ids[0])) == 10


def test_ranking_trains_with_lazy_adam_moving_only_the_id_rows_of_the_batch(synthetic_data):
    from tfrs_lab.data.features import build_vocabularies
    from tfrs_lab.data.splits import make_split
    from tfrs_lab.training import ranking

    cfg = load_config("ranking", overrides=["train.optimizer=lazy_adam", "model.architecture=mf",
                                            "model.history_length=0"])
    split = make_split("hash", synthetic_data.ratings)
    vocab = build_vocabularies(synthetic_data.ratings, synthetic_data.movies, split.train,
                               **ranking.TASK.vocabulary_fit(cfg, True))
    train = ranking.split_columns(synthetic_data, split, cfg.model)["train"]
    model = ranking.make_model(vocab, cfg.model, train, float(np.mean(train["label"])))
    model.compile(optimizer=optimizer(cfg.train.optimizer, 0.01))  # what the run loop's RunContext.optimizer builds
    assert isinstance(model.optimizer, LazyAdam)
    model.fit(tf.data.Dataset.from_tensors({k: v[:32] for k, v in train.items()}), epochs=1, verbose=0)  # one step
    sizes = {"user": len(vocab.user_ids) + 1, "item": len(vocab.movie_ids) + 1}  # + the out-of-vocabulary row
    tables = {name: [v for v in model.trainable_variables if len(v.shape) == 2 and v.shape[0] == n]
              for name, n in sizes.items()}  # the id embeddings and biases
    assert tables["user"] and tables["item"], [v.name for v in model.trainable_variables]
    before = {name: [v.numpy() for v in vs] for name, vs in tables.items()}
    batch = {k: v[32:96] for k, v in train.items()}
    model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
    touched = {"user": len(np.unique(batch["user_id"])), "item": len(np.unique(batch["movie_id"]))}
    for name, vs in tables.items():
        for old, v in zip(before[name], vs):
            moved = int((np.abs(v.numpy() - old) > 0).any(axis=1).sum())
            # only the second batch's rows move: the first batch's keep still (Adam's momentum would move them)
            assert 0 < moved <= touched[name] < sizes[name], (name, v.name, moved, touched[name])


@pytest.mark.parametrize("task", ["ranking", "sequential", "autoencoder", "multitask"])
def test_every_task_accepts_lazy_adam(task):
    # sequential's item table gets a dense gradient from the full softmax, the autoencoders have no id
    # tables: lazy_adam is Adam there (dense gradients take Adam's update exactly)
    assert load_config(task, overrides=["train.optimizer=lazy_adam"]).train.optimizer == "lazy_adam"
