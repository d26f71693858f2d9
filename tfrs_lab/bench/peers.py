"""Peer methods measured side by side with our models, on the same data, split and evaluator.

Every peer is scored by :func:`rank_metrics` (docs/architecture.md#metric-definitions: full catalogue, pessimistic ties;
``hit_rate@K`` on ``hash``, ``recall@K``/``ndcg@K``/``mrr`` with the user's earlier items excluded
on ``leave-last-out``) or, for rating predictors, by :func:`clipped_rating_metrics` (``rmse``/``mae`` of
predictions clipped to the 1–5 star range, like our ranking models).

Peers without early stopping are fitted on :func:`fit_rows`: the training rows on ``hash`` (the
tutorials' 80 % split), training + validation rows on ``leave-last-out`` (everything before the
test item, which our models also see at test time).

* :func:`popularity_metrics`: the catalogue ordered by interaction counts, for everyone.
* :func:`item_knn_metrics`: item-kNN with cosine similarity (``implicit``'s ``CosineRecommender``).
* :func:`implicit_metrics`: ``implicit``'s ALS and BPR (64 factors, default settings otherwise).
* :func:`ease_metrics`: EASE (Steck 2019), the closed-form item-item autoencoder, with its L2
  weight λ chosen on the validation rows only (:func:`ease_select`), then refitted on
  :func:`fit_rows` and scored once on test; with fewer users than items in its exact dual
  (Woodbury) form (:class:`EaseScorer`), which never builds an item x item matrix.
* :func:`surprise_metrics`: Surprise SVD / SVD++ rating predictors (optional ``bench`` extra).
* :func:`build_tutorial_retrieval` / :func:`tutorial_retrieval_metrics`: the TFRS basic-retrieval
  tutorial recipe, reimplemented from its published description: user id and movie *title*
  embeddings of size 32 (``StringLookup`` + ``Embedding``), no other features, in-batch softmax with
  ``FactorizedTopK`` metrics computed on every training step, ``Adagrad(0.1)``, batch 8192, shuffle
  buffer 100k, 3 epochs. With ``metrics_in_training=False`` the metrics are skipped during training
  (the later tutorials' ``compute_metrics=not training``), the recipe's fastest form.
* :func:`build_tutorial_ranking` / :func:`tutorial_ranking_metrics`: the TFRS basic-ranking
  tutorial recipe: user id and movie title embeddings of size 32, concatenated, an MLP
  ``Dense(256, relu) → Dense(64, relu) → Dense(1)``, ``tfrs.tasks.Ranking`` with MSE loss,
  ``Adagrad(0.1)``, batch 8192, shuffle buffer 100k, 3 epochs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrs_lab.bench.common import mean_over_seeds
from tfrs_lab.data.features import movie_rows
from tfrs_lab.data.movielens import MovieLensData
from tfrs_lab.data.splits import LEAVE_LAST_OUT, Split
from tfrs_lab.evaluation.metrics import hit_rate, ranking_metrics, rating_metrics, target_ranks
from tfrs_lab.training.evaluate import seen_lists

__all__ = ["build_tutorial_ranking", "build_tutorial_retrieval", "catalogue_rows", "clipped_rating_metrics",
           "EASE_LAMBDAS", "ease_metrics", "EaseScorer", "ease_select", "ease_weights", "evaluated_rows", "fit_rows", "IMPLICIT_FACTORS", "implicit_metrics", "Interactions", "interactions",
           "item_counts", "item_knn_metrics", "PeerUnavailable", "popularity_metrics", "rank_metrics",
           "RATING_RANGE", "surprise_metrics", "target_ranks_for", "TUTORIAL_BATCH", "tutorial_dataset",
           "TUTORIAL_EPOCHS", "tutorial_ranking_metrics", "tutorial_retrieval_metrics", "TutorialRanking",
           "TutorialRetrieval"]

logger = logging.getLogger(__name__)

IMPLICIT_FACTORS = 64
RATING_RANGE = (1.0, 5.0)


class PeerUnavailable(RuntimeError):
    """An optional peer's package is not installed; the message says how to install it."""


