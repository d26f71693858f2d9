"""The autoencoder's AutoRec code size by rule and its memory at size (issues #16 and #19).

``model.autorec.hidden_units: auto`` (:func:`tfrs_lab.training.autorec_size.auto_hidden_units`, the rule the
ranking task's AutoRec uses too): its values on small data, the memory cap at MovieLens-25M's user count,
explicit values left alone, a run writing the resolved integer. The memory changes behind it: evaluation
and export run on an uncompiled copy of the trained model (same outputs, no optimizer state, the trained
model freed; save -> load -> same answers), the export's multi-hot input by scatter equals the one-hot
it replaced, and int32 matrix coordinates give the matrices int64 ones gave. Peak memory itself is a
benchmark (docs/benchmarks.md), not a test."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import tensorflow as tf
import yaml

import tfrs_lab
from tfrs_lab.config import load_config
from tfrs_lab.data.movielens import load_movielens
from tfrs_lab.data.splits import make_split
from tfrs_lab.data.synthetic import SyntheticSpec
from tfrs_lab.export.autoencoder import multi_hot
from tfrs_lab.models.autoencoder import AutoRec, MultAutoencoder
from tfrs_lab.training.autoencoder import Interactions, inference_copy, rating_matrix
from tfrs_lab.training.autorec_size import (AUTO_HIDDEN_RANGE, AUTO_HIDDEN_STEP, AUTOREC_STATE_BUDGET,
                                            auto_hidden_units, autorec_state_bytes, memory_hidden_cap,
                                            resolve_hidden_units)
from tfrs_lab.training.common import ValidationEarlyStopping

from autoencoder_fixtures import autoencoder_config


def rows(num_items: int, num_users: int, n: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """(items, users) of ``n`` training rows holding exactly ``num_items`` items and ``num_users`` users."""
    n = max(n, num_items, num_users)
    return np.arange(n) % num_items, np.arange(n) % num_users


def test_small_data_gets_the_size_part_of_the_rule():
    # ML-100K (943 users, 1,651 training movies) and the synthetic sets: far below the memory cap
    assert auto_hidden_units(*rows(1_651, 943)) == 500
    assert auto_hidden_units(*rows(400, 600)) == 100 and auto_hidden_units(*rows(200, 300)) == AUTO_HIDDEN_RANGE[0]
    assert auto_hidden_units(*rows(20_000, 943)) == AUTO_HIDDEN_RANGE[1]
    assert memory_hidden_cap(67_108) >= AUTO_HIDDEN_RANGE[1] > memory_hidden_cap(67_109)  # where the cap starts to bind


def test_the_memory_cap_keeps_weights_and_adam_state_within_the_budget_at_25m():
    users, items = 162_541, 59_047  # MovieLens-25M: the size part alone says 1,000 units
    units = auto_hidden_units(*rows(items, users))
    assert units == 400 and units % AUTO_HIDDEN_STEP == 0
    assert autorec_state_bytes(users, units) <= AUTOREC_STATE_BUDGET < autorec_state_bytes(users, units + AUTO_HIDDEN_STEP)
    assert autorec_state_bytes(users, units) == 2 * users * units * 4 * 7  # two kernels, 4 B, 7 copies
    # the cap reads distinct users, not rows; a smaller budget gives a smaller code
    assert auto_hidden_units(np.tile(np.arange(items), 3), np.tile(np.arange(users), 3)[: 3 * items]) >= units
    assert auto_hidden_units(*rows(items, users), budget=AUTOREC_STATE_BUDGET // 2) == 200
    # so many users that no code fits: one step, never zero
    assert memory_hidden_cap(3_000_000) == AUTO_HIDDEN_STEP


def test_explicit_values_are_untouched_and_auto_is_resolved_for_autorec_only(synthetic_data):
    split = make_split("hash", synthetic_data.ratings)
    fixed = load_config("autoencoder", overrides=["model.autorec.hidden_units=64"])
    assert resolve_hidden_units(fixed, synthetic_data, split.train) is fixed
    auto = load_config("autoencoder", overrides=["model.autorec.hidden_units=auto"])
    resolved = resolve_hidden_units(auto, synthetic_data, split.train)
    r = synthetic_data.ratings
    assert resolved.model.autorec.hidden_units == auto_hidden_units(r["movie_id"][split.train], r["user_id"][split.train])
    assert resolved.model.autorec.dropout == auto.model.autorec.dropout and resolved.train == auto.train
    from tfrs_lab.training.autoencoder import TASK  # pylint: disable=import-outside-toplevel
    vae = load_config("autoencoder", overrides=["model.architecture=vae", "model.autorec.hidden_units=auto"])
    assert TASK.resolve_data_config(vae, synthetic_data, split) is vae  # dae / vae never build an AutoRec


@pytest.mark.slow
def test_an_autoencoder_run_with_auto_writes_the_resolved_units(tmp_path):
    # its own data folder: the session's holds one synthetic data set only (tests/data reads it as such)
    data = load_movielens("synthetic", synthetic=SyntheticSpec(num_users=120, num_movies=600, ratings_per_user=20,
                                                                seed=0), data_dir=tmp_path / "tfds")
    run = tfrs_lab.train("autoencoder", data=data, output_dir=tmp_path / "run", verbose=0,
                         overrides=["model.autorec.hidden_units=auto", "train.epochs=1", "export.verify=false",
                                    "export.index=brute_force"])
    split = make_split("hash", data.ratings)
    expected = auto_hidden_units(data.ratings["movie_id"][split.train], data.ratings["user_id"][split.train])
    assert AUTO_HIDDEN_RANGE[0] < expected < AUTO_HIDDEN_RANGE[1]  # 0.3 x ~580 training movies
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["model"]["autorec"]["hidden_units"] == expected == run.config.model.autorec.hidden_units
    assert run.model.encoder.kernel.shape == (len(np.unique(data.ratings["user_id"][split.train])), expected)
    assert np.isfinite(run.metrics["rmse"])


def test_multi_hot_by_scatter_equals_the_one_hot_it_replaced():
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 12, (5, 9))  # 0 = unknown or padding; repeats within a row
    ids[2] = 0  # a row with nothing known
    old = tf.reduce_max(tf.one_hot(ids, 12), axis=1)[:, 1:]
    new = multi_hot(tf.constant(ids, tf.int64), 11)
    np.testing.assert_array_equal(new.numpy(), old.numpy())
    assert new.shape == (5, 11) and new.dtype == tf.float32


def test_int32_coordinates_give_the_int64_matrix_even_past_2_31_cells():
    rng = np.random.default_rng(5)
    num_users, num_items = 100_000, 60_000  # user x item keys up to 6e9: past int32
    users = np.append(rng.integers(0, num_users, 500), [99_999, 99_999])
    items = np.append(rng.integers(0, num_items, 500), [59_999, 59_999])  # a repeated pair: last rating kept
    ratings = rng.integers(1, 6, len(users)).astype(np.float32)
    wide = rating_matrix(Interactions(users.astype(np.int64), items.astype(np.int64), ratings), num_users, num_items)
    narrow = rating_matrix(Interactions(users.astype(np.int32), items.astype(np.int32), ratings), num_users, num_items)
    assert (wide != narrow).nnz == 0 and wide.nnz == narrow.nnz
    assert narrow[99_999, 59_999] == ratings[-1]


def fitted(model: tf.keras.Model, features: dict[str, np.ndarray]) -> ValidationEarlyStopping:
    """Fits ``model`` 3 epochs with the early-stopping callback every run uses; returns the callback."""
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    calls = iter(range(100))
    stopper = ValidationEarlyStopping(lambda: {"m": float(next(calls) % 2)}, "m", patience=5)  # best: epoch 2
    model.fit(tf.data.Dataset.from_tensors(features), epochs=3, callbacks=[stopper], verbose=0)
    return stopper


@pytest.mark.parametrize("architecture", ["autorec", "vae"])
def test_inference_copy_computes_the_same_outputs_and_frees_the_trained_model(architecture):
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = (rng.random((6, 30)) < 0.3).astype(np.float32)
    if architecture == "autorec":
        def build():
            return AutoRec(30, load_config("autoencoder", overrides=["model.autorec.hidden_units=8"]).model.autorec)
        features = {"ratings": x * 4.0, "mask": x}
    else:
        hp = load_config("autoencoder", overrides=["model.architecture=vae", "model.mult.encoder_layers=[12]",
                                                   "model.mult.latent_dim=4"]).model.mult
        def build():
            return MultAutoencoder(30, hp, variational=True, anneal_steps=2)
        features = {"items": x}
    model = build()
    stopper = fitted(model, features)
    assert stopper.model is None and stopper.best_weights is None  # the callback lets the model go
    inputs = tf.constant(next(iter(features.values())))
    expected = model(inputs).numpy()
    copy = inference_copy(model, build)
    np.testing.assert_array_equal(copy(inputs).numpy(), expected)
    assert copy.optimizer is None and model.optimizer is not None
    gone_model, gone_optimizer = weakref.ref(model), weakref.ref(model.optimizer)
    del model
    gc.collect()
    assert gone_model() is None and gone_optimizer() is None  # weights, Adam slots and the traced step freed


@pytest.mark.slow
def test_a_vae_export_from_the_copy_reloads_with_the_models_answers_and_no_optimizer_state(
        tmp_path, synthetic_spec, synthetic_data_dir):
    cfg = autoencoder_config("vae", synthetic_spec, synthetic_data_dir, "train.epochs=3",
                             "model.mult.kl_anneal_epochs=2", "export.verify=true")
    run = tfrs_lab.train("autoencoder", cfg, output_dir=tmp_path / "run", verbose=0)  # verify: reloaded in a fresh process
    assert run.model.optimizer is None  # evaluated and exported from the uncompiled copy
    again = run.evaluate()  # the copy's test metrics are the run's (metrics.json rounds to 6 decimals)
    assert again == pytest.approx({k: run.metrics[k] for k in again}, abs=1e-6)
    names = [name for name, _ in tf.train.list_variables(str(run.export_path / "variables" / "variables"))]
    assert names and not [n for n in names if "optimizer" in n.lower()]  # no Adam slots in the SavedModel
    # save -> load -> the model's own ranking: logits of the trained items, seen items excluded
    vocab = run._context.vocab  # pylint: disable=protected-access
    catalogue = np.asarray(vocab.movie_ids).astype(str)
    trained = np.flatnonzero(vocab.item_counts[1:] > 0)
    seen = [list(catalogue[trained[:3]]), [catalogue[trained[5]], "", ""]]
    answer = tf.saved_model.load(str(run.export_path)).signatures["serving_default"](seen_item_ids=tf.constant(seen))
    x = np.zeros((2, len(catalogue)), np.float32)
    x[0, trained[:3]] = x[1, trained[5]] = 1.0
    logits = run.model(tf.constant(x)).numpy()
    for row, exclude in enumerate([trained[:3], trained[5:6]]):
        candidates = np.setdiff1d(trained, exclude)
        top = candidates[np.argsort(-logits[row, candidates], kind="stable")[: cfg.export.k]]
        got = answer["item_ids"].numpy()[row].astype(str)
        np.testing.assert_allclose(answer["scores"].numpy()[row], logits[row, top], rtol=1e-4, atol=1e-5)
        assert set(got) == set(catalogue[top])  # the same items (ties may swap places)
