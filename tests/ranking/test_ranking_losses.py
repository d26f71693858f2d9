"""Implicit ranking losses: BPR and listwise values on hand-computed inputs, the Siamese scoring of
positives and negatives, the grouped negatives batches, and a listwise run end to end."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.config import NegativeSamplingConfig, load_config
from tfrs_lab.data.features import build_vocabularies
from tfrs_lab.data.splits import make_split
from tfrs_lab.export import signatures as sig
from tfrs_lab.models.ranking import NEGATIVE_MOVIE_ID, bpr_loss, listwise_loss
from tfrs_lab.train import main
from tfrs_lab.training.ranking import (hyperparameters, implicit_dataset, make_model, negative_sampler, ranking_stream,
                                       split_columns)

POSITIVE = tf.constant([2.0, 0.0])
NEGATIVE = tf.constant([[1.0, 3.0], [0.0, -1.0]])


def test_bpr_loss_by_hand():
    # Pairs s+ - s-: 1, -1 (row 0) and 0, 1 (row 1); -log sigma(x) = log(1 + e^-x).
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1)) + math.log(2) + math.log(1 + math.exp(-1))) / 4
    assert float(bpr_loss(POSITIVE, NEGATIVE)) == pytest.approx(expected, rel=1e-6)  # 0.6582
    # A positive far above its negatives costs nothing; far below, its margin.
    assert float(bpr_loss(tf.constant([50.0]), tf.constant([[0.0, 0.0]]))) == pytest.approx(0.0, abs=1e-6)
    assert float(bpr_loss(tf.constant([0.0]), tf.constant([[30.0]]))) == pytest.approx(30.0, rel=1e-6)


def test_listwise_loss_by_hand():
    # Lists [2, 1, 3] and [0, 0, -1], the positive first: log(sum e^s) - s+.
    row0 = math.log(math.exp(2) + math.exp(1) + math.exp(3)) - 2  # 1.4076
    row1 = math.log(2 + math.exp(-1)) - 0  # 0.8620
    assert float(listwise_loss(POSITIVE, NEGATIVE)) == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # One negative of equal score: log 2 per list, whatever the level.
    assert float(listwise_loss(tf.constant([5.0, -3.0]), tf.constant([[5.0], [-3.0]]))) == pytest.approx(math.log(2))


@pytest.fixture(scope="module")
def implicit_setup(ranking_data):
    split = make_split("leave-last-out", ranking_data.ratings)
    vocab = build_vocabularies(ranking_data.ratings, ranking_data.movies, split.train, has_user_features=True,
                               title_vocab_size=100, title_max_tokens=8, timestamp_buckets=20)
    cfg = load_config("ranking", overrides=["model.architecture=dcn", "model.objective=implicit",
                                            "model.history_length=5", "model.dropout=0.0"])
    hp = hyperparameters(cfg)
    cols = split_columns(ranking_data, split, hp)  # in memory: what the batches are checked against
    stream = ranking_stream(ranking_data, split, hp)
    sampler = negative_sampler(stream, vocab, NegativeSamplingConfig(count=3), seed=0)
    return vocab, hp, cols, stream, sampler


def test_grouped_batches_hold_each_positive_once_with_unseen_negatives(implicit_setup):
    vocab, hp, cols, stream, sampler = implicit_setup
    train = cols["train"]
    batches = list(implicit_dataset(stream, vocab, sampler, 64, seed=0, grouped=True).as_numpy_iterator())
    assert {len(b["user_id"]) for b in batches[:-1]} == {16}  # 64 scored pairs = 16 positives x (1 + 3)
    assert all(b[NEGATIVE_MOVIE_ID].shape == (len(b["user_id"]), 3) and "label" not in b for b in batches)
    seen = set(zip(train["user_id"], train["movie_id"]))
    got = [(u.decode(), m.decode()) for b in batches for u, m in zip(b["user_id"], b["movie_id"])]
    assert sorted(got) == sorted(zip(train["user_id"].astype(str), train["movie_id"].astype(str)))
    assert not any((u.decode(), n.decode()) in seen for b in batches
                   for u, row in zip(b["user_id"], b[NEGATIVE_MOVIE_ID]) for n in row)
    assert all(b["history"].shape[1] == 5 for b in batches)  # the positive's context travels with it


@pytest.mark.parametrize("loss, reference", [("pairwise", bpr_loss), ("listwise", listwise_loss)])
def test_negatives_are_scored_by_the_same_model_with_their_positives_context(implicit_setup, loss, reference):
    """Siamese: compute_loss equals the loss of the model's own scores of each positive and of each
    negative under the positive's user, history and side features."""
    vocab, hp, cols, stream, sampler = implicit_setup
    tf.keras.utils.set_random_seed(1)
    model = make_model(vocab, replace(hp, embedding_l2=0.0), cols["train"], 0.0, loss)
    batch = next(iter(implicit_dataset(stream, vocab, sampler, 40, seed=0, grouped=True)))
    positive = model({k: v for k, v in batch.items() if k != NEGATIVE_MOVIE_ID})  # builds the layers
    model.movie_bias.embeddings.assign(tf.random.normal(model.movie_bias.embeddings.shape))  # scores differ by movie
    positive = model({k: v for k, v in batch.items() if k != NEGATIVE_MOVIE_ID})
    negatives = batch[NEGATIVE_MOVIE_ID]
    scored = [model({**{k: v for k, v in batch.items() if k != NEGATIVE_MOVIE_ID}, "movie_id": negatives[:, j]})
              for j in range(negatives.shape[1])]
    negative = tf.stack(scored, 1)
    assert float(model.compute_loss(batch)) == pytest.approx(float(reference(positive, negative)), rel=1e-5)


@pytest.mark.slow
def test_listwise_run_evaluates_and_exports_like_pointwise(tmp_path):
    out = tmp_path / "run"
    assert main(["ranking", "--dataset", "synthetic", "--set", "data.synthetic.num_users=150",
                 "--set", "data.synthetic.num_movies=100", "--set", "data.synthetic.ratings_per_user=25",
                 "--split", "leave-last-out", "--set", "model.objective=implicit", "--set", "model.architecture=mf",
                 "--set", "train.loss=listwise", "--set", "export.verify=false", "--epochs", "1",
                 "--output-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("recall@10", "ndcg@10", "recall@50", "ndcg@50", "mrr", "validation_ndcg@10"):
        assert 0.0 <= metrics[key] <= 1.0, key
    loaded = tf.saved_model.load(str(out / "export" / "ranking" / "1"))
    served = loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant(["1", "1"]), item_id=tf.constant(["1", "2"]))
    assert list(served) == [sig.SCORE] and np.all(np.isfinite(served[sig.SCORE].numpy()))
