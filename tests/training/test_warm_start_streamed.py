"""Warm start on your own data reads the prepared dataset's integer columns: the unknown rows are
counted from the codes exactly as from the strings, and a warm-started run (and the refit of the
previous run's vocabularies) never converts the prepared dataset back to strings per row."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from tfrs_lab.data.features import build_vocabularies
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.movielens import MovieLensData
from tfrs_lab.data.prepared import PreparedDataset, load_prepared
from tfrs_lab.data.splits import make_split
from tfrs_lab.data.synthetic import write_synthetic_parquet
from tfrs_lab.training.warm_start import unknown_codes, unknown_rows

FIT = dict(has_user_features=False, title_vocab_size=2, title_max_tokens=1, timestamp_buckets=1)


def test_unknown_codes_equal_unknown_rows():
    ratings = {"user_id": np.array(["a", "b", "c", "a", "d", "c"], object),
               "movie_id": np.array(["1", "2", "3", "9", "1", "2"], object),
               "user_rating": np.ones(6, np.float32), "timestamp": np.arange(6, dtype=np.int64)}
    movies = {"movie_id": np.array(["1", "2", "3", "9"], object), "movie_title": np.array(["t"] * 4, object),
              "movie_genres": np.zeros((4, 1), np.float32)}
    data = MovieLensData("tiny", ratings, movies)
    # the previous run knew users a, b and movies 1, 2 only
    old = MovieLensData("old", {k: v[:2] for k, v in ratings.items()}, {k: v[:2] for k, v in movies.items()})
    vocab = build_vocabularies(old.ratings, old.movies, np.arange(2), **FIT)
    rows = np.array([0, 1, 2, 3, 4])
    want = unknown_rows(vocab, ratings["user_id"][rows], ratings["movie_id"][rows])
    assert want == (2, 2, 3)  # users c, d; movies 3, 9; rows 2, 3, 4
    assert unknown_codes(vocab, Interactions.from_data(data), rows) == want


@pytest.mark.slow
def test_own_data_warm_start_never_converts_the_prepared_dataset(tmp_path, monkeypatch):
    from tfrs_lab.train import main

    calls = []
    original = PreparedDataset.to_data
    monkeypatch.setattr(PreparedDataset, "to_data", lambda self: calls.append(1) or original(self))
    sets = ["train.epochs=1", "model.embedding_dim=16", "model.id_embedding_dim=16", "export.index=brute_force",
            "export.k=5", "export.verify=false"]
    flags = [a for s in sets for a in ("--set", s)]
    first = write_synthetic_parquet(tmp_path / "first", interactions=3000, seed=4, num_clusters=4)
    more = write_synthetic_parquet(tmp_path / "more", interactions=4500, seed=5, num_clusters=4)
    assert main(["retrieval", "--data", str(first.spec_path), "--data-dir", str(tmp_path / "dd"),
                 "--output-dir", str(tmp_path / "previous"), *flags]) == 0
    assert main(["retrieval", "--data", str(more.spec_path), "--data-dir", str(tmp_path / "dd"), "--warm-start",
                 str(tmp_path / "previous"), "--output-dir", str(tmp_path / "warm"), *flags]) == 0
    assert calls == []  # both runs and the previous run's refit read the integer columns
    metrics = json.loads((tmp_path / "warm" / "metrics.json").read_text())
    assert yaml.safe_load((tmp_path / "warm" / "config.yaml").read_text())["train"]["warm_start"]
    # the count equals the one the string columns give
    prepared = {len(p.user): p for p in map(load_prepared, (tmp_path / "dd" / "prepared").glob("*-*"))}
    old, new = (original(prepared[k]) for k in sorted(prepared))  # 3000, then 4500 interactions
    vocab = build_vocabularies(old.ratings, old.movies, make_split("hash", old.ratings).train, **FIT)
    train = make_split("hash", new.ratings).train
    want = unknown_rows(vocab, new.ratings["user_id"][train], new.ratings["movie_id"][train])[2]
    assert metrics["warm_start_oov_rows"] == want
