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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfrs_lab.data.splits import sequence_order

__all__ = ["evaluation_sequences", "EvaluationSequences", "left_pad", "PAD_INDEX", "training_sequences",
           "TrainingSequences", "user_items", "UserItems"]

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
    """Next-item training pairs: ``targets[:, t]`` is the item following ``inputs[:, t]``."""

    user_ids: np.ndarray  # str [n]
    inputs: np.ndarray  # int32 [n, L], left-padded with 0
    targets: np.ndarray  # int32 [n, L], 0 where inputs is padding

    @property
    def num_positions(self) -> int:
        """Number of (history, next item) predictions in one epoch."""
        return int(np.count_nonzero(self.targets))


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
                       max_length: int) -> TrainingSequences:
    """Next-item training sequences from the training rows only.

    For a user with training items ``s1 … sn`` the input is ``s1 … s(n-1)`` and the target
    ``s2 … sn`` (each position predicts the next item), both cut to the latest ``max_length``
    positions. Users with fewer than 2 training items give no sequence.
    """
    per_user = user_items(ratings, train_rows, item_index)
    keep = np.flatnonzero(per_user.lengths() >= 2)
    seqs = [per_user.of(u) for u in keep]
    return TrainingSequences(user_ids=per_user.user_ids[keep], inputs=left_pad([s[:-1] for s in seqs], max_length),
                             targets=left_pad([s[1:] for s in seqs], max_length))


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
    empty = np.zeros(0, np.int64)
    histories = [per_user.of(p) if ok else empty for p, ok in zip(pos, found)]
    return EvaluationSequences(user_ids=users.astype(object), inputs=left_pad(histories, max_length),
                               targets=np.asarray(item_index)[target_rows].astype(np.int64), seen=histories)
