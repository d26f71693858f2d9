"""A transformer trained on planted drift beats popularity, and its export answers like the model."""

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.config import load_config
from tfrs_lab.data.splits import leave_last_out_split
from tfrs_lab.evaluation.metrics import ranking_metrics, target_ranks
from tfrs_lab.export import signatures as sig
from tfrs_lab.export.index import IndexSettings
from tfrs_lab.export.verify import answer_in_fresh_process
from tfrs_lab.export.sequential import export_sequential
from tfrs_lab.training.sequential import (TASK, build_model, build_sequences, evaluate_sequences, query_vectors,
                                          sequence_dataset)

pytestmark = pytest.mark.slow

MODEL = ["model.max_length=30", "model.embedding_dim=32", "model.num_blocks=1", "model.dropout=0.1",
         "train.learning_rate=0.005", "train.batch_size=32", "train.optimizer=adam"]  # build_model compiles it


@pytest.fixture(scope="module")
def trained(synthetic_data):
    cfg = load_config("sequential", overrides=MODEL)
    tf.keras.utils.set_random_seed(0)
    split = leave_last_out_split(synthetic_data.ratings)
    vocab = TASK.vocabularies(cfg, synthetic_data, split.train)
    train, validation, test = build_sequences(synthetic_data, split, vocab, cfg.model.max_length)
    model = build_model(cfg, vocab)
    model.fit(sequence_dataset(train, 32, 10_000, seed=0), epochs=12, verbose=0)
    return model, vocab, test


def test_beats_popularity_on_planted_drift(trained):
    model, vocab, test = trained
    ours = evaluate_sequences(model, test, (10,))
    counts = vocab.item_counts[1:].astype(np.float32)[:, None]
    ranks = target_ranks(np.ones((len(test.targets), 1), np.float32), counts, test.targets - 1,
                         exclude=[s - 1 for s in test.seen])
    pop = ranking_metrics(ranks, (10,))
    assert ours["recall@10"] > 1.5 * pop["recall@10"] and ours["recall@10"] > pop["recall@10"] + 0.05, (ours, pop)
    assert ours["ndcg@10"] > pop["ndcg@10"] and ours["mrr"] > pop["mrr"]


def _export(trained, path, kind, k=10, verify=False, synthetic_data=None):
    model, vocab, test = trained
    histories = [[str(vocab.movie_ids[i - 1]) for i in row if i > 0] for row in test.inputs[:6]]
    counts = vocab.item_counts[1:].astype(np.float64)
    user_histories = np.full((len(vocab.user_ids), 40), "", dtype=object)
    for u, h in enumerate(histories):
        user_histories[u, 40 - len(h):] = h
    result = export_sequential(
        model, path, movie_ids=vocab.movie_ids, popularity=counts / counts.sum(), user_ids=vocab.user_ids,
        user_histories=user_histories, model_name="sequential", version=2,
        settings=IndexSettings(kind=kind, k=k, max_exclude=40), sample_histories=histories,
        recall_queries=query_vectors(model, test.inputs), verify=verify)
    return result, histories


def _exact_top_k(model, vocab, histories, k):
    """Independent reference: in-memory scores of the whole catalogue, history movies removed."""
    row_of = {m: i for i, m in enumerate(vocab.movie_ids)}
    length = model.hp.max_length
    inputs = np.array([[0] * (length - len(h[-length:])) + [row_of[m] + 1 for m in h[-length:]] for h in histories],
                      np.int32)
    scores = query_vectors(model, inputs) @ model.item_embeddings().numpy().T
    for i, h in enumerate(histories):
        scores[i, [row_of[m] for m in h]] = -np.inf
    return [[str(vocab.movie_ids[j]) for j in row] for row in np.argsort(-scores, axis=1, kind="stable")[:, :k]]


@pytest.mark.parametrize("kind", ["brute_force", "scann"])
def test_export_reloads_with_the_same_top_k(trained, tmp_path, kind):
    model, vocab, _ = trained
    result, histories = _export(trained, tmp_path, kind)
    assert result.path == tmp_path / "sequential" / "2"
    assert (result.path / "assets.extra" / sig.WARMUP_FILE).stat().st_size > 0
    width = max(map(len, histories))
    padded = [[""] * (width - len(h)) + h for h in histories]
    if kind == "brute_force":
        fresh = answer_in_fresh_process(result.path, import_scann=False, inputs={sig.HISTORY: padded})
    else:  # the ScaNN ops are registered in this process already (the index was built here)
        out = tf.saved_model.load(str(result.path)).signatures[sig.SERVING_DEFAULT](history=tf.constant(padded))
        fresh = {"item_ids": out[sig.ITEM_IDS].numpy().astype(str).tolist()}
    expected = _exact_top_k(model, vocab, histories, 10)
    if kind == "brute_force":
        assert fresh["item_ids"] == expected
        assert fresh["scann_imported"] is False
        assert b"Scann" not in (result.path / "saved_model.pb").read_bytes()
    else:
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(fresh["item_ids"], expected)])
        assert overlap >= 0.9 and 0.9 <= result.scann_recall_at_10 <= 1.0


