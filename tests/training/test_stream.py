"""The retrieval task's streamed input (tfrs_lab.training.stream): its batches hold exactly the
in-memory columns of the same rows, epochs cover every training row once in a fresh seeded order,
a model trained on it beats popularity on planted structure (the synthetic MovieLens data), and an own-data run reads the
prepared dataset without ever converting it back to strings per row."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tfrs_lab.config import load_config
from tfrs_lab.data.features import build_vocabularies
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.prepared import PreparedDataset, prepare_dataset
from tfrs_lab.data.spec import SourceSpec, resolve_spec_paths
from tfrs_lab.data.splits import make_split
from tfrs_lab.data.synthetic import write_synthetic_parquet
from tfrs_lab.evaluation.metrics import ranking_metrics, target_ranks
from tfrs_lab.export.tables import ItemTable
from tfrs_lab.models.retrieval import RetrievalModel
from tfrs_lab.schema import build
from tfrs_lab.training.common import optimizer
from tfrs_lab.training.retrieval import (hyperparameters, resolve_history_length, seen_table, serving_user_table,
                                         split_columns, streamed_tables)
from tfrs_lab.training.stream import RetrievalStream, stream_metrics

FIT = dict(title_vocab_size=200, title_max_tokens=8, timestamp_buckets=10)


def decoded(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind not in "SO":
        return values
    return np.array([v.decode() if isinstance(v, bytes) else v for v in values.ravel()], dtype=object).reshape(values.shape)


@pytest.mark.parametrize("split_name", ["hash", "leave-last-out"])
def test_streamed_batches_equal_the_in_memory_columns(synthetic_data, split_name):
    hp = hyperparameters(load_config("retrieval", overrides=["model.history_length=7"]), True)
    split = make_split(split_name, synthetic_data.ratings)
    want = split_columns(synthetic_data, split, hp)
    stream = RetrievalStream(Interactions.from_data(synthetic_data), split, hp.history_length)
    for part in ("train", "validation", "test"):
        got = stream.features(part, np.arange(len(getattr(split, part))))
        assert sorted(got) == sorted(want[part])
        for key, column in want[part].items():
            assert got[key].shape == column.shape and (decoded(got[key]) == column).all(), (part, key)
    vocab = build_vocabularies(synthetic_data.ratings, synthetic_data.movies, split.train, has_user_features=True, **FIT)
    table, known = streamed_tables(stream.data, vocab, hp, 30)
    assert known.codes.dtype == np.int32 and (known.strings() == seen_table(synthetic_data, vocab, 30)).all()
    in_memory = serving_user_table(synthetic_data, vocab, hp)
    assert sorted(table) == sorted(in_memory)
    plain = {k: v.strings() if isinstance(v, ItemTable) else v for k, v in table.items()}
    assert isinstance(table["history"], ItemTable) and all((plain[k] == in_memory[k]).all() for k in table)


def test_epochs_cover_every_training_row_once_in_a_new_seeded_order(synthetic_data):
    split = make_split("hash", synthetic_data.ratings)
    stream = RetrievalStream(Interactions.from_data(synthetic_data), split, 0)
    key = synthetic_data.ratings["user_id"] + ":" + synthetic_data.ratings["movie_id"]

    def epochs(seed: int) -> list[np.ndarray]:
        ds = stream.training_dataset(100, seed)
        return [np.concatenate([decoded(b["user_id"].numpy()) + ":" + decoded(b["movie_id"].numpy()) for b in ds])
                for _ in range(2)]

    first, second = epochs(5)
    assert len(first) == len(split.train) and sorted(first) == sorted(key[split.train])
    assert sorted(second) == sorted(first) and (second != first).any()  # reshuffled each epoch
    again = epochs(5)
    assert (again[0] == first).all() and (again[1] == second).all()  # the same seed, the same epochs
    assert (epochs(6)[0] != first).any()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A prepared MovieLens-25M-shaped own data set (about 6k interactions)."""
    d = tmp_path_factory.mktemp("planted")
    written = write_synthetic_parquet(d / "data", interactions=6000, seed=1, num_clusters=4)
    source = resolve_spec_paths(yaml.safe_load(written.spec_path.read_text()), written.spec_path.parent)
    return written, prepare_dataset(build(SourceSpec, source, "data.source"), cache_dir=d / "cache")


