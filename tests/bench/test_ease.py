"""EASE peer (Steck 2019): closed form, λ chosen on validation only, better than popularity on planted data."""

import dataclasses

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from tfrs_lab.bench import peers
from tfrs_lab.bench.common import mean_over_seeds
from tfrs_lab.data.movielens import MovieLensData
from tfrs_lab.data.splits import leave_last_out_split

KS = (10, 50)


def _planted(num_users: int = 300, num_movies: int = 80, clusters: int = 4, per_user: int = 12,
             seed: int = 0) -> MovieLensData:
    """Users and movies in ``clusters`` taste groups; 90 % of a user's movies come from their group,
    with a global popularity skew that popularity alone can exploit, but not the group structure."""
    rng = np.random.default_rng(seed)
    movie_cluster = np.arange(num_movies) % clusters
    popularity = 1.0 / (1.0 + np.arange(num_movies)) ** 0.5
    users, movies, times = [], [], []
    for u in range(num_users):
        own = movie_cluster == u % clusters
        p = np.where(own, 9.0 * popularity / popularity[own].sum(), popularity / popularity[~own].sum())
        picks = rng.choice(num_movies, size=per_user, replace=False, p=p / p.sum())
        users += [str(u + 1)] * per_user
        movies += [str(m + 1) for m in picks]
        times += list(1_000_000 + 1000 * u + np.arange(per_user))
    n = len(users)
    ratings = {"user_id": np.array(users, dtype=object), "movie_id": np.array(movies, dtype=object),
               "user_rating": np.full(n, 4.0, np.float32), "timestamp": np.array(times, np.int64)}
    catalogue = {"movie_id": np.array([str(m + 1) for m in range(num_movies)], dtype=object),
                 "movie_title": np.array([f"movie {m + 1}" for m in range(num_movies)], dtype=object),
                 "movie_genres": np.zeros((num_movies, 19), np.float32)}
    return MovieLensData("planted", ratings, catalogue)


@pytest.fixture(scope="module")
def planted():
    data = _planted()
    return data, leave_last_out_split(data.ratings)


def test_ease_weights_closed_form_with_zero_diagonal():
    rng = np.random.default_rng(1)
    x = (rng.random((40, 12)) < 0.3).astype(np.float64)
    x[:, 5] = 0.0  # an item nobody interacted with
    lam = 7.0
    b = peers.ease_weights(csr_matrix(x), lam)
    assert b.shape == (12, 12) and b.dtype == np.float64
    np.testing.assert_array_equal(np.diag(b), 0.0)
    assert not b[5].any() and not b[:, 5].any()
    active = np.flatnonzero(x.sum(0) > 0)
    xa = x[:, active]
    p = np.linalg.inv(xa.T @ xa + lam * np.eye(len(active)))
    expected = np.eye(len(active)) - p / np.diag(p)[None, :]
    np.testing.assert_allclose(b[np.ix_(active, active)], expected, atol=1e-12)
    # B minimises ||X − XB||² + λ||B||² under diag(B) = 0: the gradient vanishes off the diagonal
    grad = xa.T @ (xa @ expected - xa) + lam * expected
    np.testing.assert_allclose(grad - np.diag(np.diag(grad)), 0.0, atol=1e-9)


