"""The pipeline on your own data reads the prepared dataset's integer codes end to end: ExampleGen's
Examples reference the prepared dataset (no string records), Transform fits the preparation's
vocabularies, the Trainer trains exactly as ``train --data SPEC`` does (same metrics), Evaluator,
BulkInferrer and InfraValidator read the codes, and ``PreparedDataset.to_data()`` is never called."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from tfrs_lab.components import lineage as L
from tfrs_lab.components.base import ComponentError
from tfrs_lab.components.data_validation import StatisticsGen, feature_statistics
from tfrs_lab.components.example_gen import FORMAT_PREPARED, PREPARED_FILE, ExampleGen, read_examples
from tfrs_lab.components.run import main as run_main
from tfrs_lab.components.runner import build_pipeline, run_pipeline
from tfrs_lab.components.transform import Transform, load_vocabularies
from tfrs_lab.data.features import build_vocabularies
from tfrs_lab.data.prepared import PreparedDataset
from tfrs_lab.data.splits import SplitOptions, make_split

QUALITY = ("hit_rate@10", "hit_rate@50", "hit_rate@100", "hit_rate_seen_excluded@10", "best_epoch",
           "num_train_examples", "num_test_examples", "validation_hit_rate@10")
OVERRIDES = {"train.epochs": 4, "train.seed": 7, "train.batch_size": 64, "train.learning_rate": 0.01,
             "export.verify": False, "export.k": 20, "export.max_exclude": 20}


def listens_csv(path, n_users: int = 90, n_items: int = 60, per_user: int = 18, seed: int = 0):
    """Listening logs with non-MovieLens column names (account, track, plays, ts) and planted taste:
    each account listens mostly to tracks of its own third of the catalogue."""
    rng = np.random.default_rng(seed)
    lines = ["account,track,plays,ts"]
    for u in range(n_users):
        group = u % 3
        liked = np.arange(group * n_items // 3, (group + 1) * n_items // 3)
        tracks = np.where(rng.random(per_user) < 0.85, rng.choice(liked, per_user), rng.integers(0, n_items, per_user))
        times = np.sort(rng.integers(1_600_000_000, 1_600_000_000 + 90 * 86400, per_user))
        lines += [f"acct-{u:03d},trk-{t:03d},{rng.integers(1, 20)},{ts}" for t, ts in zip(tracks, times)]
    path.write_text("\n".join(lines) + "\n")
    return path


def source_spec(csv) -> dict:
    return {"name": "listens", "interactions": {"path": str(csv), "columns": {
        "user": "account", "item": "track", "rating": "plays", "label": "implicit", "time": "ts"}}}


@pytest.fixture()
def no_to_data(monkeypatch):
    """Counts PreparedDataset.to_data() calls (the string columns the pipeline must never build)."""
    calls = []
    real = PreparedDataset.to_data
    monkeypatch.setattr(PreparedDataset, "to_data", lambda self: calls.append(self.path) or real(self))
    return calls


def test_examples_reference_the_prepared_dataset_and_split_it_from_codes(tmp_path, no_to_data):
    csv = listens_csv(tmp_path / "listens.csv")
    gen = ExampleGen(source=source_spec(csv), split="time", time_cutoff={"validation": 0.7, "test": 0.85},
                     data_dir=str(tmp_path / "data"))
    examples = gen.run(tmp_path / "out")["examples"]
    assert examples.properties["payload_format"] == FORMAT_PREPARED
    assert not list(examples.path.rglob("*.gz"))  # no string records at all
    ref = json.loads((examples.path / PREPARED_FILE).read_text())
    loaded = read_examples(examples)
    assert ref["fingerprint"] == loaded.prepared.fingerprint and ref["path"].startswith(str(tmp_path / "data"))
    assert no_to_data == []
    strings = loaded.prepared.to_data()  # the test's own reference: make_split on the string columns
    expected = make_split("time", strings.ratings, SplitOptions(time_validation=0.7, time_test=0.85))
    for name in ("train", "validation", "test"):
        assert len(getattr(expected, name)) > 0
        np.testing.assert_array_equal(loaded.splits[name], getattr(expected, name), err_msg=name)
    users, items = loaded.ids(loaded.splits["test"])
    np.testing.assert_array_equal(users, strings.ratings["user_id"][loaded.splits["test"]])
    np.testing.assert_array_equal(items, strings.ratings["movie_id"][loaded.splits["test"]])

    with pytest.raises(ComponentError, match=r"^again\.input_path: .* is ExampleGen's output of your own data"):
        ExampleGen(id="again", input_path=examples.uri).run(tmp_path / "again")

    # StatisticsGen and Transform on the codes equal what the string columns give
    no_to_data.clear()
    stats = StatisticsGen().run(tmp_path / "stats", examples=examples)["statistics"]
    graph = Transform(task="retrieval").run(tmp_path / "tf", examples=examples)["transform_graph"]
    assert no_to_data == []
    train = loaded.splits["train"]
    got = json.loads((stats.split_uri("train") / "FeatureStats.json").read_text())
    for name, column in strings.ratings.items():
        want = json.loads(json.dumps(feature_statistics(column[train])))
        assert {k: v for k, v in got[name].items() if k != "catalogue_size"} == want, name
    vocab, fit = load_vocabularies(graph)
    fit = {k: v for k, v in fit.items() if k != "train_rows_sha256"}
    again = build_vocabularies(strings.ratings, strings.movies, train, **fit)
    for field in ("user_ids", "movie_ids", "title_tokens", "genres", "item_counts", "timestamp_boundaries"):
        np.testing.assert_array_equal(getattr(vocab, field), getattr(again, field), err_msg=field)
    assert (vocab.timestamp_mean, vocab.timestamp_std) == pytest.approx((again.timestamp_mean, again.timestamp_std))


def pipeline(csv, data_dir) -> dict:
    examples = "example_gen.examples"
    return {"name": "listens_retrieval", "components": {
        "example_gen": {"type": "ExampleGen", "parameters": {"source": source_spec(csv), "data_dir": str(data_dir)}},
        "transform": {"type": "Transform", "inputs": {"examples": examples}, "parameters": {"task": "retrieval"}},
        "trainer": {"type": "Trainer", "inputs": {"examples": examples, "transform_graph": "transform.transform_graph"},
                    "parameters": {"task": "retrieval", "overrides": OVERRIDES}},
        "evaluator": {"type": "Evaluator", "inputs": {"model": "trainer.model", "model_run": "trainer.model_run",
                                                      "examples": examples},
                      "parameters": {"thresholds": {"hit_rate@10": {"lower_bound": 0.2}}}},
        "infra_validator": {"type": "InfraValidator", "inputs": {"model": "trainer.model", "examples": examples}},
        "pusher": {"type": "Pusher", "inputs": {"model": "trainer.model", "model_blessing": "evaluator.blessing",
                                                "infra_blessing": "infra_validator.blessing"}},
        "bulk_inferrer": {"type": "BulkInferrer", "parameters": {"k": 5},
                          "inputs": {"model": "trainer.model", "examples": examples,
                                     "model_blessing": "evaluator.blessing"}},
    }}


@pytest.mark.slow
def test_pipeline_on_own_data_trains_from_codes_and_equals_the_cli_run(tmp_path, no_to_data):
    from tfrs_lab.train import main as train_main

    csv = listens_csv(tmp_path / "listens.csv")
    data_dir = tmp_path / "data"
    spec = pipeline(csv, data_dir)
    result = run_pipeline(build_pipeline(spec, pipeline_root=tmp_path / "root"))
    assert {k: r.state for k, r in result.results.items()} == dict.fromkeys(spec["components"], L.COMPLETE)
    assert no_to_data == []  # no component built the string columns of the prepared dataset

    metrics = json.loads(result.output("trainer", "model_run").properties["metrics"])
    evaluation = json.loads(result.output("evaluator", "evaluation").properties["metrics"])
    # a random top 10 of 60 tracks hits ~0.17; the planted thirds make a trained model hit far more
    assert metrics["hit_rate@10"] > 0.25 and metrics["dataset"] == "listens"
    # the served SavedModel, fed the test rows gathered from the codes, agrees with the trainer
    assert evaluation["served_hit_rate@10"] == pytest.approx(metrics["hit_rate@10"], abs=0.01)
    assert result.output("evaluator", "blessing").blessed and result.output("pusher", "pushed_model").pushed
    lines = (result.output("bulk_inferrer", "inference_result").path / "top_k.jsonl").read_text().splitlines()
    assert len(lines) == 90 and {json.loads(x)["user_id"] for x in lines} == {f"acct-{u:03d}" for u in range(90)}
    assert all(len(json.loads(x)["item_ids"]) == 5 and json.loads(x)["item_ids"][0].startswith("trk-") for x in lines)

    # the same data, config and seed through the CLI: the same model, the same numbers
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(source_spec(csv)))
    argv = ["retrieval", "--data", str(tmp_path / "spec.yaml"), "--data-dir", str(data_dir),
            "--output-dir", str(tmp_path / "cli"), *[x for k, v in OVERRIDES.items() for x in ("--set", f"{k}={v}")]]
    assert train_main(argv) == 0
    cli = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    assert {k: cli[k] for k in QUALITY} == {k: metrics[k] for k in QUALITY}
    run_config = yaml.safe_load((result.output("trainer", "model_run").path / "config.yaml").read_text())
    cli_config = yaml.safe_load((tmp_path / "cli" / "config.yaml").read_text())
    assert run_config["data"] == cli_config["data"] and run_config["data"]["dataset"] == "own"  # reruns as --config
    assert len(list((data_dir / "prepared").iterdir())) == 1  # the CLI reused ExampleGen's preparation


def test_bad_spec_in_a_pipeline_file_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    spec = pipeline(listens_csv(tmp_path / "listens.csv"), tmp_path / "data")
    spec["components"]["example_gen"]["parameters"]["source"]["interactions"]["colums"] = {}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert run_main([str(path), "--pipeline-root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown config key 'example_gen.source.interactions.colums'")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "root").exists() and not (tmp_path / "data").exists()


def test_beam_parameters_are_checked_naming_the_parameter(tmp_path):
    csv = listens_csv(tmp_path / "listens.csv")
    with pytest.raises(ComponentError, match=r"^gen\.beam_options needs gen\.beam_runner"):
        ExampleGen(id="gen", source=source_spec(csv), beam_options=["direct_num_workers=2"])
    with pytest.raises(ComponentError, match=r"^gen\.beam_runner prepares your own data: set gen\.source"):
        ExampleGen(id="gen", dataset="synthetic", beam_runner="DirectRunner")


def test_beam_runner_prepares_the_same_dataset_inside_the_pipeline(tmp_path, no_to_data):
    pytest.importorskip("apache_beam")
    csv = listens_csv(tmp_path / "listens.csv", n_users=12, per_user=5)
    with pytest.raises(ComponentError, match=r"^gen\.beam_runner: --beam-option 'nope'"):
        ExampleGen(id="gen", source=source_spec(csv), beam_runner="DirectRunner", beam_options=["nope"])
    beam = ExampleGen(source=source_spec(csv), beam_runner="DirectRunner", beam_options=["direct_num_workers=1"],
                      data_dir=str(tmp_path / "beam")).run(tmp_path / "b")["examples"]
    local = ExampleGen(source=source_spec(csv), data_dir=str(tmp_path / "local")).run(tmp_path / "l")["examples"]
    assert beam.properties["prepared_fingerprint"] == local.properties["prepared_fingerprint"]
    a, b = read_examples(beam), read_examples(local)
    for name in ("user", "item", "rating", "timestamp", "sequence_rows"):
        np.testing.assert_array_equal(getattr(a.prepared, name), getattr(b.prepared, name), err_msg=name)
    for name in a.splits:
        np.testing.assert_array_equal(a.splits[name], b.splits[name], err_msg=name)
    assert no_to_data == []


@pytest.mark.slow
def test_ranking_on_own_data_is_served_the_trainers_rmse_from_codes(tmp_path, no_to_data):
    rng = np.random.default_rng(3)
    lines = ["member,product,stars,when"]  # explicit ratings: each member rates its own third of products high
    for u in range(60):
        for p in rng.choice(45, size=12, replace=False):
            stars = 5 if p // 15 == u % 3 else 1 + int(rng.integers(0, 3))
            lines.append(f"m{u},p{p},{stars},{1_600_000_000 + int(rng.integers(0, 10**6))}")
    (tmp_path / "stars.csv").write_text("\n".join(lines) + "\n")
    source = {"name": "stars", "interactions": {"path": str(tmp_path / "stars.csv"), "columns": {
        "user": "member", "item": "product", "rating": "stars", "time": "when"}}}
    # no SVD++ history: the trainer scores a test row with the items before it, the export with the latest ones
    overrides = {"train.epochs": 3, "export.verify": False, "model.architecture": "mf", "model.history_length": 0,
                 "train.learning_rate": 0.05}
    spec = {"name": "stars_ranking", "components": {
        "example_gen": {"type": "ExampleGen", "parameters": {"source": source, "data_dir": str(tmp_path / "data")}},
        "trainer": {"type": "Trainer", "inputs": {"examples": "example_gen.examples"},
                    "parameters": {"task": "ranking", "overrides": overrides}},
        "evaluator": {"type": "Evaluator", "inputs": {"model": "trainer.model", "model_run": "trainer.model_run",
                                                      "examples": "example_gen.examples"}},
        "bulk_inferrer": {"type": "BulkInferrer", "parameters": {"k": 3},
                          "inputs": {"model": "trainer.model", "examples": "example_gen.examples"}}}}
    result = run_pipeline(build_pipeline(spec, pipeline_root=tmp_path / "root"))
    assert {k: r.state for k, r in result.results.items()} == dict.fromkeys(spec["components"], L.COMPLETE)
    assert no_to_data == []
    metrics = json.loads(result.output("trainer", "model_run").properties["metrics"])
    evaluation = json.loads(result.output("evaluator", "evaluation").properties["metrics"])
    assert metrics["num_test_examples"] == len(read_examples(result.output("example_gen", "examples")).splits["test"])
    assert evaluation["served_rmse"] == pytest.approx(metrics["rmse"], abs=1e-3)
    assert evaluation["served_mae"] == pytest.approx(metrics["mae"], abs=1e-3)
    lines = (result.output("bulk_inferrer", "inference_result").path / "top_k.jsonl").read_text().splitlines()
    assert len(lines) == 60 and all(json.loads(x)["item_ids"][0].startswith("p") for x in lines)


@pytest.mark.slow
def test_tuner_searches_on_the_prepared_codes(tmp_path, no_to_data):
    from tfrs_lab.components.tuner import Tuner

    csv = listens_csv(tmp_path / "listens.csv", n_users=45, per_user=12)
    examples = ExampleGen(source=source_spec(csv), data_dir=str(tmp_path / "data")).run(tmp_path / "gen")["examples"]
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({
        "task": "retrieval", "objective": "hit_rate@10",
        "trial_config": {"train": {"epochs": 1}, "export": {"verify": False, "index": "brute_force"}},
        "hyperparameters": {"model.embedding_dim": {"type": "choice", "values": [8, 16]}}}))
    out = Tuner(task="retrieval", space_file=str(space), tuner="grid", max_trials=2).run(
        tmp_path / "tuner", examples=examples)
    assert out["best_hyperparameters"].properties["num_trials"] == 2
    assert no_to_data == []  # the trials trained on the codes, as train --data does