def test_serving_excludes_history_ignores_padding_and_unknown_ids(trained, tmp_path):
    model, vocab, _ = trained
    result, histories = _export(trained, tmp_path, "brute_force", k=20)
    serve = tf.saved_model.load(str(result.path)).signatures[sig.SERVING_DEFAULT]
    h = histories[0]

    def ask(rows):
        out = serve(history=tf.constant(rows, tf.string))
        return out[sig.ITEM_IDS].numpy().astype(str), out[sig.SCORES].numpy()

    ids, scores = ask([h])
    assert ids.shape == (1, 20) and not set(ids[0]) & set(h) and np.all(np.diff(scores[0]) <= 0)
    assert ids[0].tolist() == _exact_top_k(model, vocab, [h], 20)[0]
    # '' anywhere (left, right, inside) and unknown ids change nothing; rows of one batch are independent.
    noisy = [h[:2] + ["", "no-such-movie"] + h[2:] + ["", ""], ["", "", ""] + h + ["no-such-movie"]]
    noisy_ids, _ = ask(noisy)
    assert noisy_ids.tolist() == [ids[0].tolist()] * 2
    # A history longer than max_length: the model reads the newest max_length, all are excluded.
    long_history = [str(m) for m in vocab.movie_ids[:45]]
    long_ids, _ = ask([long_history])
    assert not set(long_ids[0]) & set(long_history)
    assert long_ids[0].tolist() == _exact_top_k(model, vocab, [long_history], 20)[0]
    # Empty or all-unknown histories: the most popular movies, never an error.
    popular = [str(vocab.movie_ids[i]) for i in np.argsort(-vocab.item_counts[1:], kind="stable")[:20]]
    empty_ids, empty_scores = ask([["", ""], ["no-such-movie", ""]])
    assert empty_ids.tolist() == [popular, popular] and np.all(empty_scores > 0)
    unpopular, _ = ask([[popular[0], "no-such-movie"]])
    assert popular[0] not in unpopular[0]
    # By user id: the history stored in the model; unknown users get the popularity answer.
    by_user = tf.saved_model.load(str(result.path)).signatures[sig.RECOMMEND_FOR_USER](
        user_id=tf.constant([str(vocab.user_ids[0]), "no-such-user"]))[sig.ITEM_IDS].numpy().astype(str)
    assert by_user[0].tolist() == ids[0].tolist() and by_user[1].tolist() == popular


def test_explain_cites_the_most_similar_movies_of_the_given_history(trained, tmp_path):
    model, vocab, _ = trained
    result, histories = _export(trained, tmp_path, "brute_force", verify=True)  # the reload check covers explain
    h = histories[0]
    noisy = h[:2] + ["", "no-such-movie", h[0]] + h[2:]
    rows = [noisy, [""] * len(noisy)]  # a repeat, a pad and an unknown id count for nothing
    loaded = tf.saved_model.load(str(result.path))
    out = loaded.signatures[sig.EXPLAIN](history=tf.constant(rows, tf.string))
    ids = out[sig.ITEM_IDS].numpy().astype(str)
    because, scores = out[sig.BECAUSE_IDS].numpy().astype(str), out[sig.BECAUSE_SCORES].numpy()
    plain = loaded.signatures[sig.SERVING_DEFAULT](history=tf.constant(rows, tf.string))[sig.ITEM_IDS]
    assert because.shape == (2, 10, 3) and ids.tolist() == plain.numpy().astype(str).tolist()
    row_of = {m: i for i, m in enumerate(vocab.movie_ids)}
    vectors = model.item_embeddings().numpy()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for j, movie in enumerate(ids[0]):
        cos = {m: float(unit[row_of[movie]] @ unit[row_of[m]]) for m in set(h)}
        want = sorted(cos, key=lambda m: -cos[m])[:3]
        assert because[0, j].tolist() == want
        np.testing.assert_allclose(scores[0, j], [cos[m] for m in want], rtol=1e-4, atol=1e-5)
    assert (because[1] == "").all() and np.isneginf(scores[1]).all()  # an empty history explains nothing