@pytest.mark.parametrize("lam", [3.0, 250.0])
def test_ease_dual_form_equals_primal_off_the_history(lam):
    """Fewer users than items: the Woodbury (dual) scores equal the primal ``x @ B`` on every item
    outside the user's history, without an [M, M] matrix; the primal path stays for U >= M."""
    rng = np.random.default_rng(2)
    x = (rng.random((25, 60)) < 0.15).astype(np.float64)
    x[:, 7] = 0.0  # an item nobody interacted with: scores 0 in both forms
    matrix = csr_matrix(x)
    queries_x = (rng.random((9, 60)) < 0.2).astype(np.float32)
    queries_x[:3] = x[:3]  # some queries are fitted users' own rows
    dual = peers.EaseScorer(matrix)
    assert dual.dual
    q, items = dual.factors(queries_x, lam)
    assert q.shape == (9, 25) and items.shape == (60, 25)  # rank U, never [M, M]
    scores = q.astype(np.float64) @ items.T.astype(np.float64)
    expected = queries_x @ peers.ease_weights(matrix, lam)
    outside = queries_x == 0
    np.testing.assert_allclose(scores[outside], expected[outside], rtol=1e-4, atol=1e-5)
    assert np.abs(expected[outside]).max() > 0.05  # the comparison is not between near-zeros
    assert not scores[:, 7].any()
    # the history items differ (the dual form leaves out the x_j term): it is only for excluded histories
    assert not np.allclose(scores[~outside], expected[~outside], atol=1e-3)

    primal = peers.EaseScorer(matrix, dual=False)
    qp, itemsp = primal.factors(queries_x, lam)
    assert not primal.dual and itemsp.shape == (60, len(primal.active)) and 7 not in primal.active
    np.testing.assert_allclose(qp @ itemsp.T, expected, rtol=1e-4, atol=1e-5)
    assert not peers.EaseScorer(csr_matrix(x[:, :20].repeat(2, axis=0))).dual  # U >= M: primal


def test_ease_beats_popularity_on_planted_clusters(planted):
    data, split = planted
    ease = peers.ease_metrics(data, split, KS)
    pop = peers.popularity_metrics(data, split, KS)
    assert ease["recall@10"] >= pop["recall@10"] + 0.15, (ease["recall@10"], pop["recall@10"])
    assert ease["ndcg@10"] >= pop["ndcg@10"] + 0.05
    assert ease["lambda"] in peers.EASE_LAMBDAS
    assert ease["validation_ndcg@10"] == max(ease["validation_grid"].values())


def test_lambda_is_the_argmax_of_validation_and_test_never_read(planted, monkeypatch):
    data, split = planted
    calls = []
    real = peers.rank_metrics

    def spy(data_, split_, queries, items, ks, part="test"):
        out = real(data_, split_, queries, items, ks, part)
        calls.append((part, out))
        return out

    monkeypatch.setattr(peers, "rank_metrics", spy)
    lam, record = peers.ease_select(data, split, KS)
    assert [part for part, _ in calls] == ["validation"] * len(peers.EASE_LAMBDAS)
    validation = [out["ndcg@10"] for _, out in calls]
    assert len(set(validation)) > 1  # the grid matters on this data, so the choice is a real one
    assert lam == peers.EASE_LAMBDAS[int(np.argmax(validation))]
    assert record[lam]["ndcg@10"] == max(validation)

    # selecting with a corrupted test split (other users' rows, reversed) changes nothing
    corrupted = dataclasses.replace(split, test=split.train[::-1][:len(split.test)].copy())
    assert peers.ease_select(data, corrupted, KS) == (lam, record)

    # ease_metrics: the selection's validation calls, then exactly one test evaluation, last
    calls.clear()
    out = peers.ease_metrics(data, split, KS)
    assert [part for part, _ in calls] == ["validation"] * len(peers.EASE_LAMBDAS) + ["test"]
    assert out["lambda"] == lam and out["recall@10"] == calls[-1][1]["recall@10"]


def test_mean_over_seeds_reports_std_only_with_several_runs():
    one = mean_over_seeds([{"recall@10": 0.2, "run": "a", "flag": True}])
    assert one == {"recall@10": 0.2, "seeds": 1}
    two = mean_over_seeds([{"recall@10": 0.2, "epochs": 3}, {"recall@10": 0.4, "epochs": 3}])
    assert two["recall@10"] == pytest.approx(0.3) and two["recall@10_std"] == pytest.approx(0.1)
    assert two["epochs_std"] == 0.0 and two["seeds"] == 2
