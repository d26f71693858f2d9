"""The whole pipeline end to end on synthetic data: served model, cache, blessing gate, lineage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfrs_lab.components import artifacts as A
from tfrs_lab.components import lineage as L
from tfrs_lab.components.run import main as run_main
from tfrs_lab.components.lineage_cli import main as lineage_main

pytestmark = pytest.mark.slow


def evaluation_report(result, node: str = "evaluator") -> dict:
    """The Evaluator's ``metrics.json``: metrics, checks, blessed."""
    return json.loads((result.output(node, "evaluation").path / A.EVALUATION_FILE).read_text())


def test_every_component_ran_and_the_model_was_pushed(first_run):
    states = {r.node_id: r.state for r in first_run.results.values()}
    assert set(states.values()) == {L.COMPLETE} and len(states) == 10
    # the blessing is a real threshold comparison: every configured bound was checked against the
    # model's measured metric, and met
    thresholds = first_run.pipeline.node("evaluator").component.parameters["thresholds"]
    report = evaluation_report(first_run)
    checks = {c["metric"]: c for c in report["checks"] if c["kind"] == "value"}
    assert set(checks) == set(thresholds) and thresholds
    for metric, bound in thresholds.items():
        assert checks[metric]["value"] == report["metrics"][metric] >= bound["lower_bound"] > 0
        assert checks[metric]["passed"]
    assert report["blessed"] and first_run.output("evaluator", "blessing").blessed
    # train/serve parity: the exported SavedModel, fed the trainer's test features, scores what the trainer measured
    measured = json.loads(first_run.output("evaluator", "evaluation").properties["metrics"])
    assert measured["served_hit_rate@10"] == pytest.approx(measured["hit_rate@10"], abs=0.02)  # export k=20: @10 only
    assert first_run.output("infra_validator", "blessing").blessed
    pushed = first_run.output("pusher", "pushed_model")
    assert pushed.pushed and (pushed.path / "PUSHED").is_file()
    version_dir = A.Artifact(A.MODEL, pushed.pushed_destination).path
    assert (version_dir / "saved_model.pb").is_file()
    # the InfraValidator's warm-up records travel with the pushed version
    assert (version_dir / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    lines = (first_run.output("bulk_inferrer", "inference_result").path / A.INFERENCE_FILE).read_text().splitlines()
    assert len(lines) == 120 and all(len(json.loads(line)["item_ids"]) == 5 for line in lines)


def exported_top_k(version_dir, user_ids: list[str], k: int) -> list[list[tuple[str, float]]]:
    """The SavedModel's own ``serving_default`` answer, computed in this process."""
    import tensorflow as tf

    from tfrs_lab.export import signatures as sig
    from tfrs_lab.serving.servable import register_scann_ops

    assert register_scann_ops() is None
    out = tf.saved_model.load(str(version_dir)).signatures[sig.SERVING_DEFAULT](
        **{sig.USER_ID: tf.constant(user_ids)})
    return [[(i.decode(), float(s)) for i, s in zip(ids[:k], scores[:k])]
            for ids, scores in zip(out[sig.ITEM_IDS].numpy(), out[sig.SCORES].numpy())]


def test_pushed_model_answers_grpc_from_the_serving_base_path(first_run):
    from tfrs_lab.serving.client import ServingClient
    from tfrs_lab.serving.config import ModelConfig
    from tfrs_lab.serving.server import ModelServer, ServerOptions

    pushed = first_run.output("pusher", "pushed_model")
    version_dir = A.Artifact(A.MODEL, pushed.pushed_destination).path
    users = ["1", "2", "7"]
    server = ModelServer([ModelConfig(name="retrieval", base_path=str(version_dir.parent))],
                         ServerOptions(host="127.0.0.1", grpc_port=0, rest_port=None))
    server.start()
    try:
        with ServingClient(f"127.0.0.1:{server.grpc_port}", timeout_s=20) as client:
            status = client.model_status("retrieval")
            rows = client.recommend("retrieval", users, k=5)
    finally:
        server.stop(grace_s=1.0)
    assert [s["version"] for s in status] == [pushed.pushed_version]
    # the served answer is the pushed model's own answer for each user: same movies, same order, same scores
    expected = exported_top_k(version_dir, users, 5)
    assert [[movie for movie, _ in row] for row in rows] == [[movie for movie, _ in row] for row in expected]
    np.testing.assert_allclose([[s for _, s in row] for row in rows], [[s for _, s in row] for row in expected],
                               rtol=1e-5)
    assert len({tuple(m for m, _ in row) for row in rows}) > 1  # per user, not one answer for everyone
    # and it is what BulkInferrer wrote for user 1 from the same model
    inferred = {json.loads(line)["user_id"]: json.loads(line)["item_ids"] for line in
                (first_run.output("bulk_inferrer", "inference_result").path / A.INFERENCE_FILE).read_text().splitlines()}
    assert inferred["1"] == [movie for movie, _ in rows[0]]


def test_lineage_traces_the_serving_model_to_its_data_and_config(first_run, capsys):
    with L.LineageStore(first_run.pipeline.db_path) as store:
        prov = L.serving_provenance(store, "tiny_retrieval")
    assert prov is not None
    assert prov.pushed.id == first_run.output("pusher", "pushed_model").id
    assert prov.model.id == first_run.output("trainer", "model").id
    assert prov.trainer.id == first_run.results["trainer"].execution_id
    assert prov.trainer.parameters["overrides"]["train.epochs"] == 2
    assert prov.example_gen.id == first_run.results["example_gen"].execution_id
    assert prov.example_gen.parameters["dataset"] == "synthetic"
    assert prov.transform.id == first_run.results["transform"].execution_id
    assert prov.evaluation["blessed"] and prov.evaluation["hit_rate@10"] > 0
    assert lineage_main(["serving", "--pipeline-root", str(first_run.pipeline.root)]) == 0
    out = capsys.readouterr().out
    assert "synthetic" in out and "train.epochs" in out and str(prov.pushed.pushed_version) in out


def test_rerun_is_cached_and_worse_model_is_not_pushed(first_run, tiny_pipeline_file, capsys):
    root = str(first_run.pipeline.root)
    assert run_main([str(tiny_pipeline_file), "--pipeline-root", root]) == 0
    out = capsys.readouterr().out
    assert "10 of 10 components from cache" in out

    # A deliberately worse model: the Trainer and what follows it re-run, upstream stays cached,
    # the Evaluator refuses it against the blessed baseline and the Pusher does not push.
    assert run_main([str(tiny_pipeline_file), "--pipeline-root", root,
                     "--set", "trainer.overrides.train.learning_rate=0.000000001"]) == 0
    out = capsys.readouterr().out
    for upstream in ("ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform"):
        assert any(upstream in line and "cached" in line for line in out.splitlines()), upstream
    for downstream in ("Trainer", "Evaluator", "InfraValidator", "Pusher", "BulkInferrer"):
        assert any(downstream in line and "done in" in line for line in out.splitlines()), downstream
    assert "NOT_BLESSED" in out and "not pushed (a blessing said no)" in out
    serving = first_run.pipeline.root / "serving" / "retrieval"
    assert sorted(p.name for p in serving.iterdir()) == [str(first_run.output("pusher", "pushed_model").pushed_version)]
    with L.LineageStore(first_run.pipeline.db_path) as store:
        last = store.get_executions(node_id="evaluator")[-1]
        evaluation = store.io(last.id, L.OUTPUT)["evaluation"]
        checks = json.loads((evaluation.path / A.EVALUATION_FILE).read_text())["checks"]
        change = next(c for c in checks if c["kind"] == "change")
        assert not change["passed"] and change["value"] < change["baseline"]
        # the serving model is still the first one
        assert L.serving_provenance(store).model.id == first_run.output("trainer", "model").id


def test_no_cache_reruns_everything(first_run, tiny_pipeline_file, tmp_path):
    from tfrs_lab.components.runner import load_pipeline, run_pipeline

    pipeline = load_pipeline(tiny_pipeline_file, pipeline_root=first_run.pipeline.root,
                             overrides=["trainer.overrides.train.epochs=1"])
    # only check the plan: --no-cache means no lookup; run just the cheap prefix through a sub-pipeline
    pipeline.nodes = pipeline.nodes[:2]
    result = run_pipeline(pipeline, cache=False)
    assert {r.state for r in result.results.values()} == {L.COMPLETE}
    assert result.output("example_gen", "examples").id != first_run.output("example_gen", "examples").id
    np.testing.assert_array_equal(
        sorted(result.output("example_gen", "examples").split_names), ["test", "train", "validation"])


def test_an_impossible_threshold_is_not_blessed_and_not_pushed(first_run, tiny_pipeline_file):
    from tfrs_lab.components.runner import load_pipeline, run_pipeline

    serving = first_run.pipeline.root / "serving" / "retrieval"
    versions = sorted(p.name for p in serving.iterdir())
    pipeline = load_pipeline(tiny_pipeline_file, pipeline_root=first_run.pipeline.root,
                             overrides=["evaluator.thresholds.hit_rate@10={lower_bound: 1.01}"])
    result = run_pipeline(pipeline)
    assert result.results["trainer"].state == L.CACHED  # the same model, judged by a bar it cannot reach
    check = next(c for c in evaluation_report(result)["checks"] if c["kind"] == "value" and c["metric"] == "hit_rate@10")
    assert check["bound"][0] == 1.01 and check["value"] <= 1.0 and not check["passed"]
    assert not result.output("evaluator", "blessing").blessed
    assert not result.output("pusher", "pushed_model").pushed
    assert sorted(p.name for p in serving.iterdir()) == versions
