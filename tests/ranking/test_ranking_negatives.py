"""The implicit objective's negatives, drawn inside ``tf.data`` (:class:`NegativeSampler`,
:func:`implicit_indices`): the uniform and popularity frequencies, ``exclude_seen`` never giving a
user a movie they rated (and failing with one clear line when it cannot), the same draws for the
same seed and key, fresh draws every epoch, and the pointwise / grouped layouts."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.config import NegativeSamplingConfig, load_config
from tfrs_lab.data.features import build_vocabularies
from tfrs_lab.data.movielens import DataError
from tfrs_lab.data.splits import make_split
from tfrs_lab.models.ranking import NEGATIVE_MOVIE_ID
from tfrs_lab.train import main
from tfrs_lab.training.ranking import (NEGATIVES_ERROR, NegativeSampler, hyperparameters, implicit_dataset,
                                       implicit_indices, negative_sampler, ranking_stream, vocabulary_index)

CHI2_DF9_P999 = 27.88  # the chi-square statistic of 10 cells exceeds this with probability 0.001


def chi_square(draws: np.ndarray, p: np.ndarray) -> float:
    """Pearson's statistic of the draws' counts against the probabilities ``p`` (cells with p > 0)."""
    counts = np.bincount(draws, minlength=len(p))
    expected = p * len(draws)
    keep = p > 0
    return float(np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep]))


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_frequencies_follow_the_distribution(distribution):
    counts = np.arange(1.0, 11.0)  # popularity 1 : 2 : ... : 10 over a 10-movie catalogue
    sampler = NegativeSampler(10, [], [], count=50, distribution=distribution, exclude_seen=False,
                              item_counts=counts, seed=3)
    draws = sampler.sample(np.arange(2000), (0, 0)).numpy().reshape(-1)  # 100,000 draws
    p = np.full(10, 0.1) if distribution == "uniform" else counts / counts.sum()
    assert chi_square(draws, p) < CHI2_DF9_P999
    assert np.max(np.abs(np.bincount(draws, minlength=10) / len(draws) - p)) < 0.006  # ~6 standard errors


def test_popularity_never_draws_a_movie_nobody_rated():
    counts = np.zeros(20)
    counts[[3, 7]] = [1.0, 3.0]
    sampler = NegativeSampler(20, [], [], count=4000, distribution="popularity", exclude_seen=False,
                              item_counts=counts, seed=2)
    draws = sampler.sample([1], (5,)).numpy()[0]
    assert set(draws) == {3, 7} and 0.72 < np.mean(draws == 7) < 0.78  # proportional to 1 : 3


@pytest.mark.parametrize("distribution", ["uniform", "popularity"])
def test_exclude_seen_never_returns_a_rated_movie_and_keeps_the_rest_of_the_distribution(distribution):
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, 31), 12)  # 30 users, 12 positives each, 20-movie catalogue
    items = np.concatenate([rng.choice(20, 12, replace=False) for _ in range(30)])
    counts = np.bincount(items, minlength=20).astype(float) + 1.0
    sampler = NegativeSampler(20, users, items, count=5, distribution=distribution, exclude_seen=True,
                              item_counts=counts, seed=1)
    rated = {(u, i) for u, i in zip(users, items)}
    for key in range(3):
        negatives = sampler.sample(users, (key, 0)).numpy()
        assert negatives.shape == (len(users), 5)
        assert not any((u, n) in rated for u, row in zip(users, negatives) for n in row)
    # one user who rated movies 0 .. 9: their draws follow the distribution restricted to 10 .. 19
    one = NegativeSampler(20, np.zeros(10), np.arange(10), count=20_000, distribution=distribution,
                          exclude_seen=True, item_counts=counts, seed=4)
    draws = one.sample([0], (1,)).numpy()[0]
    p = np.where(np.arange(20) >= 10, 1.0 if distribution == "uniform" else counts, 0.0)
    assert draws.min() >= 10 and chi_square(draws, p / p.sum()) < 29.67  # 9 degrees of freedom, p 0.0005


def test_exclude_seen_fails_with_one_clear_line_when_it_cannot_avoid_the_rated_movies():
    with pytest.raises(DataError, match=r"^1 users rated every movie the uniform distribution draws, so their "
                                        r"negatives could not avoid .* set train.negatives.exclude_seen=false$"):
        NegativeSampler(5, np.zeros(5), np.arange(5), count=1, distribution="uniform", exclude_seen=True)
    counts = np.array([0.0, 0.0, 1.0, 1.0, 0.0])  # popularity: only movies 2 and 3 can be drawn
    with pytest.raises(DataError, match="rated every movie the popularity distribution draws"):
        NegativeSampler(5, [7, 7], [2, 3], count=1, distribution="popularity", exclude_seen=True, item_counts=counts)
    # possible but too unlikely within the redraws: the batch fails with the same fix, inside tf.data
    sampler = NegativeSampler(1000, np.zeros(999), np.arange(999), count=50, distribution="uniform",
                              exclude_seen=True, max_rounds=3)
    ds = tf.data.Dataset.range(1).map(lambda i: sampler.sample(tf.zeros([4], tf.int64), (i,)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="set train.negatives.exclude_seen=false") as e:
        next(iter(ds))
    assert NEGATIVES_ERROR in e.value.message
    assert NegativeSampler(5, np.zeros(5), np.arange(5), count=1, distribution="uniform",
                           exclude_seen=False).sample([0]).shape == (1, 1)  # without exclusion: fine


def test_the_same_seed_and_key_draw_the_same_negatives_and_another_key_or_seed_others():
    def draw(seed: int, key: tuple) -> np.ndarray:
        sampler = NegativeSampler(500, [1, 1], [3, 4], count=8, distribution="uniform", exclude_seen=True, seed=seed)
        return sampler.sample(np.arange(64), key).numpy()

    first = draw(7, (11, 2))
    np.testing.assert_array_equal(first, draw(7, (11, 2)))
    for other in (draw(7, (12, 2)), draw(7, (11, 3)), draw(8, (11, 2))):  # another epoch, step or seed
        assert np.mean(other == first) < 0.05


@pytest.fixture(scope="module")
def setup(ranking_data):
    split = make_split("leave-last-out", ranking_data.ratings)
    vocab = build_vocabularies(ranking_data.ratings, ranking_data.movies, split.train, has_user_features=True,
                               title_vocab_size=100, title_max_tokens=8, timestamp_buckets=20)
    hp = hyperparameters(load_config("ranking", overrides=["model.architecture=mf", "model.objective=implicit",
                                                           "model.history_length=0"]))
    stream = ranking_stream(ranking_data, split, hp)
    sampler = negative_sampler(stream, vocab, NegativeSamplingConfig(count=3), seed=0)
    return vocab, stream, sampler


def _epochs(ds: tf.data.Dataset, epochs: int) -> list[list[dict]]:
    """The batches of ``epochs`` iterations of ``ds`` (as Keras iterates it: once per epoch)."""
    return [list(ds.as_numpy_iterator()) for _ in range(epochs)]


def _negatives_by_positive(positions: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """An epoch's negatives ordered by their positive's position (each positive's own sorted)."""
    if negatives.ndim == 2:  # grouped: [n, count]
        return np.sort(negatives[np.argsort(positions)], axis=1)
    drawn = negatives >= 0
    return negatives[drawn][np.lexsort((negatives[drawn], positions[drawn]))]


@pytest.mark.parametrize("grouped", [False, True])
def test_epochs_are_reproducible_for_a_seed_and_redrawn_every_epoch(setup, grouped):
    vocab, stream, sampler = setup
    n = len(stream.parts["train"])
    runs = [_epochs(implicit_indices(stream, sampler, 64, seed=5, grouped=grouped), 2) for _ in range(2)]
    for a, b in zip(*runs):  # a second run with the same seed: the same epochs, batch for batch
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x["position"], y["position"])
            np.testing.assert_array_equal(x["negative"], y["negative"])
    first, second = ([np.concatenate([b[k] for b in epoch]) for k in ("position", "negative")] for epoch in runs[0])
    assert len(runs[0][0]) == len(runs[0][1]) == implicit_indices(stream, sampler, 64, 5, grouped=grouped).cardinality()
    for epoch in (first, second):  # every positive in every epoch (pointwise: once itself, 3 times as negatives' source)
        assert np.array_equal(np.bincount(epoch[0], minlength=n), np.full(n, 1 if grouped else 4))
    assert np.mean(first[0] == second[0]) < 0.05  # a new order ...
    by_positive = [_negatives_by_positive(*epoch) for epoch in (first, second)]
    assert np.mean(by_positive[0] == by_positive[1]) < 0.1  # ... and new negatives for the same positives
    other = _epochs(implicit_indices(stream, sampler, 64, seed=6, grouped=grouped), 1)[0]
    assert np.mean(np.concatenate([b["position"] for b in other]) == first[0]) < 0.05  # another seed


