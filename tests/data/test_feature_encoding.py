"""Typed features prepared vectorised (pyarrow.compute) write exactly the bytes of the per-value
conversion, for every type on every table, in CSV and Parquet with awkward values (blanks, padding,
non-ASCII text, nulls, list columns); the same through the Apache Beam pipeline (DirectRunner).
Small seeded files in tmp_path only."""

from __future__ import annotations

import importlib.util

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tfrs_lab.data import typed
from tfrs_lab.data.prepared import prepare_dataset
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.data.vectorised import PY_WHITESPACE
from tfrs_lab.schema import build

needs_beam = pytest.mark.skipif(importlib.util.find_spec("apache_beam") is None,
                                reason="apache-beam is not installed: pip install 'tfrs-lab[beam]'")

WORDS = ["Red", "blue", "İstanbul", "Straße", "café", "don't", "GREEN", "x1"]


def tables(seed: int = 0, users: int = 9, items: int = 14, rows: int = 120) -> dict[str, dict[str, list]]:
    """Seeded items / users / clicks with one feature column of each type (values as Python objects)."""
    rng = np.random.default_rng(seed)
    pick = lambda xs: xs[int(rng.integers(0, len(xs)))]  # noqa: E731
    item = {"sku": [f"s{i}" for i in range(items)],
            "cat": [pick(["a", " b ", "c\u3000", "", "7"]) for _ in range(items)],
            "tags": [[pick(["rock", " pop", "jazz ", ""]) for _ in range(int(rng.integers(0, 4)))] for _ in range(items)],
            "title": [" ".join(pick(WORDS) for _ in range(int(rng.integers(0, 5)))) for _ in range(items)],
            "price": [float(rng.uniform(0, 50)) for _ in range(items)],
            "vec": [[float(x) for x in rng.normal(size=3)] for _ in range(items)]}
    user = {"uid": [f"u{u}" for u in range(users)], "country": [pick(["de", "fr", "it"]) for _ in range(users)],
            "bio": [" ".join(pick(WORDS) for _ in range(int(rng.integers(1, 4)))) for _ in range(users)]}
    click = {"uid": [f"u{int(u)}" for u in rng.integers(0, users, rows)],
             "sku": [f"s{int(i)}" for i in rng.integers(0, items + 2, rows)],  # s14, s15: not in the catalogue
             "ts": [int(t) for t in 1_600_000_000 + rng.integers(0, 10_000, rows)],
             "device": [pick(["web", "app", " tv", ""]) for _ in range(rows)],
             "ctags": [[pick(["x", "y", "z"]) for _ in range(int(rng.integers(0, 3)))] for _ in range(rows)],
             "dwell": [float(np.round(rng.exponential(20), 2)) for _ in range(rows)],
             "when": [f"2021-0{int(rng.integers(1, 9))}-1{int(rng.integers(0, 9))}T10:00:00Z" for _ in range(rows)],
             "emb": [[float(x) for x in rng.normal(size=2)] for _ in range(rows)]}
    return {"items": item, "users": user, "clicks": click}


FEATURES = [
    {"name": "cat", "table": "items", "column": "cat", "type": "categorical", "min_count": 2},
    {"name": "tags", "table": "items", "column": "tags", "type": "multi_categorical", "separator": "|"},
    {"name": "title", "table": "items", "column": "title", "type": "text", "max_tokens": 3, "max_size": 5},
    {"name": "price", "table": "items", "column": "price", "type": "numeric", "normalize": "log", "buckets": 3},
    {"name": "vec", "table": "items", "column": "vec", "type": "dense", "size": 3, "separator": " "},
    {"name": "country", "table": "users", "column": "country", "type": "categorical", "hash_buckets": 8},
    {"name": "bio", "table": "users", "column": "bio", "type": "text"},
    {"name": "device", "table": "interactions", "column": "device", "type": "categorical"},
    {"name": "ctags", "table": "interactions", "column": "ctags", "type": "multi_categorical", "separator": ";"},
    {"name": "dwell", "table": "interactions", "column": "dwell", "type": "numeric", "buckets": 4},
    {"name": "clicked", "table": "interactions", "column": "ts", "type": "timestamp"},
    {"name": "when", "table": "interactions", "column": "when", "type": "timestamp", "time_format": "iso8601"},
    {"name": "emb", "table": "interactions", "column": "emb", "type": "dense", "size": 2, "separator": " "},
]


