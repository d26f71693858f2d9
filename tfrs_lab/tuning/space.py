"""Search spaces (``configs/tuning/<task>.yaml``): parsing, validation and Keras Tuner conversion.

A space file::

    task: ranking
    objective: rmse                  # a validation metric the task writes (validation_<name>); or
                                     # {metric: rmse, direction: min} (rmse/mae: min, the rest: max)
    trial_config:                    # config overlay for every trial (short trials, cheap export)
      train: {epochs: 12}
      export: {verify: false}
    hyperband: {max_epochs: 12, factor: 3}   # optional: Hyperband's epoch budget (tuner/epochs -> train.epochs)
    hyperparameters:                 # dotted keys of the task's config, under model.* or train.*
      model.architecture: {type: choice, values: [mf, dcn]}
      model.embedding_dim: {type: int, min: 8, max: 128, sampling: log}
      train.learning_rate: {type: float, min: 0.0001, max: 0.01, sampling: log}
      model.use_biases: {type: boolean}
      model.cross_layers: {type: int, min: 1, max: 3, when: {model.architecture: [dcn]}}
      model.mlp_layers: {type: choice, values: [[64, 32], [128, 64, 32]]}   # list values are allowed

Every error is a :class:`~tfrs_lab.config.ConfigError` naming the dotted path in the space file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from tfrs_lab.config import CONFIG_DIR, ConfigError, task_entry, load_config, parse_override, read_yaml, to_dict

__all__ = ["base_extra", "decode", "default_space_file", "HP_TYPES", "HYPERBAND_EPOCHS", "Hyperparameter",
           "load_space", "merge", "MINIMISED_METRICS", "Objective", "parse_space", "SearchSpace",
           "TUNABLE_SECTIONS", "TUNING_DIR", "validation_metric_names"]

TUNING_DIR = CONFIG_DIR / "tuning"
HP_TYPES = ("choice", "int", "float", "boolean")
TUNABLE_SECTIONS = ("model", "train")
MINIMISED_METRICS = ("rmse", "mae")
HYPERBAND_EPOCHS = "tuner/epochs"
"""Keras Tuner's Hyperband budget hyperparameter; mapped onto ``train.epochs`` of each trial."""

_FIELDS = {"choice": {"type", "values", "when"},
           "int": {"type", "min", "max", "step", "sampling", "when"},
           "float": {"type", "min", "max", "step", "sampling", "when"},
           "boolean": {"type", "when"}}
_TOP_KEYS = {"task", "objective", "trial_config", "hyperband", "hyperparameters"}


def default_space_file(task: str) -> Path:
    """The shipped ``configs/tuning/<task>.yaml`` (see :func:`tfrs_lab.config.shipped_config`); it need not exist."""
    return TUNING_DIR / f"{task}.yaml"


@dataclass(frozen=True)
class Objective:
    """A validation metric of ``metrics.json`` (``validation_<metric>``) and its direction."""

    metric: str
    direction: str  # "min" | "max"

    @property
    def key(self) -> str:
        """The ``metrics.json`` key and Keras Tuner objective name, e.g. ``validation_rmse``."""
        return f"validation_{self.metric}"


