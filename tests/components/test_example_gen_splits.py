"""ExampleGen on every split (time, held-out-users, predefined): the rows are make_split's, the options
travel to the task config so the Trainer re-splits identically, bad options are refused naming the
parameter, and your own data goes through the prepared cache."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import yaml

from tfrs_lab.components import lineage as L
from tfrs_lab.components.base import ComponentError
from tfrs_lab.components.example_gen import FOLD_IN_SPLITS, ExampleGen, data_section, read_examples
from tfrs_lab.components.run import main as run_main
from tfrs_lab.components.runner import build_pipeline, run_pipeline
from tfrs_lab.components.trainer import Trainer
from tfrs_lab.components.transform import Transform
from tfrs_lab.data.splits import SplitOptions, make_split

from conftest import pipeline_spec


def ratings_csv(path, n_users: int = 40, per_user: int = 12, seed: int = 0):
    """A ratings CSV in MovieLens latest's own layout, each user's ratings spread over a year."""
    rng = np.random.default_rng(seed)
    lines = ["userId,movieId,rating,timestamp"]
    for u in range(1, n_users + 1):
        movies = rng.choice(np.arange(1, 31), size=per_user, replace=False)
        times = np.sort(rng.integers(880_000_000, 880_000_000 + 365 * 86400, size=per_user))
        lines += [f"{u},{m},{rng.integers(1, 6)}.0,{t}" for m, t in zip(movies, times)]
    path.write_text("\n".join(lines) + "\n")
    return path


QUICK = "user=userId,item=movieId,rating=rating,time=timestamp"


def strings(loaded) -> dict:
    """The string columns of own-data Examples (which hold the prepared codes): the reference the
    splits computed from codes must equal."""
    return loaded.prepared.to_data().ratings


def test_time_split_rows_equal_make_split_and_options_are_recorded(tmp_path):
    csv = ratings_csv(tmp_path / "ratings.csv")
    cutoffs = {"validation": 0.7, "test": "1998-10-01"}
    examples = ExampleGen(input_path=str(csv), columns=QUICK, split="time", time_cutoff=cutoffs).run(
        tmp_path / "out")["examples"]
    loaded = read_examples(examples)
    expected = make_split("time", strings(loaded), SplitOptions(time_validation=0.7, time_test="1998-10-01"))
    assert list(loaded.splits) == ["train", "validation", "test"] and loaded.protocol == "time"
    for name in ("train", "validation", "test"):
        assert len(getattr(expected, name)) > 0
        np.testing.assert_array_equal(loaded.splits[name], getattr(expected, name), err_msg=name)
    own = {"dataset": "own", "source": data_section(examples)["source"], "data_dir": str(tmp_path / "out")}
    assert own["source"]["interactions"]["path"] == str(csv)  # the run's data is train --data SPEC's
    assert data_section(examples) == {"split": "time", "time_cutoff": cutoffs, **own}
    assert loaded.split_settings["split_options"] == {"time_cutoff": cutoffs, **own}


def test_held_out_users_rows_equal_make_split_with_fold_in_splits(tmp_path):
    csv = ratings_csv(tmp_path / "ratings.csv", n_users=60)
    shares = {"validation": 0.2, "test": 0.25, "target_share": 0.3}
    examples = ExampleGen(input_path=str(csv), columns=QUICK, split="held-out-users", held_out_users=shares).run(
        tmp_path / "out")["examples"]
    loaded = read_examples(examples)
    expected = make_split("held-out-users", strings(loaded),
                          SplitOptions(validation_users=0.2, test_users=0.25, target_share=0.3))
    assert list(loaded.splits) == ["train", "validation", "test", *FOLD_IN_SPLITS]
    for name in loaded.splits:
        assert len(getattr(expected, name)) > 0
        np.testing.assert_array_equal(loaded.splits[name], getattr(expected, name), err_msg=name)
    assert sorted(np.concatenate(list(loaded.splits.values())).tolist()) == list(range(loaded.data.num_ratings))
    assert {k: v for k, v in data_section(examples).items() if k not in ("dataset", "source", "data_dir")} == {
        "split": "held-out-users", "held_out_users": shares}
    assert examples.properties["num_fold_in_test"] == len(expected.fold_in_test)


def test_predefined_split_of_own_data_matches_make_split(tmp_path):
    csv = ratings_csv(tmp_path / "ratings.csv")
    lines = csv.read_text().splitlines()
    (tmp_path / "test.csv").write_text("\n".join([lines[0], *lines[1::7]]) + "\n")  # every 7th rating is test
    examples = ExampleGen(input_path=str(csv), columns=QUICK, split="predefined",
                          predefined=str(tmp_path / "test.csv")).run(tmp_path / "out")["examples"]
    loaded = read_examples(examples)
    assert len(loaded.splits["test"]) == len(lines[1::7])
    from tfrs_lab.data.predefined import own_test_rows

    own = ExampleGen(input_path=str(csv), columns=QUICK).own_source()
    expected = make_split("predefined", strings(loaded),
                          SplitOptions(predefined_test=own_test_rows(own.interactions, str(tmp_path / "test.csv"))))
    for name in ("train", "validation", "test"):
        np.testing.assert_array_equal(loaded.splits[name], getattr(expected, name), err_msg=name)
    section = data_section(examples)  # the Trainer's run reads the same file in the same format
    assert section["predefined"] == str(tmp_path / "test.csv") and section["dataset"] == "own"
    assert section["source"]["interactions"]["path"] == str(csv)


def test_own_source_is_built_once_when_the_component_is_created(tmp_path, monkeypatch):
    import tfrs_lab.data.spec as spec_module

    csv = ratings_csv(tmp_path / "ratings.csv")
    calls = []
    real = spec_module.quick_source
    monkeypatch.setattr(spec_module, "quick_source", lambda *a, **k: calls.append(a) or real(*a, **k))
    gen = ExampleGen(input_path=str(csv), columns=QUICK)
    gen.fingerprint_extra()
    gen.load(tmp_path / "cache")
    assert gen.own_source() is gen.own_source() and len(calls) == 1


@pytest.mark.parametrize("parameters, message", [
    ({"split": "by-time"}, r"^gen\.split: must be one of hash, leave-last-out, time, held-out-users, predefined, "
                           r"got 'by-time'$"),
    ({"split": "time", "time_cutoff": {"validation": 1.5}}, r"^gen\.time_cutoff\.validation=1\.5 must be a quantile"),
    ({"split": "time", "time_cutoff": {"validation": 0.9, "test": 0.5}},
     r"^gen\.time_cutoff\.validation \(0\.9\) must not be after gen\.time_cutoff\.test \(0\.5\)$"),
    ({"split": "time", "time_cutoff": {"valdation": 0.5}}, r"^unknown config key 'gen\.time_cutoff\.valdation'"),
    ({"time_cutoff": {"validation": 0.5}}, r"^gen\.time_cutoff is only read with gen\.split=time, got split=hash"),
    ({"split": "held-out-users", "held_out_users": {"validation": 0.6, "test": 0.5}},
     r"^gen\.held_out_users\.validation \+ gen\.held_out_users\.test must be < 1"),
    ({"split": "held-out-users", "held_out_users": {"target_share": 1.0}},
     r"^gen\.held_out_users\.target_share must be in \(0, 1\), got 1\.0$"),
    ({"split": "predefined"}, r"^gen\.predefined is required with gen\.split=predefined"),
    ({"split": "predefined", "predefined": "u1"}, r"^gen\.predefined=u1 is a split of the MovieLens 100K archive: "
                                                  r"read the archive with gen\.dataset=movielens/100k-ratings and "
                                                  r"gen\.data_zip"),
    ({"split": "predefined", "predefined": "test.csv"}, r"^gen\.predefined='test\.csv': choose u1, .* or a file of "
                                                        r"test interactions of your own data"),
    ({"predefined": "u1", "data_zip": "ml-100k.zip"}, r"^gen\.predefined is only read with gen\.split=predefined"),
    ({"split": "time", "split_config": {"train": 6, "validation": 2, "test": 2}},
     r"^gen\.split_config: hash buckets are only read with gen\.split=hash"),
])
def test_bad_split_options_are_refused_naming_the_parameter(parameters, message):
    with pytest.raises(ComponentError, match=message):
        ExampleGen(id="gen", **parameters)


def test_bad_split_option_in_a_pipeline_file_exits_2_and_writes_nothing(tmp_path, capsys):
    spec = {"name": "bad", "components": {"example_gen": {"type": "ExampleGen", "parameters": {
        "input_path": str(ratings_csv(tmp_path / "r.csv")), "columns": QUICK, "split": "time",
        "time_cutoff": {"validation": "March 1998"}}}}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert run_main([str(path), "--pipeline-root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: example_gen.time_cutoff.validation='March 1998' is not an ISO-8601 date")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "root").exists()


def test_cut_offs_out_of_order_on_the_data_name_the_parameter(tmp_path):
    csv = ratings_csv(tmp_path / "r.csv")  # a date after the 0.5 quantile: only the data can tell
    gen = ExampleGen(id="gen", input_path=str(csv), columns=QUICK, split="time",
                     time_cutoff={"validation": "1998-12-01", "test": 0.5})
    with pytest.raises(ComponentError, match=r"^gen\.time_cutoff\.validation \('1998-12-01' = \d+\) must not be "
                                             r"after gen\.time_cutoff\.test"):
        gen.run(tmp_path / "out")


def test_trainer_and_transform_refuse_overrides_that_disagree_with_the_examples(tmp_path):
    csv = ratings_csv(tmp_path / "r.csv", n_users=60)
    timed = ExampleGen(input_path=str(csv), columns=QUICK, split="time",
                       time_cutoff={"validation": 0.7, "test": 0.9}).run(tmp_path / "t")["examples"]
    with pytest.raises(ComponentError, match=r"^tr\.overrides\.data\.time_cutoff\.validation: 0\.5 disagrees with "
                                             r"the Examples, which ExampleGen split with "
                                             r"data\.time_cutoff\.validation=0\.7: set the split on ExampleGen"):
        Transform(id="tr", task="ranking", overrides={"data.time_cutoff.validation": 0.5}).run(
            tmp_path / "tf", examples=timed)
    with pytest.raises(ComponentError, match=r"^trainer\.overrides\.data\.split: 'hash' disagrees"):
        Trainer(id="trainer", task="ranking", overrides={"data.split": "hash"}).run(tmp_path / "m", examples=timed)
    # agreeing overrides are fine: the same cut-off written again
    Transform(task="ranking", overrides={"data.time_cutoff.validation": 0.7}).run(tmp_path / "ok", examples=timed)
    held = ExampleGen(input_path=str(csv), columns=QUICK, split="held-out-users").run(tmp_path / "h")["examples"]
    with pytest.raises(ComponentError, match=r"^trainer\.examples: ExampleGen's data\.split=held-out-users is not "
                                             r"supported by this task"):
        Trainer(id="trainer", task="retrieval").run(tmp_path / "m2", examples=held)


def test_own_data_is_prepared_once_and_reused_by_a_later_run(tmp_path, caplog):
    csv = ratings_csv(tmp_path / "r.csv")
    spec = {"name": "own", "components": {"example_gen": {"type": "ExampleGen", "parameters": {
        "input_path": str(csv), "columns": QUICK, "split": "hash"}}}}
    root = tmp_path / "root"
    with caplog.at_level(logging.INFO, logger="tfrs_lab.data.prepared"):
        first = run_pipeline(build_pipeline(spec, pipeline_root=root))
        logged = [r.message for r in caplog.records if r.name == "tfrs_lab.data.prepared"]
        assert len(logged) == 1 and " into " in logged[0] and str(root / "prepared") in logged[0]  # read the CSV
        caplog.clear()
        spec["components"]["example_gen"]["parameters"]["split"] = "time"  # a new ExampleGen execution, same files
        second = run_pipeline(build_pipeline(spec, pipeline_root=root))
    assert second.results["example_gen"].state == L.COMPLETE  # ran again (not the component cache) ...
    reused = [r.message for r in caplog.records if "reusing" in r.message]
    assert len(reused) == 1 and str(root / "prepared") in reused[0]  # ... but read the prepared data, not the CSV
    assert len(list((root / "prepared").iterdir())) == 1
    one, two = (read_examples(r.output("example_gen", "examples")) for r in (first, second))
    assert one.prepared.path == two.prepared.path  # both Examples reference the one prepared dataset
    for name in ("user", "item", "rating", "timestamp"):
        np.testing.assert_array_equal(getattr(two.data, name), getattr(one.data, name), err_msg=name)


@pytest.mark.slow
def test_time_split_pipeline_trains_on_exactly_the_time_split_and_serves_the_same_rmse(tmp_path, synthetic_data_dir):
    synthetic = pipeline_spec(synthetic_data_dir)["components"]["example_gen"]["parameters"]
    cutoffs = {"validation": 0.75, "test": 0.9}
    overrides = {"train.epochs": 1, "export.verify": False, "model.architecture": "mf"}
    spec = {"name": "time_ranking", "components": {
        "example_gen": {"type": "ExampleGen", "parameters": {**synthetic, "split": "time", "time_cutoff": cutoffs}},
        "transform": {"type": "Transform", "inputs": {"examples": "example_gen.examples"},
                      "parameters": {"task": "ranking", "overrides": overrides}},
        "trainer": {"type": "Trainer", "inputs": {"examples": "example_gen.examples",
                                                  "transform_graph": "transform.transform_graph"},
                    "parameters": {"task": "ranking", "overrides": overrides}},
        "evaluator": {"type": "Evaluator", "inputs": {"model": "trainer.model", "model_run": "trainer.model_run",
                                                      "examples": "example_gen.examples"},
                      "parameters": {"thresholds": {"served_rmse": {"upper_bound": 2.0}}}}}}
    result = run_pipeline(build_pipeline(spec, pipeline_root=tmp_path / "root"))
    assert {k: r.state for k, r in result.results.items()} == dict.fromkeys(spec["components"], L.COMPLETE)
    loaded = read_examples(result.output("example_gen", "examples"))
    expected = make_split("time", loaded.data.ratings, SplitOptions(time_validation=0.75, time_test=0.9))
    run = result.output("trainer", "model_run")
    metrics = json.loads(run.properties["metrics"])
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    assert config["data"]["split"] == "time" and config["data"]["time_cutoff"] == cutoffs  # the run re-split so
    assert metrics["split"] == "time"
    assert metrics["num_train_examples"] == len(loaded.splits["train"]) == len(expected.train)
    assert metrics["num_test_examples"] == len(loaded.splits["test"]) == len(expected.test) > 0
    evaluation = json.loads(result.output("evaluator", "evaluation").properties["metrics"])
    # the served SavedModel scored on Split-test agrees with the trainer's test rmse: same rows, same model
    assert evaluation["served_rmse"] == pytest.approx(metrics["rmse"], abs=1e-3)
    assert evaluation["served_mae"] == pytest.approx(metrics["mae"], abs=1e-3)
    assert result.output("evaluator", "blessing").blessed
