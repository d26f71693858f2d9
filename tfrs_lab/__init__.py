"""tfrs_lab: production recommender systems on TensorFlow Recommenders.

Python API (TensorFlow is imported on first use, not by ``import tfrs_lab``)::

    import tfrs_lab

    run = tfrs_lab.train("retrieval", config={"data": {"dataset": "synthetic"}}, output_dir="runs/r1")
    print(run.metrics, run.export_path)

* :func:`train` — train, evaluate and export a task (``tfrs_lab.train`` is also the CLI module
  ``python -m tfrs_lab.train``; the module is callable);
* :func:`load_config` — a task's resolved config; :func:`tasks` — the registered tasks;
* :class:`Run` — a finished run; :class:`TaskInputs` — prepared data handed to a run.

Importing this package sets ``TF_USE_LEGACY_KERAS=1`` (TFRS runs on Keras 2, i.e. ``tf-keras``)
and quiets TensorFlow's C++ logging (``TF_CPP_MIN_LOG_LEVEL=3`` unless already set), *before*
TensorFlow is imported anywhere in the package. Users therefore never need to set these variables.
"""

import importlib
import os
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
__all__ = ["Run", "TaskInputs", "load_config", "tasks", "train"]

_API = {"Run", "TaskInputs", "load_config", "tasks"}
_SUBPACKAGES = {"bench", "config", "data", "evaluation", "export", "models", "training", "tuning"}


def __getattr__(name: str) -> Any:
    if name == "train":
        return importlib.import_module("tfrs_lab.train")  # a callable module: tfrs_lab.train(task, ...)
    if name in _API:
        return getattr(importlib.import_module("tfrs_lab.api"), name)
    if name in _SUBPACKAGES:  # tfrs_lab.data.from_frame(...) after a plain `import tfrs_lab`
        return importlib.import_module(f"tfrs_lab.{name}")
    raise AttributeError(f"module 'tfrs_lab' has no attribute {name!r}")
