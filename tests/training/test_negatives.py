"""Retrieval negatives: the mixed-negative logQ correction and accidental-hit mask on hand-built
batches, hard-negative mining, learning with each option, and bad option values rejected."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.config import RetrievalModelConfig, load_config
from tfrs_lab.data.features import build_vocabularies, movie_rows
from tfrs_lab.data.splits import make_split
from tfrs_lab.evaluation.metrics import ranking_metrics, target_ranks
from tfrs_lab.models.retrieval import RetrievalModel, mixed_sampling_probability
from tfrs_lab.train import main
from tfrs_lab.training.common import make_dataset
from tfrs_lab.training.evaluate import evaluate, seen_lists
from tfrs_lab.training.retrieval import concat_columns, hyperparameters, resolve_history_length, split_columns

# A catalogue of M = 4 movies with training counts 3, 1, 0, 4 (movie indices 1..4; 0 = unknown):
# add-one smoothed over the M + 1 rows, p = (counts + 1) / 13.
COUNTS = np.array([0, 3, 1, 0, 4])
P = (COUNTS + 1) / 13.0


def tiny_model(**hp) -> RetrievalModel:
    """A RetrievalModel over the 4-movie catalogue above, ids and features unused (the loss is fed
    hand-built embeddings)."""
    vocab = SimpleNamespace(user_ids=np.array(["u1", "u2"], object), movie_ids=np.array(["a", "b", "c", "d"], object),
                            num_users=3, num_movies=5, item_counts=COUNTS, has_user_features=False)
    base = dict(query_features=(), candidate_features=(), embedding_dim=2, temperature=0.5)
    return RetrievalModel(vocab, RetrievalModelConfig(**{**base, **hp}))


# Two queries (positives: movie 1 for query 0, movie 2 for query 1) and two uniform draws (movies 3
# and 1: the second is query 0's own positive, an accidental hit for query 0 only).
QUERY = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
CANDIDATE = np.array([[0.8, 0.6], [0.6, 0.8], [-1.0, 0.0], [0.0, -1.0]], np.float32)
INDEX = np.array([1, 2, 3, 1], np.int64)


def softmax_loss(rows: list[list[float]]) -> float:
    """sum over rows of -log softmax(row)[positive], positive = the row's first entry."""
    return sum(-row[0] + math.log(sum(math.exp(x) for x in row)) for row in rows)


def test_mixed_sampling_probability_by_hand():
    # Q(j) = (B p_j + N / M) / (B + N) with B = 2, N = 2, M = 4: (2 p_j + 0.5) / 4.
    p = tf.constant([0.5, 0.1, 0.4])
    np.testing.assert_allclose(mixed_sampling_probability(p, 2, 2, 4).numpy(), [0.375, 0.175, 0.325], rtol=1e-6)
    np.testing.assert_allclose(mixed_sampling_probability(p, 2, 0, 4).numpy(), [0.5, 0.1, 0.4])  # in-batch only


def test_mixed_negatives_loss_is_the_corrected_logits_with_accidental_hits_masked():
    model = tiny_model(uniform_negatives=2)
    loss = float(model.softmax_loss(tf.constant(QUERY), tf.constant(CANDIDATE), tf.constant(INDEX)))
    # Corrected logits l_bc = <q_b, v_c> / 0.5 - log Q(j_c), Q(j) = (2 p_j + 2/4) / 4.
    q = {j: (2 * P[j] + 0.5) / 4 for j in (1, 2, 3)}  # Q(1) = 0.2212, Q(2) = 0.2019, Q(3) = 0.1635
    dots = QUERY @ CANDIDATE.T  # [[0.8, 0.6, -1, 0], [0.6, 0.8, 0, -1]]
    logits = [[dots[b, c] / 0.5 - math.log(q[j]) for c, j in enumerate(INDEX)] for b in range(2)]
    # Query 0: column 3 holds its own positive (movie 1) drawn again: masked out of its softmax.
    expected = softmax_loss([logits[0][:3], [logits[1][1], logits[1][0], logits[1][2], logits[1][3]]])
    assert loss == pytest.approx(expected, rel=1e-5)
    # Not a per-stream correction (in-batch columns by p_j, uniform ones by 1/M): movie 1 would get
    # two different corrections in one row.
    per_stream = [[dots[b, c] / 0.5 - math.log(P[j] if c < 2 else 0.25) for c, j in enumerate(INDEX)]
                  for b in range(2)]
    assert abs(loss - softmax_loss([per_stream[0][:3], [per_stream[1][1], per_stream[1][0], *per_stream[1][2:]]])) > 0.005
    # The correction matters: without it the loss differs.
    plain = tiny_model(uniform_negatives=2, logq_correction=False)
    uncorrected = float(plain.softmax_loss(tf.constant(QUERY), tf.constant(CANDIDATE), tf.constant(INDEX)))
    assert abs(uncorrected - expected) > 0.05
    # And the mask matters: keeping the accidental hit in query 0's softmax raises the loss.
    unmasked = tiny_model(uniform_negatives=2, remove_accidental_hits=False)
    kept = float(unmasked.softmax_loss(tf.constant(QUERY), tf.constant(CANDIDATE), tf.constant(INDEX)))
    assert kept == pytest.approx(softmax_loss([logits[0], [logits[1][1], logits[1][0], *logits[1][2:]]]), rel=1e-5)
    assert kept > expected + 0.05


