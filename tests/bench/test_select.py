"""`python -m tfrs_lab.bench select`: validation-only selection across data sets."""

import json

import pytest
import yaml

from tfrs_lab.bench.__main__ import main
from tfrs_lab.bench.select import choose, load_selection, restrict_datasets, selection_file
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


def test_choose_takes_each_data_sets_own_direction():
    values = {"rmse_set": {"x": 0.90, "y": 0.99}, "hit_set": {"x": 0.50, "y": 0.60}}
    winner, rel = choose(values, minimise={"rmse_set": True, "hit_set": False})
    assert rel["x"]["rmse_set"] == pytest.approx(1.0) and rel["y"]["rmse_set"] == pytest.approx(0.90 / 0.99)
    assert rel["x"]["hit_set"] == pytest.approx(0.50 / 0.60) and rel["y"]["hit_set"] == pytest.approx(1.0)
    assert winner == "y"  # x: (1 + 0.8333) / 2 = 0.9167; y: (0.9091 + 1) / 2 = 0.9545


def test_a_data_set_may_name_its_own_split_and_objective(tmp_path):
    sel = load_selection(selection_file("retrieval"), data_root=tmp_path)
    by_name = {d.name: d for d in sel.datasets}
    assert (sel.split_of(by_name["ml-100k"]), sel.objective_of(by_name["ml-100k"])) == ("leave-last-out", "ndcg@10")
    assert (sel.split_of(by_name["ml-100k-hash"]), sel.objective_of(by_name["ml-100k-hash"])) == ("hash",
                                                                                                  "hit_rate@100")
    assert by_name["ml-100k-hash"].data == by_name["ml-100k"].data  # the same data, another protocol


SHIPPED = sorted(p.stem for p in selection_file("retrieval").parent.glob("*.yaml"))


def test_every_task_with_chosen_defaults_ships_a_selection_file():
    assert {"retrieval", "sequential", "autoencoder", "ranking", "multitask"} <= set(SHIPPED)


@pytest.mark.parametrize("task", SHIPPED)
def test_shipped_selection_files_are_valid(tmp_path, task):
    # load_selection resolves every candidate's config and checks the objective: a typo fails here
    sel = load_selection(selection_file(task), data_root=tmp_path)
    assert sel.task == task.split("-")[0] and len(sel.candidates) >= 2  # <task>.yaml or <task>-<topic>.yaml
    assert sel.candidates[0].overrides == ()  # the first candidate is today's default
    # no two candidates are one configuration (load_selection refuses that), e.g. a winner adopted as the
    # default while its old candidate row stays
    paths = [d.archive if d.archive is not None else d.data.get("data_zip") for d in sel.datasets]
    assert all(p is None or p.startswith(f"{tmp_path}/") for p in paths)  # {data_root} resolved everywhere
    assert any(p is not None for p in paths)  # a topic file may hold Last.fm alone (sequential-lastfm.yaml)
    ml = [d for d in sel.datasets if d.name == "ml-100k"]
    assert not ml or ml[0].data["data_zip"] == f"{tmp_path}/ml-100k.zip"


def test_the_multitask_selection_scores_both_heads_on_every_data_set(tmp_path):
    sel = load_selection(selection_file("multitask"), data_root=tmp_path)
    assert sel.objective == "hit_rate@100,rmse" and sel.split == "hash"
    assert [d.name for d in sel.datasets] == ["ml-100k", "synthetic"]  # Last.fm has play counts, no ratings
    columns = sel.columns()
    assert list(columns) == ["ml-100k/hit_rate@100", "ml-100k/rmse", "synthetic/hit_rate@100", "synthetic/rmse"]
    assert {c: m for c, (_, m) in columns.items()}["ml-100k/rmse"] == "rmse"
    # the candidates move the heads' loss weights and the history; the default before is pinned
    overlays = {c.name: set(c.overrides) for c in sel.candidates}
    assert overlays["weights_1_history_50"] == {"model.rating_weight=1.0", "model.history_length=50"}
    assert {w for o in overlays.values() for w in o if w.startswith("model.rating_weight=")} == {
        "model.rating_weight=1.0", "model.rating_weight=10.0", "model.rating_weight=1000.0"}  # and the default's 100


def test_a_single_objective_names_its_column_after_the_data_set(tmp_path):
    sel = load_selection(selection_file("retrieval"), data_root=tmp_path)
    assert {c: m for c, (_, m) in sel.columns().items()} == {
        "ml-100k": "ndcg@10", "ml-100k-hash": "hit_rate@100", "lastfm": "ndcg@10", "synthetic": "ndcg@10"}


def test_minimised_objectives_are_rmse_and_mae(tmp_path):
    assert load_selection(selection_file("ranking"), data_root=tmp_path).minimise
    assert not load_selection(selection_file("sequential"), data_root=tmp_path).minimise