class _Catalogue:
    """Just enough of ``Vocabularies`` for :func:`movie_rows`."""

    def __init__(self, movie_ids: np.ndarray) -> None:
        self.movie_ids = np.asarray(movie_ids, dtype=object)


def catalogue_rows(data: MovieLensData, movie_ids: np.ndarray) -> np.ndarray:
    """int64 catalogue row (``data.movies`` order) of each movie id; -1 when not in the catalogue."""
    return movie_rows(_Catalogue(data.movies["movie_id"]), movie_ids)


def fit_rows(split: Split) -> np.ndarray:
    """Rows a peer without early stopping is fitted on (see the module docstring)."""
    if split.protocol == "hash":
        return split.train
    return np.concatenate([split.train, split.validation])


def evaluated_rows(split: Split, part: str) -> tuple[np.ndarray, np.ndarray]:
    """``(query rows, history rows)`` of ``part`` (``"validation"`` or ``"test"``): the history is
    what leave-last-out excludes (train for validation, train + validation for test)."""
    if part == "validation":
        return split.validation, split.train
    return split.test, np.concatenate([split.train, split.validation])


def target_ranks_for(data: MovieLensData, split: Split, queries: np.ndarray, items: np.ndarray,
                     query_rows: np.ndarray, history_rows: np.ndarray) -> np.ndarray:
    """Ranks (0-based) of each query row's movie, as our evaluator computes them.

    Args:
      queries: float32 [len(query_rows), d] one query vector per evaluated rating.
      items: float32 [M, d] catalogue vectors in ``data.movies["movie_id"]`` order.
      query_rows, history_rows: rating rows evaluated / excluded per user (leave-last-out only).

    Returns:
      int64 ranks of the rows whose movie is in the catalogue.
    """
    r = data.ratings
    targets = catalogue_rows(data, r["movie_id"][query_rows])
    keep = targets >= 0
    exclude = None
    if split.protocol != "hash":
        seen = seen_lists(r["user_id"][query_rows][keep], r["user_id"][history_rows],
                          catalogue_rows(data, r["movie_id"][history_rows]))
        exclude = [s[s >= 0] for s in seen]
    return target_ranks(np.asarray(queries, np.float32)[keep], np.asarray(items, np.float32), targets[keep],
                        exclude=exclude)


def rank_metrics(data: MovieLensData, split: Split, queries: np.ndarray, items: np.ndarray, ks: tuple[int, ...],
                 part: str = "test") -> dict[str, float]:
    """Our metrics (docs/architecture.md#metric-definitions) for a method that yields one query vector per ``part`` rating."""
    query_rows, history_rows = evaluated_rows(split, part)
    ranks = target_ranks_for(data, split, queries, items, query_rows, history_rows)
    return hit_rate(ranks, ks) if split.protocol == "hash" else ranking_metrics(ranks, ks)


def clipped_rating_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``rmse`` and ``mae`` of predictions clipped to the star range."""
    return rating_metrics(np.clip(np.asarray(predictions, np.float64), *RATING_RANGE), labels)


# --------------------------------------------------------------------------- classic peers


def popularity_metrics(data: MovieLensData, split: Split, ks: tuple[int, ...]) -> dict[str, float]:
    """Most-popular-first for everyone (interaction counts of :func:`fit_rows`)."""
    counts = item_counts(data, fit_rows(split))
    queries = np.ones((len(split.test), 1), np.float32)
    return rank_metrics(data, split, queries, counts[:, None], ks)


def item_counts(data: MovieLensData, rows: np.ndarray) -> np.ndarray:
    """float32 [M] interactions per catalogue movie among ``rows``."""
    items = catalogue_rows(data, data.ratings["movie_id"][rows])
    return np.bincount(items[items >= 0], minlength=len(data.movies["movie_id"])).astype(np.float32)


@dataclass(frozen=True)
class Interactions:
    """Binary user x item matrix of the fitted rows, for ``implicit``'s models."""

    users: np.ndarray  # str [U] sorted user ids (row i of the matrix)
    matrix: Any  # scipy.sparse.csr_matrix float32 [U, M]

    def user_index(self, user_ids: np.ndarray) -> np.ndarray:
        """Row of each user id; -1 for users without fitted interactions."""
        pos = np.clip(np.searchsorted(self.users, user_ids), 0, max(len(self.users) - 1, 0))
        return np.where(self.users[pos] == user_ids, pos, -1) if len(self.users) else np.full(len(user_ids), -1)


