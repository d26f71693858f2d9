"""Server configuration files in TF Serving's formats.

* ``--model_config_file``: a text-format ``tensorflow.serving.ModelServerConfig`` parsed with the
  real proto (``tensorflow_serving.config.model_server_config_pb2``).
* ``--batching_parameters_file``: TF Serving's ``BatchingParameters`` text format
  (``max_batch_size { value: 32 }``); its proto is not shipped in ``tensorflow-serving-api``, so
  the handful of fields are parsed here.
* ``--monitoring_config_file``: ``prometheus_config { enable: true path: "..." }``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

__all__ = ["read_config_file", "DEFAULT_MAX_BATCH_ROWS", "BatchingParameters", "ConfigError", "DEFAULT_METRICS_PATH", "load_batching_parameters",
           "load_model_config_file", "load_monitoring_config", "model_config_from_proto", "ModelConfig",
           "MonitoringConfig", "parse_batching_parameters", "parse_model_flag", "parse_model_server_config",
           "parse_monitoring_config", "to_model_server_config_text"]

DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"
DEFAULT_MAX_BATCH_ROWS = 1024
"""Rows (instances / examples) one request may carry, refused before any work (``--max-batch-rows``)."""


class ConfigError(ValueError):
    """A configuration file or flag is invalid; the message names the fix."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """One served model: ``name`` -> ``base_path`` with a version policy and labels.

    ``policy`` is ``"latest"`` (the ``num_versions`` highest versions), ``"all"`` or
    ``"specific"`` (exactly ``versions``), as in TF Serving's ``ServableVersionPolicy``.
    """

    name: str
    base_path: str
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: Mapping[str, int] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("model name must not be empty: use --model NAME=PATH")
        if not self.base_path:
            raise ConfigError(f"model {self.name!r}: base_path must not be empty")
        if self.policy not in ("latest", "all", "specific"):
            raise ConfigError(
                f"model {self.name!r}: version policy must be latest, all or specific, got {self.policy!r}"
            )
        if self.policy == "latest" and self.num_versions < 1:
            raise ConfigError(
                f"model {self.name!r}: latest.num_versions must be >= 1, got {self.num_versions}"
            )
        if self.policy == "specific" and not self.versions:
            raise ConfigError(f"model {self.name!r}: specific policy needs at least one version")
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    def wanted_versions(self, on_disk: Sequence[int]) -> list[int]:
        """Versions this policy wants loaded, given the versions found on disk (highest first)."""
        found = sorted(set(on_disk), reverse=True)
        if self.policy == "all":
            return found
        if self.policy == "specific":
            return [v for v in found if v in set(self.versions)]
        return found[: self.num_versions]

    def to_proto(self) -> model_server_config_pb2.ModelConfig:
        """The equivalent TF Serving ``ModelConfig`` proto."""
        proto = model_server_config_pb2.ModelConfig(
            name=self.name, base_path=self.base_path, model_platform="tensorflow"
        )
        policy = proto.model_version_policy
        if self.policy == "all":
            policy.all.SetInParent()
        elif self.policy == "specific":
            policy.specific.versions.extend(self.versions)
        else:
            policy.latest.num_versions = self.num_versions
        for label, version in self.labels.items():
            proto.version_labels[label] = version
        return proto


def model_config_from_proto(proto: model_server_config_pb2.ModelConfig) -> ModelConfig:
    """Convert one TF Serving ``ModelConfig`` proto; relative base paths resolve against the cwd."""
    if proto.model_platform not in ("", "tensorflow"):
        raise ConfigError(
            f"model {proto.name!r}: model_platform {proto.model_platform!r} is not supported; "
            "use 'tensorflow'"
        )
    which = proto.model_version_policy.WhichOneof("policy_choice")
    kwargs: dict[str, object] = {}
    if which == "all":
        kwargs["policy"] = "all"
    elif which == "specific":
        kwargs["policy"] = "specific"
        kwargs["versions"] = tuple(int(v) for v in proto.model_version_policy.specific.versions)
    elif which == "latest":
        kwargs["policy"] = "latest"
        kwargs["num_versions"] = int(proto.model_version_policy.latest.num_versions) or 1
    return ModelConfig(
        name=proto.name,
        base_path=os.path.abspath(proto.base_path) if proto.base_path else "",
        labels=dict(proto.version_labels),
        **kwargs,  # type: ignore[arg-type]
    )


def parse_model_server_config(text: str, *, source: str = "<string>") -> list[ModelConfig]:
    """Parse a text-format ``ModelServerConfig`` into :class:`ModelConfig` objects."""
    proto = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as e:
        raise ConfigError(
            f"{source}: not a valid text ModelServerConfig ({e}); see the shipped configs/serving/models.config"
        ) from e
    if proto.WhichOneof("config") == "custom_model_config":
        raise ConfigError(f"{source}: custom_model_config is not supported; use model_config_list")
    configs = [model_config_from_proto(c) for c in proto.model_config_list.config]
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: model names must be unique, repeated: {', '.join(duplicates)}")
    return configs


def read_config_file(path: str, what: str) -> str:
    """The text of the config file ``path``; ConfigError naming ``what`` (e.g. "model config file")
    when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path!r}: {e.strerror}") from e


