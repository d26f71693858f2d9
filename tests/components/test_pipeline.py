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


def test_every_component_ran_and_the_model_was_pushed(first_run):
    states = {r.node_id: r.state for r in first_run.results.values()}
    assert set(states.values()) == {L.COMPLETE} and len(states) == 10
    assert first_run.output("evaluator", "blessing").blessed
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
    assert len(lines) == 120 and all(len(json.loads(line)["movie_ids"]) == 5 for line in lines)


def test_pushed_model_answers_grpc_from_the_serving_base_path(first_run):
    from tfrs_lab.serving.client import ServingClient
    from tfrs_lab.serving.config import ModelConfig
    from tfrs_lab.serving.server import ModelServer, ServerOptions

    pushed = first_run.output("pusher", "pushed_model")
    base = A.Artifact(A.MODEL, pushed.pushed_destination).path.parent
    catalogue = set(json.loads(line)["movie_ids"][0] for line in
                    (first_run.output("bulk_inferrer", "inference_result").path / A.INFERENCE_FILE).read_text().splitlines())
    server = ModelServer([ModelConfig(name="retrieval", base_path=str(base))],
                         ServerOptions(host="127.0.0.1", grpc_port=0, rest_port=None))
    server.start()
    try:
        with ServingClient(f"127.0.0.1:{server.grpc_port}", timeout_s=20) as client:
            status = client.model_status("retrieval")
            rows = client.recommend("retrieval", ["1", "2"], k=5)
    finally:
        server.stop(grace_s=1.0)
    assert [s["version"] for s in status] == [pushed.pushed_version]
    assert len(rows) == 2 and all(len(r) == 5 for r in rows)
    # the served answer for user 1 starts with what BulkInferrer computed from the same model
    assert rows[0][0][0] in catalogue


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
