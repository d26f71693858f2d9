"""``explain``: each recommendation comes with the movies of the user's history most like it."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tfrs_lab
from tfrs_lab.export import signatures as sig
from tfrs_lab.export.verify import answer_in_fresh_process

pytestmark = pytest.mark.slow

FAST = ["train.epochs=3", "model.embedding_dim=16", "export.index=brute_force", "export.k=10"]


@pytest.fixture(scope="module")
def explained(tmp_path_factory, synthetic_data):
    cfg = tfrs_lab.load_config("retrieval", overrides=FAST, dataset="synthetic")
    run = tfrs_lab.train("retrieval", config=cfg, data=synthetic_data,
                         output_dir=tmp_path_factory.mktemp("explain") / "run", verbose=0)
    return run, tf.saved_model.load(str(run.export_path))


def _rated(data, user: str) -> list[str]:
    return sorted(set(data.ratings["movie_id"][data.ratings["user_id"] == user].astype(str)))


def _by_hand(run, history: list[str], movie: str, e: int = sig.MAX_BECAUSE) -> tuple[list[str], np.ndarray]:
    """The ``e`` movies of ``history`` with the highest cosine similarity to ``movie`` (candidate tower)."""
    ids = [m.decode() for m in run.model.movie_ids.numpy()]
    vectors = run.model.catalogue_embeddings()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    row = {m: i for i, m in enumerate(ids)}
    cos = np.array([unit[row[movie]] @ unit[row[h]] for h in history])
    best = np.argsort(-cos, kind="stable")[:e]
    return [history[i] for i in best], cos[best]


def test_explanations_are_the_users_most_similar_history_movies(explained, synthetic_data):
    run, loaded = explained
    users = [str(u) for u in np.unique(synthetic_data.ratings["user_id"])[:5]]
    out = loaded.signatures[sig.EXPLAIN](user_id=tf.constant(users))
    plain = loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant(users))
    assert (out[sig.ITEM_IDS].numpy() == plain[sig.ITEM_IDS].numpy()).all()  # the same recommendations
    because = out[sig.BECAUSE_IDS].numpy().astype(str)
    scores = out[sig.BECAUSE_SCORES].numpy()
    assert because.shape == (5, 10, 3) and scores.shape == (5, 10, 3) and scores.dtype == np.float32
    for u, user in enumerate(users):
        history = _rated(synthetic_data, user)  # synthetic users rate 25 movies: all of them are stored
        for j, movie in enumerate(out[sig.ITEM_IDS].numpy()[u].astype(str)):
            want_ids, want_cos = _by_hand(run, history, movie)
            assert list(because[u, j]) == want_ids, (user, movie)
            np.testing.assert_allclose(scores[u, j], want_cos, rtol=1e-4, atol=1e-5)
            assert np.all(np.diff(scores[u, j]) <= 0)


def test_a_user_without_history_gets_pads(explained):
    _, loaded = explained
    out = loaded.signatures[sig.EXPLAIN](user_id=tf.constant(["no-such-user"]))
    assert (out[sig.ITEM_IDS].numpy() != b"").all()  # the popularity answer ...
    assert (out[sig.BECAUSE_IDS].numpy() == b"").all()  # ... explained by nothing
    assert np.isneginf(out[sig.BECAUSE_SCORES].numpy()).all()


def test_explain_answers_the_same_in_a_fresh_process(explained, synthetic_data):
    run, loaded = explained
    users = [str(u) for u in np.unique(synthetic_data.ratings["user_id"])[:3]] + ["no-such-user"]
    here = loaded.signatures[sig.EXPLAIN](user_id=tf.constant(users))
    fresh = answer_in_fresh_process(run.export_path, users, import_scann=False, signature=sig.EXPLAIN)
    assert fresh[sig.BECAUSE_IDS] == here[sig.BECAUSE_IDS].numpy().astype(str).tolist()
    assert fresh[sig.ITEM_IDS] == here[sig.ITEM_IDS].numpy().astype(str).tolist()
