"""Component model: a spec of typed inputs, outputs and parameters plus an executor.

Two ways to write a component, both giving the same :class:`Component`:

* a subclass that declares ``INPUTS``/``OUTPUTS`` (:class:`Channel`), ``PARAMETERS``
  (:class:`Param`) and implements ``execute(ctx)``;
* the :func:`component` decorator on a function whose annotations say it all, in the spirit of
  TFX's ``@component``::

      @component
      def HighRatings(examples: InputArtifact[Examples], filtered: OutputArtifact[Examples],
                      min_rating: Parameter[float] = 4.0) -> None:
          ...

Every component runs standalone (``Component(**params).run(output_dir, **inputs)``) or as a
pipeline node (:mod:`tfrs_lab.components.runner`); both go through :func:`execute_component`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.artifacts import Artifact
from tfrs_lab.components.code_closure import closure_digest, module_entries
from tfrs_lab.config import ConfigError

__all__ = ["ArtifactType", "Channel", "check_inputs", "check_value", "Component", "component", "ComponentError",
           "ExampleAnomalies", "Examples", "ExampleStatistics", "execute_component", "ExecutionContext",
           "HyperParameters", "InferenceResult", "InfraBlessing", "InputArtifact", "Model", "ModelBlessing",
           "ModelEvaluation", "ModelRun", "OutputArtifact", "Param", "Parameter", "PARAMETER_TYPES", "PushedModel",
           "REQUIRED", "Schema", "stable_json", "TransformGraph"]


class ComponentError(ConfigError):
    """A component cannot run with what it was given; the message names the component and field."""


REQUIRED = object()
PARAMETER_TYPES = (int, float, str, bool, list, dict)


@dataclasses.dataclass(frozen=True)
class Channel:
    """A typed input or output: ``type_name`` is a TFX artifact type name."""

    type_name: str
    optional: bool = False
    doc: str = ""


@dataclasses.dataclass(frozen=True)
class Param:
    """A typed parameter (``int``, ``float``, ``str``, ``bool``, ``list`` or ``dict``)."""

    type: type
    default: Any = REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def check_value(component: str, name: str, p: Param, value: Any) -> Any:
    """``value`` checked against ``p`` (ints accepted for floats); raises :class:`ComponentError`."""
    if value is None:
        if p.default is None:
            return None
        raise ComponentError(f"{component}.{name}: must be a {p.type.__name__}, got null")
    if p.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if p.type is not bool and isinstance(value, bool) or not isinstance(value, p.type):
        raise ComponentError(f"{component}.{name}: must be a {p.type.__name__}, got {type(value).__name__} {value!r}")
    return value


@dataclasses.dataclass
class ExecutionContext:
    """What an executor sees: resolved ``inputs``, fresh ``outputs`` (directories already created),
    checked ``parameters``, and (in a pipeline) the lineage ``store`` and ``pipeline`` name."""

    component_id: str
    inputs: dict[str, Artifact | None]
    outputs: dict[str, Artifact]
    parameters: dict[str, Any]
    pipeline_root: Path
    pipeline: str = ""
    store: Any = None  # LineageStore | None
    execution_id: int | None = None

    def error(self, field: str, message: str) -> ComponentError:
        return ComponentError(f"{self.component_id}.{field}: {message}")


def _source_digest(obj: Any) -> str:
    try:
        text = inspect.getsource(obj)
    except (OSError, TypeError):
        text = repr(obj)
    return hashlib.sha256(text.encode()).hexdigest()


def _module_code_digest(module: str) -> str:
    """Digest of the ``tfrs_lab`` sources that ``module`` (and so an executor defined there) reaches."""
    return closure_digest(module_entries(module, getattr(sys.modules.get(module), "__file__", None)))


class Component:
    """Base class. Subclasses set ``INPUTS``, ``OUTPUTS``, ``PARAMETERS`` and ``execute``. The
    cache key covers the executor's own source and every ``tfrs_lab`` module its module can import
    (:mod:`tfrs_lab.components.code_closure`), so no list of library modules is kept by hand."""

    INPUTS: ClassVar[Mapping[str, Channel]] = {}
    OUTPUTS: ClassVar[Mapping[str, Channel]] = {}
    PARAMETERS: ClassVar[Mapping[str, Param]] = {}

    def __init__(self, id: str | None = None, **parameters: Any) -> None:
        self.id = id or type(self).__name__
        self.parameters = self.check_parameters(parameters)

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    def check_parameters(self, given: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in given:
            if name not in self.PARAMETERS:
                known = ", ".join(sorted(self.PARAMETERS)) or "none"
                raise ComponentError(f"{self.id}.{name}: unknown parameter of {self.type_name()} (known: {known})")
        for name, p in self.PARAMETERS.items():
            if name in given:
                out[name] = check_value(self.id, name, p, given[name])
            elif p.required:
                raise ComponentError(f"{self.id}.{name}: required parameter of {self.type_name()} is missing")
            else:
                out[name] = copy.deepcopy(p.default)  # never share a mutable default between components
        return out

    def code_fingerprint(self) -> str:
        """SHA-256 over the source of this component's module (or function) and the ``tfrs_lab``
        modules its module reaches (its transitive import closure)."""
        h = hashlib.sha256()
        h.update(self._own_source_digest().encode())
        h.update(_module_code_digest(type(self).__module__).encode())
        return h.hexdigest()

    def _own_source_digest(self) -> str:
        return _source_digest(sys.modules[type(self).__module__])

    def fingerprint_extra(self) -> str:
        """Content the cache key needs beyond parameters and inputs (e.g. a data file's hash)."""
        return ""

    def execute(self, ctx: ExecutionContext) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, output_dir: str | Path, **inputs: Artifact) -> dict[str, Artifact]:
        """Runs standalone: outputs go to ``output_dir/<output key>/``. Returns the outputs."""
        root = Path(output_dir).absolute()
        outputs = {key: Artifact(ch.type_name, str(root / key)) for key, ch in self.OUTPUTS.items()}
        return execute_component(self, inputs, outputs, pipeline_root=root)


