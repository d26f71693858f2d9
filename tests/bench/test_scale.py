"""The MovieLens-25M-shaped generator and the ``scale`` suite, at tiny sizes (shape and behaviour, not speed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from tfrs_lab.bench.__main__ import main as bench_main
from tfrs_lab.bench.scale import OVER_CAP, OWN_DATASET, PREPARE_CACHE_HIT, ROW_KEYS, parse_bytes, run_scale, run_watched, tree_rss
from tfrs_lab.data.generate import main as generate_main
from tfrs_lab.data.synthetic import (ML25M_SHAPE, ParquetShape, SyntheticSpec, parse_count, planted_clusters,
                                     write_synthetic_parquet)
from tfrs_lab.training.rundir import PHASES

N = 20_000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_synthetic_parquet(tmp_path_factory.mktemp("gen") / "20k", interactions=N, seed=3, shard_rows=7_000)


def _table(out):
    return pq.read_table(out.output_dir / "interactions").to_pandas()


def test_shape_keeps_the_ml25m_ratios():
    big = ParquetShape.of("25M")
    assert (big.num_users, big.num_items, big.min_ratings) == (162_540, 59_047, 20)
    for n in (1_000_000, 5_000_000, 25_000_000):
        s = ParquetShape.of(n)
        assert s.num_users / n == pytest.approx(ML25M_SHAPE["users"] / ML25M_SHAPE["ratings"], rel=1e-3)
        assert s.num_items / n == pytest.approx(ML25M_SHAPE["movies"] / ML25M_SHAPE["ratings"], rel=1e-3)
    assert ParquetShape.of(N).num_items == 1000  # the floor of tiny sizes


def test_generator_counts_ids_and_value_ranges(tiny):
    df = _table(tiny)
    assert len(tiny.interaction_files) >= 3  # streamed in shards of whole users
    assert len(df) == tiny.num_interactions and 0.98 * N <= len(df) <= N
    shape = ParquetShape.of(N)
    assert tiny.num_users == shape.num_users and set(df.user_id) == set(range(1, shape.num_users + 1))
    assert df.item_id.min() >= 1 and df.item_id.max() <= shape.num_items
    assert not df.duplicated(["user_id", "item_id"]).any()  # a user rates an item once
    assert set(np.unique(df.rating)) <= {v / 2 for v in range(1, 11)} and df.rating.nunique() >= 8
    assert df.timestamp.between(ML25M_SHAPE["first_ts"], ML25M_SHAPE["last_ts"]).all()
    for part in tiny.interaction_files:  # whole users per shard
        users = pq.read_table(part, columns=["user_id"]).column(0).to_numpy()
        assert np.all(np.diff(users) >= 0)
    ordered = df.groupby("user_id").timestamp.apply(lambda t: bool(np.all(np.diff(t.to_numpy()) >= 0)))
    assert ordered.all()
    items = pq.read_table(tiny.items_file).to_pandas()
    assert list(items.item_id) == list(range(1, shape.num_items + 1))
    assert items.title.str.startswith("Synthetic Movie ").all()
    genres = items.genres.str.split("|")
    assert genres.map(len).min() >= 1 and items.genres.str.len().min() > 0


def test_popularity_is_skewed_and_activity_long_tailed(tiny):
    df = _table(tiny)
    counts = np.sort(df.item_id.value_counts().to_numpy())[::-1]
    items = ParquetShape.of(N).num_items
    assert counts[: items // 10].sum() / len(df) > 0.2  # top 10% of items: > 2x their share
    assert counts[0] > 5 * np.median(counts)  # the head item: rated by most users (saturated, as in ML-25M)
    per_user = df.groupby("user_id").size()
    assert per_user.min() >= ParquetShape.of(N).min_ratings
    assert per_user.max() > 4 * per_user.median() and per_user.mean() > per_user.median()


def test_same_seed_same_rows_other_seed_other_rows(tiny, tmp_path):
    again = write_synthetic_parquet(tmp_path / "a", interactions=N, seed=3, shard_rows=7_000)
    assert _table(again).equals(_table(tiny))
    assert pq.read_table(again.items_file).equals(pq.read_table(tiny.items_file))
    other = write_synthetic_parquet(tmp_path / "b", interactions=N, seed=4, shard_rows=7_000)
    assert not _table(other).equals(_table(tiny))


def test_the_clusters_are_planted_clusters(tiny):
    shape = ParquetShape.of(N)
    planted = planted_clusters(SyntheticSpec(num_users=shape.num_users, num_movies=shape.num_items,
                                             ratings_per_user=N // shape.num_users, num_clusters=20, seed=3))
    df = _table(tiny)
    home = planted.user_cluster[df.user_id - 1] == planted.movie_cluster[df.item_id - 1]
    second = planted.user_second_cluster[df.user_id - 1] == planted.movie_cluster[df.item_id - 1]
    # 80% drawn in taste; at this size a cluster has only 50 items, so heavy users exhaust theirs and
    # repeats are redrawn from the whole catalogue (~40% stay in taste); 2 of 20 clusters by chance: 10%.
    assert (home | second).mean() > 0.3


def test_co_occurrence_learns_what_popularity_cannot(tiny):
    """One random held-out item per user, ranked among the user's unseen items: item-item cosine
    co-occurrence (learned from the other rows) ranks it far higher than popularity and than chance."""
    df = _table(tiny)
    users, items = ParquetShape.of(N).num_users, ParquetShape.of(N).num_items
    held = df.assign(r=np.random.default_rng(0).random(len(df))).sort_values("r").groupby("user_id").head(1)
    train = df.drop(held.index)
    x = np.zeros((users, items), np.float32)
    x[train.user_id - 1, train.item_id - 1] = 1.0
    norm = np.sqrt(np.maximum(x.sum(0), 1.0))
    co = (x.T @ x) / norm[:, None] / norm[None, :]
    np.fill_diagonal(co, 0.0)
    target = np.zeros(users, int)
    target[held.user_id - 1] = held.item_id - 1

    def mean_rank(scores):
        scores = np.where(x > 0, -np.inf, scores)
        return float((scores > scores[np.arange(users), target][:, None]).sum(1).mean())

    learned, popular = mean_rank(x @ co), mean_rank(np.tile(x.sum(0), (users, 1)))
    chance = float((items - x.sum(1)).mean()) / 2  # mean rank of a random ordering of the unseen items
    assert learned < 0.75 * popular and popular < chance


def test_parse_count_and_bytes():
    assert [parse_count(t) for t in ("25M", "20k", "1_000", 7, "2.5M")] == [25_000_000, 20_000, 1000, 7, 2_500_000]
    assert parse_bytes("10G") == parse_bytes("10GiB") == 10 * 2**30 and parse_bytes("512M") == 512 * 2**20
    for bad in ("", "x", "-1", "0", "1q"):
        with pytest.raises(ValueError, match="not a positive count"):
            parse_count(bad)
    for bad in ("", "lots", "0", "-2G"):
        with pytest.raises(ValueError, match="not a positive size"):
            parse_bytes(bad)


def test_generate_cli_writes_a_spec_train_reads(tmp_path, capsys):
    out = tmp_path / "d"
    assert generate_main(["--interactions", "5k", "--output-dir", str(out), "--shard-rows", "2k"]) == 0
    assert f"--data {out / 'dataset.yaml'}" in capsys.readouterr().out
    from tfrs_lab.config import read_yaml
    from tfrs_lab.data.readers import read_source
    from tfrs_lab.data.spec import resolve_spec_paths
    from tfrs_lab.config import default_config_file, load_config

    source = resolve_spec_paths(read_yaml(out / "dataset.yaml"), out)
    cfg = load_config("retrieval", [default_config_file("retrieval")], [], extra={"data": {"dataset": "own", "source": source}})
    data = read_source(cfg.data.source)
    assert len(data.ratings["user_id"]) == len(pq.read_table(out / "interactions").to_pandas())
    assert data.dataset == "synthetic-5k" and len(data.movies["movie_id"]) == 1000
    assert set(np.unique(data.ratings["movie_id"])) <= set(data.movies["movie_id"])


@pytest.mark.parametrize("argv, needle", [
    (["--interactions", "lots"], "--interactions: 'lots' is not a positive count"),
    (["--interactions", "5k", "--clusters", "1"], "--clusters must be >= 2"),
    (["--interactions", "5k", "--shard-rows", "0"], "--shard-rows: '0' is not a positive count"),
])
def test_generate_cli_rejects_bad_input_with_one_line(tmp_path, capsys, argv, needle):
    out = tmp_path / "d"
    assert generate_main([*argv, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_generate_cli_refuses_a_non_empty_directory(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert generate_main(["--interactions", "5k", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --output-dir:") and "(--overwrite)" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


_HOG = "import time; b = b'x' * ({mib} << 20); print('allocated', flush=True); time.sleep(60)"


@pytest.mark.parametrize("use_psutil", [None, False])
def test_tree_rss_counts_the_children(use_psutil):
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', "
                               f"{_HOG.format(mib=200)!r}])"], start_new_session=True)
    try:
        for _ in range(300):  # wait for the grandchild's allocation (at most ~30 s)
            if tree_rss(parent.pid, use_psutil=use_psutil) > 200 << 20:
                break
            time.sleep(0.1)
        assert tree_rss(parent.pid, use_psutil=use_psutil) > 200 << 20
        assert tree_rss(parent.pid, use_psutil=use_psutil) > 2 * _own_rss(parent.pid)  # the grandchild counted
    finally:
        os.killpg(parent.pid, signal.SIGKILL)  # the test's own process group: parent and grandchild
        parent.wait()


def _own_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_watchdog_kills_a_process_over_the_cap(tmp_path):
    w = run_watched([sys.executable, "-c", _HOG.format(mib=400)], memory_cap=150 << 20, log_path=tmp_path / "hog.log")
    assert w.over_cap and not w.ok and w.status() == OVER_CAP
    assert w.returncode < 0 and w.peak_rss_bytes > 150 << 20  # killed by a signal, above the cap when seen
    ok = run_watched([sys.executable, "-c", "print('fine')"], memory_cap=150 << 20, log_path=tmp_path / "ok.log")
    assert ok.ok and ok.status() == "ok" and "fine" in ok.log
    bad = run_watched([sys.executable, "-c", "raise ValueError('broken input')"], log_path=tmp_path / "bad.log")
    assert bad.status() == "failed: ValueError: broken input"


def test_suite_records_over_cap_runs_and_moves_on(tmp_path):
    """A cap between the data stages' memory (~0.15 GiB) and a TensorFlow process's (> 0.5 GiB): every
    train run is killed and recorded, and the suite goes on to the next task and writes its files."""
    results, table = run_scale(tmp_path, sizes=(N,), tasks=("retrieval", "ranking"), memory_cap=400 << 20)
    rows = results["rows"]
    assert [(r["task"], r["stage"], r["status"]) for r in rows[:3]] == [
        (None, "generate", "ok"), (None, "prepare", "ok"), (None, PREPARE_CACHE_HIT, "ok")]
    for task in ("retrieval", "ranking"):
        mine = [r for r in rows if r["task"] == task]
        assert [r["stage"] for r in mine] == list(PHASES)
        assert OVER_CAP in [r["status"] for r in mine]
        killed = next(i for i, r in enumerate(mine) if r["status"] == OVER_CAP)
        assert all(r["status"] == "ok" for r in mine[:killed]) and all(r["status"] == "skipped" for r in mine[killed + 1:])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == rows and OVER_CAP in (tmp_path / "results.md").read_text()
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())  # generated data removed


@pytest.mark.slow
def test_scale_suite_end_to_end(tmp_path, capsys):
    assert bench_main(["scale", "--sizes", "20k", "--tasks", "retrieval", "--set", "export.verify=false",
                       "--output-dir", str(tmp_path)]) == 0
    out = tmp_path / "scale"
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert all(set(ROW_KEYS) <= set(r) for r in rows)
    assert [(r["task"], r["stage"]) for r in rows] == [(None, "generate"), (None, "prepare"), (None, PREPARE_CACHE_HIT),
                                                       *(("retrieval", p) for p in PHASES)]
    assert all(r["status"] == "ok" and r["seconds"] > 0 and r["peak_rss_bytes"] > 0 for r in rows)
    train = next(r for r in rows if r["stage"] == "train")
    assert train["examples_per_second"] > 0 and train["size"] == N and train["dataset"] == "synthetic-20k"
    metrics = json.loads((out / "runs" / "retrieval-20k" / "metrics.json").read_text())
    assert metrics["epochs_trained"] == 1 and metrics["phase_train_seconds"] == train["seconds"]
    assert {f"phase_{p}_seconds" for p in PHASES} <= set(metrics)
    # what a run killed after training (in evaluate or export) is read back from: its log's throughput line
    from tfrs_lab.training.rundir import parse_train_throughput
    log = (out / "logs" / "20k-retrieval.log").read_text()
    assert parse_train_throughput(log) == metrics["train_examples_per_second"] == train["examples_per_second"]
    assert [t["target"] for t in results["targets"]][-1] == "peak RSS <= 8 GiB in every stage"
    png = (out / "scale.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert "| synthetic-20k | retrieval | train |" in (out / "results.md").read_text()
    assert "generate" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["--memory-cap", "lots"], "--memory-cap: 'lots' is not a positive size"),
    (["--tasks", "retrieval,nope"], "--tasks: unknown task(s) nope"),
    (["--sizes", "1M,zero"], "--sizes must be comma-separated positive integers"),
    (["--stage-timeout", "0"], "--stage-timeout must be > 0"),
    (["--sizes", "1M", "--interactions", "r.csv", "--columns", "user=u,item=i"], "--sizes sets the synthetic"),
])
def test_scale_cli_rejects_bad_input_with_one_line(tmp_path, capsys, argv, needle):
    assert bench_main(["scale", *argv, "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_tasks_none_runs_the_data_stages_and_keep_data_keeps_them(tmp_path, capsys):
    assert bench_main(["scale", "--sizes", "5k", "--tasks", "none", "--keep-data", "--output-dir", str(tmp_path)]) == 0
    out = tmp_path / "scale"
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["stage"], r["status"]) for r in rows] == [("generate", "ok"), ("prepare", "ok"), (PREPARE_CACHE_HIT, "ok")]
    assert (out / "data" / "5k" / "dataset.yaml").is_file()
    prepared = list((out / "cache" / "5k" / "prepared").iterdir())  # what the runs' --data-dir would reuse
    assert len(prepared) == 1 and prepared[0].name.startswith("synthetic-5k-")


def test_own_files_are_prepared_cold_then_from_the_cache_under_the_watchdog(tmp_path, capsys, monkeypatch):
    """``--interactions``/``--columns`` (a path relative to the working directory): no synthetic data, the
    two prepare stages on the file, sized by the interactions its preparation counts."""
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 50, 600), rng.integers(0, 80, 600)
    lines = ["u,i,r"] + [f"u{a},i{b},{1 + (a + b) % 5}" for a, b in zip(users, items)]
    (tmp_path / "ratings.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    assert bench_main(["scale", "--tasks", "none", "--interactions", "ratings.csv", "--columns", "user=u,item=i,rating=r",
                       "--output-dir", "out"]) == 0
    out = tmp_path / "out" / "scale"
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["dataset"], r["stage"], r["status"]) for r in rows] == [
        (OWN_DATASET, "prepare", "ok"), (OWN_DATASET, PREPARE_CACHE_HIT, "ok")]
    assert all(r["size"] == 600 and r["peak_rss_bytes"] > 0 for r in rows)  # duplicates are interactions too
    spec = yaml.safe_load((out / OWN_DATASET / "dataset.yaml").read_text())
    assert spec["interactions"]["path"] == str(tmp_path / "ratings.csv")  # made absolute for the children
    assert len(list((out / "cache" / OWN_DATASET / "prepared").iterdir())) == 1  # the cache hit wrote nothing new
    assert not (out / "data").exists()
