"""Bad pipelines and bad custom components: clear errors naming component and field; a failing
component is recorded in the lineage store and nothing downstream (the Pusher) runs."""

from __future__ import annotations

import yaml
import pytest

from tfrs_lab.components import lineage as L
from tfrs_lab.components.base import ComponentError, InputArtifact, Model, OutputArtifact, Parameter, component, Examples
from tfrs_lab.components.run import main as run_main
from tfrs_lab.components.runner import PipelineError, build_pipeline

from test_standalone import ratings_csv  # noqa: E402  (same directory)


def spec(**components) -> dict:
    return {"name": "bad", "components": components}


GEN = {"type": "ExampleGen", "parameters": {"input_path": "/x.csv"}}


def test_cycle_is_named():
    s = spec(a={"type": "StatisticsGen", "inputs": {"examples": "b.examples"}},
             b={"type": "ExampleGen"}, c={"type": "SchemaGen", "inputs": {"statistics": "d.statistics"}},
             d={"type": "StatisticsGen", "inputs": {"examples": "gen.examples"}}, gen=GEN)
    assert [n.id for n in build_pipeline(s).nodes] == ["b", "a", "gen", "d", "c"]  # acyclic: dependency order
    loop = {"name": "loop", "components": {
        "v": {"type": "ExampleValidator", "inputs": {"statistics": "s.statistics", "schema": "g.schema"}},
        "s": {"type": "StatisticsGen", "inputs": {"examples": "e.examples"}},
        "g": {"type": "SchemaGen", "inputs": {"statistics": "s.statistics"}},
        "e": {"type": "tfrs_lab_test_custom:Loop", "inputs": {"anomalies": "v.anomalies"}}}}
    with pytest.raises(PipelineError, match=r"cycle in the pipeline: .*e.*v"):
        build_pipeline(loop)


def test_unknown_component_type_and_unknown_parameter():
    with pytest.raises(PipelineError, match=r"^trainer\.type: unknown component type 'Trainerr'"):
        build_pipeline(spec(trainer={"type": "Trainerr"}))
    with pytest.raises(ComponentError, match=r"^gen\.epochs: unknown parameter of ExampleGen"):
        build_pipeline(spec(gen={"type": "ExampleGen", "parameters": {"epochs": 3}}))
    with pytest.raises(ComponentError, match=r"^gen\.split: must be a str, got int"):
        build_pipeline(spec(gen={"type": "ExampleGen", "parameters": {"split": 3}}))


def test_missing_and_mistyped_inputs():
    with pytest.raises(PipelineError, match=r"^stats\.inputs\.examples: required input \(Examples\) is not connected"):
        build_pipeline(spec(stats={"type": "StatisticsGen"}))
    with pytest.raises(PipelineError, match=r"^stats\.inputs\.examples: no component 'nowhere'"):
        build_pipeline(spec(stats={"type": "StatisticsGen", "inputs": {"examples": "nowhere.examples"}}))
    with pytest.raises(PipelineError, match=r"^schema\.inputs\.statistics: expects ExampleStatistics but gen\.examples is Examples"):
        build_pipeline(spec(gen=GEN, schema={"type": "SchemaGen", "inputs": {"statistics": "gen.examples"}}))


def test_custom_component_with_wrong_types_is_rejected():
    with pytest.raises(ComponentError, match=r"^Bad\.examples: annotate it as InputArtifact"):
        @component
        def Bad(examples: int) -> None:  # noqa: N802
            pass
    with pytest.raises(ComponentError, match=r"^Bad2\.limit: parameter type must be one of"):
        @component
        def Bad2(examples: InputArtifact[Examples], limit: Parameter[set] = None) -> None:  # noqa: N802
            pass
    with pytest.raises(ComponentError, match=r"^Bad3\.model: output artifact type must be an artifact type"):
        @component
        def Bad3(model: OutputArtifact[str]) -> None:  # noqa: N802
            pass

    @component
    def NeedsModel(model: InputArtifact[Model], out: OutputArtifact[Model], k: Parameter[int] = 3) -> None:  # noqa: N802
        pass

    with pytest.raises(ComponentError, match=r"^needs\.k: must be a int, got str"):
        NeedsModel(id="needs", k="three")


def test_anomaly_fails_the_pipeline_is_recorded_and_nothing_is_pushed(tmp_path, capsys):
    csv = ratings_csv(tmp_path / "bad.csv", bad_test_ratings=2)
    pipeline = {"name": "anomalous", "components": {
        "example_gen": {"type": "ExampleGen", "parameters": {"input_path": str(csv)}},
        "statistics_gen": {"type": "StatisticsGen", "inputs": {"examples": "example_gen.examples"}},
        "schema_gen": {"type": "SchemaGen", "inputs": {"statistics": "statistics_gen.statistics"}},
        "example_validator": {"type": "ExampleValidator",
                              "inputs": {"statistics": "statistics_gen.statistics", "schema": "schema_gen.schema"}},
        "trainer": {"type": "Trainer", "inputs": {"examples": "example_gen.examples"}},
        "pusher": {"type": "Pusher", "inputs": {"model": "trainer.model"}}}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(pipeline, sort_keys=False))
    root = tmp_path / "root"
    assert run_main([str(path), "--pipeline-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ExampleValidator example_validator.test.user_rating:") and "Traceback" not in err
    with L.LineageStore(root / L.DB_FILE) as store:
        failed = store.get_executions(state=L.FAILED)
        assert [e.node_id for e in failed] == ["example_validator"] and "user_rating" in failed[0].error
        assert not store.get_executions(node_id="trainer") and not store.get_artifacts("PushedModel")
    assert not (root / "serving").exists() and not (root / "trainer").exists()


def test_run_cli_rejects_a_bad_pipeline_file(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec(stats={"type": "StatisticsGen"})))
    assert run_main([str(path), "--pipeline-root", str(tmp_path / "r")]) == 2
    assert "stats.inputs.examples" in capsys.readouterr().err
    assert run_main([str(tmp_path / "missing.yaml")]) == 2
    assert run_main([str(path), "--set", "stats"]) == 2


def test_trainer_refuses_a_transform_fitted_differently(tmp_path):
    from tfrs_lab.components.example_gen import ExampleGen
    from tfrs_lab.components.trainer import Trainer
    from tfrs_lab.components.transform import Transform

    csv = ratings_csv(tmp_path / "r.csv")
    examples = ExampleGen(input_path=str(csv)).run(tmp_path / "e")["examples"]
    graph = Transform(overrides={"model.title_vocab_size": 50}).run(tmp_path / "t", examples=examples)["transform_graph"]
    with pytest.raises(ValueError, match=r"fitted with title_vocab_size=50 but retrieval needs title_vocab_size=10000"):
        Trainer(overrides={"train.epochs": 1, "export.verify": False}).run(
            tmp_path / "m", examples=examples, transform_graph=graph)
