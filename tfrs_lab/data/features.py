"""Vocabularies and feature tables, built once from the training rows and saved inside the model.

Index conventions (shared with the model's lookup layers):

* users: ``user_ids[i]`` has index ``i + 1``; index 0 is the out-of-vocabulary (unknown) user.
* movies: ``movie_ids[i]`` (the whole catalogue) has index ``i + 1``; index 0 is unknown.
* title tokens: 0 is padding, 1 is an unknown token, known tokens start at 2.

Only *fitting* happens here (with NumPy). Encoding raw feature values to indices happens inside
the model with TF lookup layers built from these vocabularies, so training and serving share one
encoding path (no train/serve skew).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

__all__ = ["build_vocabularies", "encode_titles", "fit_vocabularies", "movie_rows", "RAW_QUERY_FEATURES", "title_word_ids", "tokenize_titles",
           "Vocabularies"]

RAW_QUERY_FEATURES = ("timestamp", "bucketized_user_age", "user_gender", "user_occupation_label")
"""Raw (TFDS) columns the query tower can use besides ``user_id``."""

_TOKEN = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class Vocabularies:
    """Everything fitted on the training data that the model needs to encode features.

    Shapes use U = number of known users, M = number of catalogue movies, L = title tokens.
    """

    user_ids: np.ndarray  # str [U], sorted
    movie_ids: np.ndarray  # str [M], catalogue order
    title_tokens: np.ndarray  # int32 [M + 1, L]; row 0 (unknown movie) all padding
    title_vocab_size: int  # number of token ids incl. padding (0) and unknown (1)
    genres: np.ndarray  # float32 [M + 1, G] multi-hot; row 0 zeros
    item_counts: np.ndarray  # int64 [M + 1] training interactions per movie index
    has_user_features: bool
    age_values: np.ndarray  # float32 [A] distinct bucketized ages seen in training
    num_occupations: int  # occupation labels are 0 .. num_occupations - 1
    user_table: dict[str, np.ndarray]  # raw user features per user index, [U + 1]; row 0 = defaults
    timestamp_mean: float  # seconds
    timestamp_std: float  # seconds
    timestamp_min: int
    timestamp_max: int
    timestamp_boundaries: np.ndarray  # float64 [B - 1] quantile bucket boundaries, seconds
    typed: tuple = ()  # tfrs_lab.data.typed.ModelFeature of each data.source.features entry (own data)

    @property
    def num_users(self) -> int:
        """Embedding rows for users, including the unknown row."""
        return len(self.user_ids) + 1

    @property
    def num_movies(self) -> int:
        """Embedding rows for movies, including the unknown row."""
        return len(self.movie_ids) + 1


def title_word_ids(titles: np.ndarray, vocab_size: int) -> dict[str, int]:
    """Word -> token id of the title vocabulary fitted on ``titles`` (str [M]): the ``vocab_size - 2``
    most frequent lower-cased words get ids 2.. in frequency order (ties by word)."""
    counts = Counter(w for t in titles for w in _TOKEN.findall(str(t).lower()))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max(vocab_size - 2, 0)]
    return {w: i + 2 for i, (w, _) in enumerate(ranked)}


def encode_titles(titles: np.ndarray, word_ids: dict[str, int], max_tokens: int) -> np.ndarray:
    """int32 [len(titles), max_tokens]: each title's first ``max_tokens`` words as ids of
    ``word_ids`` (1 for an unknown word, 0 pads)."""
    out = np.zeros((len(titles), max_tokens), dtype=np.int32)
    for row, t in enumerate(titles):
        toks = [word_ids.get(w, 1) for w in _TOKEN.findall(str(t).lower())[:max_tokens]]
        out[row, : len(toks)] = toks
    return out


def tokenize_titles(titles: np.ndarray, vocab_size: int, max_tokens: int) -> tuple[np.ndarray, int]:
    """Lower-cases and splits titles into word ids (:func:`title_word_ids`, :func:`encode_titles`).

    Returns ``(tokens int32 [len(titles), max_tokens], number of ids incl. padding and unknown)``.
    """
    ids = title_word_ids(titles, vocab_size)
    return encode_titles(titles, ids, max_tokens), len(ids) + 2


def _user_table(ratings: dict[str, np.ndarray], rows: np.ndarray, user_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Each known user's demographics (from their first training row); row 0 holds defaults."""
    users = ratings["user_id"][rows]
    order = np.argsort(users, kind="stable")
    uniq, first = np.unique(users[order], return_index=True)
    src = rows[order[first]]
    assert np.array_equal(uniq, user_ids)
    table: dict[str, np.ndarray] = {}
    for name in RAW_QUERY_FEATURES[1:]:
        col = ratings[name][src]
        default = np.array([-1], dtype=col.dtype)  # unknown value -> the lookup's OOV index
        table[name] = np.concatenate([default, col])
    return table


