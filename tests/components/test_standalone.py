"""Each component on hand-built artifacts, without a pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.artifacts import Artifact
from tfrs_lab.components.base import ComponentError
from tfrs_lab.components.data_validation import ExampleValidator, SchemaGen, StatisticsGen
from tfrs_lab.components.evaluator import Evaluator, check_blessing
from tfrs_lab.components.example_gen import ExampleGen, read_examples
from tfrs_lab.components.infra_validator import InfraValidator
from tfrs_lab.components.pusher import Pusher


def ratings_csv(path: Path, n_users: int = 30, n_movies: int = 12, bad_test_ratings: int = 0) -> Path:
    """A ratings CSV; the first ``bad_test_ratings`` rows of the test hash bucket get rating 9."""
    from tfrs_lab.data.splits import hash_buckets

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, n_users + 1), 6).astype(str).astype(object)
    movies = rng.integers(1, n_movies + 1, size=len(users)).astype(str).astype(object)
    ratings = rng.integers(1, 6, size=len(users)).astype(float)
    test = np.flatnonzero(hash_buckets(users, movies) == 9)
    ratings[test[:bad_test_ratings]] = 9.0
    lines = ["user_id,movie_id,user_rating,timestamp"]
    lines += [f"{u},{m},{r},{880000000 + i}" for i, (u, m, r) in enumerate(zip(users, movies, ratings))]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def csv_examples(tmp_path_factory) -> Artifact:
    tmp = tmp_path_factory.mktemp("csv")
    return ExampleGen(input_path=str(ratings_csv(tmp / "ratings.csv"))).run(tmp / "out")["examples"]


def test_example_gen_writes_tfx_splits_that_read_back_exactly(csv_examples, tmp_path):
    from tfrs_lab.data.splits import hash_split

    for split in ("train", "validation", "test"):
        assert (csv_examples.split_uri(split) / A.EXAMPLES_FILE).stat().st_size > 0
    loaded = read_examples(csv_examples)
    assert loaded.data.num_ratings == 180 and loaded.data.ratings["user_id"][0] == "1"
    expected = hash_split(loaded.data.ratings)  # docs/architecture.md#splits buckets
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(loaded.splits[split], getattr(expected, split))
    # a later ExampleGen can read an earlier one's output (TFRecord input)
    again = read_examples(ExampleGen(input_path=csv_examples.uri).run(tmp_path)["examples"])
    np.testing.assert_array_equal(again.data.ratings["user_rating"], loaded.data.ratings["user_rating"])


def test_example_gen_rejects_bad_split_config():
    with pytest.raises(ComponentError, match=r"gen\.split_config"):
        ExampleGen(id="gen", split_config={"train": 8, "test": 0})
    with pytest.raises(ComponentError, match=r"gen\.input_path"):
        ExampleGen(id="gen", input_path="/nonexistent/ratings.csv").run("/tmp/never-written-components")


def test_statistics_schema_and_validator(csv_examples, tmp_path):
    stats = StatisticsGen().run(tmp_path / "s", examples=csv_examples)["statistics"]
    train = json.loads((stats.split_uri("train") / A.STATISTICS_FILE).read_text())
    assert train["user_rating"]["min"] >= 1 and train["user_rating"]["max"] <= 5
    assert train["user_id"]["num_unique"] <= 30 and train["user_id"]["missing"] == 0
    schema = SchemaGen().run(tmp_path / "g", statistics=stats)["schema"]
    features = json.loads((schema.path / A.SCHEMA_FILE).read_text())["features"]
    assert features["user_rating"]["domain"] == {"min": train["user_rating"]["min"], "max": train["user_rating"]["max"]}
    anomalies = ExampleValidator(max_unseen_fraction=0.5).run(tmp_path / "v", statistics=stats, schema=schema)["anomalies"]
    assert anomalies.properties["num_anomalies"] == 0


def test_validator_fails_on_out_of_range_values_unless_told(tmp_path):
    bad = ExampleGen(input_path=str(ratings_csv(tmp_path / "bad.csv", bad_test_ratings=2))).run(tmp_path / "e")["examples"]
    stats = StatisticsGen().run(tmp_path / "s", examples=bad)["statistics"]
    schema = SchemaGen().run(tmp_path / "g", statistics=stats)["schema"]
    with pytest.raises(ComponentError, match=r"^check\.test\.user_rating: .*outside the schema domain"):
        ExampleValidator(id="check").run(tmp_path / "v", statistics=stats, schema=schema)
    out = ExampleValidator(fail_on_anomalies=False).run(tmp_path / "w", statistics=stats, schema=schema)["anomalies"]
    found = json.loads((out.split_uri("test") / A.ANOMALIES_FILE).read_text())
    assert list(found) == ["user_rating"] and out.properties["num_anomalies"] == 1


def test_missing_upstream_artifact_names_component_and_field(tmp_path):
    ghost = Artifact(A.EXAMPLES, str(tmp_path / "gone"))
    with pytest.raises(ComponentError, match=r"^stats\.examples: upstream Examples artifact is missing"):
        StatisticsGen(id="stats").run(tmp_path / "out", examples=ghost)
    with pytest.raises(ComponentError, match=r"^stats\.examples: expects a Examples artifact, got Model"):
        StatisticsGen(id="stats").run(tmp_path / "out", examples=Artifact(A.MODEL, str(tmp_path)))


def test_blessing_checks_worked_by_hand():
    # value threshold: 0.30 >= 0.25 passes; change vs baseline 0.32 with tolerance 0.01: 0.30 < 0.31 fails
    checks = check_blessing({"hit_rate@100": 0.30}, {"hit_rate@100": {"lower_bound": 0.25}},
                            {"hit_rate@100": 0.01}, {"hit_rate@100": 0.32})
    assert [c["passed"] for c in checks] == [True, False] and checks[1]["bound"] == pytest.approx(0.31)
    # rmse is lower-is-better: 0.95 vs baseline 0.94 with tolerance 0.02 passes (bound 0.96)
    assert check_blessing({"rmse": 0.95}, {}, {"rmse": 0.02}, {"rmse": 0.94})[0]["passed"]
    assert not check_blessing({"rmse": 0.97}, {}, {"rmse": 0.02}, {"rmse": 0.94})[0]["passed"]
    with pytest.raises(ComponentError, match=r"ev\.thresholds\.recall@10: the model reports no such metric"):
        check_blessing({"rmse": 1.0}, {"recall@10": {"lower_bound": 0.1}}, {}, None, "ev")


def hand_model(tmp_path: Path, *, broken: bool = False) -> Artifact:
    """A Model artifact holding a tiny retrieval-shaped SavedModel (or a corrupt one)."""
    import tensorflow as tf

    from tfrs_lab.export import signatures as sig

    model = Artifact(A.MODEL, str(tmp_path / "model"), {"model_name": "tiny"})
    model.serving_dir.mkdir(parents=True)
    if broken:
        (model.serving_dir / "saved_model.pb").write_bytes(b"not a SavedModel")
        return model

    class Tiny(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID)])
        def serve(self, user_id):
            n = tf.shape(user_id)[0]
            return {sig.ITEM_IDS: tf.fill([n, 3], "m1"), sig.SCORES: tf.ones([n, 3])}

    m = Tiny()
    tf.saved_model.save(m, str(model.serving_dir), signatures={sig.SERVING_DEFAULT: m.serve})
    return model


def test_infra_validator_blesses_a_servable_model_and_refuses_a_broken_one(tmp_path):
    good = InfraValidator(make_warmup=True).run(tmp_path / "ok", model=hand_model(tmp_path / "a"))["blessing"]
    assert good.blessed and (good.path / A.INFRA_BLESSED_FILE).is_file()
    assert (good.path / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    bad = InfraValidator().run(tmp_path / "no", model=hand_model(tmp_path / "b", broken=True))["blessing"]
    assert not bad.blessed and (bad.path / A.INFRA_NOT_BLESSED_FILE).is_file()
    assert "error" in json.loads((bad.path / "infra_validation.json").read_text())


def test_pusher_pushes_only_blessed_models(tmp_path):
    model = hand_model(tmp_path / "m")
    no = Artifact(A.MODEL_BLESSING, str(tmp_path / "no"))
    A.write_blessing(no, False)
    yes = Artifact(A.MODEL_BLESSING, str(tmp_path / "yes"))
    A.write_blessing(yes, True)
    dest = tmp_path / "serving" / "tiny"
    refused = Pusher(push_destination=str(dest)).run(tmp_path / "p1", model=model, model_blessing=no)["pushed_model"]
    assert not refused.pushed and not dest.exists()
    pushed = Pusher(push_destination=str(dest)).run(tmp_path / "p2", model=model, model_blessing=yes)["pushed_model"]
    assert pushed.pushed and Path(pushed.pushed_destination).parent == dest
    assert (dest / str(pushed.pushed_version) / "saved_model.pb").is_file()
    again = Pusher(push_destination=str(dest)).run(tmp_path / "p3", model=model, model_blessing=yes)["pushed_model"]
    assert again.pushed_version > pushed.pushed_version  # versions only grow


def test_evaluator_standalone_without_baseline(tmp_path):
    run = Artifact(A.MODEL_RUN, str(tmp_path / "run"), {"metrics": json.dumps({"hit_rate@10": 0.1, "task": "retrieval"})})
    run.path.mkdir()
    (run.path / "metrics.json").write_text("{}")
    model = hand_model(tmp_path / "m")
    out = Evaluator(thresholds={"hit_rate@10": {"lower_bound": 0.2}}).run(tmp_path / "e", model=model, model_run=run)
    assert not out["blessing"].blessed and (out["blessing"].path / A.NOT_BLESSED_FILE).is_file()


def test_a_running_server_picks_up_each_push(tmp_path):
    import time

    from tfrs_lab.serving.client import ServingClient
    from tfrs_lab.serving.config import ModelConfig
    from tfrs_lab.serving.server import ModelServer, ServerOptions

    model = hand_model(tmp_path / "m")
    dest = tmp_path / "serving" / "tiny"
    first = Pusher(push_destination=str(dest)).run(tmp_path / "p1", model=model)["pushed_model"]
    server = ModelServer([ModelConfig(name="tiny", base_path=str(dest))],
                         ServerOptions(host="127.0.0.1", grpc_port=0, rest_port=None, poll_interval_s=0.2))
    server.start()
    try:
        with ServingClient(f"127.0.0.1:{server.grpc_port}", timeout_s=10) as client:
            assert [s["version"] for s in client.model_status("tiny")] == [first.pushed_version]
            second = Pusher(push_destination=str(dest)).run(tmp_path / "p2", model=model)["pushed_model"]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                versions = {s["version"]: s["state"] for s in client.model_status("tiny")}
                if versions.get(second.pushed_version) == "AVAILABLE":
                    break
                time.sleep(0.2)
            assert versions.get(second.pushed_version) == "AVAILABLE", versions
            assert client.recommend("tiny", ["1"], k=3)[0][0][0] == "m1"
    finally:
        server.stop(grace_s=1.0)
