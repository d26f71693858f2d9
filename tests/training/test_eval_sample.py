"""Streamed retrieval's evaluation at scale (issue #16): validation ranks a fixed, seeded sample of
users (``eval.validation_users``), test evaluation still ranks every test row, and ``report.html``
reuses the test evaluation's ranks instead of ranking the test rows a second time; on ``hash`` the
plain and the seen-excluded ranks come from one scoring of the catalogue."""

from __future__ import annotations

import numpy as np
import pytest

import tfrs_lab
from tfrs_lab.config import ConfigError, load_config
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.splits import make_split
from tfrs_lab.data.features import build_vocabularies
from tfrs_lab.evaluation.metrics import hit_rate, ranks_from_scores, target_ranks
from tfrs_lab.models.retrieval import RetrievalModel
from tfrs_lab.training import evaluate as evaluate_module
from tfrs_lab.training import report, stream as stream_module
from tfrs_lab.training.runner import run_task
from tfrs_lab.training.retrieval import hyperparameters, split_columns
from tfrs_lab.training.stream import RetrievalStream, rank_split, stream_metrics
from tfrs_lab.training.task import TaskInputs

SYNTHETIC = {"dataset": "synthetic", "synthetic": {"num_users": 120, "num_movies": 80, "ratings_per_user": 25}}


def test_validation_user_sample_is_fixed_by_the_seed_and_covers_everyone_when_fewer(synthetic_data):
    split = make_split("leave-last-out", synthetic_data.ratings)
    stream = RetrievalStream(Interactions.from_data(synthetic_data), split, 0)
    keep = stream.rankable("validation")
    users = stream.users("validation")
    total = len(np.unique(users[keep]))
    assert total > 30

    everyone, sampled, n = stream.user_sample("validation", 10000, seed=0)
    assert (everyone == keep).all() and sampled == n == total

    a, sampled, n = stream.user_sample("validation", 30, seed=0)
    assert sampled == 30 and n == total
    assert len(np.unique(users[a])) == 30 and (np.diff(a) > 0).all()
    chosen = np.unique(users[a])  # every rankable row of each sampled user, none of the others
    assert (a == keep[np.isin(users[keep], chosen)]).all()
    assert (stream.user_sample("validation", 30, seed=0)[0] == a).all()  # the same seed, the same sample
    assert not np.array_equal(stream.user_sample("validation", 30, seed=1)[0], a)


def test_validation_users_must_be_positive():
    with pytest.raises(ConfigError, match="eval.validation_users"):
        load_config("retrieval", overrides=["eval.validation_users=0"])


def test_popularity_ranks_equal_ranking_the_popularity_scores():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 6, size=40).astype(np.float64)  # many ties
    targets = rng.integers(0, 40, size=300)
    exclude = [rng.integers(0, 40, size=rng.integers(0, 12)) for _ in targets]  # duplicates, the target too
    for ex in (None, exclude):
        want = ranks_from_scores(np.tile(counts, (len(targets), 1)), targets, ex)
        assert (report.popularity_ranks(counts, targets, ex, chunk=64) == want).all()