def _write(table: dict[str, list], path, fmt: str, separators: dict[str, str]) -> None:
    if fmt == "parquet":
        pq.write_table(pa.table(table), path)
        return
    def cell(col: str, v) -> str:
        return separators.get(col, " ").join(map(str, v)) if isinstance(v, list) else str(v)
    lines = [",".join(table)] + [",".join(cell(c, v) for c, v in zip(table, values)) for values in zip(*table.values())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_spec(tmp_path, fmt: str, *, shards: int = 3) -> SourceSpec:
    """The tables as ``fmt`` files (the clicks in ``shards`` files, the middle one empty) and their spec."""
    return build(SourceSpec, write_source(tmp_path, fmt, shards=shards), "data.source")


def write_source(tmp_path, fmt: str, *, shards: int = 3) -> dict:
    """:func:`write_spec`'s ``data.source`` mapping."""
    t = tables()
    seps = {"tags": "|", "ctags": ";"}
    _write(t["items"], tmp_path / f"items.{fmt}", fmt, seps)
    _write(t["users"], tmp_path / f"users.{fmt}", fmt, seps)
    n = len(t["clicks"]["uid"])
    bounds = [0, n // 3, n // 3, n][: shards + 1] if shards == 3 else [0, n]
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        _write({k: v[lo:hi] for k, v in t["clicks"].items()}, tmp_path / f"clicks-{i}.{fmt}", fmt, seps)
    return {
        "name": "typed", "missing_items": "keep",
        "interactions": {"path": str(tmp_path / f"clicks-*.{fmt}"), "columns": {"user": "uid", "item": "sku",
                                                                               "time": "ts"}},
        "items": {"path": str(tmp_path / f"items.{fmt}"), "columns": {"id": "sku"}},
        "users": {"path": str(tmp_path / f"users.{fmt}"), "columns": {"id": "uid"}},
        "features": FEATURES}


def files(path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_python_whitespace_is_what_str_strip_removes():
    assert PY_WHITESPACE == "".join(chr(c) for c in range(0x110000) if chr(c).isspace())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_vectorised_features_write_the_bytes_of_the_per_value_conversion(tmp_path, monkeypatch, fmt):
    spec = write_spec(tmp_path, fmt)
    calls = []
    per_value = typed._per_value
    monkeypatch.setattr(typed, "_per_value", lambda *a: calls.append(a[0].name) or per_value(*a))
    fast = prepare_dataset(spec, cache_dir=tmp_path / "fast")
    if fmt == "csv":  # every column here is text the vectorised path takes whole
        assert calls == []
    monkeypatch.setattr(typed, "_vectorised", lambda spec, col: None)
    slow = prepare_dataset(spec, cache_dir=tmp_path / "slow")
    assert set(calls) == {f["name"] for f in FEATURES}  # (the reference converted every feature per value)
    a, b = files(fast.path), files(slow.path)
    assert sorted(a) == sorted(b) and any(k.startswith("features/") for k in a)
    for name in a:
        assert a[name] == b[name], name
    f = fast.features
    # the awkward values: padded / ideographic-space-padded categories stripped, blanks missing,
    # words of [a-z0-9']+ in the text lower-cased as Python does it: 'İstanbul' -> 'i̇stanbul' -> 'i',
    # 'stanbul'; 'Straße' -> 'stra', 'e'; 'café' -> 'caf'
    assert set(f["cat"].vocabulary) <= {"a", "b", "c", "7"} and 0 in set(f["cat"].codes.tolist())
    assert set(f["tags"].vocabulary) == {"rock", "pop", "jazz"}
    assert {"i", "stanbul", "stra", "caf"} <= set(f["bio"].vocabulary) | set(f["title"].vocabulary)
    assert len(f["title"].vocabulary) == 5 and f["title"].codes.shape == (len(fast.item_ids), 3)
    assert f["device"].codes.shape == (len(fast.user),) and set(f["device"].vocabulary) == {"web", "app", "tv"}
    assert f["emb"].values.shape == (len(fast.user), 2) and f["when"].values.dtype == np.int64


def test_a_bad_value_among_kept_rows_names_its_line_in_the_file(tmp_path):
    """The per-value conversion of a shard's kept rows names the line in the file, not the kept row."""
    (tmp_path / "i.csv").write_text("u,i,liked,dwell\na,x,0,1\nb,y,1,2\nc,z,1,slow\n")
    spec = build(SourceSpec, {"interactions": {"path": str(tmp_path / "i.csv"), "columns": {
        "user": "u", "item": "i", "rating": "liked", "label": "binary"}},
        "features": [{"name": "dwell", "table": "interactions", "column": "dwell", "type": "numeric"}]},
        "data.source")
    from tfrs_lab.data.movielens import DataError

    with pytest.raises(DataError, match=r"i.csv, line 4, column 'dwell' \(data.source.features\[0\].column\): "
                                        r"'slow' is not a number"):
        prepare_dataset(spec, cache_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@needs_beam
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_beam_prepares_every_feature_type_into_the_same_bytes(tmp_path, fmt):
    from tfrs_lab.data.beam_prepare import prepare_dataset_beam

    spec = write_spec(tmp_path, fmt)
    single = prepare_dataset(spec, cache_dir=tmp_path / "single")
    beam = prepare_dataset_beam(spec, runner="DirectRunner", cache_dir=tmp_path / "beam", users_per_block=4)
    a, b = files(single.path), files(beam.path)
    assert sorted(a) == sorted(b)  # no staging leftovers
    assert sum(k.startswith("features/") for k in a) == 28  # 13 features: 15 arrays, 13 vocabularies
    for name in a:
        assert a[name] == b[name], name


@needs_beam
@pytest.mark.parametrize("broken, message", [
    ("dwell", r"clicks-2.csv, line 2, column 'dwell' \(data.source.features\[9\].column\): 'slow' is not a number"),
    ("items", r"items.csv, line 2, column 'price' \(data.source.features\[3\].column\): 'cheap' is not a number"),
])
def test_beam_bad_feature_value_is_the_single_machine_line_and_nothing_is_left(tmp_path, broken, message):
    from test_beam_prepare import same_error_and_nothing_left  # (same directory)

    spec = write_spec(tmp_path, "csv")
    path = tmp_path / ("clicks-2.csv" if broken == "dwell" else "items.csv")
    lines = path.read_text(encoding="utf-8").splitlines()
    column = lines[0].split(",").index("dwell" if broken == "dwell" else "price")
    cells = lines[1].split(",")
    cells[column] = "slow" if broken == "dwell" else "cheap"
    lines[1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    same_error_and_nothing_left(spec, tmp_path / "out", message)


@needs_beam
def test_cli_runner_with_typed_features_prints_and_writes_what_one_machine_does(tmp_path, capsys):
    import yaml

    from tfrs_lab.data.__main__ import main

    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(write_source(tmp_path, "parquet")))
    args = ["prepare", "--data", str(tmp_path / "spec.yaml")]
    assert main(args + ["--output-dir", str(tmp_path / "beam"), "--runner", "DirectRunner"]) == 0
    beam_out = capsys.readouterr().out.splitlines()
    assert main(args + ["--output-dir", str(tmp_path / "single")]) == 0
    single_out = capsys.readouterr().out.splitlines()
    (beam_dir,), (single_dir,) = list((tmp_path / "beam").iterdir()), list((tmp_path / "single").iterdir())
    assert beam_out == [str(beam_dir), single_out[1]] and single_out[0] == str(single_dir)
    assert files(beam_dir) == files(single_dir)
