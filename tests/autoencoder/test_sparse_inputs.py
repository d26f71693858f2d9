"""Sparse (CSR) autoencoder inputs: the per-batch densified batches and the batched evaluation are
exactly what the dense [users x catalogue] matrices gave (the dense path they replaced is the
reference here), on a small seeded matrix with empty rows and columns and a repeated rating."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.config import load_config
from tfrs_lab.evaluation.metrics import ranks_from_scores
from tfrs_lab.models.autoencoder import AutoRec, MultAutoencoder
from tfrs_lab.training.autoencoder import (Interactions, RatingBaselines, autorec_dataset, autorec_predictions,
                                           mult_dataset, rank_targets, rating_matrix)

U, M = 23, 17


def tiny() -> tuple[Interactions, np.ndarray, np.ndarray]:
    """Random ratings (users 20-22 and movies 14-16 empty, one (user, movie) rated twice) and the
    dense (ratings, mask) the old code built from them (last write wins)."""
    rng = np.random.default_rng(7)
    users, items = rng.integers(0, 20, 120), rng.integers(0, 14, 120)
    users, items = np.append(users, users[0]), np.append(items, items[0])  # a repeated pair
    ratings = rng.integers(1, 6, len(users)).astype(np.float32)
    x = Interactions(users.astype(np.int64), items.astype(np.int64), ratings)
    dense, mask = np.zeros((U, M), np.float32), np.zeros((U, M), np.float32)
    dense[users, items], mask[users, items] = ratings, 1.0
    return x, dense, mask


def dense_batches(features: dict[str, np.ndarray], nonempty: np.ndarray, batch: int, seed: int, epochs: int):
    """The removed dense path: shuffle the dense rows themselves, batch them."""
    ds = tf.data.Dataset.from_tensor_slices({k: v[nonempty] for k, v in features.items()})
    ds = ds.shuffle(len(nonempty), seed=seed, reshuffle_each_iteration=True).batch(batch)
    return [[{k: v.numpy() for k, v in b.items()} for b in ds] for _ in range(epochs)]


def sparse_batches(ds: tf.data.Dataset, epochs: int):
    return [[{k: v.numpy() for k, v in b.items()} for b in ds] for _ in range(epochs)]


def assert_same(a, b):
    assert len(a) == len(b)
    for epoch_a, epoch_b in zip(a, b):
        assert len(epoch_a) == len(epoch_b)
        for x, y in zip(epoch_a, epoch_b):
            assert x.keys() == y.keys()
            for k in x:
                np.testing.assert_array_equal(x[k], y[k])


def test_rating_matrix_is_the_dense_matrix_with_last_rating_kept():
    x, dense, mask = tiny()
    matrix = rating_matrix(x, U, M)
    np.testing.assert_array_equal(matrix.toarray(), dense)
    assert matrix.nnz == int(mask.sum())


def test_autorec_batches_are_the_dense_path_batches_over_two_epochs():
    x, dense, mask = tiny()
    nonempty = np.flatnonzero(mask.sum(axis=0) > 0)  # movies with ratings
    reference = dense_batches({"ratings": dense.T, "mask": mask.T}, nonempty, 4, seed=3, epochs=2)
    got = sparse_batches(autorec_dataset(rating_matrix(x, U, M), 4, seed=3), epochs=2)
    assert_same(got, reference)
    assert got[0][0]["ratings"].shape == (4, U) and not all(
        np.array_equal(a["mask"], b["mask"]) for a, b in zip(got[0], got[1]))  # reshuffled each epoch


def test_mult_batches_are_the_dense_path_batches_over_two_epochs():
    x, _, mask = tiny()
    nonempty = np.flatnonzero(mask.sum(axis=1) > 0)  # users with ratings
    reference = dense_batches({"items": mask}, nonempty, 5, seed=11, epochs=2)
    assert_same(sparse_batches(mult_dataset(rating_matrix(x, U, M), 5, seed=11), epochs=2), reference)


def test_batched_evaluation_equals_the_dense_evaluation():
    x, dense, mask = tiny()
    matrix = rating_matrix(x, U, M)
    hp = load_config("autoencoder", overrides=["model.mult.encoder_layers=[]", "model.mult.latent_dim=8"]).model
    tf.keras.utils.set_random_seed(0)
    mult = MultAutoencoder(M, hp.mult, variational=True)
    users, targets = np.array([0, 5, 9, 9, 13, 19]), np.array([16, 2, 3, 15, 0, 7])
    reference = ranks_from_scores(mult(tf.constant(mask[users])).numpy(), targets,
                                  [np.flatnonzero(row) for row in mask[users]])
    np.testing.assert_array_equal(rank_targets(mult, matrix, users, targets, batch_size=4), reference)

    autorec = AutoRec(U, load_config("autoencoder", overrides=["model.autorec.hidden_units=6"]).model.autorec)
    base = RatingBaselines(3.0, np.full(U, 2.5, np.float32), 1.0, 5.0)
    pairs = Interactions(np.array([0, 3, 21, -1, 7, 7, 12]), np.array([1, 15, 4, 2, 13, 0, 6]),
                         np.zeros(7, np.float32))  # movie 15 unrated, user -1 unknown: fallbacks
    reconstruction = autorec(tf.constant(dense.T)).numpy()  # the dense path: [M, U] at once
    scorable = pairs.known & (mask.sum(axis=0) > 0)[np.maximum(pairs.items, 0)]
    fallback = np.where(pairs.users >= 0, base.user_mean[np.maximum(pairs.users, 0)], base.global_mean)
    expected = np.clip(np.where(scorable, reconstruction[np.maximum(pairs.items, 0), np.maximum(pairs.users, 0)],
                                fallback), 1.0, 5.0)
    got = autorec_predictions(autorec, matrix, pairs, base, batch_size=3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert got[1] == pytest.approx(2.5) and got[3] == pytest.approx(3.0)


def test_densified_batches_in_flight_stay_within_the_memory_budget():
    """25M-sized AutoRec batches (256 movies x 162,541 users, values and mask: 333 MB) keep one batch
    in flight under the 512 MiB budget; small batches keep at most 8; never fewer than 1."""
    from tfrs_lab.training.autoencoder import DENSE_IN_FLIGHT_BYTES, dense_batches_in_flight
    assert dense_batches_in_flight(256, 162_541) == 1
    assert dense_batches_in_flight(1024, 59_048) == 1  # Mult-VAE's users x catalogue at 25M: 484 MB
    assert dense_batches_in_flight(256, 32_509) * 2 * 4 * 256 * 32_509 <= DENSE_IN_FLIGHT_BYTES
    assert dense_batches_in_flight(256, 943) == 8
    assert dense_batches_in_flight(4096, 10**7) == 1  # one batch over the budget still trains


def test_one_batch_in_flight_gives_the_same_batches(monkeypatch):
    """The bounded pipeline (one densified batch at a time) yields exactly the batches of the default budget."""
    import tfrs_lab.training.autoencoder as ae
    x, _, _ = tiny()
    ratings = rating_matrix(x, U, M)
    default = sparse_batches(autorec_dataset(ratings, 4, seed=3), epochs=2)
    monkeypatch.setattr(ae, "dense_batches_in_flight", lambda batch_size, width: 1)
    bounded = sparse_batches(autorec_dataset(ratings, 4, seed=3), epochs=2)
    assert len(default) == len(bounded) == 2
    for a, b in zip(default, bounded):
        assert len(a) == len(b)
        for p, q in zip(a, b):
            np.testing.assert_array_equal(p["ratings"], q["ratings"])
            np.testing.assert_array_equal(p["mask"], q["mask"])


def test_evaluation_blocks_shrink_to_the_byte_budget_and_predict_the_same(monkeypatch):
    """AutoRec's evaluation feeds at most DENSE_BLOCK_BYTES of dense ratings at once (at 25M: 206 of
    1,024 movies per block), and smaller blocks give exactly the same predictions."""
    import tfrs_lab.training.autoencoder as ae
    assert ae.dense_block_rows(1024, 162_541) == 206
    assert ae.dense_block_rows(1024, 943) == 1024
    assert ae.dense_block_rows(8, 10**9) == 1
    x, _, _ = tiny()
    ratings = rating_matrix(x, U, M)
    model = AutoRec(U, load_config("autoencoder", overrides=["model.autorec.hidden_units=6"]).model.autorec)
    base = RatingBaselines(3.0, np.full(U, 2.5, np.float32), 1.0, 5.0)
    whole = autorec_predictions(model, ratings, x, base, batch_size=1024)
    monkeypatch.setattr(ae, "dense_block_rows", lambda batch_size, width: 3)
    np.testing.assert_allclose(autorec_predictions(model, ratings, x, base, batch_size=1024), whole, rtol=1e-6)
