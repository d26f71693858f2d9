"""KFP v2 compilation of the shipped pipelines, the container entry point, and a custom
component written with @component running inside a pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tfrs_lab.components import artifacts as A
from tfrs_lab.components import lineage as L
from tfrs_lab.components.entrypoint import main as entry_main
from tfrs_lab.components.kfp import SpecError, compile_pipeline, main as kfp_main, validate_spec
from tfrs_lab.components.runner import load_pipeline, build_pipeline, run_pipeline

from test_standalone import ratings_csv  # noqa: E402

PIPELINES = sorted((Path(__file__).resolve().parents[2] / "configs" / "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_shipped_pipelines_compile_to_a_valid_kfp_spec(path, tmp_path, capsys):
    out = tmp_path / "spec.yaml"
    assert kfp_main([str(path), "-o", str(out), "--image", "registry.example/tfrs-lab:1"]) == 0
    spec = yaml.safe_load(out.read_text())
    pipeline = load_pipeline(path)
    names = [n.id.replace("_", "-") for n in pipeline.nodes]
    assert validate_spec(spec) == names  # every component, in dependency order
    assert set(spec["root"]["dag"]["tasks"]) == set(names)
    trainer = spec["deploymentSpec"]["executors"]["exec-trainer"]["container"]
    assert trainer["image"] == "registry.example/tfrs-lab:1"
    assert trainer["command"] == ["python", "-m", "tfrs_lab.components.entrypoint"]
    assert trainer["args"][:3] == ["Trainer", "--id", "trainer"]
    assert json.loads(trainer["args"][trainer["args"].index("--inputs") + 1]) == {
        key: f"{{{{$.inputs.artifacts['{key}'].path}}}}" for key in pipeline.node("trainer").inputs}
    assert "examples" in pipeline.node("trainer").inputs
    pusher = spec["root"]["dag"]["tasks"]["pusher"]
    assert pusher["inputs"]["artifacts"]["model_blessing"]["taskOutputArtifact"] == {
        "producerTask": "evaluator", "outputArtifactKey": "blessing"}
    assert json.loads(spec["root"]["dag"]["tasks"]["trainer"]["inputs"]["parameters"]["parameters"]
                      ["runtimeValue"]["constant"])["task"] == pipeline.node("trainer").component.parameters["task"]


def test_validate_spec_catches_broken_edges():
    spec = compile_pipeline(load_pipeline(PIPELINES[0]))
    spec["root"]["dag"]["tasks"]["trainer"]["dependentTasks"].remove("transform")
    with pytest.raises(SpecError, match=r"root\.dag\.tasks\.trainer\.dependentTasks: must list transform"):
        validate_spec(spec)


def test_container_entrypoint_chains_components_through_artifact_dirs(tmp_path, capsys):
    csv = ratings_csv(tmp_path / "r.csv")
    ex, st, sc = tmp_path / "examples", tmp_path / "stats", tmp_path / "schema"
    assert entry_main(["ExampleGen", "--outputs", json.dumps({"examples": str(ex)}),
                       "--parameters", json.dumps({"input_path": str(csv)})]) == 0
    assert entry_main(["StatisticsGen", "--inputs", json.dumps({"examples": str(ex)}),
                       "--outputs", json.dumps({"statistics": str(st)})]) == 0
    assert entry_main(["SchemaGen", "--inputs", json.dumps({"statistics": str(st)}),
                       "--outputs", json.dumps({"schema": str(sc)})]) == 0
    assert "user_rating" in json.loads((sc / A.SCHEMA_FILE).read_text())["features"]
    capsys.readouterr()
    assert entry_main(["SchemaGen", "--outputs", "{}"]) == 2
    assert "--outputs: give a directory for schema" in capsys.readouterr().err


def test_custom_component_runs_in_a_pipeline_with_lineage(tmp_path, docs_components):
    csv = ratings_csv(tmp_path / "r.csv")
    spec = {"name": "custom", "components": {
        "example_gen": {"type": "ExampleGen", "parameters": {"input_path": str(csv)}},
        "high": {"type": f"{docs_components}:HighRatings", "inputs": {"examples": "example_gen.examples"},
                 "parameters": {"min_rating": 4}},
        "statistics_gen": {"type": "StatisticsGen", "inputs": {"examples": "high.filtered"}}}}
    result = run_pipeline(build_pipeline(spec, pipeline_root=tmp_path / "root"))
    stats = json.loads((result.output("statistics_gen", "statistics").split_uri("train") / A.STATISTICS_FILE).read_text())
    assert stats["user_rating"]["min"] >= 4
    assert result.output("high", "filtered").properties["num_kept"] == sum(
        r >= 4 for r in (int(float(line.split(",")[2])) for line in csv.read_text().splitlines()[1:]))
    with L.LineageStore(result.pipeline.db_path) as store:
        chain = store.upstream(result.output("statistics_gen", "statistics").id)
        assert [ex.node_id for ex, _, _ in chain] == ["statistics_gen", "high", "example_gen"]
    # a changed parameter re-runs the custom component and what depends on it, not ExampleGen
    again = run_pipeline(build_pipeline(spec, pipeline_root=tmp_path / "root", overrides=["high.min_rating=5"]))
    assert {k: r.state for k, r in again.results.items()} == {
        "example_gen": L.CACHED, "high": L.COMPLETE, "statistics_gen": L.COMPLETE}