def build_vocabularies(
    ratings: dict[str, np.ndarray],
    movies: dict[str, np.ndarray],
    train_rows: np.ndarray,
    *,
    has_user_features: bool,
    title_vocab_size: int,
    title_max_tokens: int,
    timestamp_buckets: int,
) -> Vocabularies:
    """Fits vocabularies on ``ratings[train_rows]`` and the movie catalogue ``movies``.

    Args:
      ratings: the data layer's rating columns (``user_id``, ``movie_id``, ``timestamp`` …).
      movies: the catalogue columns (``movie_id``, ``movie_title``, ``movie_genres``).
      train_rows: int row indices of the training split.
    """
    train_rows = np.asarray(train_rows)
    user_ids = np.unique(ratings["user_id"][train_rows]).astype(object)
    movie_ids = np.asarray(movies["movie_id"], dtype=object)
    # Count training interactions per catalogue movie (index i + 1).
    order = np.argsort(movie_ids)
    pos = np.searchsorted(movie_ids[order], ratings["movie_id"][train_rows])
    pos = np.clip(pos, 0, len(movie_ids) - 1)
    known = movie_ids[order][pos] == ratings["movie_id"][train_rows]
    counts = np.bincount(order[pos[known]] + 1, minlength=len(movie_ids) + 1).astype(np.int64)
    if has_user_features:
        users = dict(ages=np.unique(ratings["bucketized_user_age"][train_rows]).astype(np.float32),
                     num_occupations=int(ratings["user_occupation_label"][train_rows].max()) + 1,
                     user_table=_user_table(ratings, train_rows, user_ids))
    else:
        users = {}
    return fit_vocabularies(user_ids, movies, counts, ratings["timestamp"][train_rows], title_vocab_size=title_vocab_size,
                            title_max_tokens=title_max_tokens, timestamp_buckets=timestamp_buckets, **users)


def fit_vocabularies(user_ids: np.ndarray, movies: dict[str, np.ndarray], item_counts: np.ndarray,
                     timestamps: np.ndarray, *, title_vocab_size: int, title_max_tokens: int, timestamp_buckets: int,
                     ages: np.ndarray | None = None, num_occupations: int = 0,
                     user_table: dict[str, np.ndarray] | None = None, typed: tuple = ()) -> Vocabularies:
    """The :class:`Vocabularies` of fitted pieces (what :func:`build_vocabularies` derives from the
    string columns; :class:`tfrs_lab.data.interactions.Interactions` from codes).

    Args:
      user_ids: str [U] the training users, sorted. movies: the catalogue columns.
      item_counts: int64 [M + 1] training interactions per movie index (0 = unknown).
      timestamps: int [t] the training rows' unix seconds.
      ages, num_occupations, user_table: the demographics (``ages`` None: the data has none).
      typed: the typed features' :class:`~tfrs_lab.data.typed.ModelFeature` (own data).
    """
    movie_ids = np.asarray(movies["movie_id"], dtype=object)
    tokens, vocab = tokenize_titles(movies["movie_title"], title_vocab_size, title_max_tokens)
    pad = np.zeros((1, tokens.shape[1]), dtype=np.int32)
    genres = np.asarray(movies["movie_genres"], dtype=np.float32)
    ts = np.asarray(timestamps).astype(np.float64)
    quantiles = np.linspace(0.0, 1.0, timestamp_buckets + 1)[1:-1]
    boundaries = np.unique(np.quantile(ts, quantiles)) if len(quantiles) else np.zeros(0)
    return Vocabularies(
        user_ids=np.asarray(user_ids, dtype=object),
        movie_ids=movie_ids,
        title_tokens=np.concatenate([pad, tokens]),
        title_vocab_size=vocab,
        genres=np.concatenate([np.zeros((1, genres.shape[1]), np.float32), genres]),
        item_counts=np.asarray(item_counts, np.int64),
        has_user_features=ages is not None,
        age_values=np.zeros(0, np.float32) if ages is None else ages,
        num_occupations=num_occupations,
        user_table=dict(user_table or {}),
        timestamp_mean=float(ts.mean()),
        timestamp_std=float(ts.std() or 1.0),
        timestamp_min=int(ts.min()),
        timestamp_max=int(ts.max()),
        timestamp_boundaries=boundaries.astype(np.float64),
        typed=tuple(typed),
    )


def movie_rows(vocab: Vocabularies, movie_ids: np.ndarray) -> np.ndarray:
    """Catalogue row (0-based, = index - 1) of each movie id; -1 where the id is not in the catalogue."""
    order = np.argsort(vocab.movie_ids)
    sorted_ids = vocab.movie_ids[order]
    pos = np.clip(np.searchsorted(sorted_ids, movie_ids), 0, len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == movie_ids, order[pos], -1).astype(np.int64)