@pytest.mark.parametrize("body, message", [
    ({"task": "nope"}, "task: must be one of"),
    ({"objective": None}, "objective: is required"),
    ({"candidates": {"only": {}}}, "candidates: must map at least two"),
    ({"seeds": 0}, "seeds: must be an integer >= 1"),
    ({"colour": 1}, "unknown key(s) colour"),
    ({"datasets": {"d": {"interactions": "x.csv"}}}, "datasets.d: needs data"),
    ({"configs": ["no-such.yaml"]}, "configs: 'no-such.yaml' is not a shipped config"),
    ({"candidates": {"a": {}, "b": {"model.embedding_dim": 0}}}, "candidates.b: model.embedding_dim"),
    ({"candidates": {"a": {}, "b": {"model.colour": 1}}}, "candidates.b:"),
    ({"objective": "rmse"}, "objective: the retrieval runs report no validation_rmse"),
    ({"objective": ["ndcg@10", "rmse"]}, "objective: the retrieval runs report no validation_rmse"),
    ({"objective": []}, "objective: is required"),
    ({"objective": ["ndcg@10", "ndcg@10"]}, "objective: is required: a validation metric name such as ndcg@10, or a "
                                           "list of distinct ones"),
    ({"datasets": {"d": {"data": {"dataset": "synthetic"}, "objective": ["ndcg@10", 3]}}},
     "datasets.d.objective: is required"),
    ({"candidates": {"a": {}, "b": {"model.history_length": "auto"}}},
     "candidates.b: resolves to the same config as candidates.a"),
    ({"task": "autoencoder", "configs": ["autoencoder-implicit.yaml"], "epochs": 5},
     "candidates.a: model.mult.kl_anneal_epochs (20) must be <= train.epochs (5)"),
    ({"datasets": {"d": {"data": {"dataset": "synthetic"}, "split": "hash"}}},  # hash reports hit rates only
     "datasets.d.objective: the retrieval runs report no validation_ndcg@10 on split hash; choose an objective "
     "among hit_rate@10"),
    ({"datasets": {"d": {"data": {"dataset": "synthetic"}, "split": "hash", "objective": "rmse"}}},
     "datasets.d.objective: the retrieval runs report no validation_rmse on split hash"),
    ({"datasets": {"d": {"data": {"dataset": "synthetic"}, "split": ""}}}, "datasets.d.split: must be a non-empty"),
    ({"datasets": {"d": {"data": {"dataset": "synthetic", "split": "hash"}}}},
     "datasets.d.data.split: is set by the selection: write split: hash beside data instead"),
])
def test_bad_selection_files_are_rejected(tmp_path, body, message):
    raw = {"task": "retrieval", "objective": "ndcg@10", "split": "leave-last-out",
           "datasets": {"s": {"data": {"dataset": "synthetic"}}},
           "candidates": {"a": {}, "b": {"model.history_length": 20}}}
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


def _select(tmp_path, sel: dict) -> tuple:
    """Writes ``sel`` as a selection file, runs ``bench select`` on it; returns (its output dir, results.json)."""
    path = tmp_path / "sel.yaml"
    path.write_text(yaml.safe_dump(sel))
    out = tmp_path / "out"
    assert main(["select", "--tasks", sel["task"], "--selection", str(path), "--output-dir", str(out)]) == 0
    return out / "select", json.loads((out / "select" / "results.json").read_text())


@pytest.mark.slow
def test_select_scores_each_data_set_on_its_own_protocol(tmp_path):
    sel = {"task": "retrieval", "objective": "recall@10", "split": "leave-last-out", "seeds": 1, "epochs": 1,
           "overrides": ["export.index=brute_force", "model.embedding_dim=8", "model.id_embedding_dim=8"],
           "datasets": {"lol": {"data": TINY},
                        "hashed": {"data": TINY, "split": "hash", "objective": "hit_rate@10"}},
           "candidates": {"default": {}, "short": {"model.history_length": 5}}}
    out, r = _select(tmp_path, sel)
    assert r["splits"] == {"lol": "leave-last-out", "hashed": "hash"} and r["test_evaluated"] is False
    assert r["objectives"] == {"lol": "validation_recall@10", "hashed": "validation_hit_rate@10"}
    assert len(r["runs"]) == 4
    for run in r["runs"]:
        run_dir = out / "runs" / run["run_dir"].split("/")[-1]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["data"]["split"] == r["splits"][run["dataset"]]
        assert metrics["test_evaluated"] is False
        assert not any(k.startswith(("recall@", "hit_rate@", "ndcg@")) for k in metrics)  # no test metric
        assert metrics[r["objectives"][run["dataset"]]] == pytest.approx(run["value"])
    assert r["winner"] == choose(r["values"], minimise=False)[0]
    assert "hashed (hash, hit_rate@10)" in (out / "selected.yaml").read_text()


