"""Retrieval and sequential exports answer ``similar_items`` too: cluster-mates, never the query,
unknown ids -> an empty answer."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.config import load_config
from tfrs_lab.data.features import build_vocabularies
from tfrs_lab.data.splits import make_split
from tfrs_lab.export import signatures as sig
from tfrs_lab.export.index import IndexSettings
from tfrs_lab.export.retrieval import export_retrieval
from tfrs_lab.export.sequential import export_sequential
from tfrs_lab.models.retrieval import RetrievalModel
from tfrs_lab.training.common import make_dataset
from tfrs_lab.training.retrieval import hyperparameters, resolve_history_length, serving_user_table, split_columns
from tfrs_lab.training import sequential as seq

from autoencoder_fixtures import cluster_members, rating_counts

pytestmark = pytest.mark.slow


def _check_similar(loaded, data, movie_cluster, min_share: float | None, item_vectors=None, movie_ids=None) -> None:
    """Cluster-mates first (at least ``min_share`` of the top 3; ``None``: not checked), the query
    never, unknown ids empty; with ``item_vectors`` [M, d] of ``movie_ids``, the answer is the exact
    cosine top-k."""
    counts = rating_counts(data)
    queries = [cluster_members(movie_cluster, counts, c)[0] for c in range(8)]
    out = loaded.signatures[sig.SIMILAR_ITEMS](item_id=tf.constant(queries + ["no-such-movie", ""]))
    ids = out[sig.ITEM_IDS].numpy().astype(str)
    scores = out[sig.SCORES].numpy()
    assert ids.shape == (10, 10)
    if min_share is not None:
        share = np.mean([[movie_cluster[m] == movie_cluster[q] for m in row[:3]] for q, row in zip(queries, ids)])
        assert share >= min_share, (share, ids[:8, :3])
    assert all(q not in row for q, row in zip(queries, ids))
    assert (ids[8:] == "").all() and np.isneginf(scores[8:]).all()
    assert np.all(scores[:8, :-1] >= scores[:8, 1:] - 1e-6) and np.all(scores[:8] <= 1.0 + 1e-5)
    if item_vectors is not None:
        unit = item_vectors / np.linalg.norm(item_vectors, axis=1, keepdims=True)
        row = {str(m): i for i, m in enumerate(movie_ids)}
        for q, got in zip(queries, scores[:8]):
            cosine = np.delete(unit @ unit[row[q]], row[q])
            np.testing.assert_allclose(got, np.sort(cosine)[::-1][:10], rtol=1e-4, atol=1e-5)


def test_retrieval_export_similar_items(synthetic_data, movie_cluster, tmp_path):
    import scann  # noqa: F401

    cfg = load_config("retrieval", overrides=["data.split=leave-last-out"])
    tf.keras.utils.set_random_seed(0)
    split = make_split("leave-last-out", synthetic_data.ratings)
    vocab = build_vocabularies(synthetic_data.ratings, synthetic_data.movies, split.train, has_user_features=True,
                               title_vocab_size=1000, title_max_tokens=8, timestamp_buckets=20)
    hp = hyperparameters(resolve_history_length(cfg, synthetic_data, split.train), True)
    cols = split_columns(synthetic_data, split, hp)
    model = RetrievalModel(vocab, hp)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.005))
    model.fit(make_dataset(cols["train"], 128, 10_000, seed=0), epochs=6, verbose=0)
    result = export_retrieval(
        model, tmp_path, user_table=serving_user_table(synthetic_data, vocab, hp),
        popularity=vocab.item_counts[1:] / vocab.item_counts.sum(), model_name="retrieval", version=1,
        settings=IndexSettings(kind="scann", k=10, max_exclude=5), sample_users=[str(u) for u in vocab.user_ids[:4]],
        recall_queries=np.zeros((0, hp.embedding_dim), np.float32), verify=False)
    loaded = tf.saved_model.load(str(result.path))
    loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant(["1", "2"]))  # the model's ScaNN index first
    _check_similar(loaded, synthetic_data, movie_cluster, min_share=0.6,
                   item_vectors=model.catalogue_embeddings(), movie_ids=vocab.movie_ids)


def test_sequential_export_similar_items_is_the_exact_cosine_top_k(synthetic_data, movie_cluster, tmp_path):
    cfg = load_config("sequential", overrides=["model.architecture=gru", "model.max_length=20",
                                               "model.embedding_dim=32", "model.dropout=0.1", "train.optimizer=adam"])
    tf.keras.utils.set_random_seed(0)
    split = make_split("leave-last-out", synthetic_data.ratings)
    vocab = seq.TASK.vocabularies(cfg, synthetic_data, split.train)
    train, _, test = seq.build_sequences(synthetic_data, split, vocab, cfg.model.max_length)
    model = seq.build_model(cfg, vocab)
    model.fit(seq.sequence_dataset(train, 64, 10_000, seed=0), epochs=2, verbose=0)
    counts = vocab.item_counts[1:].astype(np.float64)
    result = export_sequential(
        model, tmp_path, movie_ids=vocab.movie_ids, popularity=counts / counts.sum(), user_ids=vocab.user_ids,
        user_histories=np.full((len(vocab.user_ids), 4), "", dtype=object), model_name="sequential", version=1,
        settings=IndexSettings(kind="brute_force", k=10, max_exclude=5), sample_histories=[["1", "2"]],
        recall_queries=np.zeros((0, 32), np.float32), verify=False)
    # A next-item model is not trained to embed the planted clusters together (measured: 0.08-0.25
    # of the top 3 are cluster-mates after 2-10 epochs, chance 0.125), so cluster quality is the
    # retrieval and autoencoder tests' job; here the contract is checked: the exact cosine top-k of
    # the model's item vectors, never the query, unknown ids empty.
    _check_similar(tf.saved_model.load(str(result.path)), synthetic_data, movie_cluster, min_share=None,
                   item_vectors=model.item_embeddings().numpy(), movie_ids=vocab.movie_ids)
