"""Source paths and the prepared-dataset cache dir as URLs (tfrs_lab.data.filesystem): ``file://``
and fsspec's in-memory filesystem (``memory://``), never the network. The prepared files are the
ones a local path gives; a remote cache is published manifest last, reused, re-fetched into its
local mirror, and never left half-written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import tfrs_lab.data.prepared as prepared_module
from tfrs_lab.data.__main__ import main
from tfrs_lab.data.movielens import DataError
from tfrs_lab.data.prepared import MANIFEST, load_prepared, prepare_dataset
from tfrs_lab.data.readers import read_source
from tfrs_lab.data.spec import SourceSpec
from tfrs_lab.schema import ConfigError, build

from test_prepared import catalogue, plays, write  # (same directory)

fsspec = pytest.importorskip("fsspec")
needs_beam = pytest.mark.skipif(importlib.util.find_spec("apache_beam") is None,
                                reason="apache-beam is not installed: pip install 'tfrs-lab[beam]'")
COLUMNS = {"user": "listener", "item": "track", "rating": "stars", "time": "when"}
ARRAYS = ("user", "item", "rating", "timestamp", "sequence_offsets", "sequence_rows")


@pytest.fixture
def memory(tmp_path):
    """A fresh ``memory://<root>`` folder (fsspec's in-memory filesystem is per process); its fs."""
    fs = fsspec.filesystem("memory")
    root = f"/{tmp_path.name}"
    yield f"memory://{tmp_path.name}", fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


def local_files(tmp_path: Path) -> tuple[list[Path], Path]:
    """Two CSV shards of seeded interactions and a catalogue, on local disk."""
    whole = plays()
    shards = [write({k: v[i * 200:(i + 1) * 200] for k, v in whole.items()}, tmp_path / f"plays-{i}.csv", "csv")
              for i in range(2)]
    return shards, write(catalogue(), tmp_path / "tracks.csv", "csv")


def spec(interactions: str, items: str) -> SourceSpec:
    return build(SourceSpec, {"name": "plays", "interactions": {"path": interactions, "columns": COLUMNS},
                              "items": {"path": items, "columns": {"id": "sku", "text": "name", "categories": "tags"}}},
                 "data.source")


def same_arrays(a, b) -> None:
    for k in ARRAYS:
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k), err_msg=k)
    assert a.manifest["counts"] == b.manifest["counts"]
    da, db = a.to_data(), b.to_data()
    for table in ("ratings", "movies"):
        for k, v in getattr(da, table).items():
            np.testing.assert_array_equal(v, getattr(db, table)[k], err_msg=f"{table}.{k}")


def test_memory_urls_for_sources_and_cache_give_the_local_paths_dataset(tmp_path, memory, caplog):
    url, fs, root = memory
    shards, items = local_files(tmp_path)
    for f in [*shards, items]:
        fs.pipe(f"{root}/src/{f.name}", f.read_bytes())
    local = prepare_dataset(spec(str(tmp_path / "plays-*.csv"), str(items)), cache_dir=tmp_path / "cache")
    remote_spec = spec(f"{url}/src/plays-*.csv", f"{url}/src/tracks.csv")
    ds = prepare_dataset(remote_spec, cache_dir=f"{url}/prepared")
    same_arrays(ds, local)
    assert [s["path"] for s in ds.manifest["sources"]] == [f"{url}/src/plays-0.csv", f"{url}/src/plays-1.csv",
                                                            f"{url}/src/tracks.csv"]
    assert [s["sha256"] for s in ds.manifest["sources"]] == [s["sha256"] for s in local.manifest["sources"]]
    published = f"{root}/prepared/{ds.path.name}"
    assert sorted(Path(p).name for p in fs.ls(published, detail=False)) == sorted(p.name for p in ds.path.iterdir())
    assert json.loads(fs.cat(f"{published}/{MANIFEST}")) == ds.manifest
    assert read_source(remote_spec).ratings["user_id"].tolist() == local.to_data().ratings["user_id"].tolist()

    caplog.set_level("INFO", logger="tfrs_lab")
    again = prepare_dataset(remote_spec, cache_dir=f"{url}/prepared")  # reused: the mirror has it
    assert again.path == ds.path and f"reusing {url}/prepared/{ds.path.name}" in caplog.text
    import shutil

    shutil.rmtree(ds.path)  # another machine: no local mirror yet -> fetched from the remote cache
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prepared_module, "_encode", lambda *a, **k: pytest.fail("a published dataset is not prepared again"))
        fetched = prepare_dataset(remote_spec, cache_dir=f"{url}/prepared")
    same_arrays(fetched, local)


