"""Each rating's recent history: the user's movies just before it, as a query-tower context feature.

History is taken only from ``source_rows`` (for training and evaluation, the training split), so no
evaluated rating ever leaks into a feature. "Before" uses the same (timestamp, integer movie id)
order as the leave-last-out split, and a row never sees itself.
"""

from __future__ import annotations

import numpy as np

from tfrs_lab.data.splits import sequence_order

__all__ = ["latest_history", "PAD", "recent_history", "walk_back"]

PAD = ""
"""Movie id used to pad histories shorter than ``length``."""


def recent_history(
    ratings: dict[str, np.ndarray], source_rows: np.ndarray, query_rows: np.ndarray, length: int
) -> np.ndarray:
    """The last ``length`` movies each query row's user rated before it, among ``source_rows``.

    Args:
      ratings: columns ``user_id``, ``movie_id`` (str [n]) and ``timestamp`` (int64 [n]).
      source_rows: int row indices the history may come from.
      query_rows: int row indices to build a history for (may overlap ``source_rows``).
      length: movies per history.

    Returns:
      object (str) array [len(query_rows), length]: most recent first, padded with ``PAD``.
    """
    source_rows, query_rows = np.asarray(source_rows, np.int64), np.asarray(query_rows, np.int64)
    nq = len(query_rows)
    rows = np.concatenate([query_rows, source_rows])  # queries first: on equal keys they sort first
    is_source = np.concatenate([np.zeros(nq, bool), np.ones(len(source_rows), bool)])
    columns = {k: ratings[k][rows] for k in ("user_id", "movie_id", "timestamp")}
    order = sequence_order(columns)  # stable: ties keep queries before their own source copy
    src_flag = is_source[order]
    before = np.cumsum(src_flag) - src_flag  # source rows strictly before each sorted position
    position = np.empty(len(rows), np.int64)
    position[order] = np.arange(len(rows))
    src_sorted = order[src_flag]
    src_users = columns["user_id"][src_sorted].astype(str)
    src_movies = columns["movie_id"][src_sorted]
    q_start = np.searchsorted(src_users, columns["user_id"][:nq].astype(str), side="left")
    return _walk_back(src_movies, q_start, before[position[:nq]], length)


def _walk_back(sorted_movies: np.ndarray, start: np.ndarray, stop: np.ndarray, length: int) -> np.ndarray:
    """``sorted_movies[stop-1], sorted_movies[stop-2], …`` down to ``start`` (per row), padded to ``length``."""
    return walk_back(sorted_movies, start, stop, length, PAD)


def walk_back(values: np.ndarray, start: np.ndarray, stop: np.ndarray, length: int, pad) -> np.ndarray:
    """``[len(start), length]`` of ``values``' dtype: row i is ``values[stop[i] - 1], values[stop[i] - 2],
    …`` down to ``values[start[i]]``, then ``pad`` (the newest first when ``values`` is in time order)."""
    out = np.full((len(start), length), pad, dtype=values.dtype)
    for j in range(length):
        at = stop - 1 - j
        ok = at >= start
        out[ok, j] = values[at[ok]]
    return out


def latest_history(ratings: dict[str, np.ndarray], rows: np.ndarray, users: np.ndarray, length: int) -> np.ndarray:
    """Each of ``users``' last ``length`` movies among ``rows`` (the freshest history to serve with).

    Returns:
      object (str) array [len(users), length]: most recent first, padded with ``PAD``; users with
      no rating among ``rows`` get an all-padding row.
    """
    rows = np.asarray(rows, np.int64)
    columns = {k: ratings[k][rows] for k in ("user_id", "movie_id", "timestamp")}
    order = sequence_order(columns)
    sorted_users = columns["user_id"][order].astype(str)
    sorted_movies = columns["movie_id"][order]
    wanted = np.asarray(users).astype(str)
    start = np.searchsorted(sorted_users, wanted, side="left")
    stop = np.searchsorted(sorted_users, wanted, side="right")
    return _walk_back(sorted_movies, start, stop, length)
