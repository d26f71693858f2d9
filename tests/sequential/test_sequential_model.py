"""The next-item models: causal masking, padding invariance, and learning a planted item order."""

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.evaluation.metrics import ranking_metrics, target_ranks
from tfrs_lab.config import SequentialModelConfig
from tfrs_lab.models.sequential import SequentialModel

SMALL = dict(max_length=12, embedding_dim=16, num_blocks=2, num_heads=2, dropout=0.0)


def _model(architecture="transformer", num_items=30, **kw):
    tf.keras.utils.set_random_seed(1)
    return SequentialModel(num_items, SequentialModelConfig(architecture=architecture, **{**SMALL, **kw}))


@pytest.mark.parametrize("architecture", ["transformer", "gru"])
def test_future_positions_cannot_change_earlier_outputs(architecture):
    model = _model(architecture)
    items = np.array([[0, 0, 3, 7, 1, 9, 4, 2, 8, 5, 6, 11]], np.int32)
    changed = items.copy()
    changed[0, 7] = 20  # a different item at position 7
    a, b = model.encode(tf.constant(items)).numpy(), model.encode(tf.constant(changed)).numpy()
    np.testing.assert_allclose(a[0, :7], b[0, :7], atol=1e-6)  # earlier positions unaffected
    assert np.abs(a[0, 7:] - b[0, 7:]).max() > 1e-3  # later ones do see it


@pytest.mark.parametrize("architecture", ["transformer", "gru"])
def test_padding_does_not_change_results(architecture):
    model = _model(architecture)
    history = [3, 7, 1, 9]
    short = model.encode(tf.constant([history], tf.int32)).numpy()[0]
    padded = model.encode(tf.constant([[0] * 8 + history], tf.int32)).numpy()[0]
    np.testing.assert_allclose(padded[8:], short, atol=1e-5)
    assert np.all(padded[:8] == 0.0)
    batch = model.query_embedding(tf.constant([[0] * 8 + history, [5, 6, 7, 8, 9, 10, 11, 12, 3, 7, 1, 9]])).numpy()
    np.testing.assert_allclose(batch[0], short[-1], atol=1e-5)  # a longer row in the batch changes nothing


@pytest.mark.parametrize("loss", ["softmax", "sampled_softmax"])
def test_loss_is_finite_and_ignores_padding_targets(loss):
    model = _model(loss=loss, num_negatives=8)
    inputs = tf.constant([[0, 0, 3, 7], [1, 2, 3, 4]], tf.int32)
    targets = tf.constant([[0, 0, 7, 5], [2, 3, 4, 6]], tf.int32)
    value = model.compute_loss({"inputs": inputs, "targets": targets})
    assert np.isfinite(value.numpy()) and value.numpy() > 0
    if loss == "softmax":  # padding targets contribute nothing: same as the mean over real positions
        h = model.encode(inputs).numpy()
        logits = h @ model.item_embeddings().numpy().T
        real = targets.numpy() > 0
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        expected = -np.mean(np.take_along_axis(logp, np.maximum(targets.numpy() - 1, 0)[..., None], -1)[..., 0][real])
        np.testing.assert_allclose(value.numpy(), expected, rtol=1e-5)


def _chains(num_users=240, num_chains=4, chain_length=20, seed=0):
    """Users walk along one item chain: item after ``x`` is always ``x``'s successor in the chain."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(num_users):
        c, start, n = rng.integers(num_chains), rng.integers(chain_length), rng.integers(6, 12)
        seqs.append(1 + c * chain_length + (start + np.arange(n)) % chain_length)
    return seqs, num_chains * chain_length


def test_transformer_learns_the_planted_order_above_popularity_and_an_order_free_model():
    seqs, num_items = _chains()
    length = 12
    pad = lambda rows: np.array([[0] * (length - len(r)) + list(r) for r in rows], np.int32)  # noqa: E731
    train_in, train_out = pad([s[:-2] for s in seqs]), pad([s[1:-1] for s in seqs])
    test_in, targets = pad([s[:-1] for s in seqs]), np.array([s[-1] for s in seqs])
    seen = [s[:-1] - 1 for s in seqs]
    tf.keras.utils.set_random_seed(0)
    model = SequentialModel(num_items, SequentialModelConfig(max_length=length, embedding_dim=32, num_blocks=1,
                                                                 dropout=0.1))
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
    ds = tf.data.Dataset.from_tensor_slices({"inputs": train_in, "targets": train_out}).shuffle(1000, seed=0).batch(32)
    model.fit(ds, epochs=15, verbose=0)
    ours = ranking_metrics(target_ranks(model.query_embedding(tf.constant(test_in)).numpy(),
                                        model.item_embeddings().numpy(), targets - 1, exclude=seen), (1, 10))
    # Popularity: training counts.
    counts = np.bincount(np.concatenate([s[:-1] for s in seqs]) - 1, minlength=num_items).astype(np.float32)
    pop = ranking_metrics(target_ranks(np.ones((len(seqs), 1), np.float32), counts[:, None], targets - 1,
                                       exclude=seen), (1, 10))
    # Order-free: co-occurrence of each item with the history's items (a bag of items, no order).
    co = np.zeros((num_items, num_items), np.float32)
    for s in seqs:
        t = s[:-1] - 1
        co[np.ix_(t, t)] += 1
    bag = np.zeros((len(seqs), num_items), np.float32)
    for i, s in enumerate(seqs):
        bag[i, s[:-1] - 1] = 1
    order_free = ranking_metrics(target_ranks(bag @ co, np.eye(num_items, dtype=np.float32), targets - 1,
                                              exclude=seen), (1, 10))
    assert ours["recall@1"] > 0.8, ours
    assert ours["mrr"] > order_free["mrr"] + 0.2, (ours, order_free)
    assert ours["recall@10"] > pop["recall@10"] + 0.5, (ours, pop)
