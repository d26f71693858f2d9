"""The sequential task on compact interactions (tfrs_lab.data.interactions): the training windows,
evaluation queries and export histories built from the per-user sequence index equal those the
string columns gave (tfrs_lab.data.sequences.training_sequences / evaluation_sequences), and a run
on your own data never converts the prepared dataset back to strings per row."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tfrs_lab.data import read_source
from tfrs_lab.data.features import build_vocabularies
from tfrs_lab.data.history import latest_history
from tfrs_lab.data.interactions import Interactions
from tfrs_lab.data.movielens import MovieLensData
from tfrs_lab.data.prepared import PreparedDataset, prepare_dataset
from tfrs_lab.data.sequences import evaluation_sequences, training_sequences
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.data.splits import SplitOptions, make_split
from tfrs_lab.data.synthetic import write_synthetic_parquet
from tfrs_lab.export.tables import ItemTable
from tfrs_lab.schema import build
from tfrs_lab.training.sequential import build_sequences, item_indices, serving_histories, window_batch

pytest.importorskip("pyarrow")

FIT = dict(has_user_features=False, title_vocab_size=2, title_max_tokens=1, timestamp_buckets=1)
OPTIONS = SplitOptions(validation_users=0.3, test_users=0.3, target_share=0.3)


def tiny_source(tmp_path) -> SourceSpec:
    """600 plays of 40 listeners over tracks 1..30 with many equal timestamps (ties break by the
    track as an integer) and repeated plays; the items table lacks tracks 26..30 (kept: appended to
    the catalogue with an empty text)."""
    rng = np.random.default_rng(11)
    n = 600
    lines = ["listener,track,when"] + [f"L{u},{i},{t}" for u, i, t in zip(
        rng.integers(0, 40, n), rng.integers(1, 31, n), 1_600_000_000 + rng.integers(0, 40, n))]
    (tmp_path / "plays.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "tracks.csv").write_text("sku,name\n" + "".join(f"{i},Track {i}\n" for i in range(1, 26)))
    return build(SourceSpec, {
        "name": "plays", "missing_items": "keep",
        "interactions": {"path": str(tmp_path / "plays.csv"),
                         "columns": {"user": "listener", "item": "track", "time": "when"}},
        "items": {"path": str(tmp_path / "tracks.csv"), "columns": {"id": "sku", "text": "name"}},
    }, "data.source")


def assert_same_windows(got, want) -> None:
    for field in ("user_ids", "items", "starts", "ends", "trained_from"):
        assert np.array_equal(getattr(got, field), getattr(want, field)), field
    assert got.max_length == want.max_length and got.num_positions == want.num_positions
    for key, value in window_batch(want).items():
        assert np.array_equal(window_batch(got)[key], value), key


def assert_same_queries(got, want) -> None:
    assert got.user_ids.tolist() == want.user_ids.tolist()
    assert np.array_equal(got.inputs, want.inputs) and np.array_equal(got.targets, want.targets)
    assert len(got.seen) == len(want.seen) and all(np.array_equal(a, b) for a, b in zip(got.seen, want.seen))


@pytest.mark.parametrize("split_name", ["leave-last-out", "held-out-users"])
@pytest.mark.parametrize("max_length, stride", [(4, 0), (4, 1), (3, 3), (50, 0)])
def test_streamed_windows_and_queries_equal_the_string_columns(tmp_path, split_name, max_length, stride):
    spec = tiny_source(tmp_path)
    data = read_source(spec)  # the string columns, as the task read them before
    coded = Interactions.from_prepared(prepare_dataset(spec, cache_dir=tmp_path / "cache"))
    check_against_strings(data, coded, split_name, max_length, stride)
    # a catalogue without tracks 26..30: their plays have index 0 and leave every sequence
    movies = {k: v[:25] for k, v in data.movies.items()}
    assert movies["movie_id"].tolist() == [str(i) for i in range(1, 26)]
    trimmed = MovieLensData(data.dataset, data.ratings, movies)
    check_against_strings(trimmed, Interactions.from_data(trimmed), split_name, max_length, stride)


def check_against_strings(data: MovieLensData, coded: Interactions, split_name: str, max_length: int,
                          stride: int) -> None:
    split = make_split(split_name, data.ratings, OPTIONS)
    vocab = build_vocabularies(data.ratings, data.movies, split.train, **FIT)
    index = item_indices(vocab, data.ratings["movie_id"])
    if split_name == "held-out-users":
        histories = (split.fold_in_validation, split.fold_in_test)
    else:
        histories = (split.train, np.concatenate([split.train, split.validation]))
    want = (training_sequences(data.ratings, split.train, index, max_length, stride),
            *(evaluation_sequences(data.ratings, h, t, index, max_length)
              for h, t in zip(histories, (split.validation, split.test))))
    got = build_sequences(coded, split, vocab, max_length, stride)
    assert len(want[0]) > 0 and len(want[1].targets) > 0 and len(want[2].targets) > 0
    assert_same_windows(got[0], want[0])
    for g, w in zip(got[1:], want[1:]):
        assert_same_queries(g, w)
    # the in-memory MovieLensData takes the same path (encoded once) and gives the same windows
    assert_same_windows(build_sequences(data, split, vocab, max_length, stride)[0], want[0])


def test_serving_histories_from_the_index_equal_latest_history(tmp_path):
    spec = tiny_source(tmp_path)
    data = read_source(spec)
    coded = Interactions.from_prepared(prepare_dataset(spec, cache_dir=tmp_path / "cache"))
    split = make_split("leave-last-out", data.ratings)
    vocab = build_vocabularies(data.ratings, data.movies, split.train, **FIT)
    want = latest_history(data.ratings, np.arange(data.num_ratings), vocab.user_ids, 25)[:, ::-1]
    table = serving_histories(coded, vocab, 25)
    assert isinstance(table, ItemTable) and table.codes.dtype == np.int32  # codes, no string per entry
    got = table.strings()
    assert got.shape == want.shape == (len(vocab.user_ids), 25) and (got == want).all()
    assert (got[:, 0] == "").any() and (got[:, -1] != "").all()  # short histories are left-padded


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """A sequential run on a prepared synthetic dataset, counting ``to_data`` calls: (run dir, data dir, calls)."""
    from tfrs_lab.train import main

    tmp_path = tmp_path_factory.mktemp("own-sequential")
    calls = []
    original = PreparedDataset.to_data
    PreparedDataset.to_data = lambda self: calls.append(1) or original(self)
    try:
        written = write_synthetic_parquet(tmp_path / "data", interactions=4000, seed=2, num_clusters=4)
        out = tmp_path / "run"
        sets = ["train.epochs=1", "model.max_length=10", "model.window_stride=5", "model.embedding_dim=16",
                "model.num_blocks=1", "export.index=brute_force", "export.k=5", "export.max_exclude=10",
                "export.verify=false"]
        assert main(["sequential", "--data", str(written.spec_path), "--data-dir", str(tmp_path / "dd"),
                     "--output-dir", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    finally:
        PreparedDataset.to_data = original
    return out, tmp_path / "dd", calls


@pytest.mark.slow
def test_own_data_run_never_converts_the_prepared_dataset(own_run):
    from tfrs_lab.export import signatures as sig

    out, data_dir, calls = own_run
    assert calls == []  # windows, queries and the export's histories came from the integer columns
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "sequential" and metrics["num_train_sequences"] > 0 and 0 <= metrics["recall@10"] <= 1
    # the exported history of a user is its newest items from the index, so they are never recommended
    (path,) = (data_dir / "prepared").glob("*-*")
    from tfrs_lab.data.prepared import load_prepared

    coded = Interactions.from_prepared(load_prepared(path))
    known = set(coded.latest(np.array([0]), 10)[0]) - {""}
    loaded = tf.saved_model.load(str(out / "export" / "sequential" / "1"))
    answer = loaded.signatures[sig.RECOMMEND_FOR_USER](user_id=tf.constant([coded.user_ids[0]]))
    got = set(answer[sig.ITEM_IDS].numpy()[0].astype(str))
    assert len(got) == 5 and not got & known


@pytest.mark.slow
def test_exported_user_histories_are_int32_codes_not_strings(own_run, string_constant_shapes):
    """``recommend_for_user``'s table ([U, H]: at 25M, 162k users x 200 items) is stored as an int32
    code variable plus the item names: no string variable or graph constant holds a row per user."""
    from tfrs_lab.data.prepared import load_prepared

    out, data_dir, _ = own_run
    (path,) = (data_dir / "prepared").glob("*-*")
    coded = Interactions.from_prepared(load_prepared(path))
    export = out / "export" / "sequential" / "1"
    reader = tf.train.load_checkpoint(str(export / "variables" / "variables"))
    dtypes, shapes = reader.get_variable_to_dtype_map(), reader.get_variable_to_shape_map()
    tables = {n: shapes[n] for n in dtypes if len(shapes[n]) == 2 and dtypes[n] != tf.float32}
    assert len(tables) == 1 and all(dtypes[n] == tf.int32 and 1 < s[0] <= len(coded.user_ids)
                                    for n, s in tables.items()), tables
    strings = [shapes[n] for n in dtypes if dtypes[n] == tf.string and shapes[n]]
    assert strings and all(len(s) == 1 and s[0] <= len(coded.item_ids) + 1 for s in strings), strings
    assert not [c for c in string_constant_shapes(export) if len(c) == 2]
