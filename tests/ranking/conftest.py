"""Fixtures of the ranking tests: small models trained on the session's synthetic data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.config import NegativeSamplingConfig, load_config
from tfrs_lab.data.features import Vocabularies, build_vocabularies
from tfrs_lab.data.movielens import MovieLensData, load_movielens
from tfrs_lab.data.splits import make_split
from tfrs_lab.data.synthetic import SyntheticSpec
from tfrs_lab.models.ranking import RankingModel
from tfrs_lab.training.autorec_size import resolve_hidden_units
from tfrs_lab.training.ranking import (explicit_dataset, hyperparameters, implicit_dataset, make_model,
                                       negative_sampler, ranking_stream, serving_user_table, split_columns)


@dataclass
class Trained:
    model: RankingModel
    vocab: Vocabularies
    cols: dict  # split name -> raw columns (in memory: the reference the evaluation tests read)
    user_table: dict  # the export's user table (its history an ItemTable of codes)


RANKING_SPEC = SyntheticSpec(num_users=300, num_movies=120, ratings_per_user=30, seed=0)
"""Bigger than the session's SMALL_SPEC: with ~20 training ratings per user over 80 movies, neural
rating regressors (GMF, MLP, NeuMF) cannot beat the global mean by a margin a test can assert."""


def train_small(data, architecture: str, *, objective: str = "explicit", split: str = "hash", epochs: int = 6,
                overrides: tuple[str, ...] = (), loss: str = "pointwise") -> Trained:
    """A ranking model of ``architecture`` trained for ``epochs`` epochs on ``data`` (seeded), with
    ``loss`` (``train.loss``) for the implicit objective, on the task's batches (:func:`ranking_stream`)."""
    cfg = load_config("ranking", overrides=[f"model.architecture={architecture}", f"model.objective={objective}",
                                            f"data.split={split}", "model.embedding_l2=0.05",
                                            "model.history_length=0", "model.dropout=0.0", "model.kernel_l2=0.0",
                                            *overrides])
    tf.keras.utils.set_random_seed(0)
    s = make_split(split, data.ratings)
    vocab = build_vocabularies(data.ratings, data.movies, s.train, has_user_features=True, title_vocab_size=100,
                               title_max_tokens=8, timestamp_buckets=20)
    hp = hyperparameters(resolve_hidden_units(cfg, data, s.train))
    cols = split_columns(data, s, hp)
    stream = ranking_stream(data, s, hp)
    if objective == "explicit":
        ds = explicit_dataset(stream, 64, 10_000, seed=0)
        offset = float(cols["train"]["label"].mean())
    else:
        sampler = negative_sampler(stream, vocab, NegativeSamplingConfig(count=4), seed=0)
        ds = implicit_dataset(stream, vocab, sampler, 256, seed=0, grouped=loss != "pointwise")
        offset = -np.log(4.0)
    model = make_model(vocab, hp, cols["train"], offset, loss)
    model.compile(optimizer=tf.keras.optimizers.Adam(cfg.train.learning_rate * 5))
    model.fit(ds, epochs=epochs, verbose=0)
    return Trained(model, vocab, cols, serving_user_table(data, s.train, vocab, hp.history_length))


@pytest.fixture(scope="session")
def ranking_data(synthetic_data_dir) -> MovieLensData:
    """Synthetic MovieLens data of :data:`RANKING_SPEC` (prepared once, through real TFDS)."""
    return load_movielens("synthetic", synthetic=RANKING_SPEC, data_dir=synthetic_data_dir)


@pytest.fixture(scope="session")
def train_ranking_model():
    """:func:`train_small`, for tests that train their own model."""
    return train_small


@pytest.fixture(scope="session")
def trained_dcn(ranking_data) -> Trained:
    """An explicit DCN (uses every side feature) trained on the hash split."""
    return train_small(ranking_data, "dcn", overrides=("model.dropout=0.2",))


@pytest.fixture(scope="session")
def trained_mf_history(ranking_data) -> Trained:
    """An explicit MF with SVD++ implicit feedback (the user's last 10 earlier movies)."""
    return train_small(ranking_data, "mf", epochs=4, overrides=("model.history_length=10",))