def check_inputs(comp: Component, inputs: Mapping[str, Artifact | None]) -> dict[str, Artifact | None]:
    """Inputs checked against the spec: known keys, right types, required ones present on disk."""
    for key in inputs:
        if key not in comp.INPUTS:
            raise ComponentError(f"{comp.id}.{key}: unknown input of {comp.type_name()} "
                                 f"(inputs: {', '.join(comp.INPUTS) or 'none'})")
    out: dict[str, Artifact | None] = {}
    for key, ch in comp.INPUTS.items():
        art = inputs.get(key)
        if art is None:
            if not ch.optional:
                raise ComponentError(f"{comp.id}.{key}: missing required input artifact ({ch.type_name})")
        else:
            if art.type_name != ch.type_name:
                raise ComponentError(f"{comp.id}.{key}: expects a {ch.type_name} artifact, got {art.type_name}")
            if not art.path.is_dir():
                raise ComponentError(f"{comp.id}.{key}: upstream {art.type_name} artifact is missing at {art.uri}")
        out[key] = art
    return out


def execute_component(comp: Component, inputs: Mapping[str, Artifact | None], outputs: dict[str, Artifact], *,
                      pipeline_root: Path, pipeline: str = "", store: Any = None,
                      execution_id: int | None = None) -> dict[str, Artifact]:
    """Checks inputs, creates the output directories, runs the executor and checks that every
    output was written (postcondition). Returns ``outputs``."""
    resolved = check_inputs(comp, inputs)
    for art in outputs.values():
        art.path.mkdir(parents=True, exist_ok=True)
    ctx = ExecutionContext(comp.id, resolved, outputs, dict(comp.parameters), Path(pipeline_root), pipeline,
                           store, execution_id)
    comp.execute(ctx)
    for key, art in outputs.items():
        if not art.path.is_dir() or not any(art.path.iterdir()):
            raise ComponentError(f"{comp.id}.{key}: the executor wrote nothing to its {art.type_name} output {art.uri}")
    return outputs


# --------------------------------------------------------------------------- decorator


class ArtifactType:
    """Marker for annotations: ``InputArtifact[Examples]``. ``TYPE_NAME`` is the TFX type name."""

    TYPE_NAME: ClassVar[str] = ""


def _marker(name: str) -> type[ArtifactType]:
    return type(name, (ArtifactType,), {"TYPE_NAME": name, "__module__": __name__})


