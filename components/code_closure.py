"""Which ``tfrs_lab`` source a component's executor reaches: its transitive import closure.

A component's cache key covers the source of every ``tfrs_lab`` module its code can import, so a
changed metric, model or exporter anywhere below the Trainer is a cache miss (no hand-kept list of
modules to forget). The closure is computed from the sources with :mod:`ast`:

* ``import a.b`` and ``from a.b import c`` (``a.b.c`` when that is a module), at module level and
  inside functions, classes and ``if``/``try`` blocks alike; relative imports resolved against the
  importing module's package;
* importing ``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``: they belong to it;
* dynamic imports by name: a string constant naming a module (``"tfrs_lab.training.ranking"`` or
  ``"tfrs_lab.training.ranking:train_ranking"``, as task registries hold them) counts as an import.

Modules are located through ``roots``: package name -> source directory, e.g. ``{"tfrs_lab":
<repo>/tfrs_lab, "tfrs_lab.serving": <repo>/serving, "tfrs_lab.components": <repo>/components}``
(the setuptools package-dir mapping); the longest matching package wins. :func:`default_roots`
asks :func:`importlib.util.find_spec` where the installed packages are. Everything outside the
roots (TensorFlow, numpy, user modules) is left out.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import re
from pathlib import Path
from typing import Iterable, Mapping

__all__ = ["PACKAGE", "closure", "closure_digest", "default_roots", "imported_names", "locate", "module_entries"]

PACKAGE = "tfrs_lab"
MAPPED_SUBPACKAGES = ("serving", "components", "configs")  # pyproject's package-dir: tfrs_lab.serving -> serving/, ...
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+(:[A-Za-z_][A-Za-z0-9_.]*)?$")

Roots = Mapping[str, Path]


@functools.lru_cache(maxsize=None)
def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def default_roots(package: str = PACKAGE) -> dict[str, Path]:
    """Source directories of ``package`` and of its subpackages installed elsewhere (an editable
    install maps ``tfrs_lab.serving`` to ``serving/``), as the import system finds them."""
    top = _package_dir(package)
    if top is None:
        raise ImportError(f"cannot locate package {package}")
    roots = {package: top}
    for sub in MAPPED_SUBPACKAGES:
        where = _package_dir(f"{package}.{sub}")
        if where is not None and where != top / sub:
            roots[f"{package}.{sub}"] = where
    return roots


def locate(module: str, roots: Roots) -> Path | None:
    """The source file of ``module`` under ``roots`` (``x.py`` or ``x/__init__.py``), else None."""
    for prefix in sorted(roots, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            rest = module[len(prefix):].lstrip(".").split(".") if module != prefix else []
            base = Path(roots[prefix], *rest)
            for candidate in (base / "__init__.py", base.with_suffix(".py") if rest else None):
                if candidate is not None and candidate.is_file():
                    return candidate
            return None
    return None


def _package_of(module: str, source: Path) -> str:
    return module if source.name == "__init__.py" else module.rpartition(".")[0]


def imported_names(module: str, source: Path) -> set[str]:
    """Every dotted name ``module`` (whose source is ``source``) may import, anywhere in the file:
    candidates, some of them attributes rather than modules (the caller keeps what it can locate)."""
    tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
    package = _package_of(module, source)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _DOTTED.match(node.value):
            names.add(node.value.partition(":")[0])
    return names


@functools.lru_cache(maxsize=None)
def module_entries(module: str, file: str | None) -> tuple[str, ...]:
    """Where the closure of ``module`` starts: the module itself plus what its file (``file``, which
    may lie outside the roots, e.g. a user's custom component) imports."""
    return tuple(sorted({module, *(imported_names(module, Path(file)) if file else ())}))


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def closure(entries: Iterable[str], roots: Roots) -> dict[str, Path]:
    """Module name -> source file of every module under ``roots`` that importing ``entries`` can
    reach (the entries and their parent packages included), sorted by name."""
    return dict(_closure(tuple(sorted(set(entries))), tuple(sorted((k, str(v)) for k, v in roots.items()))))


@functools.lru_cache(maxsize=None)
def _closure(entries: tuple[str, ...], roots_items: tuple[tuple[str, str], ...]) -> tuple[tuple[str, Path], ...]:
    roots = {k: Path(v) for k, v in roots_items}
    found: dict[str, Path] = {}
    pending = [n for e in entries for n in _with_parents(e)]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        source = locate(name, roots)
        if source is None:
            continue
        found[name] = source
        for imported in imported_names(name, source):
            pending.extend(n for n in _with_parents(imported) if n not in found)
    return tuple(sorted(found.items()))


def closure_digest(entries: Iterable[str], roots: Roots | None = None) -> str:
    """SHA-256 over the names and sources of :func:`closure` (``roots`` default: :func:`default_roots`).
    The closure is computed once per process; the sources are read on every call."""
    h = hashlib.sha256()
    for name, source in closure(entries, roots if roots is not None else default_roots()).items():
        h.update(name.encode() + b"\0" + source.read_bytes() + b"\0")
    return h.hexdigest()