def test_layouts_pointwise_labels_and_grouped_negatives(setup):
    vocab, stream, sampler = setup
    n = len(stream.parts["train"])
    users, items = vocabulary_index(stream, vocab, "train")
    rated = set(zip(vocab.user_ids[users - 1].astype(str), vocab.movie_ids[items].astype(str)))
    pointwise = list(implicit_dataset(stream, vocab, sampler, 64, seed=1).as_numpy_iterator())
    assert {len(b["label"]) for b in pointwise[:-1]} == {64}
    labels = np.concatenate([b["label"] for b in pointwise])
    assert labels.sum() == n and len(labels) == 4 * n  # each positive once, with its 3 negatives
    pairs = [(u.decode(), m.decode(), y) for b in pointwise for u, m, y in zip(b["user_id"], b["movie_id"], b["label"])]
    assert all(((u, m) in rated) == (y == 1.0) for u, m, y in pairs)  # positives rated; negatives never
    grouped = list(implicit_dataset(stream, vocab, sampler, 64, seed=1, grouped=True).as_numpy_iterator())
    assert {len(b["user_id"]) for b in grouped[:-1]} == {16}  # 64 scored pairs = 16 positives x (1 + 3)
    assert all(b[NEGATIVE_MOVIE_ID].shape == (len(b["user_id"]), 3) and "label" not in b for b in grouped)
    assert not any((u.decode(), m.decode()) in rated for b in grouped
                   for u, row in zip(b["user_id"], b[NEGATIVE_MOVIE_ID]) for m in row)