def test_a_remote_directory_without_its_manifest_is_replaced_not_used(tmp_path, memory, monkeypatch):
    url, fs, root = memory
    shards, items = local_files(tmp_path)
    s = spec(str(tmp_path / "plays-*.csv"), str(items))
    real_upload = prepared_module.upload_dir

    def upload_fails_midway(local, target, *, last):  # the connection drops after the first file
        first = sorted(p for p in local.iterdir() if p.name != last)[0]
        fs.pipe(f"{root}{target[len(url):]}/{first.name}", first.read_bytes())
        raise OSError("connection reset by peer")

    monkeypatch.setattr(prepared_module, "upload_dir", upload_fails_midway)
    with pytest.raises(DataError, match=r"could not publish the prepared dataset to memory://.*connection reset"):
        prepare_dataset(s, cache_dir=f"{url}/prepared")
    assert not fs.exists(f"{root}/prepared") or fs.ls(f"{root}/prepared", detail=False) == []
    monkeypatch.setattr(prepared_module, "upload_dir", real_upload)
    fs.pipe(f"{root}/prepared/stale/user.npy", b"half")  # a partial upload of someone else: never read
    ds = prepare_dataset(s, cache_dir=f"{url}/prepared")
    assert fs.exists(f"{root}/prepared/{ds.path.name}/{MANIFEST}") and len(ds.user) == 400


def test_file_urls_work_like_the_paths_they_name(tmp_path, capsys):
    shards, items = local_files(tmp_path)
    local = prepare_dataset(spec(str(tmp_path / "plays-*.csv"), str(items)), cache_dir=tmp_path / "a")
    argv = ["prepare", "--interactions", f"file://{tmp_path}/plays-*.csv",
            "--columns", "user=listener,item=track,rating=stars,time=when",
            "--items", f"file://{items}", "--item-columns", "id=sku,text=name,categories=tags:|",
            "--output-dir", f"file://{tmp_path}/b"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    ds = load_prepared(out[0])
    assert ds.path.parent == tmp_path / "b"  # written in place (atomic rename), no mirror
    same_arrays(ds, local)
    assert ds.manifest["spec"]["interactions"]["path"] == f"file://{tmp_path}/plays-*.csv"


def test_missing_remote_files_and_bad_rows_are_one_line_naming_the_url(tmp_path, memory, capsys):
    url, fs, root = memory
    shards, items = local_files(tmp_path)
    fs.pipe(f"{root}/src/plays.csv", b"listener,track,stars,when\nL1,3,five,1600000000\n")
    fs.pipe(f"{root}/src/tracks.csv", items.read_bytes())
    cases = [(f"{url}/src/nothing-*.csv", "no file matches"), (f"{url}/src/missing.csv", "does not exist"),
             (f"{url}/src/plays.csv", f"{url}/src/plays.csv, line 2, column 'stars'")]
    for path, message in cases:
        code = main(["prepare", "--interactions", path, "--columns", "user=listener,item=track,rating=stars,time=when",
                     "--output-dir", f"{url}/prepared"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], (path, err)
        assert "tfrs_lab-fetch-" not in err[0]  # the URL, not the temporary local copy
    assert not fs.exists(f"{root}/prepared")


def test_an_unknown_scheme_is_one_line_naming_the_fix(tmp_path, capsys):
    code = main(["prepare", "--interactions", "nosuchscheme://bucket/plays.csv", "--columns", "user=u,item=i",
                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nosuchscheme://bucket/plays.csv" in err[0] and "install" in err[0]
    assert not (tmp_path / "out").exists()


@needs_beam
def test_beam_direct_runner_reads_urls_and_publishes_to_a_url_cache(tmp_path, memory):
    from tfrs_lab.data.beam_prepare import prepare_dataset_beam

    url, fs, root = memory
    shards, items = local_files(tmp_path)
    for f in [*shards, items]:
        fs.pipe(f"{root}/src/{f.name}", f.read_bytes())
    remote_spec = spec(f"{url}/src/plays-*.csv", f"{url}/src/tracks.csv")
    single = prepare_dataset(remote_spec, cache_dir=tmp_path / "single")
    ds = prepare_dataset_beam(remote_spec, runner="DirectRunner", cache_dir=f"{url}/prepared")
    for name in sorted(p.name for p in single.path.iterdir()):  # the same bytes as the single-machine path
        assert (ds.path / name).read_bytes() == (single.path / name).read_bytes(), name
        assert fs.cat(f"{root}/prepared/{ds.path.name}/{name}") == (single.path / name).read_bytes(), name
    with pytest.raises(ConfigError, match="a filesystem they all mount"):
        prepare_dataset_beam(remote_spec, runner="PortableRunner", cache_dir=f"{url}/other")
