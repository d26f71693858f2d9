"""The Python API: the same runs as ``python -m tfrs_lab.train``, from a notebook or a script.

    import tfrs_lab

    cfg = tfrs_lab.load_config("retrieval", overrides=["train.epochs=3"], dataset="synthetic")
    run = tfrs_lab.train("retrieval", config=cfg, output_dir="runs/r1")
    run.metrics["hit_rate@100"], run.export_path, run.model

A run logs its progress (``tfrs_lab`` INFO lines and a line per epoch) unless logging is already
configured, and refuses an existing non-empty ``output_dir`` unless ``overwrite=True``, like the CLI.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from tfrs_lab.cli import configure_logging
from tfrs_lab.config import ConfigError, TASKS, default_config_file, load_config as _load_config
from tfrs_lab.data.movielens import DataError, MovieLensData
from tfrs_lab.training import rundir
from tfrs_lab.training.runner import Run, run_task
from tfrs_lab.training.task import TaskInputs

__all__ = ["Run", "TaskInputs", "load_config", "tasks", "train"]


def tasks() -> dict[str, str]:
    """The registered tasks: name -> one-line summary."""
    return {name: e.summary for name, e in TASKS.items()}


def load_config(task: str, files: Sequence[str | os.PathLike] | None = None, overrides: Sequence[str] = (),
                **data: Any):
    """The resolved config of ``task``: its shipped defaults (``configs/<task>.yaml``) unless
    ``files`` are given, then ``data`` keyword arguments as ``data.*`` values (``dataset=``,
    ``data_zip=``, ``split=`` …), then ``overrides`` (``"model.embedding_dim=32"``)."""
    files = list(files) if files else [default_config_file(task)]
    return _load_config(task, files, overrides, extra={"data": data} if data else None)


def train(task: str, config: Any = None, *, data: MovieLensData | TaskInputs | None = None,
          output_dir: str | os.PathLike | None = None, overrides: Sequence[str] = (), overwrite: bool = False,
          verbose: int | None = None, warm_start: str | os.PathLike | None = None) -> Run:
    """Trains, evaluates and exports ``task``; returns the :class:`Run`.

    Args:
      task: a registered task (:func:`tasks`).
      config: a resolved config (:func:`load_config`), a mapping of config values, or ``None`` for
        the shipped defaults; ``overrides`` apply on top of a mapping or the defaults.
      data: the data to train on (a ``MovieLensData`` or prepared :class:`TaskInputs`); ``None``
        loads what the config's ``data`` section names. Your own DataFrame or dict of arrays:
        ``data=tfrs_lab.data.from_frame(df, columns={"user": ..., "item": ...})`` (docs/own-data.md).
      output_dir: the run directory (default: the config's ``output_dir``); refused when it exists
        and is not empty, unless ``overwrite``.
      verbose: Keras progress (0 silent, 1 bar, 2 a line per epoch; default 1 on a terminal, else 2).
      warm_start: a previous run directory of the same task to continue from (sets
        ``train.warm_start``; its vocabularies and exported weights, docs/tasks.md#warm-start).
    """
    if config is None or isinstance(config, Mapping):
        config = _load_config(task, [default_config_file(task)], overrides, extra=dict(config or {}))
    elif overrides:
        raise ConfigError("overrides apply to a config mapping or the defaults: pass them to load_config instead")
    if warm_start is not None:
        run = str(Path(warm_start).expanduser().absolute())
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, warm_start=run))
    if data is not None and not isinstance(data, (MovieLensData, TaskInputs)):
        raise DataError(f"data= takes a MovieLensData or TaskInputs, got {type(data).__name__}: wrap a DataFrame or "
                        "dict of arrays with tfrs_lab.data.from_frame(df, columns={'user': ..., 'item': ...})")
    if not logging.getLogger().handlers:
        configure_logging()
    out = rundir.check_output_dir(Path(output_dir if output_dir is not None else config.output_dir),
                                  overwrite=overwrite)
    if isinstance(data, MovieLensData):
        data = TaskInputs(data)
    return run_task(task, config, out, data, verbose=verbose)
