"""`python -m tfrs_lab.bench select`: validation-only selection across data sets."""

import json

import pytest
import yaml

from tfrs_lab.bench.__main__ import main
from tfrs_lab.bench.select import choose, load_selection, selection_file
from tfrs_lab.config import ConfigError


def test_choose_prefers_the_best_mean_relative_score():
    values = {"a": {"x": 0.10, "y": 0.08, "z": 0.09}, "b": {"x": 0.30, "y": 0.45, "z": 0.42}}
    winner, rel = choose(values, minimise=False)
    # x: (1 + 0.30/0.45) / 2 = 0.8333; y: (0.8 + 1) / 2 = 0.9; z: (0.9 + 0.4200/0.45) / 2 = 0.9167
    assert winner == "z"
    assert rel["x"]["mean"] == pytest.approx((1 + 0.30 / 0.45) / 2)
    assert rel["y"]["a"] == pytest.approx(0.8) and rel["y"]["worst"] == pytest.approx(0.8)


def test_choose_minimises_rmse():
    winner, rel = choose({"a": {"x": 0.90, "y": 0.95}}, minimise=True)
    assert winner == "x" and rel["y"]["a"] == pytest.approx(0.90 / 0.95)


def test_shipped_selection_files_are_valid(tmp_path):
    sel = load_selection(selection_file("retrieval"), data_root=tmp_path)
    assert sel.task == "retrieval" and sel.split == "leave-last-out" and len(sel.candidates) >= 2
    assert sel.candidates[0].overrides == ()  # the first candidate is today's default
    ml = next(d for d in sel.datasets if d.name == "ml-100k")
    assert ml.data["data_zip"] == f"{tmp_path}/ml-100k.zip"


@pytest.mark.parametrize("body, message", [
    ({"task": "nope"}, "task: must be one of"),
    ({"objective": None}, "objective: is required"),
    ({"candidates": {"only": {}}}, "candidates: must map at least two"),
    ({"seeds": 0}, "seeds: must be an integer >= 1"),
    ({"colour": 1}, "unknown key(s) colour"),
    ({"datasets": {"d": {"interactions": "x.csv"}}}, "datasets.d: needs data"),
])
def test_bad_selection_files_are_rejected(tmp_path, body, message):
    raw = {"task": "retrieval", "objective": "ndcg@10", "split": "leave-last-out",
           "datasets": {"s": {"data": {"dataset": "synthetic"}}}, "candidates": {"a": {}, "b": {}}}
    raw.update(body)
    raw = {k: v for k, v in raw.items() if v is not None}
    path = tmp_path / "sel.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_selection(path)


@pytest.mark.slow
def test_select_runs_every_candidate_on_validation_only(tmp_path, capsys):
    synthetic = {"dataset": "synthetic", "synthetic": {"num_users": 80, "num_movies": 60, "ratings_per_user": 15}}
    sel = {"task": "retrieval", "objective": "recall@10", "split": "leave-last-out", "seeds": 1, "epochs": 2,
           "overrides": ["export.index=brute_force"],
           "datasets": {"small": {"data": synthetic},
                        "other": {"data": {**synthetic, "synthetic": {**synthetic["synthetic"], "seed": 3}}}},
           "candidates": {"default": {}, "tiny": {"model.embedding_dim": 4, "model.id_embedding_dim": 4}}}
    path = tmp_path / "sel.yaml"
    path.write_text(yaml.safe_dump(sel))
    out = tmp_path / "out"
    assert main(["select", "--tasks", "retrieval", "--selection", str(path), "--output-dir", str(out)]) == 0
    r = json.loads((out / "select" / "results.json").read_text())
    assert len(r["runs"]) == 4 and r["test_evaluated"] is False
    assert set(r["values"]) == {"small", "other"} and set(r["values"]["small"]) == {"default", "tiny"}
    for run in r["runs"]:
        metrics = json.loads((out / "select" / "runs" / run["run_dir"].split("/")[-1] / "metrics.json").read_text())
        assert metrics["test_evaluated"] is False and "recall@10" not in metrics  # the test split is never scored
        assert metrics["validation_recall@10"] == pytest.approx(run["value"])
    winner, _ = choose(r["values"], minimise=False)
    assert r["winner"] == winner
    selected = yaml.safe_load((out / "select" / "selected.yaml").read_text())
    assert selected["task"] == "retrieval"
    expected = {"model": {"embedding_dim": 4, "id_embedding_dim": 4}} if winner == "tiny" else {}
    assert selected == {"task": "retrieval", **expected}
    assert "winner:" in capsys.readouterr().out


def test_select_needs_a_task(tmp_path, capsys):
    assert main(["select", "--output-dir", str(tmp_path)]) == 2
    assert "select needs --tasks naming one task" in capsys.readouterr().err


def test_an_objective_the_task_does_not_report_is_refused_before_training(tmp_path, capsys):
    sel = {"task": "retrieval", "objective": "rmse", "split": "leave-last-out",
           "datasets": {"s": {"data": {"dataset": "synthetic", "synthetic": {"num_users": 40, "num_movies": 30,
                                                                              "ratings_per_user": 10}}}},
           "candidates": {"a": {}, "b": {"model.temperature": 0.2}}}
    path = tmp_path / "sel.yaml"
    path.write_text(yaml.safe_dump(sel))
    out = tmp_path / "out"
    assert main(["select", "--tasks", "retrieval", "--selection", str(path), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "report no validation_rmse" in err and "ndcg@10" in err
    assert not (out / "select" / "runs").exists()  # refused before any run
