"""A retrieval export with typed features (every type, items / users / context): saved, reloaded
in this process (and by the exporter's own fresh-process check), it answers ``serving_default`` and
``query_with_context`` with exactly the in-memory model's scores; item and user features travel
inside the model, so serving needs only the user id plus the context features by name."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.config import RetrievalModelConfig
from tfrs_lab.data.cold_catalogue import write_cold_catalogue
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.prepared import prepare_dataset
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.export import signatures as sig
from tfrs_lab.export.index import IndexSettings
from tfrs_lab.export.retrieval import export_retrieval
from tfrs_lab.models.retrieval import RetrievalModel
from tfrs_lab.schema import build


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("typed")
    source = write_cold_catalogue(d / "files", users=12, categories=3, warm=3, cold=4, seed=3)
    data = Interactions.from_prepared(prepare_dataset(build(SourceSpec, source, "data.source"), cache_dir=d / "c"))
    split = data.split("leave-last-out")
    vocab = data.vocabularies(split.train, has_user_features=False, title_vocab_size=100, title_max_tokens=4,
                              timestamp_buckets=4)
    tf.keras.utils.set_random_seed(0)
    model = RetrievalModel(vocab, RetrievalModelConfig(embedding_dim=8, id_embedding_dim=8, feature_embedding_dim=4,
                                                       query_features=("timestamp",), candidate_features=()))
    counts = vocab.item_counts[1:].astype(np.float64)
    users = [str(u) for u in vocab.user_ids[:4]]
    export_retrieval(model, d / "export", user_table={}, popularity=counts / counts.sum(), model_name="m", version=1,
                     settings=IndexSettings(kind="brute_force", k=5, max_exclude=5), sample_users=users,
                     recall_queries=np.zeros((1, 8), np.float32), verify=True)
    return model, tf.saved_model.load(str(d / "export" / "m" / "1")), users


def test_every_side_is_in_the_model(exported):
    model, _, _ = exported
    assert [f.name for f in model.item_typed.descriptions] == ["category", "tags", "title", "price", "vector"]
    assert [f.name for f in model.query_typed.descriptions] == ["country", "age", "device", "dwell", "clicked_at"]
    assert [f.name for f in model.context_features] == ["device", "dwell", "clicked_at"]


def test_reloaded_export_gives_the_in_memory_scores(exported):
    model, loaded, users = exported
    user_id = tf.constant(users[:3] + ["nobody"])
    context = {"device": tf.constant(["web", "app", "", "tv"]), "dwell": tf.constant([1.0, 30.0, np.nan, 5.0]),
               "clicked_at": tf.constant([1_600_000_000, 1_600_007_200, 0, 2_000_000_000], tf.int64)}
    out = loaded.signatures[sig.QUERY_CONTEXT](user_id=user_id, **context)
    now = tf.fill([4], tf.cast(tf.timestamp(), tf.int64))
    query = model.query_embedding({"user_id": user_id, "timestamp": now, **context}).numpy()
    ids = out[sig.ITEM_IDS].numpy().astype(str)
    for b in range(3):  # known users: the model's scores; the unknown one gets the popularity fallback
        np.testing.assert_allclose(out[sig.SCORES].numpy()[b],
                                   model.candidate_embedding(tf.constant(ids[b])).numpy() @ query[b], atol=1e-5)
        brute = model.catalogue_embeddings() @ query[b]
        np.testing.assert_allclose(out[sig.SCORES].numpy()[b], np.sort(brute)[::-1][:5], atol=1e-5)
    # serving_default: the same model with every context feature missing
    default = loaded.signatures[sig.SERVING_DEFAULT](user_id=user_id[:3])
    missing = {"user_id": user_id[:3], "timestamp": now[:3]}
    query = model.query_embedding(missing).numpy()
    for b in range(3):
        np.testing.assert_allclose(default[sig.SCORES].numpy()[b], np.sort(model.catalogue_embeddings() @ query[b])[::-1][:5],
                                   atol=1e-5)


def test_context_changes_the_answer(exported):
    _, loaded, users = exported
    fn = loaded.signatures[sig.QUERY_CONTEXT]
    a = fn(user_id=tf.constant(users[:1]), device=tf.constant(["web"]), dwell=tf.constant([0.0]),
           clicked_at=tf.constant([1_600_000_000], tf.int64))[sig.SCORES].numpy()
    b = fn(user_id=tf.constant(users[:1]), device=tf.constant(["app"]), dwell=tf.constant([59.0]),
           clicked_at=tf.constant([1_600_020_000], tf.int64))[sig.SCORES].numpy()
    assert not np.allclose(a, b)
