"""The configs ship as package data and the code finds them through ``importlib.resources``, in the
checkout and in an installed layout alike (``.ci/wheel_check`` does the same with a real wheel)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from tfrs_lab.config import TASKS, ConfigError, default_config_file, shipped_config, shipped_config_files

REPO = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_files(package: str) -> tuple[Path, list[str]]:
    """The source folder of ``package`` and the files setuptools puts in it: its modules and its
    ``package-data`` globs, relative to that folder (as setuptools globs them)."""
    mapped = SETUPTOOLS["package-dir"]
    parent, _, name = package.rpartition(".")
    source = REPO / mapped[package] if package in mapped else REPO / mapped.get(parent, parent) / name
    patterns = ["*.py", *SETUPTOOLS.get("package-data", {}).get(package, [])]
    return source, sorted({f for pattern in patterns for f in glob.glob(pattern, root_dir=source)
                           if (source / f).is_file()})


def _install_layout(target: Path) -> Path:
    """Copies every package of ``pyproject.toml`` into ``target`` as an installed wheel lays it out."""
    for package in SETUPTOOLS["packages"]:
        source, files = _package_files(package)
        for name in files:
            dest = target / package.replace(".", "/") / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / name, dest)
    return target


def test_package_data_covers_every_config_file():
    _, files = _package_files("tfrs_lab.configs")
    on_disk = sorted(p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts)
    assert files == on_disk, "pyproject.toml's package-data for tfrs_lab.configs misses files under configs/"


def test_defaults_resolve_through_importlib_resources():
    root = resources.files("tfrs_lab.configs")
    assert shipped_config() == root
    for task in TASKS:
        assert default_config_file(task) == root / f"{task}.yaml"
    assert {"retrieval.yaml", "tuning/ranking.yaml", "pipelines/movielens_retrieval.yaml",
            "serving/models.config"} <= set(shipped_config_files())
    with pytest.raises(ConfigError, match="not a shipped config"):
        shipped_config("nope.yaml")


_CHECK = """
import json, sys
from pathlib import Path
from tfrs_lab.components.runner import load_pipeline
from tfrs_lab.config import TASKS, default_config_file, load_config, shipped_config_files
from tfrs_lab.tuning.space import default_space_file, load_space
import tfrs_lab.config

files = shipped_config_files()
for task in TASKS:
    load_config(task, [default_config_file(task)])
spaces = [Path(f).stem for f in files if f.startswith("tuning/")]
for task in spaces:
    load_space(task)
pipelines = [f for f in files if f.startswith("pipelines/")]
for name in pipelines:
    load_pipeline(default_config_file("retrieval").parent / name)
print(json.dumps({"config_module": tfrs_lab.config.__file__, "files": files, "spaces": spaces,
                  "pipelines": pipelines, "task_files": [str(default_config_file(t)) for t in TASKS],
                  "space_files": [str(default_space_file(t)) for t in spaces]}))
"""


def test_an_installed_layout_finds_every_shipped_config(tmp_path):
    """Outside the checkout, a copy laid out like an installed wheel reads its own configs: every
    task config, search space and pipeline loads from inside the copy (a path derived from the
    checkout, like ``configs/`` beside the package, would not exist there)."""
    site = _install_layout(tmp_path / "site")
    proc = subprocess.run([sys.executable, "-c", _CHECK], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out["config_module"]).is_relative_to(site)
    assert out["files"] == shipped_config_files()
    assert {"retrieval", "ranking", "sequential"} <= set(out["spaces"]) and len(out["pipelines"]) >= 4
    for path in out["task_files"] + out["space_files"]:
        assert Path(path).is_relative_to(site / "tfrs_lab" / "configs") and Path(path).is_file(), path
