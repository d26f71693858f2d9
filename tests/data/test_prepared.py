"""The prepared dataset (tfrs_lab.data.prepared): the same data as read_source after decoding, the
sequence index, the fingerprint cache (hit, miss, interruption, a concurrent preparer) and the
``python -m tfrs_lab.data prepare`` CLI. Small generated files in tmp_path only."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

from tfrs_lab.data import DataError, read_source, sequence_order
from tfrs_lab.data import prepared as prepared_module
from tfrs_lab.data.__main__ import main
from tfrs_lab.data.prepared import FORMAT_VERSION, MANIFEST, load_prepared, prepare_dataset
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.schema import build

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402


def plays(seed: int = 0, n: int = 400, users: int = 30, items: int = 25) -> dict[str, list]:
    """Seeded interactions with non-MovieLens names; many equal timestamps per user (tie-breaks)."""
    rng = np.random.default_rng(seed)
    return {"listener": [f"L{u}" for u in rng.integers(0, users, n)],
            "track": [int(i) for i in rng.integers(1, items + 1, n)],  # 1..25: "10" sorts before "9" as text
            "stars": [float(x) for x in rng.integers(1, 6, n)],
            "when": [int(t) for t in 1_600_000_000 + rng.integers(0, 40, n)]}


def catalogue(items: int = 20) -> dict[str, list]:
    """Tracks 1..20 (so 21..25 are missing from it) plus one nobody played, with tags."""
    ids = list(range(1, items + 1)) + [999]
    return {"sku": ids, "name": [f"Track {i}" for i in ids],
            "tags": ["|".join(["rock", "pop", "jazz"][: i % 4]) for i in ids]}


def write(table: dict[str, list], path, fmt: str):
    if fmt == "parquet":
        pq.write_table(pa.table(table), path)
    elif fmt == "jsonl":
        rows = [dict(zip(table, values)) for values in zip(*table.values())]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        lines = [",".join(table)] + [",".join(str(v) for v in values) for values in zip(*table.values())]
        path.write_text("\n".join(lines) + "\n")
    return path


def source(tmp_path, fmt="csv", *, columns=None, items=True, **extra) -> SourceSpec:
    suffix = {"csv": "csv", "parquet": "parquet", "jsonl": "jsonl"}[fmt]
    spec = {"name": "plays", "interactions": {
        "path": str(write(plays(), tmp_path / f"plays.{suffix}", fmt)),
        "columns": columns or {"user": "listener", "item": "track", "rating": "stars", "time": "when"}}, **extra}
    if items:
        spec["items"] = {"path": str(write(catalogue(), tmp_path / f"tracks.{suffix}", fmt)),
                         "columns": {"id": "sku", "text": "name", "categories": "tags"}}
    return build(SourceSpec, spec, "data.source")


def assert_same_data(a, b) -> None:
    assert a.dataset == b.dataset
    for table in ("ratings", "movies"):
        x, y = getattr(a, table), getattr(b, table)
        assert sorted(x) == sorted(y)
        for key in x:
            assert x[key].dtype == y[key].dtype and x[key].shape == y[key].shape, key
            assert (x[key] == y[key]).all(), key


# --------------------------------------------------------------------------- same data as read_source


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
@pytest.mark.parametrize("missing_items", ["keep", "drop"])
def test_prepared_decodes_to_what_read_source_reads(tmp_path, fmt, missing_items):
    spec = source(tmp_path, fmt, missing_items=missing_items)
    ds = prepare_dataset(spec, cache_dir=tmp_path / "cache")
    assert_same_data(ds.to_data(), read_source(spec))
    assert ds.user.dtype == np.int32 and ds.item.dtype == np.int32 and ds.rating.dtype == np.float32
    assert ds.timestamp.dtype == np.int64 and isinstance(ds.user, np.memmap)
    # vocabularies with counts: users ascending, items the catalogue order (then missing items kept)
    assert list(ds.user_ids) == sorted(set(ds.user_ids)) and ds.user_counts.sum() == len(ds.user)
    assert list(ds.item_ids[:21]) == [str(i) for i in catalogue()["sku"]]
    assert ds.item_counts[20] == 0  # "999": in the catalogue, never played
    assert (ds.item_counts == np.bincount(ds.item, minlength=len(ds.item_ids))).all()
    assert ds.item_categories[2] == ["rock", "pop", "jazz"] and ds.item_categories[3] == []
    assert ds.item_text[0] == "Track 1"
    assert len(ds.item_ids) == (26 if missing_items == "keep" else 21)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_clean_files_never_take_the_per_row_conversion(tmp_path, monkeypatch, fmt):
    def per_row(*args, **kwargs):
        raise AssertionError("a clean file went through the readers' per-row conversion")

    spec = source(tmp_path, fmt)
    expected = read_source(spec)
    monkeypatch.setattr(prepared_module, "_interactions", per_row)
    assert_same_data(prepare_dataset(spec, cache_dir=tmp_path / "cache").to_data(), expected)


def test_dictionary_encoded_parquet_columns_are_read_vectorised(tmp_path, monkeypatch):
    table = plays()
    pq.write_table(pa.table({"listener": pa.array(table["listener"]).dictionary_encode(),
                             "track": pa.array(table["track"]), "stars": pa.array(table["stars"]).dictionary_encode()}),
                   tmp_path / "cat.parquet")
    spec = build(SourceSpec, {"interactions": {"path": str(tmp_path / "cat.parquet"), "columns": {
        "user": "listener", "item": "track", "rating": "stars"}}}, "data.source")
    expected = read_source(spec)
    monkeypatch.setattr(prepared_module, "_interactions", None)  # the per-row conversion must not be needed
    assert_same_data(prepare_dataset(spec, cache_dir=tmp_path / "cache").to_data(), expected)


def test_tfrecord_shards_including_an_empty_one(tmp_path):
    tf = pytest.importorskip("tensorflow")
    table = plays(n=60)
    for shard, rows in enumerate((range(0, 40), range(40, 40), range(40, 60))):
        with tf.io.TFRecordWriter(str(tmp_path / f"part-{shard}.tfrecord")) as w:
            for r in rows:
                ex = tf.train.Example()
                ex.features.feature["listener"].bytes_list.value.append(table["listener"][r].encode())
                ex.features.feature["track"].int64_list.value.append(table["track"][r])
                ex.features.feature["when"].int64_list.value.append(table["when"][r])
                w.write(ex.SerializeToString())
    spec = build(SourceSpec, {"interactions": {"path": str(tmp_path / "part-*.tfrecord"), "columns": {
        "user": "listener", "item": "track", "time": "when"}}}, "data.source")
    ds = prepare_dataset(spec, cache_dir=tmp_path / "cache")
    assert len(ds.user) == 60
    assert_same_data(ds.to_data(), read_source(spec))


def test_values_the_vectorised_path_refuses_go_through_the_readers(tmp_path, caplog):
    """Mixed time zones, padded numbers, true/false labels and float ids: the readers' per-row
    conversion decides, and the prepared data still equals read_source."""
    f = tmp_path / "clicks.csv"
    f.write_text("who,what,clicked,at\n"
                 "a,7,true,2020-01-01T00:00:00Z\n"
                 "a,8, 0 ,2020-01-01T01:00:00+01:00\n"
                 "b,7,1,2020-01-02 00:00:00\n"
                 "b,9,FALSE,2020-01-03T00:00:00Z\n")
    spec = build(SourceSpec, {"interactions": {"path": str(f), "columns": {
        "user": "who", "item": "what", "rating": "clicked", "label": "binary", "time": "at",
        "time_format": "iso8601"}}}, "data.source")
    with caplog.at_level(logging.INFO, logger="tfrs_lab"):
        ds = prepare_dataset(spec, cache_dir=tmp_path / "cache")
    assert "2 positive interactions kept, 2 negative dropped" in caplog.text
    assert_same_data(ds.to_data(), read_source(spec))
    assert list(ds.item_ids) == ["7"] and list(ds.item_counts) == [2]  # 8 and 9 only in dropped rows
    frame = {"u": [1.0, 2.0, 1.0], "i": [10.0, 10.0, 3.0]}  # whole floats are ids "1", "10"
    pq.write_table(pa.table(frame), tmp_path / "f.parquet")
    spec = build(SourceSpec, {"interactions": {"path": str(tmp_path / "f.parquet"),
                                               "columns": {"user": "u", "item": "i"}}}, "data.source")
    ds = prepare_dataset(spec, cache_dir=tmp_path / "cache")
    assert_same_data(ds.to_data(), read_source(spec))
    assert list(ds.user_ids) == ["1", "2"] and list(ds.timestamp) == [0, 1, 2]  # no time: the row order


def test_sequence_index_is_each_users_rows_sorted_by_time_then_item(tmp_path):
    spec = source(tmp_path, items=False)
    ds = prepare_dataset(spec, cache_dir=tmp_path / "cache")
    data = ds.to_data()
    assert (np.asarray(ds.sequence_rows) == sequence_order(data.ratings)).all()
    ts, items = data.ratings["timestamp"], data.ratings["movie_id"]
    assert ds.sequence_offsets[0] == 0 and ds.sequence_offsets[-1] == len(ds.user)
    for u, user in enumerate(ds.user_ids):
        mine = [r for r in range(len(ts)) if data.ratings["user_id"][r] == user]
        expected = sorted(mine, key=lambda r: (ts[r], int(items[r]), r))
        assert list(ds.sequence(u)) == expected, user
    assert any(len(set(ts[ds.sequence(u)])) < len(ds.sequence(u)) for u in range(len(ds.user_ids)))  # ties exist


# --------------------------------------------------------------------------- the cache


def test_second_run_reuses_the_directory_without_reading_again(tmp_path, caplog, monkeypatch):
    spec = source(tmp_path)
    first = prepare_dataset(spec, cache_dir=tmp_path / "cache")
    stamp = os.stat(first.path / MANIFEST).st_mtime_ns

    def no_reading(*args, **kwargs):
        raise AssertionError("prepared again although the cache holds this fingerprint")

    monkeypatch.setattr(prepared_module, "_encode", no_reading)
    with caplog.at_level(logging.INFO, logger="tfrs_lab"):
        second = prepare_dataset(spec, cache_dir=tmp_path / "cache")
    assert second.path == first.path and os.stat(first.path / MANIFEST).st_mtime_ns == stamp
    assert f"reusing {first.path}" in caplog.text
    assert_same_data(second.to_data(), first.to_data())


def test_a_changed_file_or_spec_is_a_new_fingerprint(tmp_path):
    spec = source(tmp_path)
    cache = tmp_path / "cache"
    first = prepare_dataset(spec, cache_dir=cache)
    renamed = build(SourceSpec, {**_as_dict(spec), "name": "other"}, "data.source")
    assert prepare_dataset(renamed, cache_dir=cache).fingerprint != first.fingerprint
    dropped = build(SourceSpec, {**_as_dict(spec), "missing_items": "drop"}, "data.source")
    assert prepare_dataset(dropped, cache_dir=cache).fingerprint != first.fingerprint
    path = spec.interactions.path
    with open(path, "a", encoding="utf-8") as f:
        f.write("L0,1,5.0,1600000099\n")
    changed = prepare_dataset(spec, cache_dir=cache)
    assert changed.fingerprint != first.fingerprint and len(changed.user) == len(first.user) + 1
    assert len([p for p in cache.iterdir()]) == 4
    assert json.loads((first.path / MANIFEST).read_text())["format_version"] == FORMAT_VERSION


def _as_dict(spec: SourceSpec) -> dict:
    import dataclasses

    return dataclasses.asdict(spec)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_interrupted_preparation_leaves_nothing_behind(tmp_path, monkeypatch, error):
    spec = source(tmp_path)
    cache = tmp_path / "cache"
    real_write = prepared_module._write

    def write_then_fail(encoded, manifest, stage):
        real_write(encoded, manifest, stage)
        assert (stage / MANIFEST).exists()
        raise error("interrupted")

    monkeypatch.setattr(prepared_module, "_write", write_then_fail)
    with pytest.raises(error):
        prepare_dataset(spec, cache_dir=cache)
    assert list(cache.iterdir()) == []
    monkeypatch.setattr(prepared_module, "_write", real_write)
    assert len(prepare_dataset(spec, cache_dir=cache).user) == 400


def test_a_concurrent_preparer_that_publishes_first_is_kept(tmp_path, monkeypatch, caplog):
    spec = source(tmp_path)
    cache = tmp_path / "cache"
    real_write = prepared_module._write
    published = []

    def racing_write(encoded, manifest, stage):
        real_write(encoded, manifest, stage)
        if not published:  # another process finishes the same preparation meanwhile
            published.append(None)
            published[0] = prepare_dataset(spec, cache_dir=cache).path
            published.append(os.stat(published[0]).st_ino)

    monkeypatch.setattr(prepared_module, "_write", racing_write)
    ds = prepare_dataset(spec, cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == [ds.path.name] and published[0] == ds.path
    assert os.stat(ds.path).st_ino == published[1]  # the first published directory is never replaced
    assert_same_data(ds.to_data(), read_source(spec))


def test_another_format_version_is_refused_with_the_fix(tmp_path):
    ds = prepare_dataset(source(tmp_path), cache_dir=tmp_path / "cache")
    manifest = json.loads((ds.path / MANIFEST).read_text())
    (ds.path / MANIFEST).write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(DataError, match="delete it and prepare again"):
        load_prepared(ds.path)
    with pytest.raises(DataError, match="is not a prepared dataset"):
        load_prepared(tmp_path)


def test_own_data_runs_load_through_the_prepared_cache(tmp_path, caplog):
    from tfrs_lab.config import load_config
    from tfrs_lab.training.runner import load_data

    spec = source(tmp_path)
    cfg = load_config("retrieval", extra={"data": {"dataset": "own", "data_dir": str(tmp_path / "dd"),
                                                   "source": _as_dict(spec)}})
    with caplog.at_level(logging.INFO, logger="tfrs_lab"):
        first, second = load_data(cfg), load_data(cfg)
    assert [p.parent.name for p in (tmp_path / "dd").glob("prepared/plays-*")] == ["prepared"]
    assert caplog.text.count("reusing") == 1
    assert_same_data(first, read_source(spec))
    assert_same_data(second, first)


# --------------------------------------------------------------------------- the CLI


def test_cli_prepares_then_reuses_and_prints_the_directory_and_counts(tmp_path, capsys):
    f = write(plays(), tmp_path / "plays.csv", "csv")
    items = write(catalogue(), tmp_path / "tracks.csv", "csv")
    argv = ["prepare", "--interactions", str(f), "--columns", "user=listener,item=track,rating=stars,time=when",
            "--items", str(items), "--item-columns", "id=sku,text=name,categories=tags:|",
            "--output-dir", str(tmp_path / "out")]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    ds = load_prepared(lines[0])
    assert ds.path.parent == tmp_path / "out"
    assert lines[1] == f"400 interactions, {len(ds.user_ids)} users, 26 items, 3 categories"
    assert main(argv) == 0 and capsys.readouterr().out.splitlines() == lines
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("name: plays\ninteractions:\n  path: plays.csv\n  columns: {user: listener, item: track}\n")
    assert main(["prepare", "--data", str(spec_file), "--output-dir", str(tmp_path / "out")]) == 0
    assert len(load_prepared(capsys.readouterr().out.splitlines()[0]).user) == 400


BAD = {
    "missing column": ("listener,track\nanna,t1\n", "user=userId,item=track",
                       r"plays.csv: no column 'userId' \(data.source.interactions.columns.user\)"),
    "wrong type": ("u,i,r\nanna,t1,4\nben,t2,five\n", "user=u,item=i,rating=r",
                   r"plays.csv, line 3, column 'r' \(data.source.interactions.columns.rating\): 'five' is not a "
                   r"rating"),
    "empty id": ("u,i\nanna,t1\n ,t2\n", "user=u,item=i", r"plays.csv, line 3, column 'u' .*is not an id"),
    "bad time": ("u,i,t\nanna,t1,2020-01-01T00:00:00Z\nben,t2,later\n", "user=u,item=i,time=t,time_format=iso8601",
                 r"line 3, column 't' .*'later' is not an ISO-8601 time"),
    "empty table": ("u,i\n", "user=u,item=i", r"the interactions table has no rows"),
    "no input": (None, None, r"prepare needs your data: --interactions FILE"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_cli_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case):
    text, columns, message = BAD[case]
    argv = ["prepare", "--output-dir", str(tmp_path / "out")]
    if text is not None:
        (tmp_path / "plays.csv").write_text(text)
        argv += ["--interactions", str(tmp_path / "plays.csv"), "--columns", columns]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spread, users", [(100, 7), (1 << 60, 7), (1 << 60, 1 << 40)])
def test_packed_sort_key_falls_back_when_it_does_not_fit(spread, users):
    """Time offsets, dense time ranks and np.lexsort give the same stable order."""
    rng = np.random.default_rng(3)
    user = rng.integers(0, 7, 500).astype(np.int32)
    timestamp = rng.choice(rng.integers(0, spread, 40, dtype=np.int64), 500)
    item = rng.integers(0, 9, 500).astype(np.int64)
    rows = prepared_module._sequence_rows(user, timestamp, item, users, 9)
    assert (rows == np.lexsort((item, timestamp, user))).all()
