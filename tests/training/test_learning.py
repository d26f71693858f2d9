"""The retrieval model learns planted structure, and its export answers like the in-memory model."""

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.config import load_config
from tfrs_lab.data.features import build_vocabularies, movie_rows
from tfrs_lab.data.splits import make_split
from tfrs_lab.evaluation.metrics import ranking_metrics, target_ranks
from tfrs_lab.export import signatures as sig
from tfrs_lab.export.index import IndexSettings
from tfrs_lab.export.retrieval import export_retrieval
from tfrs_lab.export.verify import answer_in_fresh_process
from tfrs_lab.models.retrieval import RetrievalModel
from tfrs_lab.training.evaluate import evaluate, query_embeddings, seen_lists
from tfrs_lab.training.common import make_dataset
from tfrs_lab.training.retrieval import (concat_columns, hyperparameters, resolve_history_length, serving_user_table,
                                         split_columns)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(synthetic_data):
    """A model trained for a few epochs on the leave-last-out split of the synthetic data."""
    cfg = load_config("retrieval", overrides=["data.split=leave-last-out"])
    tf.keras.utils.set_random_seed(0)
    split = make_split("leave-last-out", synthetic_data.ratings)
    vocab = build_vocabularies(synthetic_data.ratings, synthetic_data.movies, split.train,
                               has_user_features=True, title_vocab_size=1000, title_max_tokens=8,
                               timestamp_buckets=20)
    hp = hyperparameters(resolve_history_length(cfg, synthetic_data, split.train), True)
    cols = split_columns(synthetic_data, split, hp)
    model = RetrievalModel(vocab, hp)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.005))
    model.fit(make_dataset(cols["train"], 128, 10_000, seed=0), epochs=8, verbose=0)
    return model, vocab, cols, serving_user_table(synthetic_data, vocab, hp)


def test_beats_popularity_on_planted_structure(trained):
    model, vocab, cols, table = trained
    history = concat_columns(cols["train"], cols["validation"])
    ours = evaluate(model, vocab, cols["test"], protocol="leave-last-out", ks=(10,), history=history)
    # Popularity: every user gets the catalogue ordered by training counts, seen items excluded.
    popularity = vocab.item_counts[1:].astype(np.float32)[:, None]
    targets = movie_rows(vocab, cols["test"]["movie_id"])
    seen = seen_lists(cols["test"]["user_id"], history["user_id"], movie_rows(vocab, history["movie_id"]))
    ranks = target_ranks(np.ones((len(targets), 1), np.float32), popularity, targets, exclude=seen)
    pop = ranking_metrics(ranks, (10,))
    assert ours["recall@10"] > 1.5 * pop["recall@10"] and ours["recall@10"] > pop["recall@10"] + 0.05, (ours, pop)
    assert ours["ndcg@10"] > pop["ndcg@10"]


@pytest.mark.parametrize("kind", ["brute_force", "scann"])
def test_export_reloads_in_a_fresh_process_with_the_same_top_k(trained, tmp_path, kind):
    model, vocab, cols, table = trained
    users = [str(u) for u in vocab.user_ids[:6]]
    settings = IndexSettings(kind=kind, k=10, max_exclude=5)
    result = export_retrieval(
        model, tmp_path, user_table=table, popularity=vocab.item_counts[1:] / vocab.item_counts.sum(),
        model_name="retrieval", version=3, settings=settings, sample_users=users,
        recall_queries=query_embeddings(model, cols["test"]), verify=False)
    assert result.path == tmp_path / "retrieval" / "3"
    fresh = answer_in_fresh_process(result.path, users, import_scann=(kind == "scann"))
    # Independent reference: exact top-10 from the in-memory towers (serving time clips to the last
    # training timestamp, and user features come from the training table).
    rows = {name: col[model.user_lookup(tf.constant(users)).numpy()] for name, col in table.items()}
    feats = {"user_id": np.array(users, object), "timestamp": np.full(len(users), vocab.timestamp_max), **rows}
    scores = query_embeddings(model, feats) @ model.catalogue_embeddings().T
    expected = [[str(vocab.movie_ids[i]) for i in row] for row in np.argsort(-scores, axis=1, kind="stable")[:, :10]]
    if kind == "brute_force":
        assert fresh["item_ids"] == expected
        assert fresh["scann_imported"] is False
        assert b"Scann" not in (result.path / "saved_model.pb").read_bytes()
    else:
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(fresh["item_ids"], expected)])
        assert overlap >= 0.9
        assert 0.9 <= result.scann_recall_at_10 <= 1.0


