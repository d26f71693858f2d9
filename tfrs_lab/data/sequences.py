"""Per-user item sequences for next-item models, built without leakage (leave-one-out protocol).

Items are integer *catalogue indices* given per rating row (``item_index[row]``; the model's
convention: catalogue row + 1, with 0 meaning "padding / not in the catalogue"). Sequences are
ordered like the leave-last-out split (:func:`tfrs_lab.data.splits.sequence_order`: per user by
(timestamp, integer movie id)) and left-padded with 0, so the newest item is always the last column.

Leakage rules (what :func:`training_sequences` and :func:`evaluation_sequences` guarantee):

* training sequences use the training rows only: they end before the validation item;
* validation predicts the validation item from the user's training rows;
* test predicts the test item from the training and validation rows (the validation item included).

Rows whose item is 0 (a movie missing from the catalogue) are dropped from every sequence.

Each user's items (:class:`UserItems`, a CSR) come from the string columns (:func:`user_items`) or
from the sequence index of compact interactions
(:meth:`tfrs_lab.data.interactions.Interactions.user_items`, what the sequential task uses); the
windows (:func:`sequence_windows`) and evaluation queries (:func:`query_sequences`) are built from
either the same way.

Training windows (:class:`TrainingSequences`) are an index into the users' concatenated items (a
CSR layout), gathered per batch by
:func:`tfrs_lab.training.sequential.gather_windows`: no [windows x max_length] matrix is
built. ``window_stride`` 0 keeps one window per user (the newest ``max_length`` positions); a
stride ``S`` in [1, max_length] slides windows of ``max_length`` inputs back over the whole
history ``S`` positions at a time, each window training only the ``S`` positions the newer window
did not (its older inputs are context), so every training position is trained once per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfrs_lab.data.splits import sequence_order

__all__ = ["evaluation_sequences", "EvaluationSequences", "left_pad", "PAD_INDEX", "query_sequences",
           "sequence_windows", "training_sequences", "TrainingSequences", "user_items", "UserItems"]

PAD_INDEX = 0
"""Item index used for padding (and for unknown items, which never enter a sequence)."""


@dataclass(frozen=True)
class UserItems:
    """Each user's items in time order, as a CSR layout.

    ``items[offsets[u]:offsets[u + 1]]`` are the items of ``user_ids[u]``, oldest first.
    """

    user_ids: np.ndarray  # str [U], ascending
    items: np.ndarray  # int64 [n]
    offsets: np.ndarray  # int64 [U + 1]

    def of(self, u: int) -> np.ndarray:
        return self.items[self.offsets[u] : self.offsets[u + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass(frozen=True)
class TrainingSequences:
    """Next-item training windows as an index into ``items`` (every user's items, oldest first,
    users concatenated): window w reads the inputs at flat positions ``ends[w] - L + 1 .. ends[w]``
    (those before ``starts[w]``, the user's first item, are padding) and trains the next item of
    the positions from ``trained_from[w]`` on. ``training.sequential.gather_windows`` turns windows into
    ``inputs`` / ``targets`` int32 [B, L] (``targets[:, t]`` = the item after ``inputs[:, t]``,
    0 = not trained in this window)."""

    user_ids: np.ndarray  # str [n] user of each window
    items: np.ndarray  # int32 [N] catalogue indices of the training users' items
    starts: np.ndarray  # int64 [n] flat position of the window's user's first item
    ends: np.ndarray  # int64 [n] flat position of the window's newest input
    trained_from: np.ndarray  # int64 [n] flat position of its oldest trained input (>= starts, > ends - L)
    max_length: int  # L

    def __len__(self) -> int:
        return len(self.ends)

    @property
    def num_positions(self) -> int:
        """Number of (history, next item) predictions in one epoch."""
        return int(np.sum(self.ends - self.trained_from + 1))


@dataclass(frozen=True)
class EvaluationSequences:
    """One query per user: the history before a held-out item, and that item."""

    user_ids: np.ndarray  # str [n]
    inputs: np.ndarray  # int32 [n, L], the latest L history items, left-padded with 0
    targets: np.ndarray  # int64 [n], the held-out item
    seen: list[np.ndarray]  # n int64 arrays: every history item (to exclude from the ranking)


def user_items(ratings: dict[str, np.ndarray], rows: np.ndarray, item_index: np.ndarray) -> UserItems:
    """The items of ``rows`` grouped per user in time order (unknown items, index 0, dropped).

    Args:
      ratings: columns ``user_id``, ``movie_id`` (str [N]) and ``timestamp`` (int64 [N]).
      rows: int row indices to use.
      item_index: int [N] catalogue index of every rating row (0 = not in the catalogue).
    """
    rows = np.asarray(rows, np.int64)
    rows = rows[np.asarray(item_index)[rows] > PAD_INDEX]
    columns = {k: ratings[k][rows] for k in ("user_id", "movie_id", "timestamp")}
    ordered = rows[sequence_order(columns)]
    users = ratings["user_id"][ordered].astype(str)
    user_ids, starts = np.unique(users, return_index=True)  # sorted users are contiguous blocks
    offsets = np.append(starts, len(users)).astype(np.int64)
    return UserItems(user_ids.astype(object), np.asarray(item_index)[ordered].astype(np.int64), offsets)


def left_pad(sequences: list[np.ndarray], length: int) -> np.ndarray:
    """int32 [len(sequences), length]: the last ``length`` items of each sequence, left-padded with 0."""
    out = np.zeros((len(sequences), length), np.int32)
    for i, s in enumerate(sequences):
        s = s[-length:]
        if len(s):
            out[i, length - len(s) :] = s
    return out


def training_sequences(ratings: dict[str, np.ndarray], train_rows: np.ndarray, item_index: np.ndarray,
                       max_length: int, window_stride: int = 0) -> TrainingSequences:
    """Next-item training windows from the training rows only (:func:`sequence_windows` of
    :func:`user_items`)."""
    return sequence_windows(user_items(ratings, train_rows, item_index), max_length, window_stride)


def sequence_windows(per_user: UserItems, max_length: int, window_stride: int = 0) -> TrainingSequences:
    """Next-item training windows over each user's items (the training rows only).

    For a user with training items ``s1 … sn`` the inputs are ``s1 … s(n-1)`` and the targets
    ``s2 … sn`` (each position predicts the next item). ``window_stride`` 0: one window, the
    latest ``max_length`` positions. ``window_stride`` S (1 .. max_length): windows of
    ``max_length`` inputs ending at positions n-1, n-1-S, … until every position is trained, each
    training its newest S positions (the oldest window all of its own). Users with fewer than 2
    training items give no window. Windows of a user are listed newest first, users in id order.
    ``per_user``: from the string columns (:func:`user_items`) or the sequence index
    (:meth:`tfrs_lab.data.interactions.Interactions.user_items`); both give the same windows.
    """
    if not 0 <= window_stride <= max_length:
        raise ValueError(f"window_stride must be in [0, max_length={max_length}], got {window_stride}")
    keep = np.flatnonzero(per_user.lengths() >= 2)
    first, last = per_user.offsets[keep], per_user.offsets[keep + 1] - 2  # flat positions of each user's inputs
    span = window_stride or max_length
    count = np.ones(len(keep), np.int64) if window_stride == 0 else -(-(last - first + 1) // window_stride)
    owner = np.repeat(np.arange(len(keep)), count)
    k = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)  # 0 = newest window of its user
    ends = last[owner] - k * window_stride
    starts = first[owner]
    return TrainingSequences(user_ids=per_user.user_ids[keep][owner], items=per_user.items.astype(np.int32),
                             starts=starts, ends=ends, trained_from=np.maximum(starts, ends - span + 1),
                             max_length=max_length)


def evaluation_sequences(ratings: dict[str, np.ndarray], history_rows: np.ndarray, target_rows: np.ndarray,
                         item_index: np.ndarray, max_length: int) -> EvaluationSequences:
    """One query per target row: that user's items among ``history_rows`` (in time order), and the
    target row's item.

    With the leave-last-out split, validation uses ``history_rows = train`` and test uses
    ``history_rows = train + validation``: every history row is earlier than its target. Target
    rows whose item is not in the catalogue are dropped.
    """
    target_rows = np.asarray(target_rows, np.int64)
    target_rows = target_rows[np.asarray(item_index)[target_rows] > PAD_INDEX]
    per_user = user_items(ratings, history_rows, item_index)
    users = ratings["user_id"][target_rows].astype(str)
    pos = np.clip(np.searchsorted(per_user.user_ids.astype(str), users), 0, max(len(per_user.user_ids) - 1, 0))
    found = (per_user.user_ids[pos].astype(str) == users) if len(per_user.user_ids) else np.zeros(len(users), bool)
    return query_sequences(per_user, np.where(found, pos, -1), users.astype(object),
                           np.asarray(item_index)[target_rows], max_length)


def query_sequences(per_user: UserItems, users: np.ndarray, user_ids: np.ndarray, targets: np.ndarray,
                    max_length: int) -> EvaluationSequences:
    """One query per target: the history of its user and the target item.

    Args:
      per_user: the history rows' items per user.
      users: int [q]: each target's user as an index into ``per_user`` (-1: no history).
      user_ids: str [q] each target's user id. targets: int [q] the target items (catalogue index > 0).
      max_length: L, the history items kept in ``inputs``.
    """
    empty = np.zeros(0, np.int64)
    histories = [per_user.of(u) if u >= 0 else empty for u in np.asarray(users, np.int64)]
    return EvaluationSequences(user_ids=np.asarray(user_ids, object), inputs=left_pad(histories, max_length),
                               targets=np.asarray(targets, np.int64), seen=histories)
