"""Compile a pipeline file to a Kubeflow Pipelines v2 spec (``PipelineSpec`` IR YAML).

``python -m tfrs_lab.components.kfp configs/pipelines/movielens_retrieval.yaml --image IMAGE -o pipeline.yaml``

Every component becomes a KFP component whose container runs
``python -m tfrs_lab.components.entrypoint <Type> --id <id> --inputs {...} --outputs {...}
--parameters {...}`` with KFP's artifact path placeholders; the DAG's edges are
``taskOutputArtifact`` references. Upload the file with the KFP UI or
``kfp.Client().create_run_from_pipeline_package("pipeline.yaml")`` (or Vertex AI Pipelines).

We write the IR ourselves instead of depending on the ``kfp`` SDK: ``kfp`` 2.17 requires
``protobuf<7`` and would downgrade the protobuf the pinned TensorFlow 2.20 /
tensorflow-serving-api stack is tested with here (7.x). :func:`validate_spec` checks the structure
the KFP backend relies on; the specs were also checked once with ``kfp`` 2.17 in a separate
virtualenv (strict ``PipelineSpec`` parse, ``load_component_from_file``, recompiled as a step).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from tfrs_lab.cli import ArgumentParser, configure_logging, run_cli
from tfrs_lab.components.runner import Pipeline

__all__ = ["compile_pipeline", "DEFAULT_IMAGE", "main", "SCHEMA_VERSION", "SpecError", "validate_spec"]

SCHEMA_VERSION = "2.1.0"
DEFAULT_IMAGE = "tfrs-lab:latest"


class SpecError(ValueError):
    """A compiled spec is not a valid KFP v2 pipeline; the message names the field."""


def _name(node_id: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", node_id.lower())


def _artifact_type(type_name: str) -> dict[str, str]:
    return {"schemaTitle": f"tfx.{type_name}", "schemaVersion": "0.0.1"}


def compile_pipeline(pipeline: Pipeline, *, image: str = DEFAULT_IMAGE) -> dict[str, Any]:
    """The KFP v2 ``PipelineSpec`` of ``pipeline`` as a dict (dump it as YAML)."""
    components: dict[str, Any] = {}
    executors: dict[str, Any] = {}
    tasks: dict[str, Any] = {}
    for node in pipeline.nodes:
        cls = type(node.component)
        name = _name(node.id)
        inputs = {k: f"{{{{$.inputs.artifacts['{k}'].path}}}}" for k in node.inputs}
        outputs = {k: f"{{{{$.outputs.artifacts['{k}'].path}}}}" for k in cls.OUTPUTS}
        comp: dict[str, Any] = {
            "executorLabel": f"exec-{name}",
            "inputDefinitions": {"parameters": {"parameters": {"parameterType": "STRING"}}},
            "outputDefinitions": {"artifacts": {k: {"artifactType": _artifact_type(ch.type_name)}
                                                for k, ch in cls.OUTPUTS.items()}},
        }
        if node.inputs:
            comp["inputDefinitions"]["artifacts"] = {
                k: {"artifactType": _artifact_type(cls.INPUTS[k].type_name),
                    **({"isOptional": True} if cls.INPUTS[k].optional else {})} for k in node.inputs}
        components[f"comp-{name}"] = comp
        type_ref = cls.type_name() if cls.__module__.startswith("tfrs_lab.components.") else f"{cls.__module__}:{cls.__name__}"
        executors[f"exec-{name}"] = {"container": {
            "image": image,
            "command": ["python", "-m", "tfrs_lab.components.entrypoint"],
            "args": [type_ref, "--id", node.id, "--inputs", json.dumps(inputs), "--outputs", json.dumps(outputs),
                     "--parameters", "{{$.inputs.parameters['parameters']}}"],
        }}
        task: dict[str, Any] = {
            "componentRef": {"name": f"comp-{name}"},
            "taskInfo": {"name": name},
            "inputs": {"parameters": {"parameters": {"runtimeValue": {"constant": json.dumps(node.component.parameters)}}}},
        }
        deps = sorted({_name(p) for p, _ in node.inputs.values()})
        if deps:
            task["dependentTasks"] = deps
            task["inputs"]["artifacts"] = {k: {"taskOutputArtifact": {"producerTask": _name(p), "outputArtifactKey": out}}
                                           for k, (p, out) in node.inputs.items()}
        tasks[name] = task
    return {
        "pipelineInfo": {"name": _name(pipeline.name)},
        "schemaVersion": SCHEMA_VERSION,
        "sdkVersion": "tfrs_lab.components-0.1.0",
        "components": components,
        "deploymentSpec": {"executors": executors},
        "root": {"dag": {"tasks": tasks}},
    }


def validate_spec(spec: dict[str, Any]) -> list[str]:
    """Checks the structure KFP's backend relies on; returns the task names in a valid run
    order. Raises :class:`SpecError` naming the field."""
    for key in ("pipelineInfo", "schemaVersion", "components", "deploymentSpec", "root"):
        if key not in spec:
            raise SpecError(f"{key}: missing")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", spec["pipelineInfo"].get("name", "")):
        raise SpecError("pipelineInfo.name: must be lowercase letters, digits and '-'")
    executors = spec["deploymentSpec"].get("executors", {})
    tasks = spec["root"]["dag"]["tasks"]
    for cname, comp in spec["components"].items():
        label = comp.get("executorLabel")
        if label not in executors:
            raise SpecError(f"components.{cname}.executorLabel: no executor {label!r}")
        container = executors[label].get("container", {})
        if not container.get("image") or not container.get("command"):
            raise SpecError(f"deploymentSpec.executors.{label}.container: image and command are required")
        text = json.dumps(container.get("args", []))
        for k in comp.get("outputDefinitions", {}).get("artifacts", {}):
            if f"$.outputs.artifacts['{k}'].path" not in text:
                raise SpecError(f"deploymentSpec.executors.{label}: output {k} is never passed to the container")
    for tname, task in tasks.items():
        ref = task.get("componentRef", {}).get("name")
        if ref not in spec["components"]:
            raise SpecError(f"root.dag.tasks.{tname}.componentRef: no component {ref!r}")
        comp = spec["components"][ref]
        declared = comp.get("inputDefinitions", {}).get("artifacts", {})
        for k, value in task.get("inputs", {}).get("artifacts", {}).items():
            if k not in declared:
                raise SpecError(f"root.dag.tasks.{tname}.inputs.artifacts.{k}: not declared by {ref}")
            src = value["taskOutputArtifact"]
            producer = src["producerTask"]
            if producer not in tasks:
                raise SpecError(f"root.dag.tasks.{tname}.inputs.artifacts.{k}: no task {producer!r}")
            if producer not in task.get("dependentTasks", []):
                raise SpecError(f"root.dag.tasks.{tname}.dependentTasks: must list {producer}")
            pcomp = spec["components"][tasks[producer]["componentRef"]["name"]]
            outs = pcomp["outputDefinitions"]["artifacts"]
            if src["outputArtifactKey"] not in outs:
                raise SpecError(f"root.dag.tasks.{tname}.inputs.artifacts.{k}: {producer} has no output "
                                f"{src['outputArtifactKey']!r}")
            if outs[src["outputArtifactKey"]]["artifactType"] != declared[k]["artifactType"]:
                raise SpecError(f"root.dag.tasks.{tname}.inputs.artifacts.{k}: artifact type differs from {producer}'s")
        for k in comp.get("inputDefinitions", {}).get("parameters", {}):
            if k not in task.get("inputs", {}).get("parameters", {}):
                raise SpecError(f"root.dag.tasks.{tname}.inputs.parameters.{k}: missing")
    order, done = [], set()
    while len(order) < len(tasks):
        ready = [t for t in tasks if t not in done and set(tasks[t].get("dependentTasks", [])) <= done]
        if not ready:
            raise SpecError("root.dag.tasks: dependency cycle")
        order.append(ready[0])
        done.add(ready[0])
    return order


def main(argv: Sequence[str] | None = None) -> int:
    def body() -> int:
        p = ArgumentParser(prog="python -m tfrs_lab.components.kfp", description=__doc__.split("\n\n")[0])
        p.add_argument("pipeline", help="pipeline YAML")
        p.add_argument("-o", "--output", required=True, help="where to write the KFP v2 spec (YAML)")
        p.add_argument("--image", default=DEFAULT_IMAGE, help="container image with tfrs_lab installed")
        p.add_argument("--pipeline-root", help="pipeline_root baked into parameters such as {pipeline_root}")
        p.add_argument("--set", action="append", default=[], dest="overrides", metavar="ID.PARAM=VALUE")
        args = p.parse_args(argv)
        configure_logging(False)
        from tfrs_lab.components.runner import load_pipeline

        pipeline = load_pipeline(args.pipeline, overrides=args.overrides, pipeline_root=args.pipeline_root)
        spec = compile_pipeline(pipeline, image=args.image)
        order = validate_spec(spec)
        Path(args.output).write_text("# PIPELINE DEFINITION\n# Name: " + spec["pipelineInfo"]["name"] + "\n"
                                     + yaml.safe_dump(spec, sort_keys=False))
        print(f"wrote {args.output}: {len(order)} tasks ({', '.join(order)})")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