def load_model_config_file(path: str) -> list[ModelConfig]:
    """Read and parse a ``--model-config-file``."""
    return parse_model_server_config(read_config_file(path, "model config file"), source=path)


def parse_model_flag(flag: str) -> tuple[str, str]:
    """Split ``--model NAME=PATH`` (the path is resolved by ``paths.resolve_model_path``)."""
    name, sep, path = flag.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise ConfigError(f"--model expects NAME=PATH (e.g. retrieval=runs/r1/export/retrieval), got {flag!r}")
    return name.strip(), path.strip()


def to_model_server_config_text(configs: Sequence[ModelConfig]) -> str:
    """Render configs as a text ``ModelServerConfig`` (for ``tensorflow_model_server``)."""
    proto = model_server_config_pb2.ModelServerConfig()
    for c in configs:
        proto.model_config_list.config.add().CopyFrom(c.to_proto())
    return text_format.MessageToString(proto)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchingParameters:
    """The subset of TF Serving's ``BatchingParameters`` the built-in server honours."""

    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    max_enqueued_batches: int = 100
    num_batch_threads: int = 4
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self) -> None:
        for field in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, field) < 1:
                raise ConfigError(f"batching {field} must be >= 1, got {getattr(self, field)}")
        if self.batch_timeout_micros < 0:
            raise ConfigError(f"batching batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")


_WRAPPED = re.compile(r"^\s*(\w+)\s*\{\s*value\s*:\s*([^\s}]+)\s*\}\s*$")
_INT_FIELDS = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"}


def parse_batching_parameters(text: str, *, source: str = "<string>") -> BatchingParameters:
    """Parse TF Serving's batching parameters text (one ``field { value: N }`` per line)."""
    values: dict[str, object] = {}
    allowed: list[int] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _WRAPPED.match(line)
        if not m:
            raise ConfigError(f"{source}:{lineno}: expected 'field {{ value: N }}', got {raw.strip()!r}")
        field, value = m.group(1), m.group(2)
        try:
            if field in _INT_FIELDS:
                values[field] = int(value)
            elif field == "allowed_batch_sizes":
                allowed.append(int(value))
            elif field == "pad_variable_length_inputs":
                values[field] = value.lower() == "true"
            elif field == "thread_pool_name":
                continue
            else:
                raise ConfigError(
                    f"{source}:{lineno}: unknown batching field {field!r}; known: "
                    + ", ".join(sorted(_INT_FIELDS | {"allowed_batch_sizes", "pad_variable_length_inputs"}))
                )
        except ValueError as e:
            raise ConfigError(f"{source}:{lineno}: {field} needs an integer, got {value!r}") from e
    if allowed:
        values["allowed_batch_sizes"] = tuple(allowed)
    return BatchingParameters(**values)  # type: ignore[arg-type]


def load_batching_parameters(path: str) -> BatchingParameters:
    """Read and parse a ``--batching-parameters-file``."""
    return parse_batching_parameters(read_config_file(path, "batching parameters file"), source=path)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MonitoringConfig:
    """Prometheus endpoint settings (TF Serving's ``MonitoringConfig.prometheus_config``)."""

    enable: bool = True
    path: str = DEFAULT_METRICS_PATH


def parse_monitoring_config(text: str, *, source: str = "<string>") -> MonitoringConfig:
    """Parse ``prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }``."""
    body = re.sub(r"#[^\n]*", "", text)
    m = re.fullmatch(r"\s*prometheus_config\s*\{(.*)\}\s*", body, flags=re.S)
    if not m:
        raise ConfigError(f"{source}: expected 'prometheus_config {{ enable: true path: \"...\" }}'")
    enable, path = False, DEFAULT_METRICS_PATH
    for field, value in re.findall(r"(\w+)\s*:\s*(\"[^\"]*\"|'[^']*'|\w+)\s*[,;]?", m.group(1)):
        if field == "enable":
            enable = value.lower() == "true"
        elif field == "path":
            path = value.strip("\"'")
        else:
            raise ConfigError(f"{source}: unknown prometheus_config field {field!r}; known: enable, path")
    if not path.startswith("/"):
        raise ConfigError(f"{source}: prometheus_config.path must start with '/', got {path!r}")
    return MonitoringConfig(enable=enable, path=path)


def load_monitoring_config(path: str) -> MonitoringConfig:
    """Read and parse a ``--monitoring-config-file``."""
    return parse_monitoring_config(read_config_file(path, "monitoring config file"), source=path)
