"""The layering rules of docs/architecture.md, checked on the source: no import cycles (imports
inside functions count), the core never imports ``serving`` or ``components``, and every public
module declares ``__all__``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"tfrs_lab": REPO / "tfrs_lab", "tfrs_lab.serving": REPO / "serving",
                "tfrs_lab.components": REPO / "components", "tfrs_lab.configs": REPO / "configs"}
"""pyproject.toml's package-dir mapping: installed module prefix -> source folder."""


def project_modules() -> dict[str, Path]:
    """Every project module (dotted installed name) -> its source file."""
    out: dict[str, Path] = {}
    for prefix, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("").parts
            if any(p == "__pycache__" for p in rel):
                continue
            parts = rel[:-1] if rel[-1] == "__init__" else rel
            out[".".join((prefix, *parts))] = path
    return out


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports anywhere in its source (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, *([node.module] if node.module else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for name in targets:
            while name and name not in modules:  # "tfrs_lab.x.y.attr" -> the module "tfrs_lab.x.y"
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: imports(m, p, modules) for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_the_cycle_detector_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_never_imports_serving_or_components(graph):
    outer = ("tfrs_lab.serving", "tfrs_lab.components")
    core = {m: deps for m, deps in graph.items() if not m.startswith(outer)}
    bad = {m: sorted(d for d in deps if d.startswith(outer)) for m, deps in core.items()}
    assert {m: d for m, d in bad.items() if d} == {}


def test_data_and_models_do_not_know_each_other(graph):
    bad = [(m, d) for m, deps in graph.items() for d in deps
           if (m.startswith("tfrs_lab.data") and d.startswith("tfrs_lab.models"))
           or (m.startswith("tfrs_lab.models") and d.startswith("tfrs_lab.data"))]
    assert bad == []


def test_every_public_module_declares_all():
    missing = [m for m, p in project_modules().items()
               if p.name not in ("__init__.py", "__main__.py")
               and not any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets)
                           for n in ast.parse(p.read_text()).body)]
    assert missing == []