@dataclass(frozen=True)
class Hyperparameter:
    """One searched config key. ``values`` for choice; ``low``/``high``/``step``/``sampling`` for int/float.

    ``encoded``: choice values are lists (e.g. layer sizes), passed to Keras Tuner as JSON strings.
    ``when``: (parent name, allowed parent values) for a conditional hyperparameter.
    """

    name: str
    type: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    sampling: str = "linear"
    when: tuple[str, tuple[Any, ...]] | None = None
    encoded: bool = False

    def representative_values(self) -> list[Any]:
        """Config values checked against the task's config before searching (choices, bounds)."""
        if self.type == "choice":
            return list(self.values)
        if self.type == "boolean":
            return [False, True]
        return [self.low, self.high]

    def is_finite(self) -> bool:
        return self.type in ("choice", "boolean") or self.type == "int" or self.step is not None


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space of ``task`` (see the module docstring for the file format)."""

    task: str
    objective: Objective
    hyperparameters: tuple[Hyperparameter, ...]
    trial_config: Mapping[str, Any] = field(default_factory=dict)
    hyperband_max_epochs: int | None = None
    hyperband_factor: int = 3
    source: str = "<memory>"
    raw: Mapping[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Stable hash of everything that defines the space (used to refuse a changed space on resume)."""
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def names(self) -> list[str]:
        return [hp.name for hp in self.hyperparameters]

    def keras_tuner_space(self):
        """The space as ``keras_tuner.HyperParameters`` (conditions as conditional scopes)."""
        import keras_tuner as kt

        hps = kt.HyperParameters()
        for hp in self.hyperparameters:
            if hp.when is None:
                _declare(hps, hp)
            else:
                parent, allowed = hp.when
                with hps.conditional_scope(parent, list(allowed)):
                    _declare(hps, hp)
        return hps

    def overlay(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The nested config overlay of a trial's Keras Tuner ``values`` (inactive and ``tuner/*``
        entries dropped, list choices decoded, Hyperband's ``tuner/epochs`` -> ``train.epochs``)."""
        out: dict[str, Any] = {}
        by_name = {hp.name: hp for hp in self.hyperparameters}
        for name, value in values.items():
            if name == HYPERBAND_EPOCHS:
                _set_dotted(out, "train.epochs", int(value))
                continue
            hp = by_name.get(name)
            if hp is None:
                continue  # tuner/initial_epoch, tuner/bracket ... are Keras Tuner bookkeeping
            if hp.when is not None:
                parent, allowed = hp.when
                if values.get(parent) not in allowed:
                    continue
            _set_dotted(out, name, decode(hp, value))
        return out


def decode(hp: Hyperparameter, value: Any) -> Any:
    """A Keras Tuner value as the config value (JSON-encoded list choices become lists)."""
    if hp.encoded:
        return json.loads(value)
    if hp.type == "int":
        return int(value)
    if hp.type == "float":
        return float(value)
    return value


def _declare(hps, hp: Hyperparameter) -> None:
    if hp.type == "choice":
        hps.Choice(hp.name, [json.dumps(v) if hp.encoded else v for v in hp.values])
    elif hp.type == "boolean":
        hps.Boolean(hp.name)
    elif hp.type == "int":
        hps.Int(hp.name, int(hp.low), int(hp.high), step=int(hp.step) if hp.step else None, sampling=hp.sampling)
    else:
        hps.Float(hp.name, float(hp.low), float(hp.high), step=hp.step, sampling=hp.sampling)


def _set_dotted(out: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = out
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def merge(*overlays: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge of nested config overlays, later ones winning."""
    out: dict[str, Any] = {}
    for overlay in overlays:
        for key, value in overlay.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = merge(out[key], value)
            else:
                out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def base_extra(overrides: Sequence[str], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """``extra`` plus each ``--set`` override as one overlay (so trial values can win over them)."""
    return merge(extra or {}, *(parse_override(o) for o in overrides))


# --------------------------------------------------------------------------- validation


def validation_metric_names(cfg: Any) -> set[str]:
    """Validation metrics a run with ``cfg`` writes to ``metrics.json`` (as ``validation_<name>``)."""
    from tfrs_lab.evaluation.metrics import metric_ks  # numpy only: no model code runs

    rating = {"rmse", "mae"} if cfg.reports_ratings else set()
    if cfg.predicts_ratings:
        return rating
    protocol = cfg.protocol
    ks = metric_ks(protocol, cfg.eval.ks)
    if protocol == "hash":
        return {f"hit_rate@{k}" for k in ks} | rating
    return ({f"{m}@{k}" for k in ks for m in ("recall", "ndcg")} | ({"mrr"} if protocol == "leave-last-out" else set())
            | rating)


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path} must be a number, got {value!r}")
    return value


def _parse_hp(name: str, spec: Any, config_tree: Mapping[str, Any], earlier: Mapping[str, Hyperparameter],
              where: str) -> Hyperparameter:
    path = f"{where}hyperparameters.{name}"
    parts = str(name).split(".")
    if parts[0] not in TUNABLE_SECTIONS or len(parts) < 2:
        raise ConfigError(f"{path}: only model.* and train.* config keys can be tuned, got '{name}'")
    node: Any = config_tree
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            known = sorted(node) if isinstance(node, Mapping) else []
            prefix = ".".join(parts[:i]) or "the config"
            raise ConfigError(f"{path}: unknown hyperparameter name '{name}': '{part}' is not a key of {prefix} "
                              f"(valid: {', '.join(known)})")
        node = node[part]
    if isinstance(node, Mapping):
        raise ConfigError(f"{path}: '{name}' is a section, not a single value: tune one of its keys "
                          f"({', '.join(sorted(node))})")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{path} must be a mapping such as {{type: int, min: 8, max: 64}}, got {spec!r}")
    kind = spec.get("type")
    if kind not in HP_TYPES:
        raise ConfigError(f"{path}.type must be one of {', '.join(HP_TYPES)}, got {kind!r}")
    unknown = set(spec) - _FIELDS[kind]
    if unknown:
        raise ConfigError(f"{path}: unknown field '{sorted(unknown)[0]}' for type {kind}: valid fields are "
                          f"{', '.join(sorted(_FIELDS[kind]))}")
    when = None
    if "when" in spec:
        cond = spec["when"]
        if not isinstance(cond, Mapping) or len(cond) != 1:
            raise ConfigError(f"{path}.when must name one parent, e.g. {{model.architecture: [dcn]}}")
        parent, allowed = next(iter(cond.items()))
        allowed = tuple(allowed) if isinstance(allowed, (list, tuple)) else (allowed,)
        parent_hp = earlier.get(parent)
        if parent_hp is None or parent_hp.type not in ("choice", "boolean") or parent_hp.when is not None:
            raise ConfigError(f"{path}.when: parent '{parent}' must be an unconditional choice or boolean "
                              "hyperparameter declared above it")
        options = parent_hp.representative_values()
        bad = [v for v in allowed if v not in options]
        if bad or not allowed:
            raise ConfigError(f"{path}.when: {bad[0] if bad else 'nothing'!r} is not a value of '{parent}' "
                              f"(choose from {options})")
        when = (parent, allowed)
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}.values must be a non-empty list of candidate values")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ConfigError(f"{path}.values has duplicates: {values}")
        encoded = any(isinstance(v, list) for v in values)
        if encoded and not all(isinstance(v, list) for v in values):
            raise ConfigError(f"{path}.values: mix of lists and single values; make every value a list")
        if not encoded and len({type(v) for v in values}) > 1 and not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{path}.values must all have one type, got {values}")
        if any(isinstance(v, Mapping) or v is None for v in values):
            raise ConfigError(f"{path}.values must be numbers, strings, booleans or lists, got {values}")
        return Hyperparameter(name, kind, values=tuple(values), when=when, encoded=encoded)
    if kind == "boolean":
        return Hyperparameter(name, kind, when=when)
    for key in ("min", "max"):
        if key not in spec:
            raise ConfigError(f"{path}.{key} is required for type {kind}")
    low, high = _number(spec["min"], f"{path}.min"), _number(spec["max"], f"{path}.max")
    if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise ConfigError(f"{path}: min and max of an int must be integers, got {low!r}, {high!r}")
    if not low < high:
        raise ConfigError(f"{path}.min ({low}) must be < {path}.max ({high})")
    sampling = spec.get("sampling", "linear")
    if sampling not in ("linear", "log", "reverse_log"):
        raise ConfigError(f"{path}.sampling must be linear, log or reverse_log, got {sampling!r}")
    if sampling != "linear" and low <= 0:
        raise ConfigError(f"{path}.min must be > 0 for {sampling} sampling, got {low}")
    step = spec.get("step")
    if step is not None:
        step = _number(step, f"{path}.step")
        if step <= 0 or (sampling != "linear" and step <= 1):
            raise ConfigError(f"{path}.step must be > 0 (and > 1, a factor, with log sampling), got {step}")
    return Hyperparameter(name, kind, low=low, high=high, step=step, sampling=sampling, when=when)


def _parse_objective(raw: Any, where: str) -> Objective:
    if isinstance(raw, str):
        metric, direction = raw, None
    elif isinstance(raw, Mapping) and set(raw) <= {"metric", "direction"} and "metric" in raw:
        metric, direction = raw["metric"], raw.get("direction")
    else:
        raise ConfigError(f"{where}objective must be a metric name such as rmse or {{metric: rmse, direction: min}}, "
                          f"got {raw!r}")
    metric = str(metric).removeprefix("validation_")
    if metric.startswith("test_") or metric.startswith("val_"):
        raise ConfigError(f"{where}objective: name the validation metric plainly (e.g. rmse), got {raw!r}")
    natural = "min" if metric in MINIMISED_METRICS else "max"
    if direction is not None and direction != natural:
        raise ConfigError(f"{where}objective.direction for {metric} must be {natural}, got {direction!r}")
    return Objective(metric, natural)


def parse_space(raw: Any, task: str, config_files: Sequence[str | os.PathLike] = (), overrides: Sequence[str] = (),
                extra: Mapping[str, Any] | None = None, *, source: str = "<memory>") -> SearchSpace:
    """Validates a space (the YAML mapping ``raw``) against ``task``'s config resolved from
    ``config_files`` / ``overrides`` / ``extra`` (the same arguments as :func:`tfrs_lab.config.load_config`)."""
    where = f"search space {source}: "
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}must hold a mapping with objective and hyperparameters")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{where}unknown key '{sorted(unknown)[0]}': valid keys are {', '.join(sorted(_TOP_KEYS))}")
    if raw.get("task", task) != task:
        raise ConfigError(f"{where}task: the space is for '{raw['task']}' but you ran '{task}'")
    trial_config = raw.get("trial_config") or {}
    if not isinstance(trial_config, Mapping):
        raise ConfigError(f"{where}trial_config must be a config overlay mapping")
    specs = raw.get("hyperparameters")
    if not specs:
        raise ConfigError(f"{where}hyperparameters is empty: declare at least one, e.g. "
                          "model.embedding_dim: {type: int, min: 8, max: 64}")
    if not isinstance(specs, Mapping):
        raise ConfigError(f"{where}hyperparameters must map config keys to specs")
    if "objective" not in raw:
        raise ConfigError(f"{where}objective is missing: name a validation metric such as rmse or recall@10")
    objective = _parse_objective(raw["objective"], where)

    user = base_extra(overrides, extra)
    try:
        base = load_config(task, config_files, (), extra=merge(trial_config, user))
    except ConfigError as e:
        raise ConfigError(f"{where}trial_config: {e}") from e
    tree = to_dict(base)
    produced = validation_metric_names(base)
    if objective.metric not in produced:
        raise ConfigError(f"{where}objective '{objective.metric}' is not a validation metric of this {task} run "
                          f"(split {base.data.split}): choose one of {', '.join(sorted(produced))}")
    parsed: dict[str, Hyperparameter] = {}
    for name, spec in specs.items():
        hp = _parse_hp(str(name), spec, tree, parsed, where)
        for value in hp.representative_values():
            overlay: dict[str, Any] = {}
            _set_dotted(overlay, hp.name, value)
            try:
                load_config(task, config_files, (), extra=merge(trial_config, user, overlay))
            except ConfigError as e:
                raise ConfigError(f"{where}hyperparameters.{name}: value {value!r} is rejected by the config: {e}") from e
        parsed[hp.name] = hp

    hb = raw.get("hyperband") or {}
    if not isinstance(hb, Mapping) or set(hb) - {"max_epochs", "factor"}:
        raise ConfigError(f"{where}hyperband must be {{max_epochs: N, factor: F}}, got {hb!r}")
    max_epochs = hb.get("max_epochs", base.train.epochs)
    factor = hb.get("factor", 3)
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise ConfigError(f"{where}hyperband.max_epochs must be an integer >= 1, got {max_epochs!r}")
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise ConfigError(f"{where}hyperband.factor must be an integer >= 2, got {factor!r}")
    normalised = {"task": task, "objective": {"metric": objective.metric, "direction": objective.direction},
                  "trial_config": trial_config, "hyperband": {"max_epochs": max_epochs, "factor": factor},
                  "hyperparameters": {str(k): v for k, v in specs.items()}}
    return SearchSpace(task=task, objective=objective, hyperparameters=tuple(parsed.values()),
                       trial_config=dict(trial_config), hyperband_max_epochs=max_epochs, hyperband_factor=factor,
                       source=source, raw=normalised)


def load_space(task: str, path: str | os.PathLike | None = None, config_files: Sequence[str | os.PathLike] = (),
               overrides: Sequence[str] = (), extra: Mapping[str, Any] | None = None) -> SearchSpace:
    """Reads and validates ``path`` (default ``configs/tuning/<task>.yaml``)."""
    task_entry(task)  # ConfigError naming the registered tasks
    p = Path(path) if path is not None else default_space_file(task)
    raw = read_yaml(p, what="search space file", flag="--space")
    if raw is None:
        raise ConfigError(f"search space {str(p)!r} is empty: declare objective and hyperparameters")
    return parse_space(raw, task, config_files, overrides, extra, source=str(p))
