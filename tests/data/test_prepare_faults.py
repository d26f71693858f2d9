"""Bad input at size during preparation (issue 16): a source file that disappears or is truncated
while it is being prepared, and a disk that fills while the prepared arrays are written. Each is one
``error:`` line with exit code 2 from ``python -m tfrs_lab.data prepare`` (the same function users
run), leaves no prepared or half-written (staging) directory behind, and the next run prepares
cleanly. Both the single-machine path and the Beam ``DirectRunner`` (in process, so the fault
injection below reaches its workers). Faults are injected by wrapping the read or write call."""

from __future__ import annotations

import errno
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import tfrs_lab.data.prepared as prepared_module
from tfrs_lab.data.__main__ import main
from tfrs_lab.data.prepared import load_prepared

from test_prepared import plays, write  # (same directory)

needs_beam = pytest.mark.skipif(importlib.util.find_spec("apache_beam") is None,
                                reason="apache-beam is not installed: pip install 'tfrs-lab[beam]'")
PATHS = [pytest.param([], id="single-machine"),
         pytest.param(["--runner", "DirectRunner"], id="beam-direct", marks=needs_beam)]
COLUMNS = "user=listener,item=track,rating=stars,time=when"


def shards(tmp_path: Path, n: int = 3) -> list[Path]:
    """``n`` CSV shards of seeded interactions (``plays-0.csv`` ...)."""
    whole = plays(n=600)
    size = len(whole["listener"]) // n
    return [write({k: v[i * size:(i + 1) * size] for k, v in whole.items()}, tmp_path / f"plays-{i}.csv", "csv")
            for i in range(n)]


def argv(tmp_path: Path, runner: list[str]) -> list[str]:
    return ["prepare", "--interactions", str(tmp_path / "plays-*.csv"), "--columns", COLUMNS,
            "--output-dir", str(tmp_path / "out"), *runner]


def module_of(runner: list[str]):
    """The module whose ``_interaction_file`` reads a shard on this path."""
    if runner:
        import tfrs_lab.data.beam_prepare as beam_module

        return beam_module
    return prepared_module


def assert_one_line_and_nothing_left(capsys, tmp_path: Path, code: int, *needles: str) -> None:
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(n in lines[0] for n in needles), (needles, lines[0])
    out_dir = tmp_path / "out"
    assert not out_dir.exists() or list(out_dir.iterdir()) == []  # no dataset, no .partial staging folder


def prepare_cleanly(capsys, tmp_path: Path, runner: list[str]) -> np.ndarray:
    """The next run: exit 0, one complete dataset and nothing else; its user codes."""
    assert main(argv(tmp_path, runner)) == 0
    ds = load_prepared(capsys.readouterr().out.splitlines()[0])
    assert [p.name for p in (tmp_path / "out").iterdir()] == [ds.path.name]
    return np.asarray(ds.user)


@pytest.mark.parametrize("runner", PATHS)
def test_a_source_that_disappears_mid_preparation_is_one_line_and_the_next_run_is_clean(tmp_path, capsys,
                                                                                         monkeypatch, runner):
    files = shards(tmp_path)
    module = module_of(runner)
    real = module._interaction_file
    kept = files[1].read_bytes()

    def vanish_then_read(file, spec, where):  # after hashing: the shard is removed before it is read
        if Path(str(file)) == files[1]:
            files[1].unlink()
        return real(file, spec, where)

    monkeypatch.setattr(module, "_interaction_file", vanish_then_read)
    code = main(argv(tmp_path, runner))
    assert_one_line_and_nothing_left(capsys, tmp_path, code, str(files[1]), "disappeared")
    monkeypatch.setattr(module, "_interaction_file", real)
    files[1].write_bytes(kept)
    assert len(prepare_cleanly(capsys, tmp_path, runner)) == 600


@pytest.mark.parametrize("runner", PATHS)
def test_a_source_truncated_mid_preparation_is_one_line_and_the_next_run_is_clean(tmp_path, capsys, monkeypatch,
                                                                                   runner):
    files = shards(tmp_path)
    module = module_of(runner)
    real = module._interaction_file
    lines = files[2].read_text().splitlines(keepends=True)

    def truncate_then_read(file, spec, where):  # after hashing: a writer cuts the shard to half its rows
        if Path(str(file)) == files[2]:
            files[2].write_text("".join(lines[: len(lines) // 2]))
        return real(file, spec, where)

    monkeypatch.setattr(module, "_interaction_file", truncate_then_read)
    code = main(argv(tmp_path, runner))
    assert_one_line_and_nothing_left(capsys, tmp_path, code, str(files[2]), "changed while it was being prepared")
    monkeypatch.setattr(module, "_interaction_file", real)
    # the next run prepares what the files hold now (and a fingerprint of exactly that)
    assert len(prepare_cleanly(capsys, tmp_path, runner)) == 400 + len(lines) // 2 - 1


def test_a_full_disk_while_writing_the_arrays_is_one_line_and_the_next_run_is_clean(tmp_path, capsys,
                                                                                     monkeypatch):
    shards(tmp_path)
    real = prepared_module._write

    def disk_fills(encoded, manifest, stage):  # the first array half written, then ENOSPC
        data = np.ascontiguousarray(encoded.arrays["user"]).tobytes()
        (stage / "user.npy").write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(stage / "user.npy"))

    monkeypatch.setattr(prepared_module, "_write", disk_fills)
    code = main(argv(tmp_path, []))
    assert_one_line_and_nothing_left(capsys, tmp_path, code, "No space left on device", str(tmp_path / "out"),
                                     "free space")
    monkeypatch.setattr(prepared_module, "_write", real)
    assert len(prepare_cleanly(capsys, tmp_path, [])) == 600


@needs_beam
def test_a_full_disk_in_a_beam_worker_is_one_line_and_the_next_run_is_clean(tmp_path, capsys, monkeypatch):
    import tfrs_lab.data.beam_prepare as beam_module

    shards(tmp_path)
    real = beam_module._write_at
    calls = []

    def disk_fills(path, start, values):  # a worker's positional write: the second one hits ENOSPC
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, start, values)

    monkeypatch.setattr(beam_module, "_write_at", disk_fills)
    code = main(argv(tmp_path, ["--runner", "DirectRunner"]))
    assert_one_line_and_nothing_left(capsys, tmp_path, code, "No space left on device", "free space")
    assert len(calls) >= 2
    monkeypatch.setattr(beam_module, "_write_at", real)
    assert len(prepare_cleanly(capsys, tmp_path, ["--runner", "DirectRunner"])) == 600