@pytest.mark.slow
@pytest.mark.parametrize("optimizer_name", ["adam", "lazy_adam"])
def test_training_on_the_stream_beats_popularity_on_planted_structure(synthetic_data, optimizer_name):
    cfg = load_config("retrieval", overrides=["data.split=leave-last-out"])
    split = make_split("leave-last-out", synthetic_data.ratings)
    hp = hyperparameters(resolve_history_length(cfg, synthetic_data, split.train), True)
    vocab = build_vocabularies(synthetic_data.ratings, synthetic_data.movies, split.train, has_user_features=True,
                               title_vocab_size=1000, title_max_tokens=8, timestamp_buckets=20)
    stream = RetrievalStream(Interactions.from_data(synthetic_data), split, hp.history_length)
    tf.keras.utils.set_random_seed(0)
    model = RetrievalModel(vocab, hp)
    model.compile(optimizer=optimizer(optimizer_name, 0.005))
    model.fit(stream.training_dataset(128, 0), epochs=8, verbose=0)
    ours = stream_metrics(model, stream, "test", protocol="leave-last-out", ks=(10,))
    keep = stream.rankable("test")
    popularity = vocab.item_counts[1:].astype(np.float32)[:, None]
    ranks = target_ranks(np.ones((len(keep), 1), np.float32), popularity, stream.targets("test")[keep],
                         exclude=stream.seen("test", keep))
    pop = ranking_metrics(ranks, (10,))
    assert ours["recall@10"] > 1.5 * pop["recall@10"] and ours["recall@10"] > pop["recall@10"] + 0.05, (ours, pop)
    assert ours["ndcg@10"] > pop["ndcg@10"]


@pytest.mark.slow
def test_own_data_run_never_converts_the_prepared_dataset_and_its_export_reloads(planted, tmp_path, monkeypatch):
    from tfrs_lab.export import signatures as sig
    from tfrs_lab.train import main

    calls = []
    original = PreparedDataset.to_data
    monkeypatch.setattr(PreparedDataset, "to_data", lambda self: calls.append(1) or original(self))
    written, _ = planted
    out = tmp_path / "run"
    sets = ["train.epochs=1", "model.embedding_dim=16", "model.id_embedding_dim=16", "model.history_length=5",
            "export.index=brute_force", "export.k=10", "export.max_exclude=20"]  # export.verify: the reload check
    assert main(["retrieval", "--data", str(written.spec_path), "--split", "leave-last-out", "--data-dir",
                 str(tmp_path / "dd"), "--output-dir", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    assert calls == []  # the run streamed from the integer columns
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "synthetic-6k"
    assert metrics["num_train_examples"] > 0 and 0 <= metrics["recall@10"] <= 1
    # the export's seen table, built from the sequence index, keeps the user's known items out
    data = Interactions.from_prepared(_prepared_of(tmp_path / "dd"))
    user = 0
    known = set(data.item_ids[data.item[data.sequence_rows[data.sequence_offsets[user]:data.sequence_offsets[user + 1]]]])
    loaded = tf.saved_model.load(str(out / "export" / "retrieval" / "1"))
    ids = loaded.signatures[sig.SERVING_DEFAULT](user_id=tf.constant([data.user_ids[user]]))[sig.ITEM_IDS].numpy()
    got = set(ids[0].astype(str))
    assert len(got) == 10 and not got & known


def _prepared_of(data_dir) -> PreparedDataset:
    from tfrs_lab.data.prepared import load_prepared

    (path,) = (data_dir / "prepared").glob("*-*")
    return load_prepared(path)