def interactions(data: MovieLensData, rows: np.ndarray) -> Interactions:
    from scipy.sparse import csr_matrix

    r = data.ratings
    items = catalogue_rows(data, r["movie_id"][rows])
    keep = items >= 0
    users, user_idx = np.unique(r["user_id"][rows][keep].astype(str), return_inverse=True)
    m = csr_matrix((np.ones(int(keep.sum()), np.float32), (user_idx, items[keep])),
                   shape=(len(users), len(data.movies["movie_id"])))
    m = m.tocsr()
    m.sum_duplicates()
    m.data[:] = 1.0
    return Interactions(users.astype(object), m)


def _test_user_rows(data: MovieLensData, split: Split, inter: Interactions) -> np.ndarray:
    return inter.user_index(data.ratings["user_id"][split.test].astype(str))


def _histories(inter: Interactions, users: np.ndarray) -> np.ndarray:
    """float32 [len(users), M] rows of ``inter.matrix`` for the row indices ``users`` (zeros for -1)."""
    history = np.zeros((len(users), inter.matrix.shape[1]), np.float32)
    known = users >= 0
    history[known] = inter.matrix[users[known]].toarray()
    return history


def _require_implicit():
    try:
        import implicit  # noqa: F401
    except ImportError as e:
        raise PeerUnavailable("implicit is not installed: pip install 'tfrs-lab[bench]'") from e
    from threadpoolctl import threadpool_limits

    return threadpool_limits


