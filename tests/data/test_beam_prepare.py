"""The prepared dataset built by the Apache Beam pipeline (tfrs_lab.data.beam_prepare) on the
DirectRunner: byte-identical to the single-machine preparation, the same one-line errors with
nothing left behind, the CLI end to end, and the clear line without Beam installed. Small seeded
files in tmp_path only."""

from __future__ import annotations

import importlib.util
import re
import sys

import numpy as np
import pytest

from tfrs_lab.data.__main__ import main
from tfrs_lab.data.beam_prepare import prepare_dataset_beam
from tfrs_lab.data.movielens import DataError
from tfrs_lab.data.prepared import prepare_dataset
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.data.splits import make_split
from tfrs_lab.schema import ConfigError, build

from test_prepared import catalogue, plays, write  # (same directory)

#: Every test but the one about a missing Beam runs a pipeline (CI installs the [beam] extra).
needs_beam = pytest.mark.skipif(importlib.util.find_spec("apache_beam") is None,
                                reason="apache-beam is not installed: pip install 'tfrs-lab[beam]'")

FILES = ("manifest.json", "user.npy", "item.npy", "rating.npy", "timestamp.npy", "sequence_offsets.npy",
         "sequence_rows.npy", "users.parquet", "items.parquet")


def shards(tmp_path, fmt: str, *, binary: bool = False) -> str:
    """Seeded interactions split into files (CSV and Parquet: 3, the middle one empty); their glob.
    ``binary``: a ``liked`` column, 1 for 3 stars or more."""
    whole = plays()
    if binary:
        whole["liked"] = [int(s >= 3) for s in whole["stars"]]
    size = len(whole["listener"])
    bounds = [0, size // 3, size // 3, size] if fmt != "jsonl" else [0, size // 3, size]
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        write({k: v[lo:hi] for k, v in whole.items()}, tmp_path / f"plays-{i}.{fmt}", fmt)
    return str(tmp_path / f"plays-*.{fmt}")


CASES = {
    # 3 CSV shards (one empty), explicit ratings, a catalogue missing some items (kept)
    "csv-catalogue-keep": dict(fmt="csv", columns={"user": "listener", "item": "track", "rating": "stars",
                                                   "time": "when"}, items=True, missing_items="keep"),
    # Parquet shards, binary labels (negatives dropped), unknown items dropped, no time column
    # (timestamps are row numbers over all files)
    "parquet-binary-drop-no-time": dict(fmt="parquet", columns={"user": "listener", "item": "track",
                                                               "rating": "liked", "label": "binary"},
                                        items=True, missing_items="drop"),
    # JSON Lines, no items table, implicit weights
    "jsonl-implicit": dict(fmt="jsonl", columns={"user": "listener", "item": "track", "rating": "stars",
                                                 "label": "implicit", "time": "when"}, items=False,
                           missing_items="keep"),
}


def spec_of(tmp_path, case: str) -> SourceSpec:
    c = CASES[case]
    fmt = c["fmt"]
    path = shards(tmp_path, fmt, binary=c["columns"].get("label") == "binary")
    spec = {"name": "plays", "missing_items": c["missing_items"],
            "interactions": {"path": path, "columns": c["columns"]}}
    if c["items"]:
        spec["items"] = {"path": str(write(catalogue(), tmp_path / f"tracks.{fmt}", fmt)),
                         "columns": {"id": "sku", "text": "name", "categories": "tags"}}
    return build(SourceSpec, spec, "data.source")


def rows(split, name: str) -> np.ndarray:
    return np.sort(np.asarray(getattr(split, name)))


@needs_beam
@pytest.mark.parametrize("case", list(CASES))
def test_beam_writes_the_same_files_as_the_single_machine_path(tmp_path, case):
    spec = spec_of(tmp_path, case)
    single = prepare_dataset(spec, cache_dir=tmp_path / "single")
    beam = prepare_dataset_beam(spec, runner="DirectRunner", cache_dir=tmp_path / "beam", users_per_block=7)
    assert single.path.name == beam.path.name  # same fingerprint
    assert sorted(p.name for p in beam.path.iterdir()) == sorted(FILES)  # no staging leftovers
    for name in FILES:
        assert (single.path / name).read_bytes() == (beam.path / name).read_bytes(), name
    assert len(single.user) > 100 and len(single.user_ids) > 7  # several blocks of 7 users
    for column in ("user", "item", "rating", "timestamp", "sequence_offsets", "sequence_rows", "user_ids",
                   "user_counts", "item_ids", "item_counts", "item_text"):
        a, b = getattr(single, column), getattr(beam, column)
        assert a.dtype == b.dtype and np.array_equal(a, b), column
    assert single.item_categories == beam.item_categories
    a, b = single.to_data().ratings, beam.to_data().ratings
    for name in ("hash", "leave-last-out"):
        x, y = make_split(name, a), make_split(name, b)
        for part in ("train", "validation", "test"):
            assert np.array_equal(rows(x, part), rows(y, part)), (name, part)
        assert len(rows(x, "test")) > 0


@needs_beam
def test_equal_user_time_and_item_in_several_shards_keep_the_file_order(tmp_path):
    """Rows equal in (user, time, item) sort by row number in both paths, whichever worker
    hands its shard over first: the sequence index must still be byte-identical."""
    for i in range(3):
        (tmp_path / f"plays-{i}.csv").write_text(f"u,i,r,t\nanna,7,{i + 1},100\nben,7,{i + 1},100\nanna,3,1,{50 + i}\n")
    spec = build(SourceSpec, {"interactions": {"path": str(tmp_path / "plays-*.csv"), "columns": {
        "user": "u", "item": "i", "rating": "r", "time": "t"}}}, "data.source")
    single = prepare_dataset(spec, cache_dir=tmp_path / "single")
    beam = prepare_dataset_beam(spec, runner="DirectRunner", cache_dir=tmp_path / "beam", users_per_block=1)
    assert single.sequence(0).tolist() == [2, 5, 8, 0, 3, 6]  # anna: item 3 by time, then item 7 in row order
    for name in FILES:
        assert (single.path / name).read_bytes() == (beam.path / name).read_bytes(), name


@needs_beam
def test_direct_runner_runs_in_process_and_never_downloads_prism(tmp_path, monkeypatch):
    """Beam's own DirectRunner would first try to fetch the Prism binary from GitHub."""
    from apache_beam.runners.portability import prism_runner

    fetched = []
    monkeypatch.setattr(prism_runner, "urlopen", lambda *a, **k: fetched.append(a) or (_ for _ in ()).throw(
        OSError("no network in tests")))
    write(plays(n=30), tmp_path / "plays.csv", "csv")
    spec = build(SourceSpec, {"interactions": {"path": str(tmp_path / "plays.csv"), "columns": {
        "user": "listener", "item": "track"}}}, "data.source")
    assert len(prepare_dataset_beam(spec, runner="DirectRunner", cache_dir=tmp_path / "out").user) == 30
    assert fetched == []


@needs_beam
def test_either_path_reuses_the_others_directory(tmp_path, caplog):
    spec = spec_of(tmp_path, "csv-catalogue-keep")
    first = prepare_dataset_beam(spec, runner="DirectRunner", cache_dir=tmp_path / "cache")
    with caplog.at_level("INFO"):
        again = prepare_dataset(spec, cache_dir=tmp_path / "cache")
    assert again.path == first.path and "reusing" in caplog.text
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [first.path.name]


BAD = {
    "missing column": ("listener,track\nanna,1\n", {"user": "userId", "item": "track"},
                       r"plays-1.csv: no column 'userId' \(data.source.interactions.columns.user\)"),
    "ragged row": ("listener,track,stars\nanna,1,4\nben,2,3,9\n", {"user": "listener", "item": "track",
                                                                    "rating": "stars"},
                   r"plays-1.csv: line 3: ragged row"),
    "bad number": ("listener,track,stars\nanna,1,4\nben,2,five\n", {"user": "listener", "item": "track",
                                                                     "rating": "stars"},
                   r"plays-1.csv, line 3, column 'stars' .*'five' is not a rating"),
}


def same_error_and_nothing_left(spec: SourceSpec, out, message: str) -> None:
    """Both paths refuse ``spec`` with the same one line matching ``message``; ``out`` is not created."""
    with pytest.raises(DataError) as single:
        prepare_dataset(spec, cache_dir=out)
    with pytest.raises(DataError) as beam:
        prepare_dataset_beam(spec, runner="DirectRunner", cache_dir=out)
    assert str(beam.value) == str(single.value) and "\n" not in str(beam.value)
    assert re.search(message, str(beam.value)), beam.value
    assert not out.exists()


@needs_beam
@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_fails_with_the_same_line_and_leaves_nothing(tmp_path, case):
    text, columns, message = BAD[case]
    good = ",".join(columns.values()) + "\n" + ",".join(["zoe", "1", "5"][:len(columns)]) + "\n"
    (tmp_path / "plays-0.csv").write_text(good)  # the first shard is fine, the second is not
    (tmp_path / "plays-1.csv").write_text(text)
    spec = build(SourceSpec, {"interactions": {"path": str(tmp_path / "plays-*.csv"), "columns": columns}},
                 "data.source")
    same_error_and_nothing_left(spec, tmp_path / "out", message)


@needs_beam
def test_a_check_over_all_shards_fails_as_on_one_machine(tmp_path):
    """Binary labels with no positive row anywhere: found only when every shard is counted."""
    for i in range(2):
        (tmp_path / f"plays-{i}.csv").write_text(f"u,i,liked\nu{i},1,0\nv{i},2,false\n")
    spec = build(SourceSpec, {"interactions": {"path": str(tmp_path / "plays-*.csv"), "columns": {
        "user": "u", "item": "i", "rating": "liked", "label": "binary"}}}, "data.source")
    with pytest.raises(DataError) as single:
        prepare_dataset(spec, cache_dir=tmp_path / "out")
    with pytest.raises(DataError) as beam:
        prepare_dataset_beam(spec, runner="DirectRunner", cache_dir=tmp_path / "out")
    assert str(beam.value) == str(single.value) and "no positive rows" in str(beam.value)
    assert not (tmp_path / "out").exists()


@needs_beam
def test_cli_runner_end_to_end_prints_what_the_single_machine_cli_prints(tmp_path, capsys):
    write(plays(), tmp_path / "plays.csv", "csv")
    write(catalogue(), tmp_path / "tracks.csv", "csv")
    args = ["prepare", "--interactions", str(tmp_path / "plays.csv"),
            "--columns", "user=listener,item=track,rating=stars,time=when",
            "--items", str(tmp_path / "tracks.csv"), "--item-columns", "id=sku,text=name,categories=tags"]
    assert main(args + ["--output-dir", str(tmp_path / "beam"), "--runner", "DirectRunner",
                        "--beam-option", "direct_num_workers=1"]) == 0
    beam_out = capsys.readouterr().out.splitlines()
    assert main(args + ["--output-dir", str(tmp_path / "single")]) == 0
    single_out = capsys.readouterr().out.splitlines()
    assert beam_out[1] == single_out[1] == "400 interactions, 30 users, 26 items, 3 categories"
    beam_dir, single_dir = (tmp_path / "beam").iterdir().__next__(), (tmp_path / "single").iterdir().__next__()
    assert beam_out[0] == str(beam_dir) and beam_dir.name == single_dir.name
    for name in FILES:
        assert (beam_dir / name).read_bytes() == (single_dir / name).read_bytes(), name


@needs_beam
@pytest.mark.parametrize("extra, message", [
    (["--runner", "DirectRunner", "--beam-option", "temp_location"],
     r"--beam-option 'temp_location': expected KEY=VALUE"),
    (["--runner", "DirectRunner", "--beam-option", "runner=FlinkRunner"], r"name the runner with --runner"),
    (["--beam-option", "project=p"], r"--beam-option needs --runner"),
    (["--runner", "NoSuchRunner"], r"--runner NoSuchRunner: Unexpected pipeline runner: NoSuchRunner\. Valid values"),
])
def test_cli_bad_beam_options_are_one_line_exit_2_and_nothing_written(tmp_path, capsys, extra, message):
    write(plays(n=20), tmp_path / "plays.csv", "csv")
    assert main(["prepare", "--interactions", str(tmp_path / "plays.csv"), "--columns", "user=listener,item=track",
                 "--output-dir", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_runner_without_beam_installed_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # import apache_beam raises ImportError
    write(plays(n=20), tmp_path / "plays.csv", "csv")
    assert main(["prepare", "--interactions", str(tmp_path / "plays.csv"), "--columns", "user=listener,item=track",
                 "--output-dir", str(tmp_path / "out"), "--runner", "DirectRunner"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --runner needs Apache Beam, which is not installed: pip install 'tfrs-lab[beam]'"
    with pytest.raises(ConfigError, match="pip install 'tfrs-lab\\[beam\\]'"):
        prepare_dataset_beam(build(SourceSpec, {"interactions": {"path": str(tmp_path / "plays.csv"), "columns": {
            "user": "listener", "item": "track"}}}, "data.source"), runner="DirectRunner", cache_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
