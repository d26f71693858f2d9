"""Ranking architectures learn planted structure; NeuMF pre-training and clipping hold (negatives: test_ranking_negatives.py)."""

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.config import load_config
from tfrs_lab.data.features import build_vocabularies, movie_rows
from tfrs_lab.data.splits import make_split
from tfrs_lab.evaluation.metrics import ranking_metrics, ranks_from_scores, target_ranks
from tfrs_lab.models.ranking import RankingModel
from tfrs_lab.training.evaluate import seen_lists
from tfrs_lab.training.ranking import (explicit_metrics, hyperparameters, item_rating_table, ranking_eval,
                                       split_columns)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["mf", "gmf", "mlp", "neumf", "dcn", "autorec"])
def test_explicit_beats_the_global_mean(ranking_data, train_ranking_model, trained_dcn, architecture):
    t = trained_dcn if architecture == "dcn" else train_ranking_model(ranking_data, architecture)
    ours = explicit_metrics(t.model, t.cols["test"])
    mean = t.cols["train"]["label"].mean()
    baseline = float(np.sqrt(np.mean((t.cols["test"]["label"] - mean) ** 2)))
    # Planted: in-taste movies are rated ~1.5 stars higher, so a learner explains much of the variance.
    assert ours["rmse"] < baseline - 0.04, (ours, baseline)
    assert ours["mae"] < ours["rmse"]


def test_autorec_table_holds_training_ratings_only(ranking_data):
    """The autorec architecture's movie table: every training rating at (movie, user), nothing of
    the validation or test rows (a held-out rating is predicted from the other users' ratings)."""
    cfg = load_config("ranking", overrides=["model.architecture=autorec", "model.autorec.hidden_units=16"])
    s = make_split("hash", ranking_data.ratings)
    vocab = build_vocabularies(ranking_data.ratings, ranking_data.movies, s.train, has_user_features=True,
                               title_vocab_size=100, title_max_tokens=8, timestamp_buckets=20)
    cols = split_columns(ranking_data, s, hyperparameters(cfg))
    assert "history" not in cols["train"]  # autorec ignores model.history_length
    table = item_rating_table(vocab, cols["train"])
    assert table.shape == (vocab.num_movies, vocab.num_users) and not table[0].any() and not table[:, 0].any()
    user_index = {u: i + 1 for i, u in enumerate(vocab.user_ids)}
    movie_index = {m: i + 1 for i, m in enumerate(vocab.movie_ids)}
    rows = [movie_index[m] for m in cols["train"]["movie_id"]]
    columns = [user_index[u] for u in cols["train"]["user_id"]]
    np.testing.assert_array_equal(table[rows, columns], cols["train"]["label"])
    assert np.count_nonzero(table) == len(rows)  # nothing else: validation and test pairs stay 0


@pytest.mark.slow
def test_svdpp_history_beats_the_global_mean_and_never_sees_evaluated_rows(trained_mf_history):
    t = trained_mf_history
    ours = explicit_metrics(t.model, t.cols["test"])
    mean = t.cols["train"]["label"].mean()
    assert ours["rmse"] < float(np.sqrt(np.mean((t.cols["test"]["label"] - mean) ** 2))) - 0.04, ours
    def pairs(*names: str) -> set:
        return {p for n in names for p in zip(t.cols[n]["user_id"], t.cols[n]["movie_id"])}

    earlier = {"validation": pairs("train"), "test": pairs("train", "validation")}
    for name in ("validation", "test"):  # histories hold movies from earlier splits only
        cols = t.cols[name]
        assert cols["history"].shape == (len(cols["user_id"]), 10) and (cols["history"] != "").any()
        assert all(m == "" or (u, m) in earlier[name] for u, row in zip(cols["user_id"], cols["history"]) for m in row)
        assert not any(m == target for target, row in zip(cols["movie_id"], cols["history"]) for m in row)


@pytest.mark.slow
@pytest.mark.parametrize("architecture, loss", [("mf", "pointwise"), ("neumf", "pointwise"), ("mf", "pairwise"),
                                                ("mf", "listwise")])
def test_implicit_beats_popularity_on_leave_last_out(ranking_data, train_ranking_model, architecture, loss):
    t = train_ranking_model(ranking_data, architecture, objective="implicit", split="leave-last-out", epochs=5,
                            overrides=("model.embedding_l2=0.0",), loss=loss)
    history = {k: np.concatenate([t.cols["train"][k], t.cols["validation"][k]]) for k in ("user_id", "movie_id")}
    ours = ranking_eval(t.model, t.vocab, t.cols["test"], protocol="leave-last-out", ks=(10,), history=history)
    targets = movie_rows(t.vocab, t.cols["test"]["movie_id"])
    seen = seen_lists(t.cols["test"]["user_id"], history["user_id"], movie_rows(t.vocab, history["movie_id"]))
    popularity = t.vocab.item_counts[1:].astype(np.float32)[:, None]
    ranks = target_ranks(np.ones((len(targets), 1), np.float32), popularity, targets, exclude=seen)
    pop = ranking_metrics(ranks, (10,))
    assert ours["recall@10"] > pop["recall@10"] + 0.05, (ours, pop)
    assert ours["ndcg@10"] > pop["ndcg@10"]