def item_knn_metrics(data: MovieLensData, split: Split, ks: tuple[int, ...], neighbours: int = 20) -> dict[str, float]:
    """Item-kNN: cosine similarity between item columns, ``neighbours`` per item (``implicit``'s
    ``CosineRecommender``); a user's score for an item sums its similarities to the user's items."""
    limits = _require_implicit()
    from implicit.nearest_neighbours import CosineRecommender

    inter = interactions(data, fit_rows(split))
    import warnings

    from implicit.utils import ParameterWarning

    model = CosineRecommender(K=neighbours)
    with limits(1, "blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ParameterWarning)  # it transposes our CSR input itself
        model.fit(inter.matrix, show_progress=False)
    history = _histories(inter, _test_user_rows(data, split, inter))
    sim = model.similarity.toarray().astype(np.float32)  # [M, M]: score = history @ sim
    return rank_metrics(data, split, history, sim.T, ks)


def implicit_metrics(data: MovieLensData, split: Split, ks: tuple[int, ...], method: str, *,
                     seeds: tuple[int, ...] = (0,), factors: int = IMPLICIT_FACTORS) -> dict[str, float]:
    """``implicit``'s ``als`` or ``bpr`` with ``factors`` factors, metrics averaged over ``seeds``
    (plus ``<metric>_std`` across seeds when more than one) and ``train_seconds`` (mean)."""
    limits = _require_implicit()
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    inter = interactions(data, fit_rows(split))
    users = _test_user_rows(data, split, inter)
    runs, seconds = [], []
    if method not in ("als", "bpr"):
        raise ValueError(f"unknown implicit method {method!r}: choose als or bpr")
    for seed in seeds:
        start = time.perf_counter()
        with limits(1, "blas"):  # implicit's own threads; BLAS threads would oversubscribe the cores
            if method == "als":
                model = AlternatingLeastSquares(factors=factors, random_state=seed)
            else:
                model = BayesianPersonalizedRanking(factors=factors, random_state=seed)
            model.fit(inter.matrix, show_progress=False)
        seconds.append(time.perf_counter() - start)
        uf = np.asarray(model.user_factors, np.float32)
        queries = np.zeros((len(users), uf.shape[1]), np.float32)
        queries[users >= 0] = uf[users[users >= 0]]
        runs.append(rank_metrics(data, split, queries, np.asarray(model.item_factors, np.float32), ks))
    out = mean_over_seeds(runs)
    out["train_seconds"] = round(float(np.mean(seconds)), 3)
    return out


# --------------------------------------------------------------------------- EASE

EASE_LAMBDAS: tuple[float, ...] = (10.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)
"""The λ grid :func:`ease_select` searches (Steck 2019 tunes λ per data set; ML-20M's best is 500)."""
EASE_SELECTION_METRIC = "ndcg@10"


def _active_items(matrix: Any) -> np.ndarray:
    """int64 [Ma] columns of ``matrix`` (sparse [U, M]) with at least one interaction."""
    return np.flatnonzero(np.asarray(matrix.getnnz(axis=0)).ravel() > 0)


def _ease_from_gram(gram: np.ndarray, lam: float) -> np.ndarray:
    """B = I − P / diag(P) with P = (G + λI)⁻¹ (float64 [Ma, Ma], zero diagonal); ``gram`` is kept."""
    g = gram.copy()
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = p / (-np.diag(p))[None, :]  # B_ij = −P_ij / P_jj for i ≠ j
    np.fill_diagonal(b, 0.0)
    return b


def ease_weights(matrix: Any, lam: float) -> np.ndarray:
    """EASE item-item weights of a binary user x item matrix (Steck 2019, closed form).

    Args:
      matrix: scipy.sparse [U, M] binary interactions (:class:`Interactions`'s ``matrix``).
      lam: L2 weight λ > 0.

    Returns:
      float64 [M, M] B with ``diag(B) == 0``; a user's scores are ``x @ B`` (x: [M] binary row).
      Rows and columns of items without interactions are zero.
    """
    primal = EaseScorer(matrix, dual=False)  # items without interactions are left out of the inverse
    out = np.zeros((matrix.shape[1], matrix.shape[1]))
    out[np.ix_(primal.active, primal.active)] = _ease_from_gram(primal.gram, lam)
    return out


class EaseScorer:
    """EASE fitted on a binary [U, M] matrix X, factored once for every λ; :meth:`factors` gives the
    ``(queries, items)`` pair :func:`rank_metrics` scores as ``queries @ items.T``.

    Two exact forms, chosen by size (Ma = items with at least one interaction):

    * **primal** (``U >= Ma``, or ``dual=False``): G = XᵀX [Ma, Ma], B = I − P / diag(P) with
      P = (G + λI)⁻¹, one O(Ma³) inverse per λ; queries = the histories x [n, Ma], items = Bᵀ.
    * **dual** (``U < Ma`` and ``dual=True``): Woodbury, P = (1/λ)(I − XᵀK⁻¹X) with the [U, U]
      matrix K = XXᵀ + λI, so with A = K⁻¹X [U, Ma]: ``λ·P_jj = d_j = 1 − Σ_u X_uj A_uj`` and, for
      an item j outside the history x, ``(x B)_j = (x Xᵀ A)_j / d_j``. Per λ: one O(U³) inverse and
      the sparse product XᵀK⁻¹ (O(nnz·U)); never an [Ma, Ma] matrix. queries = ``x Xᵀ`` [n, U]
      (the same for every λ), items = ``(A / d)ᵀ`` [Ma, U]. With c = x Xᵀ A, the exact score of an
      item j *in* the history is ``1 − (1 − c_j) / d_j``, not the ``c_j / d_j`` the dual form
      gives, so the dual form is only for evaluations that exclude the history (``leave-last-out``:
      :func:`rank_metrics` excludes exactly the fitted rows' items of each user).

    Items without interactions score 0 in both forms (their rows of ``items`` are zero).
    """

    def __init__(self, matrix: Any, *, dual: bool = True) -> None:
        """``matrix``: scipy.sparse binary [U, M]; ``dual``: allow the dual form when U < Ma."""
        self.num_items = int(matrix.shape[1])
        self.active = _active_items(matrix)
        self.x = matrix[:, self.active].astype(np.float64).tocsr()  # [U, Ma]
        self.dual = bool(dual) and self.x.shape[0] < len(self.active)
        if self.dual:
            self.gram = np.asarray((self.x @ self.x.T).todense())  # [U, U] = XXᵀ
        else:
            self.gram = np.asarray((self.x.T @ self.x).todense())  # [Ma, Ma] = XᵀX

    def factors(self, histories: Any, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """``(queries, items)``: float32 [n, r] and [M, r] (r = Ma primal, U dual) for the binary
        history rows ``histories`` ([n, M], dense) at L2 weight ``lam``."""
        h = np.asarray(histories)[:, self.active]
        if not self.dual:
            items = np.zeros((self.num_items, len(self.active)), np.float32)
            items[self.active] = _ease_from_gram(self.gram, lam).T
            return h.astype(np.float32), items
        k = self.gram.copy()
        k[np.diag_indices_from(k)] += lam
        a_t = np.asarray(self.x.T @ np.linalg.inv(k))  # [Ma, U] = (K⁻¹X)ᵀ (K symmetric)
        d = 1.0 - np.asarray(self.x.T.multiply(a_t).sum(axis=1)).ravel()  # [Ma] = λ·diag(P)
        items = np.zeros((self.num_items, self.x.shape[0]), np.float32)
        items[self.active] = a_t / d[:, None]
        queries = np.asarray(self.x @ h.T.astype(np.float64)).T  # [n, U] = x Xᵀ
        return queries.astype(np.float32), items


def _ease_scorer(matrix: Any, split: Split) -> EaseScorer:
    """The dual form only where the evaluation excludes the fitted history (see :class:`EaseScorer`)."""
    return EaseScorer(matrix, dual=split.protocol == LEAVE_LAST_OUT)


def ease_select(data: MovieLensData, split: Split, ks: tuple[int, ...], lambdas: tuple[float, ...] = EASE_LAMBDAS,
                metric: str = EASE_SELECTION_METRIC) -> tuple[float, dict[float, dict[str, float]]]:
    """Chooses EASE's λ on validation only: fits ``split.train``, ranks ``split.validation`` (train
    items excluded) for every λ; ``split.test`` is never read.

    Returns:
      ``(best λ, {λ: validation metrics})``; the best is the first λ (grid order) with the highest
      validation ``metric``.
    """
    inter = interactions(data, split.train)
    scorer = _ease_scorer(inter.matrix, split)
    users = inter.user_index(data.ratings["user_id"][split.validation].astype(str))
    histories = _histories(inter, users)
    record = {}
    for lam in lambdas:
        record[lam] = rank_metrics(data, split, *scorer.factors(histories, lam), ks, part="validation")
    if metric not in record[lambdas[0]]:
        raise ValueError(f"EASE selects on {metric!r}, which the {split.name} split does not report")
    best = max(lambdas, key=lambda lam: record[lam][metric])
    return best, record


def ease_metrics(data: MovieLensData, split: Split, ks: tuple[int, ...], *,
                 lambdas: tuple[float, ...] = EASE_LAMBDAS) -> dict[str, Any]:
    """EASE with λ from :func:`ease_select`, refitted on :func:`fit_rows`, test metrics computed once.

    Returns the test metrics plus ``lambda``, ``validation_ndcg@10`` (of the chosen λ),
    ``validation_grid`` ({λ: validation ndcg@10}), ``form`` (``primal`` or ``dual``, see
    :class:`EaseScorer`), ``selection_seconds`` and ``train_seconds`` (the final fit).
    Deterministic: no ``_std``.
    """
    start = time.perf_counter()
    lam, record = ease_select(data, split, ks, lambdas)
    selection_seconds = time.perf_counter() - start
    start = time.perf_counter()
    inter = interactions(data, fit_rows(split))
    scorer = _ease_scorer(inter.matrix, split)
    queries, items = scorer.factors(_histories(inter, _test_user_rows(data, split, inter)), lam)
    train_seconds = time.perf_counter() - start
    out: dict[str, Any] = rank_metrics(data, split, queries, items, ks)
    out.update({"lambda": lam, f"validation_{EASE_SELECTION_METRIC}": record[lam][EASE_SELECTION_METRIC],
                "validation_grid": {str(k): v[EASE_SELECTION_METRIC] for k, v in record.items()},
                "form": "dual" if scorer.dual else "primal",
                "selection_seconds": round(selection_seconds, 3), "train_seconds": round(train_seconds, 3)})
    return out


def surprise_metrics(data: MovieLensData, split: Split, method: str, seed: int = 0) -> dict[str, float]:
    """Surprise ``svd`` or ``svdpp`` (default settings) fitted on :func:`fit_rows`, ``rmse``/``mae``
    on the test ratings. Raises :class:`PeerUnavailable` without ``scikit-surprise``."""
    try:
        from surprise import SVD, SVDpp, Dataset, Reader
    except ImportError as e:
        raise PeerUnavailable("scikit-surprise is not installed: pip install 'tfrs-lab[bench]' "
                              "(it needs a compiler where no wheel exists)") from e
    r = data.ratings
    rows = fit_rows(split)
    raw = [(u, m, float(y), None) for u, m, y in zip(r["user_id"][rows], r["movie_id"][rows], r["user_rating"][rows])]
    trainset = Dataset(Reader(rating_scale=RATING_RANGE)).construct_trainset(raw)
    algo = {"svd": SVD, "svdpp": SVDpp}[method](random_state=seed)
    start = time.perf_counter()
    algo.fit(trainset)
    seconds = time.perf_counter() - start
    test = split.test
    preds = np.array([algo.predict(u, m).est for u, m in zip(r["user_id"][test], r["movie_id"][test])])
    return {**clipped_rating_metrics(preds, r["user_rating"][test]), "train_seconds": round(seconds, 3)}


# --------------------------------------------------------------------------- TFRS tutorial recipes

TUTORIAL_EPOCHS = 3
TUTORIAL_BATCH = 8192


def _titles_per_rating(data: MovieLensData) -> np.ndarray:
    title_of = dict(zip(data.movies["movie_id"], data.movies["movie_title"]))
    return np.array([title_of.get(m, "") for m in data.ratings["movie_id"]], dtype=object)


def tutorial_dataset(data: MovieLensData, rows: np.ndarray, seed: int, batch_size: int = TUTORIAL_BATCH,
                     with_rating: bool = False) -> tf.data.Dataset:
    """The tutorials' input pipeline: ``{"user_id", "movie_title"(, "user_rating")}`` rows, shuffled
    once (buffer 100k), batched and cached."""
    r = data.ratings
    cols = {"user_id": tf.constant(list(r["user_id"][rows])),
            "movie_title": tf.constant(list(_titles_per_rating(data)[rows]))}
    if with_rating:
        cols["user_rating"] = tf.constant(r["user_rating"][rows].astype(np.float32))
    ds = tf.data.Dataset.from_tensor_slices(cols)
    return ds.shuffle(100_000, seed=seed, reshuffle_each_iteration=False).batch(batch_size).cache()


def _lookup_embedding(vocabulary: np.ndarray) -> tf.keras.Sequential:
    return tf.keras.Sequential([tf.keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=None),
                                tf.keras.layers.Embedding(len(vocabulary) + 1, 32)])


class TutorialRetrieval(tfrs.Model):
    """The basic-retrieval tutorial's two towers (user id, movie title) and ``Retrieval`` task."""

    def __init__(self, users: np.ndarray, titles: np.ndarray, metrics_in_training: bool) -> None:
        super().__init__()
        self.metrics_in_training = metrics_in_training
        self.user_model = _lookup_embedding(users)
        self.movie_model = _lookup_embedding(titles)
        candidates = tf.data.Dataset.from_tensor_slices(tf.constant(list(titles)))
        self.task = tfrs.tasks.Retrieval(
            metrics=tfrs.metrics.FactorizedTopK(candidates=candidates.batch(128).map(self.movie_model)))

    def compute_loss(self, features, training=False):
        return self.task(self.user_model(features["user_id"]), self.movie_model(features["movie_title"]),
                         compute_metrics=self.metrics_in_training or not training)

    def evaluate_split(self, data: MovieLensData, split: Split, ks: tuple[int, ...], part: str = "test") -> dict[str, float]:
        """Our full-catalogue metrics of ``part``'s ratings."""
        rows, _ = evaluated_rows(split, part)
        queries = self.user_model(tf.constant(list(data.ratings["user_id"][rows]))).numpy()
        items = self.movie_model(tf.constant(list(data.movies["movie_title"]))).numpy()
        return rank_metrics(data, split, queries, items, ks, part)


def build_tutorial_retrieval(data: MovieLensData, split: Split, *, seed: int = 42, metrics_in_training: bool = True,
                             jit_compile: bool = False) -> TutorialRetrieval:
    """The compiled (``Adagrad(0.1)``) tutorial retrieval model, seeded."""
    tf.keras.utils.set_random_seed(seed)
    titles = np.unique(data.movies["movie_title"].astype(str)).astype(object)
    users = np.unique(data.ratings["user_id"][split.train]).astype(object)
    model = TutorialRetrieval(users, titles, metrics_in_training)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.1), jit_compile=jit_compile)
    return model