Examples = _marker(A.EXAMPLES)
ExampleStatistics = _marker(A.EXAMPLE_STATISTICS)
Schema = _marker(A.SCHEMA)
ExampleAnomalies = _marker(A.EXAMPLE_ANOMALIES)
TransformGraph = _marker(A.TRANSFORM_GRAPH)
Model = _marker(A.MODEL)
ModelRun = _marker(A.MODEL_RUN)
HyperParameters = _marker(A.HYPERPARAMETERS)
ModelEvaluation = _marker(A.MODEL_EVALUATION)
ModelBlessing = _marker(A.MODEL_BLESSING)
InfraBlessing = _marker(A.INFRA_BLESSING)
PushedModel = _marker(A.PUSHED_MODEL)
InferenceResult = _marker(A.INFERENCE_RESULT)


@dataclasses.dataclass(frozen=True)
class _Annotation:
    kind: str  # "input" | "output" | "parameter"
    arg: Any


class _Generic:
    kind = ""

    def __class_getitem__(cls, arg: Any) -> _Annotation:
        return _Annotation(cls.kind, arg)


class InputArtifact(_Generic):
    """``InputArtifact[Examples]``: the function receives an :class:`Artifact`."""
    kind = "input"


class OutputArtifact(_Generic):
    """``OutputArtifact[Model]``: the function receives an :class:`Artifact` whose directory it fills."""
    kind = "output"


class Parameter(_Generic):
    """``Parameter[int]``: a typed parameter; the Python default is the parameter's default."""
    kind = "parameter"


def component(fn: Callable[..., Any]) -> type[Component]:
    """Turns an annotated function into a :class:`Component` subclass named after it.

    Every argument must be annotated ``InputArtifact[T]``, ``OutputArtifact[T]`` (``T`` a marker
    such as :data:`Examples`) or ``Parameter[t]`` (``t`` in int, float, str, bool, list, dict).
    An input with default ``None`` is optional. Wrong annotations raise :class:`ComponentError`
    naming the function and the argument.
    """
    name = fn.__name__
    inputs: dict[str, Channel] = {}
    outputs: dict[str, Channel] = {}
    params: dict[str, Param] = {}
    try:
        hints = inspect.get_annotations(fn, eval_str=True)
    except NameError as e:
        raise ComponentError(f"{name}: cannot resolve an annotation ({e})") from e
    for arg, p in inspect.signature(fn).parameters.items():
        ann = hints.get(arg)
        if not isinstance(ann, _Annotation):
            raise ComponentError(f"{name}.{arg}: annotate it as InputArtifact[T], OutputArtifact[T] or Parameter[t], "
                                 f"got {ann!r}")
        if ann.kind in ("input", "output"):
            if not (isinstance(ann.arg, type) and issubclass(ann.arg, ArtifactType) and ann.arg.TYPE_NAME):
                raise ComponentError(f"{name}.{arg}: {ann.kind} artifact type must be an artifact type such as "
                                     f"Examples or Model, got {ann.arg!r}")
            if ann.kind == "input":
                inputs[arg] = Channel(ann.arg.TYPE_NAME, optional=p.default is None)
            else:
                if p.default is not inspect.Parameter.empty:
                    raise ComponentError(f"{name}.{arg}: an output artifact cannot have a default")
                outputs[arg] = Channel(ann.arg.TYPE_NAME)
        else:
            if ann.arg not in PARAMETER_TYPES:
                raise ComponentError(f"{name}.{arg}: parameter type must be one of int, float, str, bool, list, dict, "
                                     f"got {ann.arg!r}")
            default = REQUIRED if p.default is inspect.Parameter.empty else p.default
            if default is not REQUIRED and default is not None:
                check_value(name, arg, Param(ann.arg), default)
            params[arg] = Param(ann.arg, default)

    def execute(self: Component, ctx: ExecutionContext) -> None:
        fn(**ctx.inputs, **ctx.outputs, **ctx.parameters)

    def _own_source_digest(self: Component) -> str:
        return _source_digest(fn)

    cls = type(name, (Component,), {
        "INPUTS": inputs, "OUTPUTS": outputs, "PARAMETERS": params, "execute": execute,
        "_own_source_digest": _own_source_digest, "__doc__": fn.__doc__, "__module__": fn.__module__,
        "function": staticmethod(fn),
    })
    return cls


def stable_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
