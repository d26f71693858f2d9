"""The reload check exporters run before publishing: a fresh process must give the in-memory answers."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.export import signatures as sig
from tfrs_lab.export.verify import require_same_answers


class _Echo(tf.Module):
    """Answers each user with ``[user, "m1"]`` scored ``[2, 1]``."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID)])
    def serve(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        ids = tf.stack([user_id, tf.fill(tf.shape(user_id), "m1")], axis=1)
        return {sig.ITEM_IDS: ids, sig.SCORES: tf.tile([[2.0, 1.0]], [tf.shape(user_id)[0], 1])}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("echo")
    module = _Echo()
    tf.saved_model.save(module, str(path), signatures={sig.SERVING_DEFAULT: module.serve})
    return path, module


def test_same_answers_pass_and_different_ids_or_scores_raise(saved):
    path, module = saved
    inputs = {sig.USER_ID: ["u1", "u2"]}
    here = module.serve(tf.constant(inputs[sig.USER_ID]))
    require_same_answers(path, here, inputs=inputs, import_scann=False, compare_scores=True)

    other_ids = {sig.ITEM_IDS: np.array([["u1", "m1"], ["u2", "m2"]]), sig.SCORES: here[sig.SCORES]}
    with pytest.raises(RuntimeError, match="answers differently"):
        require_same_answers(path, other_ids, inputs=inputs, import_scann=False)

    other_scores = {sig.ITEM_IDS: here[sig.ITEM_IDS], sig.SCORES: here[sig.SCORES] + 0.5}
    require_same_answers(path, other_scores, inputs=inputs, import_scann=False)  # ids only by default
    with pytest.raises(RuntimeError, match="answers differently"):
        require_same_answers(path, other_scores, inputs=inputs, import_scann=False, compare_scores=True)
