"""Per-user item tables of an export stored as integer codes, not strings.

A retrieval export keeps, per known user, the items it excludes (``seen``, [U + 1, w] with w up to
``export.max_exclude``) and the history its query tower reads ([U + 1, history_length]). As strings
these dominate the export's memory at scale (162k users x 500 items = 81M strings: about 0.6 GiB of
Python object pointers, 1.6 GiB as a numpy unicode array and 1.9 GiB as a TF string variable, built
once per table). :class:`ItemTable` holds the same table as int32 codes into a short list of names
(the catalogue, 59k strings), so the SavedModel stores ``[U + 1, w]`` int32 plus the names and
gathers the strings of the requested rows only (:class:`UserTable`); every signature answers as
before. The ranking export's user table (its SVD++ ``history``) and the sequential export's
``recommend_for_user`` histories are kept the same way (:func:`latest_items`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

if TYPE_CHECKING:  # annotations only: export may import data, but needs nothing of it at run time here
    from tfrs_lab.data.interactions import Interactions

__all__ = ["ItemTable", "UserTable", "latest_items"]


@dataclasses.dataclass(frozen=True, eq=False)
class ItemTable:
    """A string table as codes: row ``u`` is ``names[codes[u]]``.

    Attributes:
        names: object ``[V]`` of ``str``; ``names[0] == ''`` (the pad).
        codes: int32 ``[U + 1, w]`` (or ``[U + 1]``) indices into ``names``; 0 pads.
    """

    names: np.ndarray
    codes: np.ndarray

    def __post_init__(self) -> None:
        if not len(self.names) or self.names[0] != "":
            raise ValueError("ItemTable.names must start with '' (the pad)")
        if self.codes.dtype != np.int32:
            raise ValueError(f"ItemTable.codes must be int32, got {self.codes.dtype}")

    @classmethod
    def of(cls, strings: np.ndarray) -> "ItemTable":
        """The table of ``strings`` (str or object array of any shape; '' pads)."""
        strings = np.asarray(strings, dtype=object)
        names, codes = np.unique(np.concatenate([[""], strings.ravel()]).astype(object), return_inverse=True)
        # np.unique sorts: '' is the smallest string, so it is names[0] and codes of '' are 0.
        return cls(names, codes[1:].reshape(strings.shape).astype(np.int32))

    @classmethod
    def from_codes(cls, item_ids: np.ndarray, codes: np.ndarray) -> "ItemTable":
        """The table whose entries are ``item_ids[codes]`` (object ``[m]`` of ``str``; ``codes`` any
        integer array, -1 pads), without a string per entry."""
        if len(item_ids) >= np.iinfo(np.int32).max:
            raise ValueError("ItemTable.from_codes: more items than int32 codes hold")
        shifted = np.add(codes, 1, dtype=np.int32)  # -1 (pad) -> 0 = names[0] = ''
        return cls(np.concatenate([np.array([""], dtype=object), np.asarray(item_ids, dtype=object)]), shifted)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.codes.shape

    def strings(self) -> np.ndarray:
        """object array of ``str`` shaped like :attr:`codes` (for tests and small tables)."""
        return self.names[self.codes]


class UserTable(tf.Module):
    """One per-user table inside a SavedModel: numbers as one variable; strings (an
    :class:`ItemTable`, or a str / object array, encoded here) as an int32 code variable plus the
    names. Variables, not constants: saved once in the checkpoint rather than copied into the graph
    of every signature that reads them."""

    def __init__(self, values: np.ndarray | ItemTable) -> None:
        super().__init__()
        if not isinstance(values, ItemTable) and np.asarray(values).dtype.kind in "OSU":
            values = ItemTable.of(values)
        if isinstance(values, ItemTable):
            self.names = tf.Variable(values.names.astype(str), trainable=False)  # [V]
            self.values = tf.Variable(values.codes, trainable=False)  # int32 [U + 1, ...]
        else:
            self.names = None
            self.values = tf.Variable(np.asarray(values), trainable=False)  # [U + 1, ...]

    @property
    def shape(self) -> tf.TensorShape:
        return self.values.shape

    def gather(self, rows: tf.Tensor) -> tf.Tensor:
        """The table's rows ``rows`` (int [B]): [B, ...] values (strings for a string table)."""
        picked = tf.gather(self.values, rows)
        return picked if self.names is None else tf.gather(self.names, picked)


def latest_items(data: "Interactions", user_ids: np.ndarray, length: int, *, unknown_row: bool = True,
                 oldest_first: bool = False) -> ItemTable:
    """Each user's latest ``length`` items among all of ``data``'s rows, from its sequence index
    (:meth:`Interactions.latest_codes`), as int32 codes: an :class:`ItemTable` ``[U + 1, length]``,
    row 0 the unknown user (all pads), row i + 1 ``user_ids[i]`` (str [U], each one of
    ``data.user_ids``); ``unknown_row=False``: ``[U, length]`` without it. Most recent first, pads
    after; ``oldest_first``: newest last, pads before. No string per entry."""
    users = data.codes_of(user_ids)
    if unknown_row:
        users = np.concatenate([[-1], users])  # -1: the unknown user's empty row
    codes = data.latest_codes(users, length)
    return ItemTable.from_codes(data.item_ids, codes[:, ::-1] if oldest_first else codes)
