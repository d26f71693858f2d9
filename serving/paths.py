"""Model paths as users give them: a version directory (``export/retrieval/1``), an export base
path (``export/retrieval``, holding numbered versions) or a run directory (``runs/x``, holding
``export/<name>/<version>/``). Everything that takes a model path resolves it here, the same way
``python -m tfrs_lab.similar`` does, or refuses it with the fix."""

from __future__ import annotations

import dataclasses
import os

from .config import ConfigError, ModelConfig, parse_model_flag
from .layout import is_saved_model, list_versions

__all__ = ["EXPORT_DIR", "model_config_from_flag", "ModelPath", "resolve_model_path", "resolve_version_dir"]

EXPORT_DIR = "export"


@dataclasses.dataclass(frozen=True)
class ModelPath:
    """A resolved model path: the export base and, for a version directory, that one version."""

    base_path: str
    version: int | None = None


def resolve_model_path(path: str, name: str | None = None) -> ModelPath:
    """Resolve ``path`` (version dir, export base or run dir) to an export base path.

    ``name`` picks ``export/<name>`` in a run directory holding several exports. Raises
    :class:`ConfigError` naming the fix for paths that hold no model.
    """
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        raise ConfigError(f"model path {path} does not exist; pass a run directory, export/<name> or "
                          "export/<name>/<version>")
    if is_saved_model(path):
        leaf = os.path.basename(path)
        if not (leaf.isdigit() and int(leaf) > 0):
            raise ConfigError(f"{path} is a SavedModel outside a numbered version directory; move it to "
                              f"{path}/1/ (TF Serving's layout <base>/<version>/) and pass {path}")
        return ModelPath(os.path.dirname(path), int(leaf))
    if list_versions(path):
        return ModelPath(path)
    exports = os.path.join(path, EXPORT_DIR)
    if os.path.isdir(exports):
        names = sorted(d for d in os.listdir(exports) if os.path.isdir(os.path.join(exports, d)))
        if name is not None and name in names:
            return ModelPath(os.path.join(exports, name))
        if len(names) == 1:
            return ModelPath(os.path.join(exports, names[0]))
        raise ConfigError(f"run directory {path} holds exports {', '.join(names) or '(none)'}; pass "
                          f"{exports}/<name> for the one to serve")
    return ModelPath(path)  # an export base that has no version yet (a pipeline may push one later)


def resolve_version_dir(path: str) -> str | None:
    """The SavedModel directory ``path`` points at (latest version of a base or run dir), or None."""
    resolved = resolve_model_path(path)
    version = resolved.version
    if version is None:
        versions = list_versions(resolved.base_path)
        if not versions:
            return None
        version = versions[0]
    return os.path.join(resolved.base_path, str(version))


def model_config_from_flag(flag: str) -> ModelConfig:
    """``--model NAME=PATH`` as a :class:`ModelConfig`: a version directory serves exactly that
    version (``specific`` policy); an export base or run directory serves its latest version."""
    name, path = parse_model_flag(flag)
    resolved = resolve_model_path(path, name)
    if resolved.version is not None:
        return ModelConfig(name=name, base_path=resolved.base_path, policy="specific", versions=(resolved.version,))
    return ModelConfig(name=name, base_path=resolved.base_path)