def _batch(vocab, n=16):
    rng = np.random.default_rng(1)
    return {"user_id": tf.constant(rng.choice(vocab.user_ids, n).astype(str)),
            "movie_id": tf.constant(rng.choice(vocab.movie_ids, n).astype(str))}


def test_neumf_pretraining_copies_gmf_and_mlp_weights(trained_dcn):
    vocab = trained_dcn.vocab
    cfg = load_config("ranking", overrides=["model.mlp_layers=[16, 8]", "model.embedding_dim=8",
                                              "model.history_length=0"])
    tf.keras.utils.set_random_seed(3)
    gmf, mlp, neumf = (RankingModel(vocab, hyperparameters(cfg, a), global_offset=o)
                       for a, o in (("gmf", 3.0), ("mlp", 4.0), ("neumf", 0.0)))
    batch = _batch(vocab)
    for m in (gmf, mlp, neumf):
        m(batch)
    # Make the pretrained biases non-trivial so copying them is observable.
    gmf.movie_bias.embeddings.assign(tf.random.normal(gmf.movie_bias.embeddings.shape))
    neumf.init_neumf_from(gmf, mlp, alpha=0.3)
    np.testing.assert_array_equal(neumf.gmf.ids.user.embeddings.numpy(), gmf.gmf.ids.user.embeddings.numpy())
    np.testing.assert_array_equal(neumf.mlp.ids.movie.embeddings.numpy(), mlp.mlp.ids.movie.embeddings.numpy())
    for mine, theirs in zip(neumf.mlp.hidden, mlp.mlp.hidden):
        np.testing.assert_array_equal(mine.kernel.numpy(), theirs.kernel.numpy())
    # The fused predictive layer makes NeuMF exactly the alpha-mix of the two pretrained models.
    expected = 0.3 * gmf(batch).numpy() + 0.7 * mlp(batch).numpy()
    np.testing.assert_allclose(neumf(batch).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_ranks_from_scores_matches_target_ranks_ties_and_exclusions():
    scores = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]], np.float32)
    # Row 0: target 1 ties with item 2 (pessimistic rank 1); excluding item 2 makes it first.
    assert ranks_from_scores(scores.copy(), np.array([1, 3])).tolist() == [1, 3]
    assert ranks_from_scores(scores.copy(), np.array([1, 3]), [np.array([2]), np.array([0, 3])]).tolist() == [0, 2]
    q, items = np.eye(2, dtype=np.float32), scores.T.copy()
    np.testing.assert_array_equal(target_ranks(q, items, np.array([1, 3]), exclude=[np.array([2]), np.array([0])]),
                                  ranks_from_scores(scores.copy(), np.array([1, 3]), [np.array([2]), np.array([0])]))


def test_predictions_are_clipped_to_the_rating_range(trained_dcn):
    model, batch = trained_dcn.model, trained_dcn.cols["test"]
    feats = {k: tf.constant(v[:32]) for k, v in batch.items()}
    old = model.global_bias.numpy()
    try:
        for offset, bound in ((100.0, 5.0), (-100.0, 1.0)):
            model.global_bias.assign(offset)
            assert np.all(model.predict_scores(feats).numpy() == bound)
            assert np.all(np.abs(model(feats).numpy()) > 50)  # the raw output itself is not clipped
    finally:
        model.global_bias.assign(old)
    preds = model.predict_scores(feats).numpy()
    assert np.all((preds >= 1.0) & (preds <= 5.0))


def test_catalogue_scoring_in_chunks_equals_scoring_whole_rows(trained_mf_history, monkeypatch):
    """score_matrix with a tiny pair budget (7 history entries: one (row, movie) pair per chunk with a
    10-item history) gives the scores of the whole [rows x catalogue] block at once, history included."""
    import tfrs_lab.training.ranking as ranking
    t = trained_mf_history
    queries = {k: v[:5] for k, v in t.cols["test"].items()}
    assert queries["history"].shape[1] == 10
    whole = np.concatenate([s for _, s in ranking.score_matrix(t.model, queries, batch_size=5)])
    monkeypatch.setattr(ranking, "SCORE_PAIR_BUDGET", 7)
    chunked = np.concatenate([s for _, s in ranking.score_matrix(t.model, queries, batch_size=5)])
    assert whole.shape == (5, len(t.vocab.movie_ids))
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