@pytest.mark.slow
def test_select_scores_the_multitask_heads_as_columns_of_their_own(tmp_path):
    sel = {"task": "multitask", "objective": ["hit_rate@10", "rmse"], "split": "hash", "seeds": 1, "epochs": 2,
           "overrides": ["export.index=brute_force", "model.embedding_dim=8", "model.id_embedding_dim=8"],
           "datasets": {"a": {"data": TINY}, "b": {"data": {**TINY, "synthetic": {**TINY["synthetic"], "seed": 5}}}},
           "candidates": {"default": {}, "retrieval_only": {"model.rating_weight": 0.0}}}
    out, r = _select(tmp_path, sel)
    assert r["objective"] == "validation_hit_rate@10,validation_rmse" and r["test_evaluated"] is False
    assert r["objectives"] == {"a/hit_rate@10": "validation_hit_rate@10", "a/rmse": "validation_rmse",
                               "b/hit_rate@10": "validation_hit_rate@10", "b/rmse": "validation_rmse"}
    assert len(r["runs"]) == 4  # one run per candidate and data set scores both heads
    for run in r["runs"]:
        metrics = json.loads((out / "runs" / run["run_dir"].split("/")[-1] / "metrics.json").read_text())
        assert metrics["test_evaluated"] is False and "rmse" not in metrics and "hit_rate@10" not in metrics
        assert run["values"] == {"hit_rate@10": pytest.approx(metrics["validation_hit_rate@10"]),
                                 "rmse": pytest.approx(metrics["validation_rmse"])}
        assert r["values"][f"{run['dataset']}/rmse"][run["candidate"]] == pytest.approx(metrics["validation_rmse"])
    for column, per in r["values"].items():  # RMSE columns minimised, hit-rate columns maximised
        lower = column.endswith("/rmse")
        best = (min if lower else max)(per, key=per.get)
        assert r["winner_per_dataset"][column] == best
        for c, v in per.items():
            assert r["relative"][c][column] == pytest.approx(per[best] / v if lower else v / per[best])
    assert r["values"]["a/rmse"]["default"] != r["values"]["a/rmse"]["retrieval_only"]  # the weight reaches the head
    winner, relative = choose(r["values"], minimise={c: c.endswith("/rmse") for c in r["values"]})
    assert r["winner"] == winner and all(r["relative"][c] == pytest.approx(relative[c]) for c in relative)
    assert "a/rmse (hash, rmse)" in (out / "selected.yaml").read_text()


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


TINY = {"dataset": "synthetic", "synthetic": {"num_users": 60, "num_movies": 40, "ratings_per_user": 12}}


@pytest.mark.slow
def test_select_minimises_validation_rmse(tmp_path):
    sel = {"task": "ranking", "objective": "rmse", "split": "hash", "epochs": 2,
           "overrides": ["model.architecture=mf", "model.history_length=0"],
           "datasets": {"a": {"data": TINY}, "b": {"data": {**TINY, "synthetic": {**TINY["synthetic"], "seed": 5}}}},
           "candidates": {"default": {}, "fast": {"train.learning_rate": 0.05}, "tiny": {"model.embedding_dim": 2}}}
    path = tmp_path / "sel.yaml"
    path.write_text(yaml.safe_dump(sel))
    out = tmp_path / "out"
    assert main(["select", "--tasks", "ranking", "--selection", str(path), "--output-dir", str(out)]) == 0
    r = json.loads((out / "select" / "results.json").read_text())
    assert r["objective"] == "validation_rmse" and r["test_evaluated"] is False
    for d, per in r["values"].items():
        best = min(per, key=per.get)  # the lowest RMSE is best: relative score 1, the others below
        assert r["winner_per_dataset"][d] == best and r["relative"][best][d] == pytest.approx(1.0)
        for c, v in per.items():
            assert r["relative"][c][d] == pytest.approx(per[best] / v) and (c == best or v > per[best])
    means = {c: r["relative"][c]["mean"] for c in r["values"]["a"]}
    assert r["winner"] == max(means, key=means.get)
    assert max(r["values"]["a"].values()) - min(r["values"]["a"].values()) > 0.01  # the candidates really differ