def test_hash_evaluation_scores_the_catalogue_once_for_plain_and_seen_excluded_ranks(synthetic_data, monkeypatch):
    hp = hyperparameters(load_config("retrieval", overrides=["model.history_length=5", "model.embedding_dim=8"]), True)
    split = make_split("hash", synthetic_data.ratings)
    vocab = build_vocabularies(synthetic_data.ratings, synthetic_data.movies, split.train, has_user_features=True,
                               title_vocab_size=200, title_max_tokens=8, timestamp_buckets=10)
    stream = RetrievalStream(Interactions.from_data(synthetic_data), split, hp.history_length)
    model = RetrievalModel(vocab, hp)  # untrained: its ranks are as good a check as any
    keep = stream.rankable("test")
    queries, items, targets = stream.queries(model, "test", keep), model.catalogue_embeddings(), stream.targets("test")[keep]
    want_plain = target_ranks(queries, items, targets)
    want_excluded = target_ranks(queries, items, targets, exclude=stream.seen("test", keep))
    assert (want_excluded < want_plain).any()  # the exclusions matter on these rows

    calls = []
    for module in (stream_module, evaluate_module):
        for name in ("target_ranks", "paired_target_ranks"):
            original = getattr(module, name, None)
            if original is not None:
                monkeypatch.setattr(module, name,
                                    lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    ranks = rank_split(model, stream, "test", protocol="hash", seen_excluded=True)
    assert calls == ["paired_target_ranks"]  # one scoring per chunk (one chunk here), both rankings from it
    assert (ranks.positions == keep).all()
    assert (ranks.plain == want_plain).all() and (ranks.excluded == want_excluded).all()

    calls.clear()  # the in-memory evaluation (multitask, the pipeline Evaluator) likewise
    cols = split_columns(synthetic_data, split, hp)
    history = {k: np.concatenate([cols["train"][k], cols["validation"][k]]) for k in cols["train"]}
    got = evaluate_module.evaluate(model, vocab, cols["test"], protocol="hash", ks=(10, 100), history=history,
                                   seen_excluded=True)
    assert calls == ["paired_target_ranks"]
    assert got == {**hit_rate(want_plain, (10, 100)),
                   **{k.replace("hit_rate@", "hit_rate_seen_excluded@"): v
                      for k, v in hit_rate(want_excluded, (10, 100)).items()}}


@pytest.mark.slow
@pytest.mark.parametrize("split_name", ["hash", "leave-last-out"])
def test_sampled_validation_full_test_and_the_report_reuses_the_test_ranks(split_name, synthetic_data, tmp_path,
                                                                           monkeypatch):
    cfg = tfrs_lab.load_config("retrieval", overrides=[
        "train.epochs=1", "export.verify=false", "export.index=brute_force", "model.embedding_dim=16",
        "eval.validation_users=25", f"data.split={split_name}"], **SYNTHETIC)
    run = run_task("retrieval", cfg, tmp_path / "run", TaskInputs(synthetic_data), verbose=0)
    m, state = run.metrics, run._trained.state
    stream = state.stream
    sample, sampled, total = stream.user_sample("validation", 25, cfg.train.seed)
    assert (m["sampled_validation_users"], m["total_validation_users"], m["sampled_validation_rows"]) == (
        25, total, len(sample)) and total > 25
    # one epoch: the restored weights are the validated ones; validation ranked the sample only
    monitored = "recall@10" if split_name == "leave-last-out" else "hit_rate@10"
    on_sample = stream_metrics(run.model, stream, "validation", protocol=split_name, ks=state.ks, positions=sample)
    on_all = stream_metrics(run.model, stream, "validation", protocol=split_name, ks=state.ks)
    assert m[f"validation_{monitored}"] == pytest.approx(on_sample[monitored], abs=1e-6)
    assert on_sample != on_all
    # test evaluation: every rankable test row
    assert (state.test_ranks.positions == stream.rankable("test")).all()

    calls = []
    for module, name in ((stream_module, "target_ranks"), (report, "ranks_from_scores")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, **k: calls.append(1) or _f(*a, **k))
    shown = run._task.report_inputs(run._context, run._trained)
    assert calls == []  # no second ranking of the test rows
    curve = report.recall_curve(shown["ranks"])
    name = "recall" if split_name == "leave-last-out" else "hit_rate"
    for k in state.ks:
        assert curve[k - 1] == pytest.approx(m[f"{name}@{k}"], abs=1e-6)
    assert len(shown["recommendations"]) == len(np.unique(stream.users("test")[stream.rankable("test")]))
    assert (shown["exclude"] is None) == (split_name == "hash")
    # the same report inputs as scoring every test row again
    keep = stream.rankable("test")
    again = report.factorized_inputs(
        stream.queries(run.model, "test", keep), run.model.catalogue_embeddings(), stream.targets("test")[keep],
        users=stream.data.user_ids[stream.users("test")[keep]], exclude=shown["exclude"],
        item_counts=shown["item_counts"])
    assert (again["ranks"] == shown["ranks"]).all()
    assert (again["recommendations"] == shown["recommendations"]).all()
    assert (again["recommendation_users"] == shown["recommendation_users"]).all()
