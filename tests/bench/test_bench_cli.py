"""`python -m tfrs_lab.bench <suite>` smoke runs on tiny synthetic data (shape of the outputs, not speed)."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tfrs_lab.bench.__main__ import main

TINY = ["--dataset", "synthetic", "--set", "data.synthetic.num_users=80", "--set", "data.synthetic.num_movies=60",
        "--set", "data.synthetic.ratings_per_user=15"]


def _results(out: Path, suite: str) -> dict:
    path = out / suite / "results.json"
    assert path.is_file()
    return json.loads(path.read_text())


def _pngs_written(results: dict) -> None:
    assert results["plots"]
    for p in results["plots"]:
        data = Path(p).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, p


def test_quality_suite_peers_on_both_splits(tmp_path, capsys):
    methods = "popularity,item_knn,implicit_als,implicit_bpr,ease,surprise_svd,tfrs_tutorial_ranking"
    assert main(["quality", *TINY, "--methods", methods, "--epochs", "1", "--seeds", "2",
                 "--output-dir", str(tmp_path)]) == 0
    r = _results(tmp_path, "quality")
    hash_, llo = r["splits"]["hash"], r["splits"]["leave-last-out"]
    assert {"popularity", "tfrs_tutorial_ranking"} <= set(hash_)
    assert {"popularity", "item_knn", "implicit_als", "implicit_bpr", "ease"} <= set(llo)
    assert "surprise_svd" in hash_ or "surprise_svd" in r["skipped"]
    for m in hash_.values():
        for k in ("hit_rate@10", "hit_rate@100"):
            if k in m:
                assert 0.0 <= m[k] <= 1.0
    for name in ("popularity", "item_knn", "implicit_als", "implicit_bpr", "ease"):
        assert 0.0 <= llo[name]["recall@10"] <= llo[name]["recall@50"] <= 1.0
        assert 0.0 <= llo[name]["ndcg@10"] <= llo[name]["recall@10"]
    assert llo["implicit_bpr"]["seeds"] == 2 and "recall@10_std" in llo["implicit_bpr"]
    assert llo["ease"]["lambda"] in (10, 50, 100, 200, 500, 1000, 2000, 5000) and 0 < llo["ease"]["validation_ndcg@10"] <= 1
    assert "recall@10_std" not in llo["ease"] and "seeds" not in llo["ease"]  # deterministic: one run
    assert hash_["tfrs_tutorial_ranking"]["seeds"] == 2 and "rmse_std" in hash_["tfrs_tutorial_ranking"]
    assert 0.0 < hash_["tfrs_tutorial_ranking"]["rmse"] < 4.0
    _pngs_written(r)
    table = capsys.readouterr().out
    assert "item_knn [leave-last-out]" in table and "recall@10" in table


def test_quality_suite_runs_our_models_once_per_seed(tmp_path, capsys):
    assert main(["quality", *TINY, "--methods", "tfrs_lab_retrieval", "--epochs", "1", "--seeds", "2",
                 "--output-dir", str(tmp_path)]) == 0
    r = _results(tmp_path, "quality")
    assert r["seeds"] == 2
    for split, metric in (("hash", "hit_rate@10"), ("leave-last-out", "recall@10")):
        row = r["splits"][split]["tfrs_lab_retrieval"]
        assert row["seeds"] == 2 and f"{metric}_std" in row and 0.0 <= row[f"{metric}_std"] <= 0.5
        assert [Path(d).name for d in row["run_dirs"]] == [f"retrieval-{split}-seed42", f"retrieval-{split}-seed43"]
        assert [yaml.safe_load((Path(d) / "config.yaml").read_text())["train"]["seed"] for d in row["run_dirs"]] == [42, 43]
        per_seed = [json.loads((Path(d) / "metrics.json").read_text())[metric] for d in row["run_dirs"]]
        assert row[metric] == pytest.approx(sum(per_seed) / 2)
        assert row[f"{metric}_std"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2)
    assert " ± " in capsys.readouterr().out


def test_training_suite_reports_time_to_quality_and_throughput(tmp_path, capsys):
    assert main(["training", *TINY, "--set", "model.history_length=5", "--epochs", "2", "--throughput-epochs", "2",
                 "--variants", "tutorial,jit", "--output-dir", str(tmp_path)]) == 0
    r = _results(tmp_path, "training")
    assert set(r["tasks"]) == {"retrieval", "ranking"}
    for task in r["tasks"].values():
        assert len(task["tfrs_lab"]["curve"]) == 2 and len(task["tfrs_tutorial"]["curve"]) == 3
        seconds = [p[0] for p in task["tfrs_lab"]["curve"]]
        assert 0 < seconds[0] < seconds[1]
        assert task["tfrs_lab"]["train_examples_per_second"] > 0
    names = [v["variant"] for v in r["variants"]]
    assert len(names) == 4 and sum("jit_compile" in n for n in names) == 2
    for v in r["variants"]:  # plain variants are measured; XLA ones are measured or say why they failed
        if "jit_compile" in v["variant"]:
            assert v.get("train_examples_per_second", 0) > 0 or v["error"]
        else:
            assert v["train_examples_per_second"] > 0 and not v.get("error"), v
    _pngs_written(r)
    assert len(r["plots"]) == 2
    assert "examples/s" in capsys.readouterr().out


def test_retrieval_index_suite_recall_against_brute_force(tmp_path, capsys):
    assert main(["retrieval-index", "--sizes", "3000", "--queries", "10", "--batches", "2",
                 "--output-dir", str(tmp_path)]) == 0
    r = _results(tmp_path, "retrieval-index")
    methods = {row["method"]: row for row in r["rows"]}
    assert methods["brute_force"]["recall@10"] == 1.0
    assert {"scann (ours)", "savedmodel (ours)"} <= set(methods)
    assert len([m for m in methods if m.startswith("scann leaves=")]) >= 3
    for row in r["rows"]:
        assert 0.0 <= row["recall@10"] <= 1.0
        assert row["single"]["p50_ms"] > 0 and row["batched"]["p99_ms"] >= row["batched"]["p50_ms"]
    # the SavedModel answers exactly like the in-memory default index
    assert methods["savedmodel (ours)"]["recall@10"] == methods["scann (ours)"]["recall@10"]
    assert set(r["defaults"]["3000"]) == {"recall@10", "single_speedup", "batched_speedup"}
    _pngs_written(r)
    assert "our defaults at 3,000 items" in capsys.readouterr().out


@pytest.mark.slow
def test_serving_suite_runs_the_serving_bench_in_a_child_process(tmp_path, capsys):
    assert main(["serving", "--serving-items", "2000", "--serving-duration", "0.5", "--serving-clients", "1",
                 "--serving-protocols", "grpc", "--serving-batching", "off", "--serving-floor-seconds", "0.5", "--output-dir", str(tmp_path)]) == 0
    r = _results(tmp_path, "serving")
    (setting,) = r["settings"]
    assert setting["errors"] == 0 and setting["qps"] > 0 and setting["p50_ms"] > 0
    assert r["floor_in_process_p50_ms"] > 0
    _pngs_written(r)


def test_quality_suite_on_own_data_one_split(tmp_path, capsys):
    rng = np.random.default_rng(0)
    lines = ["who\twhat\tplays"] + [f"u{u}\ta{a}\t{rng.integers(1, 500)}" for u in range(40)
                                    for a in rng.choice(30, size=8, replace=False)]
    (tmp_path / "plays.dat").write_text("\n".join(lines) + "\n")
    assert main(["quality", "--interactions", str(tmp_path / "plays.dat"),
                 "--columns", "user=who,item=what,rating=plays,label=implicit,time=plays", "--splits", "leave-last-out",
                 "--methods", "popularity,implicit_bpr", "--seeds", "1", "--output-dir", str(tmp_path / "out")]) == 0
    r = _results(tmp_path / "out", "quality")
    assert r["dataset"] == "own" and list(r["splits"]) == ["leave-last-out"]
    assert 0.0 <= r["splits"]["leave-last-out"]["popularity"]["recall@10"] <= 1.0
    assert "implicit_bpr [leave-last-out]" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["quality", "--splits", "random"], "--splits: unknown protocol(s) random"),
    (["quality", "--columns", "user=a,item=b"], "pass --interactions FILE too"),
    (["retrieval-index", "--sizes", "0"], "--sizes must be comma-separated positive integers"),
    (["quality", "--methods", "popularity,nope"], "unknown method(s) nope"),
    (["training", "--variants", "warp"], "unknown variant(s) warp"),
    (["training", "--throughput-epochs", "1"], "--throughput-epochs must be >= 2"),
    (["serving", "--serving-model", "/does/not/exist"], "--serving-model"),
])
def test_bad_input_exits_2_naming_the_flag(tmp_path, capsys, args, message):
    assert main([*args, "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
