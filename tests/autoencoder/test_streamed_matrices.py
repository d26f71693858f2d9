"""The autoencoders on compact interactions (tfrs_lab.data.interactions): the sparse user x item
matrices and held-out users built from the integer columns equal those the string columns gave, and
a run on your own data never converts the prepared dataset back to strings per row."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfrs_lab.data import read_source
from tfrs_lab.data.features import build_vocabularies, movie_rows
from tfrs_lab.data.interactions import Interactions as Coded
from tfrs_lab.data.movielens import MovieLensData
from tfrs_lab.data.prepared import PreparedDataset, prepare_dataset
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.data.splits import SplitOptions, make_split
from tfrs_lab.data.synthetic import write_synthetic_parquet
from tfrs_lab.schema import build
from tfrs_lab.training.autoencoder import Interactions, held_out_inputs, interactions, rating_matrix

pytest.importorskip("pyarrow")

FIT = dict(has_user_features=False, title_vocab_size=2, title_max_tokens=1, timestamp_buckets=1)


def rated_source(tmp_path) -> SourceSpec:
    """700 ratings (0.5..5) of 50 users over items 1..35, repeated (user, item) pairs included, and
    3 of a user who arrives after everyone else; the items table lacks 31..35."""
    rng = np.random.default_rng(5)
    n = 700
    lines = ["who,what,stars,when"] + [f"u{u},{i},{r},{t}" for u, i, r, t in zip(
        rng.integers(0, 50, n), rng.integers(1, 36, n), rng.integers(1, 11, n) / 2, 1_500_000_000 + rng.integers(0, 60, n))]
    lines += [f"late,{i},4,{1_500_000_100 + i}" for i in (3, 4, 5)]
    (tmp_path / "ratings.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "items.csv").write_text("id,title\n" + "".join(f"{i},Item {i}\n" for i in range(1, 31)))
    return build(SourceSpec, {
        "name": "rated", "missing_items": "keep",
        "interactions": {"path": str(tmp_path / "ratings.csv"),
                         "columns": {"user": "who", "item": "what", "rating": "stars", "time": "when"}},
        "items": {"path": str(tmp_path / "items.csv"), "columns": {"id": "id", "text": "title"}},
    }, "data.source")


def string_interactions(data: MovieLensData, vocab, *row_sets: np.ndarray) -> Interactions:
    """The matrix coordinates as the task built them from the string columns before it read codes."""
    rows = np.concatenate(row_sets)
    user_ids = data.ratings["user_id"][rows]
    pos = np.clip(np.searchsorted(vocab.user_ids, user_ids), 0, len(vocab.user_ids) - 1)
    users = np.where(vocab.user_ids[pos] == user_ids, pos, -1).astype(np.int64)
    return Interactions(users, movie_rows(vocab, data.ratings["movie_id"][rows]),
                        data.ratings["user_rating"][rows].astype(np.float32))


def same_matrix(a, b) -> bool:
    return a.shape == b.shape and (a != b).nnz == 0 and np.array_equal(a.indptr, b.indptr)


@pytest.mark.parametrize("split_name", ["hash", "leave-last-out", "time"])
def test_matrices_from_codes_equal_the_string_columns(tmp_path, split_name):
    spec = rated_source(tmp_path)
    data = read_source(spec)
    movies = {k: v[:30] for k, v in data.movies.items()}  # a catalogue without items 31..35 (rows -1)
    trimmed = MovieLensData(data.dataset, data.ratings, movies)
    for strings, coded in ((data, Coded.from_prepared(prepare_dataset(spec, cache_dir=tmp_path / "c"))),
                           (trimmed, Coded.from_data(trimmed))):
        split = make_split(split_name, strings.ratings)
        vocab = build_vocabularies(strings.ratings, strings.movies, split.train, **FIT)
        shape = (len(vocab.user_ids), len(vocab.movie_ids))
        for rows in ((split.train,), (split.train, split.validation), (split.test,)):
            want, got = string_interactions(strings, vocab, *rows), interactions(coded, vocab, *rows)
            for field in ("users", "items", "ratings"):
                assert np.array_equal(getattr(got, field), getattr(want, field)), field
            assert same_matrix(rating_matrix(got, *shape), rating_matrix(want, *shape))
        if strings is trimmed:
            assert (got.items < 0).any()  # items outside the catalogue are unknown, not misplaced
        if split_name == "time":
            assert (got.users < 0).any()  # test users who had not rated before the cut-off are unknown


def test_held_out_users_from_codes_equal_the_string_columns(tmp_path):
    spec = rated_source(tmp_path)
    data = read_source(spec)
    coded = Coded.from_prepared(prepare_dataset(spec, cache_dir=tmp_path / "c"))
    options = SplitOptions(validation_users=0.3, test_users=0.3)
    split = make_split("held-out-users", data.ratings, options)
    vocab = build_vocabularies(data.ratings, data.movies, split.train, **FIT)
    got = held_out_inputs(coded, vocab, split.fold_in_test, split.test)
    users = data.ratings["user_id"]
    want_ids = np.unique(np.concatenate([users[split.fold_in_test], users[split.test]]).astype(str))
    assert got.user_ids.tolist() == want_ids.tolist() and len(want_ids) > 3
    for h, user in enumerate(want_ids):
        fold = split.fold_in_test[users[split.fold_in_test] == user]
        assert sorted(got.inputs[h].indices.tolist()) == sorted(set(movie_rows(vocab, data.ratings["movie_id"][fold])))
    target_users = np.searchsorted(want_ids, users[split.test].astype(str))
    assert np.array_equal(got.targets.users, target_users)
    assert np.array_equal(got.targets.items, movie_rows(vocab, data.ratings["movie_id"][split.test]))
    assert np.array_equal(got.targets.ratings, data.ratings["user_rating"][split.test])


@pytest.mark.slow
@pytest.mark.parametrize("architecture, split", [("dae", "leave-last-out"), ("autorec", "hash")])
def test_own_data_run_never_converts_the_prepared_dataset(tmp_path, monkeypatch, architecture, split):
    from tfrs_lab.train import main

    calls = []
    original = PreparedDataset.to_data
    monkeypatch.setattr(PreparedDataset, "to_data", lambda self: calls.append(1) or original(self))
    written = write_synthetic_parquet(tmp_path / "data", interactions=4000, seed=3, num_clusters=4)
    out = tmp_path / "run"
    sets = ["train.epochs=1", f"model.architecture={architecture}", f"data.split={split}",
            "export.index=brute_force", "export.k=5", "export.verify=false"]
    assert main(["autoencoder", "--data", str(written.spec_path), "--data-dir", str(tmp_path / "dd"),
                 "--output-dir", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    assert calls == []  # the matrices came from the integer columns
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "autoencoder" and metrics["architecture"] == architecture
    key = "rmse" if architecture == "autorec" else "recall@10"
    assert np.isfinite(metrics[key]) and metrics["num_train_examples"] > 0