def test_serving_signatures_handle_unknown_users_and_exclusions(trained, tmp_path):
    model, vocab, _, table = trained
    result = export_retrieval(
        model, tmp_path, user_table=table, popularity=vocab.item_counts[1:] / vocab.item_counts.sum(),
        model_name="retrieval", version=1, settings=IndexSettings(kind="brute_force", k=5, max_exclude=5),
        sample_users=[str(vocab.user_ids[0])], recall_queries=np.zeros((0, 1)), verify=False)
    loaded = tf.saved_model.load(str(result.path))
    known = str(vocab.user_ids[0])
    out = loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant([known, "no-such-user"]))
    ids = out[sig.ITEM_IDS].numpy().astype(str)
    assert ids.shape == (2, 5) and out[sig.SCORES].shape == (2, 5)
    most_popular = [str(vocab.movie_ids[i]) for i in np.argsort(-vocab.item_counts[1:], kind="stable")[:5]]
    assert ids[1].tolist() == most_popular  # popularity fallback, not a crash
    excluded = loaded.signatures[sig.EXCLUDE_SEEN](
        user_id=tf.constant([known, "no-such-user"]),
        exclude_item_ids=tf.constant([[ids[0][0], ids[0][2]], [most_popular[0], ""]]))
    got = excluded[sig.ITEM_IDS].numpy().astype(str)
    assert ids[0][0] not in got[0] and ids[0][2] not in got[0] and len(set(got[0])) == 5
    assert got[1].tolist() == most_popular[1:] + [str(vocab.movie_ids[np.argsort(-vocab.item_counts[1:], kind="stable")[5]])]
    explicit = loaded.signatures[sig.QUERY_FEATURES](
        user_id=tf.constant([known]), timestamp=tf.constant([vocab.timestamp_max], tf.int64),
        bucketized_user_age=tf.constant([25.0]), user_gender=tf.constant([1], tf.int64),
        user_occupation_label=tf.constant([99], tf.int64),  # unknown occupation -> OOV bucket
        history=tf.constant([[str(vocab.movie_ids[0]), "no-such-movie", ""]]))
    assert explicit[sig.ITEM_IDS].shape == (1, 5)


def test_scann_exclusion_signature_fetches_past_the_rescored_candidates(trained, tmp_path):
    """ScaNN returns at most its re-scored candidates; `recommend_excluding` asks for k + max_exclude.
    A tiny `num_reordering_candidates` must not shrink the answer (it once broke the graph)."""
    model, vocab, _, table = trained
    settings = IndexSettings(kind="scann", k=10, max_exclude=20, num_reordering_candidates=5)
    result = export_retrieval(
        model, tmp_path, user_table=table, popularity=vocab.item_counts[1:] / vocab.item_counts.sum(),
        model_name="retrieval", version=1, settings=settings, sample_users=[str(vocab.user_ids[0])],
        recall_queries=np.zeros((0, 1)), verify=False)
    loaded = tf.saved_model.load(str(result.path))
    users = tf.constant([str(vocab.user_ids[0]), "no-such-user"])
    first = loaded.signatures[sig.SERVING_DEFAULT](user_id=users)[sig.ITEM_IDS].numpy().astype(str)
    out = loaded.signatures[sig.EXCLUDE_SEEN](user_id=users, exclude_item_ids=tf.constant(first[:, :3]))
    got = out[sig.ITEM_IDS].numpy().astype(str)
    assert got.shape == (2, 10)
    for row, excluded in zip(got, first[:, :3]):
        assert not set(row) & set(excluded) and "" not in row
