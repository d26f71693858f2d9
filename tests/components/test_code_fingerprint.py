"""Cache keys cannot go stale: a component's code fingerprint covers the computed import closure
of the ``tfrs_lab`` modules its executor reaches; ``tfrs_lab.components`` exports the standard
components lazily, like ``tfx.components``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfrs_lab.components import code_closure as cc

REPO = Path(__file__).resolve().parents[2]
TRAINER = "tfrs_lab.components.trainer"
INDIRECT = "tfrs_lab.evaluation.metrics"  # reached by the Trainer only through the trainers
UNRELATED = "tfrs_lab.serving.rest"  # only serving uses it


def repo_roots() -> dict[str, Path]:
    """The source checkout's package-dir mapping (pyproject.toml)."""
    return {"tfrs_lab": REPO / "tfrs_lab", "tfrs_lab.serving": REPO / "serving", "tfrs_lab.components": REPO / "components",
            "tfrs_lab.configs": REPO / "configs"}


def install_copy(site: Path) -> Path:
    """A copy of the package laid out as a non-editable install: ``site/tfrs_lab/{serving,components,configs}``."""
    pkg = site / "tfrs_lab"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "tfrs_lab", pkg, ignore=ignore)
    for sub in ("serving", "components", "configs"):
        shutil.copytree(REPO / sub, pkg / sub, ignore=ignore)
    return pkg


PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import tfrs_lab.components
from tfrs_lab.components import Trainer
from tfrs_lab.components.runner import cache_key
assert tfrs_lab.components.__file__.startswith(sys.argv[1]), tfrs_lab.components.__file__
print(json.dumps({"code": Trainer().code_fingerprint(), "key": cache_key(Trainer(), {})}))
"""


def trainer_keys(site: Path) -> dict[str, str]:
    """The Trainer's code fingerprint and cache key, computed by a fresh interpreter importing from ``site``."""
    out = subprocess.run([sys.executable, "-c", PROBE, str(site)], capture_output=True, text=True, timeout=300,
                         cwd=site, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_trainer_closure_reaches_what_the_trainers_use_and_not_serving():
    roots = repo_roots()
    direct = {n for n in cc.imported_names(TRAINER, REPO / "components" / "trainer.py")}
    reached = cc.closure(cc.module_entries(TRAINER, str(REPO / "components" / "trainer.py")), roots)
    assert INDIRECT not in direct and INDIRECT in reached  # indirect, found by the closure
    for module in ("tfrs_lab.config", "tfrs_lab.models.autoencoder", "tfrs_lab.training.report"):
        assert module in reached, module
    assert UNRELATED not in reached
    assert all(path.is_file() for path in reached.values())


def test_an_indirect_module_or_the_default_config_changed_misses_the_cache_an_unrelated_module_not(tmp_path):
    site = tmp_path / "site"
    pkg = install_copy(site)
    before = trainer_keys(site)
    with (pkg / "serving" / "rest.py").open("a") as f:
        f.write("\n# an edit only serving sees\n")
    assert trainer_keys(site) == before
    with (pkg / "evaluation" / "metrics.py").open("a") as f:
        f.write("\n# a changed metric\n")
    after = trainer_keys(site)
    assert after["code"] != before["code"] and after["key"] != before["key"]
    with (pkg / "configs" / "retrieval.yaml").open("a") as f:  # the default config the Trainer reads
        f.write("\n# an edited default\n")
    edited = trainer_keys(site)
    assert edited["code"] == after["code"] and edited["key"] != after["key"]


def test_closure_follows_relative_function_level_and_dynamic_imports(tmp_path):
    pkg = tmp_path / "lib"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "entry.py": "def run():\n    from .sub import helper\n    return helper\n",
        "sub/__init__.py": "from . import leaf\n",
        "sub/helper.py": "REGISTRY = {'x': 'lib.dynamic:train'}\n",
        "sub/leaf.py": "import numpy\n",
        "dynamic.py": "from ..outside import nothing\n",
        "unused.py": "",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    reached = cc.closure(["lib.entry"], {"lib": pkg})
    assert sorted(reached) == ["lib", "lib.dynamic", "lib.entry", "lib.sub", "lib.sub.helper", "lib.sub.leaf"]
    assert cc.locate("lib.unused", {"lib": pkg}) == pkg / "unused.py" and cc.locate("numpy", {"lib": pkg}) is None


def test_the_closure_is_computed_once_per_process():
    roots = repo_roots()
    entries = cc.module_entries(TRAINER, str(REPO / "components" / "trainer.py"))
    cc.closure(entries, roots)
    hits = cc._closure.cache_info().hits
    assert cc.closure_digest(entries, roots) == cc.closure_digest(entries, roots)
    assert cc._closure.cache_info().hits == hits + 2


def test_standard_components_import_like_tfx_without_tensorflow():
    code = ("import sys\n"
            "import tfrs_lab.components as c\n"
            "assert 'tensorflow' not in sys.modules and not any(m.startswith('tfrs_lab.components.') for m in sys.modules)\n"
            "from tfrs_lab.components import (ExampleGen, StatisticsGen, SchemaGen, ExampleValidator, Transform,\n"
            "    Tuner, Trainer, Evaluator, InfraValidator, Pusher, BulkInferrer, Cascade)\n"
            "from tfrs_lab.components.base import Component\n"
            "assert all(issubclass(getattr(c, n), Component) and getattr(c, n).__name__ == n for n in c.__all__)\n"
            "assert len(c.__all__) == 12 and 'tensorflow' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    import tfrs_lab.components as c

    with pytest.raises(AttributeError, match="no attribute 'Trainerr'"):
        c.Trainerr  # noqa: B018
