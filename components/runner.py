"""Pipelines: a DAG of components from a YAML file, run in dependency order with caching and
lineage.

Pipeline file (``configs/pipelines/*.yaml``)::

    name: movielens_retrieval
    pipeline_root: runs/pipelines/movielens_retrieval   # optional; --pipeline-root overrides
    components:
      example_gen:                      # the component id
        type: ExampleGen                # a standard component or "package.module:Class"
        parameters: {dataset: movielens/100k-ratings, split: hash}
      trainer:
        type: Trainer
        inputs: {examples: example_gen.examples, transform_graph: transform.transform_graph}
        parameters: {task: retrieval, overrides: {train.epochs: 3}}

String parameters may contain ``{pipeline_root}``. Outputs land in
``<pipeline_root>/<component id>/<output key>/<execution id>/``; the lineage database is
``<pipeline_root>/metadata.sqlite``.

Cache key of an execution: SHA-256 over the component type, the source of its code and of every
``tfrs_lab`` module that code reaches (:mod:`tfrs_lab.components.code_closure`), its parameters,
any content it declares (e.g. the data zip's hash) and the fingerprints of its input artifacts. An output's fingerprint derives from its execution's key,
so a changed parameter re-runs that component and everything downstream, nothing upstream.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

import tfrs_lab.components as components_package
from tfrs_lab.components import lineage as L
from tfrs_lab.components.artifacts import Artifact
from tfrs_lab.components.base import Component, ComponentError, execute_component, stable_json
from tfrs_lab.config import load_yaml_text, parse_override

__all__ = ["build_pipeline", "cache_key", "component_class", "load_pipeline", "Node", "NodeResult", "Pipeline",
           "PipelineError", "PipelineResult", "Progress", "run_pipeline", "STANDARD_COMPONENTS"]

logger = logging.getLogger(__name__)

STANDARD_COMPONENTS: dict[str, str] = {name: f"{components_package.__name__}.{module}:{name}"
                                        for name, module in components_package.COMPONENT_MODULES.items()}
"""Component type -> ``module:class`` (imported lazily: TensorFlow loads only when needed)."""


class PipelineError(ComponentError):
    """The pipeline file or a component execution is wrong; names the component and field."""


def component_class(type_name: str, where: str) -> type[Component]:
    """The class of a standard type name or a ``module:attr`` path."""
    target = STANDARD_COMPONENTS.get(type_name, type_name)
    module, sep, attr = target.partition(":")
    if not sep:
        raise PipelineError(f"{where}: unknown component type {type_name!r}: use one of "
                            f"{', '.join(STANDARD_COMPONENTS)} or 'package.module:Component'")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise PipelineError(f"{where}: cannot import component {type_name!r} ({e})") from e
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        raise PipelineError(f"{where}: {type_name!r} is not a Component (write it with @component or subclass Component)")
    return cls


@dataclasses.dataclass
class Node:
    id: str
    component: Component
    inputs: dict[str, tuple[str, str]]  # input key -> (producer id, output key)


@dataclasses.dataclass
class Pipeline:
    name: str
    root: Path
    nodes: list[Node]  # topological order

    @property
    def db_path(self) -> Path:
        return self.root / L.DB_FILE

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def _apply_overrides(spec: dict[str, Any], overrides: Sequence[str]) -> None:
    """``--set <component id>.<parameter>[.<key in a dict parameter>]=<YAML value>``."""
    comps = spec.setdefault("components", {})
    for text in overrides:
        key, sep, _ = text.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2:
            raise PipelineError(f"--set {text!r}: use <component id>.<parameter>=<value>, e.g. trainer.overrides.train.epochs=3")
        node, param, rest = parts[0], parts[1], ".".join(parts[2:])
        if node not in comps:
            raise PipelineError(f"--set {text!r}: no component {node!r} (components: {', '.join(comps)})")
        value = next(iter(parse_override(f"x={text.partition('=')[2]}").values()))
        params = comps[node].setdefault("parameters", {}) or {}
        comps[node]["parameters"] = params
        if rest:
            sub = params.get(param) or {}
            if not isinstance(sub, dict):
                raise PipelineError(f"--set {text!r}: {node}.{param} is not a mapping")
            params[param] = {**sub, rest: value}
        else:
            params[param] = value


def _substitute(value: Any, root: Path) -> Any:
    if isinstance(value, str):
        return value.replace("{pipeline_root}", str(root))
    if isinstance(value, list):
        return [_substitute(v, root) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, root) for k, v in value.items()}
    return value


def load_pipeline(path: str | Path, *, overrides: Sequence[str] = (), pipeline_root: str | Path | None = None,
                  data_zip: str | None = None) -> Pipeline:
    """Reads and checks a pipeline file; raises :class:`PipelineError` naming the component and field."""
    path = Path(path)
    try:
        spec = load_yaml_text(path.read_text())
    except OSError as e:
        raise PipelineError(f"cannot read pipeline file {str(path)!r}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise PipelineError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(spec, dict):
        raise PipelineError(f"{path}: expected a mapping with 'name' and 'components'")
    return build_pipeline(spec, overrides=overrides, pipeline_root=pipeline_root, data_zip=data_zip, source=str(path))


def build_pipeline(spec: Mapping[str, Any], *, overrides: Sequence[str] = (), pipeline_root: str | Path | None = None,
                   data_zip: str | None = None, source: str = "<pipeline>") -> Pipeline:
    """Same as :func:`load_pipeline` from an already-parsed mapping."""
    spec = copy.deepcopy(dict(spec))
    unknown = set(spec) - {"name", "pipeline_root", "components"}
    if unknown:
        raise PipelineError(f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))} "
                            "(allowed: name, pipeline_root, components)")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise PipelineError(f"{source}: name must be a non-empty string")
    comps = spec.get("components")
    if not isinstance(comps, dict) or not comps:
        raise PipelineError(f"{source}: components must be a non-empty mapping of component id -> spec")
    _apply_overrides(spec, overrides)
    root = Path(pipeline_root or spec.get("pipeline_root") or f"runs/pipelines/{name}").expanduser().absolute()

    nodes: dict[str, Node] = {}
    for cid, c in comps.items():
        where = f"{cid}"
        if not isinstance(c, dict):
            raise PipelineError(f"{where}: expected a mapping with type, inputs, parameters")
        bad = set(c) - {"type", "inputs", "parameters"}
        if bad:
            raise PipelineError(f"{where}.{sorted(bad)[0]}: unknown key (allowed: type, inputs, parameters)")
        if "type" not in c:
            raise PipelineError(f"{where}.type: missing component type")
        cls = component_class(str(c["type"]), f"{where}.type")
        params = _substitute(dict(c.get("parameters") or {}), root)
        if data_zip is not None and "data_zip" in cls.PARAMETERS:
            params["data_zip"] = str(Path(data_zip).expanduser().absolute())
        comp = cls(id=cid, **params)
        inputs: dict[str, tuple[str, str]] = {}
        for key, ref in (c.get("inputs") or {}).items():
            if key not in cls.INPUTS:
                raise PipelineError(f"{cid}.inputs.{key}: unknown input of {cls.type_name()} "
                                    f"(inputs: {', '.join(cls.INPUTS) or 'none'})")
            producer, dot, out = str(ref).partition(".")
            if not dot:
                raise PipelineError(f"{cid}.inputs.{key}: expected '<component id>.<output>', got {ref!r}")
            inputs[key] = (producer, out)
        for key, ch in cls.INPUTS.items():
            if key not in inputs and not ch.optional:
                raise PipelineError(f"{cid}.inputs.{key}: required input ({ch.type_name}) is not connected")
        nodes[cid] = Node(cid, comp, inputs)

    for node in nodes.values():
        for key, (producer, out) in node.inputs.items():
            if producer not in nodes:
                raise PipelineError(f"{node.id}.inputs.{key}: no component {producer!r} in the pipeline")
            outs = type(nodes[producer].component).OUTPUTS
            if out not in outs:
                raise PipelineError(f"{node.id}.inputs.{key}: {producer} has no output {out!r} "
                                    f"(outputs: {', '.join(outs) or 'none'})")
            want = type(node.component).INPUTS[key].type_name
            if outs[out].type_name != want:
                raise PipelineError(f"{node.id}.inputs.{key}: expects {want} but {producer}.{out} is {outs[out].type_name}")
    return Pipeline(name, root, _topological(nodes))


def _topological(nodes: dict[str, Node]) -> list[Node]:
    """Kahn's algorithm; among ready components the file's order wins (so validators placed
    before the Trainer run before it)."""
    pending = {nid: {p for p, _ in n.inputs.values()} for nid, n in nodes.items()}
    order: list[Node] = []
    while pending:
        ready = [nid for nid, deps in pending.items() if not deps]
        if not ready:
            start = next(iter(pending))
            path, nid = [], start
            while nid not in path:
                path.append(nid)
                nid = sorted(pending[nid])[0]
            cycle = path[path.index(nid):] + [nid]
            raise PipelineError(f"{nid}.inputs: cycle in the pipeline: {' -> '.join(cycle)}")
        nid = ready[0]
        order.append(nodes[nid])
        del pending[nid]
        for deps in pending.values():
            deps.discard(nid)
    return order


@dataclasses.dataclass
class NodeResult:
    node_id: str
    execution_id: int
    state: str  # COMPLETE | CACHED
    outputs: dict[str, Artifact]
    seconds: float


@dataclasses.dataclass
class PipelineResult:
    pipeline: Pipeline
    run_id: str
    results: dict[str, NodeResult]
    seconds: float

    def output(self, node_id: str, key: str) -> Artifact:
        return self.results[node_id].outputs[key]


Progress = Callable[[str], None]


def cache_key(comp: Component, inputs: Mapping[str, Artifact | None]) -> str:
    payload = {"type": comp.type_name(), "code": comp.code_fingerprint(), "parameters": comp.parameters,
               "content": comp.fingerprint_extra(),
               "inputs": {k: (a.fingerprint if a is not None else None) for k, a in sorted(inputs.items())}}
    return hashlib.sha256(stable_json(payload).encode()).hexdigest()


def run_pipeline(pipeline: Pipeline, *, cache: bool = True, progress: Progress | None = None) -> PipelineResult:
    """Runs every component in order. A failing component is recorded as FAILED in the lineage
    store and its error raised (as :class:`PipelineError` for user errors); nothing downstream runs.
    First, executions left RUNNING by a process that died (a killed run) are marked FAILED."""
    say = progress or logger.info
    pipeline.root.mkdir(parents=True, exist_ok=True)
    run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{time.time_ns() % 1_000_000:06d}"
    results: dict[str, NodeResult] = {}
    start = time.perf_counter()
    with L.LineageStore(pipeline.db_path) as store:
        pctx = store.context(L.PIPELINE, pipeline.name)
        rctx = store.context(L.PIPELINE_RUN, f"{pipeline.name}.{run_id}")
        for ex in store.fail_dead_executions():
            say(f"execution #{ex.id} {ex.type_name} ({ex.node_id}) marked FAILED: {ex.error}")
        for i, node in enumerate(pipeline.nodes, 1):
            comp = node.component
            label = f"[{i}/{len(pipeline.nodes)}] {comp.type_name()} ({node.id})"
            inputs = {key: results[p].outputs[out] for key, (p, out) in node.inputs.items()}
            key = cache_key(comp, inputs)
            contexts = [pctx, rctx, store.context(L.NODE, f"{pipeline.name}.{node.id}")]
            t0 = time.perf_counter()
            hit = store.cached_execution(key) if cache else None
            eid = store.start_execution(comp.type_name(), node.id, cache_key=key, parameters=comp.parameters,
                                        code_fingerprint=comp.code_fingerprint(), contexts=contexts)
            for k, art in inputs.items():
                store.put_event(art.id, eid, L.INPUT, k)
            if hit is not None:
                outputs = store.io(hit.id, L.OUTPUT)
                for k, art in outputs.items():
                    store.put_artifact(art, contexts)  # also this pipeline's: a later baseline lookup finds it
                    store.put_event(art.id, eid, L.OUTPUT, k)
                store.finish_execution(eid, L.CACHED, cached_from=hit.id)
                results[node.id] = NodeResult(node.id, eid, L.CACHED, outputs, time.perf_counter() - t0)
                say(f"{label}: cached (execution #{hit.id})")
                continue
            say(f"{label}: running")
            outputs = {k: Artifact(ch.type_name, str(pipeline.root / node.id / k / str(eid)),
                                   fingerprint=hashlib.sha256(f"{key}:{k}".encode()).hexdigest())
                       for k, ch in type(comp).OUTPUTS.items()}
            try:
                execute_component(comp, inputs, outputs, pipeline_root=pipeline.root, pipeline=pipeline.name,
                                  store=store, execution_id=eid)
            except Exception as e:
                store.finish_execution(eid, L.FAILED, error=f"{type(e).__name__}: {e}")
                say(f"{label}: FAILED ({e})")
                if isinstance(e, ValueError):
                    raise PipelineError(f"{comp.type_name()} {e}" if str(e).startswith(node.id)
                                        else f"{comp.type_name()} {node.id}: {e}") from e
                raise
            for k, art in outputs.items():
                store.put_artifact(art, contexts)
                store.put_event(art.id, eid, L.OUTPUT, k)
            store.finish_execution(eid, L.COMPLETE)
            results[node.id] = NodeResult(node.id, eid, L.COMPLETE, outputs, time.perf_counter() - t0)
            say(f"{label}: done in {time.perf_counter() - t0:.1f} s")
    return PipelineResult(pipeline, run_id, results, time.perf_counter() - start)