def _interactions(path, glutton: list[int]) -> str:
    """A CSV of 20 users rating 10 of 200 items each (``i0`` .. ``i199`` all rated by someone), and
    user ``g`` rating ``glutton`` (item numbers, in time order)."""
    rng = np.random.default_rng(0)
    lines, t = ["user,item,time"], 0
    for u in range(20):
        for i in rng.choice(200, 10, replace=False) if u else range(200):  # user 0 rates every item once
            t += 1
            lines.append(f"u{u},i{i},{t if u else 10_000_000 + t}")
    lines += [f"g,i{i},{t + 1 + j}" for j, i in enumerate(glutton)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("glutton, when", [
    (list(range(200)) + [0, 1], "before training"),  # every item in training (the last two rows are repeats)
    (list(range(199)) + [0, 1], "inside tf.data"),  # all but one: each draw hits a rated item with p = 0.995
])
def test_cli_exclude_seen_that_cannot_be_met_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, glutton,
                                                                                     when):
    csv = _interactions(tmp_path / "ratings.csv", glutton)
    out = tmp_path / "run"
    code = main(["ranking", "--interactions", csv, "--columns", "user=user,item=item,time=time",
                 "--split", "leave-last-out", "--epochs", "1", "--output-dir", str(out),
                 *[a for o in ("model.architecture=mf", "model.objective=implicit", "model.history_length=0",
                               "export.verify=false") for a in ("--set", o)]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, (when, err[-5:])
    assert err[-1].startswith("error: ") and err[-1].endswith("set train.negatives.exclude_seen=false"), (when, err)
    assert "Traceback" not in "\n".join(err)
    assert not out.exists()
