"""The config builder: plain (YAML-like) values -> frozen keyword-only dataclasses, checked
against their type hints, each section validated by its ``validate(path)``, errors naming the
dotted path (``ConfigError("data.source.interactions.columns.user must be a string, got 3")``).

It lives apart from :mod:`tfrs_lab.config` so that config sections defined in other packages
(:mod:`tfrs_lab.data.spec`) and their readers can use it without an import cycle;
``tfrs_lab.config`` re-exports :class:`ConfigError` and :func:`build`.
"""

from __future__ import annotations

import dataclasses
import datetime
import types
import typing
from typing import Any, Literal, Mapping

__all__ = ["ConfigError", "build"]


class ConfigError(ValueError):
    """An invalid configuration; the message names the dotted path and the fix."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Checks ``value`` against the annotation ``tp``; returns it converted (lists -> tuples)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, path)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{path} must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{path} must not be null")
        inner = [a for a in args if a is not type(None)]
        for tp_i in inner[:-1]:  # ``float | str``: the first type that accepts the value, in order
            try:
                return _coerce(value, tp_i, path)
            except ConfigError:
                pass
        return _coerce(value, inner[-1], path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {value!r}")
        item_tp = typing.get_args(tp)[0]
        return tuple(_coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, datetime.date):  # YAML reads 1998-03-01 as a date: keep its ISO text
            return value.isoformat()
        if not isinstance(value, str):
            raise ConfigError(f"{path} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {_type_name(tp)} at {path}")  # programming error


def build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    """A config dataclass ``cls`` from plain ``values`` (YAML-like), validated; ConfigError messages
    name the dotted path under ``prefix`` (e.g. ``data.source.interactions.columns.user``)."""
    return _build(cls, values, prefix)


def _build(cls: type, values: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(
                f"unknown config key '{where}': valid keys here are {', '.join(sorted(names))}"
            )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            where = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = _coerce(values[f.name], hints[f.name], where)
    obj = cls(**kwargs)
    if prefix and hasattr(obj, "validate"):
        obj.validate(prefix)
    return obj
