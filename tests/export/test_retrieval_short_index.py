"""The retrieval export when its index returns fewer neighbours than asked (ScaNN returns at most the
points of the leaves it searched: on a catalogue of 1,682 movies about half of them), as a cascade
or a long exclude list asks for: padded with '' / -inf, never a shape error."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfrs_lab.export import signatures as sig
from tfrs_lab.export.retrieval import RetrievalServer


class _Model(tf.Module):
    """Two known users; the query vector is the one-hot of the user's index."""

    def __init__(self) -> None:
        super().__init__()
        self.user_lookup = tf.keras.layers.StringLookup(vocabulary=["u1", "u2"], mask_token=None)

    def query_embedding(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.one_hot(self.user_lookup(features["user_id"]), 3)


class _ShortIndex(tf.Module):
    """Returns 3 neighbours whatever ``k`` asks for, best first."""

    def __call__(self, query: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
        rows = tf.shape(query)[0]
        return tf.tile([[3.0, 2.0, 1.0]], [rows, 1]), tf.tile([["a", "b", "c"]], [rows, 1])


def test_a_short_index_answer_is_padded_and_the_exclusions_still_hold():
    popular = np.array(["f", "e", "d", "c", "b", "a"], dtype=object)
    server = RetrievalServer(_Model(), _ShortIndex(), k=2, max_exclude=4, user_table={}, popular=popular,
                             popular_scores=np.linspace(0.6, 0.1, 6).astype(np.float32))
    out = server.serve_excluding(tf.constant(["u1", "u2", "stranger"]), tf.constant([["a", ""], ["a", "b"], ["f", ""]]))
    assert out[sig.ITEM_IDS].numpy().astype(str).tolist() == [["b", "c"], ["c", ""], ["e", "d"]]
    assert out[sig.SCORES].numpy()[1].tolist() == [1.0, -np.inf]