def test_hard_negatives_keep_only_the_highest_corrected_negative():
    model = tiny_model(uniform_negatives=2, num_hard_negatives=1)
    loss = float(model.softmax_loss(tf.constant(QUERY), tf.constant(CANDIDATE), tf.constant(INDEX)))
    q = {j: (2 * P[j] + 0.5) / 4 for j in (1, 2, 3)}
    dots = QUERY @ CANDIDATE.T
    logits = [[dots[b, c] / 0.5 - math.log(q[j]) for c, j in enumerate(INDEX)] for b in range(2)]
    # Each query keeps its positive and its single best negative (query 0: column 1; query 1: column 0).
    expected = softmax_loss([[logits[0][0], max(logits[0][1:3])], [logits[1][1], max(logits[1][0], *logits[1][2:])]])
    assert loss == pytest.approx(expected, rel=1e-5)


def test_uniform_draws_cover_the_catalogue_and_never_the_unknown_row():
    model = tiny_model(uniform_negatives=3)
    tf.keras.utils.set_random_seed(0)
    seen = set()
    features = {"user_id": tf.constant(["u1", "u2"]), "movie_id": tf.constant(["a", "b"])}
    original = model.softmax_loss
    model.softmax_loss = lambda q, c, index, weight=None: (seen.update(index.numpy()[2:].tolist()),
                                                           original(q, c, index, weight))[1]
    for _ in range(30):
        assert np.isfinite(float(model.compute_loss(features)))
    assert seen == {1, 2, 3, 4}


@pytest.fixture(scope="module")
def leave_last_out(synthetic_data):
    split = make_split("leave-last-out", synthetic_data.ratings)
    vocab = build_vocabularies(synthetic_data.ratings, synthetic_data.movies, split.train, has_user_features=True,
                               title_vocab_size=1000, title_max_tokens=8, timestamp_buckets=20)
    return split, vocab


@pytest.mark.slow
@pytest.mark.parametrize("option", ["model.num_hard_negatives=48", "model.uniform_negatives=64"])
def test_each_negatives_option_beats_popularity_on_planted_structure(synthetic_data, leave_last_out, option):
    split, vocab = leave_last_out
    cfg = load_config("retrieval", overrides=["data.split=leave-last-out", option])
    tf.keras.utils.set_random_seed(0)
    hp = hyperparameters(resolve_history_length(cfg, synthetic_data, split.train), True)
    cols = split_columns(synthetic_data, split, hp)
    model = RetrievalModel(vocab, hp)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.005))
    model.fit(make_dataset(cols["train"], 128, 10_000, seed=0), epochs=8, verbose=0)
    history = concat_columns(cols["train"], cols["validation"])
    ours = evaluate(model, vocab, cols["test"], protocol="leave-last-out", ks=(10,), history=history)
    targets = movie_rows(vocab, cols["test"]["movie_id"])
    seen = seen_lists(cols["test"]["user_id"], history["user_id"], movie_rows(vocab, history["movie_id"]))
    popularity = vocab.item_counts[1:].astype(np.float32)[:, None]
    pop = ranking_metrics(target_ranks(np.ones((len(targets), 1), np.float32), popularity, targets, exclude=seen),
                          (10,))
    assert ours["recall@10"] > 1.5 * pop["recall@10"] and ours["recall@10"] > pop["recall@10"] + 0.05, (ours, pop)
    assert ours["ndcg@10"] > pop["ndcg@10"]


@pytest.mark.parametrize("args, message", [
    (["--set", "model.num_hard_negatives=-1"], "model.num_hard_negatives must be >= 0, got -1"),
    (["--set", "model.uniform_negatives=-5"], "model.uniform_negatives must be >= 0, got -5"),
    (["--set", "model.uniform_negatives=many"], "model.uniform_negatives"),
])
def test_bad_negatives_options_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, args, message):
    assert main(["retrieval", "--dataset", "synthetic", *args, "--output-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.strip().count("\n") == 0, err
    assert list(tmp_path.iterdir()) == []
