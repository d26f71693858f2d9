"""Peer methods measured side by side with our models, on the same data, split and evaluator.

* :func:`popularity_metrics`: every user gets the catalogue ordered by training interactions.
* :func:`tutorial_retrieval_metrics`: the TFRS basic-retrieval tutorial recipe, reimplemented from
  its published description: user id and movie *title* embeddings of size 32 (``StringLookup`` +
  ``Embedding``), no other features, in-batch softmax with ``FactorizedTopK`` metrics computed on
  every training step, ``Adagrad(0.1)``, batch 8192, shuffle buffer 100k, 3 epochs. With
  ``metrics_in_training=False`` the metrics are skipped during training (the later tutorials'
  ``compute_metrics=not training``), which is the recipe's fastest form.
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_lab.data.features import movie_rows
from tfrs_lab.data.movielens import MovieLensData
from tfrs_lab.data.splits import Split
from tfrs_lab.evaluation.metrics import hit_rate, ranking_metrics, target_ranks
from tfrs_lab.training.evaluate import seen_lists


class _Catalogue:
    """Just enough of ``Vocabularies`` for :func:`movie_rows`."""

    def __init__(self, movie_ids: np.ndarray) -> None:
        self.movie_ids = np.asarray(movie_ids, dtype=object)


def _metrics(data: MovieLensData, split: Split, queries: np.ndarray, items: np.ndarray,
             query_rows: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """Our evaluator (DESIGN.md §4) for any method that yields query and item vectors.

    Args:
      queries: float32 [len(split.test), d] one query vector per test rating.
      items: float32 [M, d] catalogue vectors in ``data.movies["movie_id"]`` order.
      query_rows: the rating rows the queries belong to (``split.test``).
    """
    cat = _Catalogue(data.movies["movie_id"])
    r = data.ratings
    targets = movie_rows(cat, r["movie_id"][query_rows])
    keep = targets >= 0
    if split.name == "hash":
        return hit_rate(target_ranks(queries[keep], items, targets[keep]), ks)
    history = np.concatenate([split.train, split.validation])
    seen = seen_lists(r["user_id"][query_rows][keep], r["user_id"][history], movie_rows(cat, r["movie_id"][history]))
    ranks = target_ranks(queries[keep], items, targets[keep], exclude=[s[s >= 0] for s in seen])
    return ranking_metrics(ranks, ks)


def popularity_metrics(data: MovieLensData, split: Split, ks: tuple[int, ...]) -> dict[str, float]:
    """Most-popular-first for everyone (training interaction counts)."""
    cat = _Catalogue(data.movies["movie_id"])
    rows = movie_rows(cat, data.ratings["movie_id"][split.train])
    counts = np.bincount(rows[rows >= 0], minlength=len(cat.movie_ids)).astype(np.float32)
    queries = np.ones((len(split.test), 1), np.float32)
    return _metrics(data, split, queries, counts[:, None], split.test, ks)


class _TutorialModel(tfrs.Model):
    def __init__(self, users: np.ndarray, titles: np.ndarray, candidates: tf.data.Dataset,
                 metrics_in_training: bool) -> None:
        super().__init__()
        self.metrics_in_training = metrics_in_training
        self.user_model = tf.keras.Sequential([
            tf.keras.layers.StringLookup(vocabulary=list(users), mask_token=None),
            tf.keras.layers.Embedding(len(users) + 1, 32)])
        self.movie_model = tf.keras.Sequential([
            tf.keras.layers.StringLookup(vocabulary=list(titles), mask_token=None),
            tf.keras.layers.Embedding(len(titles) + 1, 32)])
        self.task = tfrs.tasks.Retrieval(
            metrics=tfrs.metrics.FactorizedTopK(candidates=candidates.batch(128).map(self.movie_model)))

    def compute_loss(self, features, training=False):
        return self.task(self.user_model(features["user_id"]), self.movie_model(features["movie_title"]),
                         compute_metrics=self.metrics_in_training or not training)


def tutorial_retrieval_metrics(data: MovieLensData, split: Split, ks: tuple[int, ...], *, epochs: int = 3,
                               seed: int = 42, metrics_in_training: bool = True) -> dict[str, float]:
    """Trains the TFRS basic-retrieval recipe on ``split.train`` and evaluates it like our models.

    Returns the metrics plus ``train_seconds`` and ``train_examples_per_second``.
    """
    tf.keras.utils.set_random_seed(seed)
    r = data.ratings
    title_of = dict(zip(data.movies["movie_id"], data.movies["movie_title"]))
    titles_per_rating = np.array([title_of.get(m, "") for m in r["movie_id"]], dtype=object)
    unique_titles = np.unique(data.movies["movie_title"].astype(str)).astype(object)
    users = np.unique(r["user_id"][split.train]).astype(object)
    candidates = tf.data.Dataset.from_tensor_slices(tf.constant(list(unique_titles)))
    model = _TutorialModel(users, unique_titles, candidates, metrics_in_training)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.1))
    train = tf.data.Dataset.from_tensor_slices({
        "user_id": tf.constant(list(r["user_id"][split.train])),
        "movie_title": tf.constant(list(titles_per_rating[split.train]))})
    train = train.shuffle(100_000, seed=seed, reshuffle_each_iteration=False).batch(8192).cache()
    start = time.perf_counter()
    model.fit(train, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    queries = model.user_model(tf.constant(list(r["user_id"][split.test]))).numpy()
    items = model.movie_model(tf.constant(list(data.movies["movie_title"]))).numpy()
    out = _metrics(data, split, queries, items, split.test, ks)
    out.update(train_seconds=round(seconds, 3),
               train_examples_per_second=round(len(split.train) * epochs / seconds, 1))
    return out