@pytest.mark.slow
def test_select_layers_the_configs_overlay_under_every_candidate(tmp_path):
    sel = {"task": "autoencoder", "configs": ["autoencoder-implicit.yaml"], "objective": "ndcg@10",
           "split": "leave-last-out", "epochs": 1,
           "overrides": ["export.index=brute_force", "model.mult.kl_anneal_epochs=1"],
           "datasets": {"s": {"data": TINY}},
           "candidates": {"default": {}, "dae": {"model.architecture": "dae"}}}
    path = tmp_path / "sel.yaml"
    path.write_text(yaml.safe_dump(sel))
    out = tmp_path / "out"
    assert main(["select", "--tasks", "autoencoder", "--selection", str(path), "--output-dir", str(out)]) == 0
    runs = out / "select" / "runs"
    default = yaml.safe_load((runs / "s-default-seed42" / "config.yaml").read_text())
    dae = yaml.safe_load((runs / "s-dae-seed42" / "config.yaml").read_text())
    # configs/autoencoder.yaml alone is AutoRec with batch 256 and learning rate 0.001
    assert default["model"]["architecture"] == "vae" and dae["model"]["architecture"] == "dae"
    assert default["train"]["learning_rate"] == dae["train"]["learning_rate"] == 0.003
    r = json.loads((out / "select" / "results.json").read_text())
    assert r["configs"] == ["autoencoder-implicit.yaml"]
    assert "configs/autoencoder-implicit.yaml" in (out / "select" / "selected.yaml").read_text()


def test_datasets_restricts_a_selection_to_the_named_data_sets(tmp_path):
    sel = load_selection(selection_file("sequential"), data_root=tmp_path)
    only = restrict_datasets(sel, "lastfm")
    assert [d.name for d in only.datasets] == ["lastfm"]
    assert only.candidates == sel.candidates and only.epochs == sel.epochs and only.objective == sel.objective
    both = restrict_datasets(sel, "synthetic, ml-100k")
    assert [d.name for d in both.datasets] == ["ml-100k", "synthetic"]  # the file's order
    assert restrict_datasets(sel, None) is sel


@pytest.mark.slow
def test_select_datasets_runs_only_the_named_data_set(tmp_path):
    sel = {"task": "ranking", "objective": "rmse", "split": "hash", "epochs": 1,
           "overrides": ["model.architecture=mf", "model.history_length=0"],
           "datasets": {"a": {"data": TINY}, "b": {"data": {**TINY, "synthetic": {**TINY["synthetic"], "seed": 5}}}},
           "candidates": {"default": {}, "tiny": {"model.embedding_dim": 2}}}
    path = tmp_path / "sel.yaml"
    path.write_text(yaml.safe_dump(sel))
    out = tmp_path / "out"
    assert main(["select", "--tasks", "ranking", "--selection", str(path), "--datasets", "b",
                 "--output-dir", str(out)]) == 0
    r = json.loads((out / "select" / "results.json").read_text())
    assert set(r["values"]) == {"b"} and {run["dataset"] for run in r["runs"]} == {"b"} and len(r["runs"]) == 2
    assert sorted(p.name for p in (out / "select" / "runs").iterdir()) == ["b-default-seed42", "b-tiny-seed42"]


def test_an_unknown_data_set_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["select", "--tasks", "sequential", "--datasets", "lastfm,movielens", "--data-root", str(tmp_path),
                 "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--datasets" in err and "movielens" in err and "ml-100k, lastfm, synthetic" in err
    assert not out.exists()  # nothing written


@pytest.mark.slow
def test_select_reads_the_config_files_once_so_an_edit_during_the_run_changes_no_run(tmp_path, monkeypatch):
    import tfrs_lab.config as config
    from tfrs_lab.bench.select import run_select
    from tfrs_lab.training import runner

    copy = tmp_path / "retrieval.yaml"  # stands for configs/retrieval.yaml, which a user edits mid-run
    copy.write_text(config.default_config_file("retrieval").read_text())
    shipped_history = yaml.safe_load(copy.read_text())["model"]["history_length"]
    monkeypatch.setattr(config, "default_config_file", lambda task: copy)
    sel = {"task": "retrieval", "objective": "recall@10", "split": "leave-last-out", "seeds": 1, "epochs": 1,
           "overrides": ["model.embedding_dim=8", "model.id_embedding_dim=8"],
           "datasets": {"a": {"data": TINY}}, "candidates": {"default": {}, "warm": {"model.temperature": 0.2}}}
    path = tmp_path / "sel.yaml"
    path.write_text(yaml.safe_dump(sel))
    selection = load_selection(path)

    seen, original = [], runner.run_task

    def run_then_edit(task, cfg, *args, **kwargs):
        seen.append(cfg)
        copy.write_text("task: retrieval\nmodel: {history_length: 3, feature_embedding_dim: 4}\n")
        return original(task, cfg, *args, **kwargs)

    monkeypatch.setattr(runner, "run_task", run_then_edit)
    results, _ = run_select(selection, tmp_path / "out")
    assert len(seen) == len(results["runs"]) == 2
    assert {(c.model.history_length, c.model.feature_embedding_dim) for c in seen} == {(shipped_history, 16)}
    assert [c.model.temperature for c in seen] == [0.1, 0.2]