def tutorial_retrieval_metrics(data: MovieLensData, split: Split, ks: tuple[int, ...], *, epochs: int = TUTORIAL_EPOCHS,
                               seed: int = 42, metrics_in_training: bool = True) -> dict[str, float]:
    """Trains the basic-retrieval recipe on ``split.train``; test metrics plus ``train_seconds`` and
    ``train_examples_per_second``."""
    model = build_tutorial_retrieval(data, split, seed=seed, metrics_in_training=metrics_in_training)
    train = tutorial_dataset(data, split.train, seed)
    start = time.perf_counter()
    model.fit(train, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    out = model.evaluate_split(data, split, ks)
    out.update(train_seconds=round(seconds, 3),
               train_examples_per_second=round(len(split.train) * epochs / seconds, 1))
    return out


class TutorialRanking(tfrs.models.Model):
    """The basic-ranking tutorial: [user emb 32, title emb 32] → 256 → 64 → 1, MSE ``Ranking`` task."""

    def __init__(self, users: np.ndarray, titles: np.ndarray) -> None:
        super().__init__()
        self.user_embeddings = _lookup_embedding(users)
        self.movie_embeddings = _lookup_embedding(titles)
        self.ratings = tf.keras.Sequential([tf.keras.layers.Dense(256, activation="relu"),
                                            tf.keras.layers.Dense(64, activation="relu"),
                                            tf.keras.layers.Dense(1)])
        self.task = tfrs.tasks.Ranking(loss=tf.keras.losses.MeanSquaredError(),
                                       metrics=[tf.keras.metrics.RootMeanSquaredError()])

    def call(self, features):
        return self.ratings(tf.concat([self.user_embeddings(features["user_id"]),
                                       self.movie_embeddings(features["movie_title"])], axis=1))

    def compute_loss(self, features, training=False):
        return self.task(labels=features["user_rating"], predictions=self(features))

    def evaluate_rows(self, data: MovieLensData, rows: np.ndarray) -> dict[str, float]:
        """``rmse``/``mae`` (clipped predictions) on the rating rows ``rows``."""
        feats = {"user_id": tf.constant(list(data.ratings["user_id"][rows])),
                 "movie_title": tf.constant(list(_titles_per_rating(data)[rows]))}
        preds = self(feats).numpy()[:, 0]
        return clipped_rating_metrics(preds, data.ratings["user_rating"][rows])


def build_tutorial_ranking(data: MovieLensData, split: Split, *, seed: int = 42, jit_compile: bool = False) -> TutorialRanking:
    """The compiled (``Adagrad(0.1)``) tutorial ranking model, seeded."""
    tf.keras.utils.set_random_seed(seed)
    titles = np.unique(data.movies["movie_title"].astype(str)).astype(object)
    users = np.unique(data.ratings["user_id"][split.train]).astype(object)
    model = TutorialRanking(users, titles)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.1), jit_compile=jit_compile)
    return model


def tutorial_ranking_metrics(data: MovieLensData, split: Split, *, epochs: int = TUTORIAL_EPOCHS,
                             seed: int = 42) -> dict[str, float]:
    """Trains the basic-ranking recipe on ``split.train``; test ``rmse``/``mae`` plus timings."""
    model = build_tutorial_ranking(data, split, seed=seed)
    train = tutorial_dataset(data, split.train, seed, with_rating=True)
    start = time.perf_counter()
    model.fit(train, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    out = model.evaluate_rows(data, split.test)
    out.update(train_seconds=round(seconds, 3),
               train_examples_per_second=round(len(split.train) * epochs / seconds, 1))
    return out
