"""The ``select`` suite: pick a task's defaults on **validation** across several data sets.

A selection file (shipped: ``tfrs_lab/configs/selection/<task>.yaml``; ``python -m tfrs_lab.configs
selection/retrieval.yaml`` prints where) names the task, the split, a validation ``objective`` (maximised;
``rmse``/``mae`` minimised), the ``datasets`` and the ``candidates`` (config overlays, the first being
today's default). A data set entry may name its own ``split`` and ``objective`` (default: the file's), so one
selection covers several protocols, e.g. ML-100K twice: ``leave-last-out`` scored by ndcg@10 and ``hash``
scored by hit_rate@100. An objective may also be a list of metrics, e.g. ``[hit_rate@100, rmse]`` for the
multitask model's two heads: every run then reports each of them and each (data set, metric) pair is one
column of the choice below, named ``<data set>/<metric>``, so every head counts as much as a data set. Optional keys: ``configs`` (shipped config files layered on ``configs/<task>.yaml``,
e.g. ``[autoencoder-implicit.yaml]``: the defaults a candidate overlays when they live in an overlay
file), ``overrides`` (``KEY=VALUE`` for every run), ``seeds``, ``epochs`` (a cap). Every
candidate is trained on every data set (``seeds`` times) with
``run_task(..., evaluate_test=False)``: the runs train and validate only, so **no test metric is
computed during selection** (docs/tuning.md#selection-on-validation). The config files are read once,
by :func:`load_selection` (:attr:`Selection.base_config`): an edit during a selection changes none of its runs.

Choice: per data set ``d`` (per column, with several objectives) and candidate ``c`` the mean validation
value ``v[d][c]`` over seeds (of that data set's objective) is turned into a relative score ``r[d][c] = v[d][c] / max_c v[d][c]`` (``min_c v / v``
for RMSE/MAE, which are minimised); the candidate with the highest mean relative score over the data sets wins
(the one losing least on its worst data set breaks ties). The winner is written as an overlay
(``selected.yaml``); the per-data-set winners are listed too, so a setting whose best value moves
with the data's size shows up in the table. Two candidates that resolve to the same config are
refused (one configuration would fill two rows): after adopting a winner, the first candidate is
the new default and the earlier default is pinned like the others.

Data set entries (paths may use ``{data_root}``, the ``--data-root`` flag)::

    ml-100k: {data: {dataset: movielens/100k-ratings, data_zip: "{data_root}/ml-100k.zip"}}
    ml-100k-hash:                         # the same data on another protocol: its own split and objective
      data: {dataset: movielens/100k-ratings, data_zip: "{data_root}/ml-100k.zip"}
      split: hash
      objective: hit_rate@100
    lastfm:                               # own data, read from inside an archive
      archive: "{data_root}/lastfm-2k.zip"  # extracted once into <output-dir>/data/lastfm/
      interactions: lastfm-2k/user_artists.dat     # quick path, relative to the archive's root
      columns: user=userID,item=artistID,rating=weight,label=implicit,time=weight
      items: lastfm-2k/artists.dat
      item_columns: id=id,text=name
      overrides: ["model.query_features=[history]"]  # per data set config overrides
    synthetic: {data: {dataset: synthetic}}
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tfrs_lab.bench import common

__all__ = ["Candidate", "DatasetEntry", "Selection", "choose", "load_selection", "restrict_datasets",
           "run_select", "selection_file"]

logger = logging.getLogger(__name__)

_MINIMISED = ("rmse", "mae")


@dataclass(frozen=True)
class DatasetEntry:
    """One data set of a selection: its ``data`` config section and per-data-set overrides.

    ``split``/``objective`` are this data set's own (``None``: the selection file's); read them through
    :meth:`Selection.split_of`, :meth:`Selection.objective_of` and :meth:`Selection.objectives_of`. An
    objective of several metrics is held as their names joined by commas (``"hit_rate@100,rmse"``).
    """

    name: str
    data: dict[str, Any]
    overrides: tuple[str, ...] = ()
    archive: str | None = None
    split: str | None = None
    objective: str | None = None


@dataclass(frozen=True)
class Candidate:
    """One candidate configuration: a name and its overlay as ``KEY=VALUE`` overrides."""

    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Selection:
    """A parsed selection file (``objective``: one metric name, or several joined by commas)."""

    task: str
    objective: str
    split: str
    seeds: int
    epochs: int | None
    datasets: tuple[DatasetEntry, ...]
    candidates: tuple[Candidate, ...]
    overrides: tuple[str, ...] = field(default_factory=tuple)
    configs: tuple[str, ...] = field(default_factory=tuple)
    base_config: dict[str, Any] = field(default_factory=dict, compare=False)
    """``configs/<task>.yaml`` then the ``configs`` overlays, parsed and merged once by
    :func:`load_selection`: every run of :func:`run_select` resolves its config from this, so editing a
    config file while a selection runs changes none of its runs."""

    @property
    def minimise(self) -> bool:
        """Whether :attr:`objective` is minimised (RMSE, MAE)."""
        return self.objective in _MINIMISED

    def split_of(self, entry: DatasetEntry) -> str:
        """The split ``entry`` runs on: its own ``split`` or the file's."""
        return entry.split or self.split

    def objective_of(self, entry: DatasetEntry) -> str:
        """The validation objective ``entry`` is scored by: its own ``objective`` or the file's."""
        return entry.objective or self.objective

    def objectives_of(self, entry: DatasetEntry) -> tuple[str, ...]:
        """The metric names of :meth:`objective_of` (one, or several for a list objective)."""
        return tuple(self.objective_of(entry).split(","))

    def columns(self) -> dict[str, tuple[DatasetEntry, str]]:
        """The columns of the choice: ``{column: (data set, metric)}``, named after the data set alone
        when it has one objective metric, else ``<data set>/<metric>``."""
        out: dict[str, tuple[DatasetEntry, str]] = {}
        for entry in self.datasets:
            names = self.objectives_of(entry)
            for name in names:
                out[entry.name if len(names) == 1 else f"{entry.name}/{name}"] = (entry, name)
        return out


def selection_file(task: str) -> Path:
    """The shipped selection file of ``task`` (``tfrs_lab/configs/selection/<task>.yaml``)."""
    from importlib import resources

    return Path(str(resources.files("tfrs_lab.configs").joinpath("selection", f"{task}.yaml")))


def _error(where: str, message: str):
    from tfrs_lab.config import ConfigError

    return ConfigError(f"{where}: {message}")


def _objective(value: Any, where: str) -> str:
    """A selection file's ``objective``: a metric name, or a list of them (joined by commas)."""
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(n, str) and n and "," not in n for n in names) or len(set(names)) < len(names):
        raise _error(where, "is required: a validation metric name such as ndcg@10, or a list of distinct ones such "
                            f"as [hit_rate@100, rmse]; got {value!r}")
    return ",".join(names)


def _as_overrides(overlay: Any, where: str) -> tuple[str, ...]:
    """``{dotted.key: value}`` → ``("dotted.key=<value as JSON>", ...)`` (JSON is valid YAML)."""
    if overlay is None:
        return ()
    if not isinstance(overlay, Mapping):
        raise _error(where, "must be a mapping of dotted config keys to values, e.g. {model.temperature: 0.2}")
    return tuple(f"{k}={json.dumps(v)}" for k, v in overlay.items())


def load_selection(path: str | Path, data_root: str | Path = ".") -> Selection:
    """Reads and validates a selection file; ``{data_root}`` in data paths becomes ``data_root``.

    Raises:
      ConfigError: one line naming the file and the key at fault.
    """
    from tfrs_lab.config import TASKS, ConfigError, read_yaml, shipped_config, to_dict

    raw = read_yaml(str(path), what="selection file", flag="--selection")
    where = str(path)
    if not isinstance(raw, dict):
        raise _error(where, "must hold a mapping (task, objective, split, datasets, candidates)")
    unknown = set(raw) - {"task", "objective", "split", "seeds", "epochs", "datasets", "candidates", "overrides",
                          "configs"}
    if unknown:
        raise _error(where, f"unknown key(s) {', '.join(sorted(unknown))}; expected task, objective, split, seeds, "
                            "epochs, datasets, candidates, overrides, configs")
    task = raw.get("task")
    if task not in TASKS:
        raise _error(f"{where}: task", f"must be one of {', '.join(TASKS)}, got {task!r}")
    if not isinstance(raw.get("split"), str) or not raw["split"]:
        raise _error(f"{where}: split", "is required (a split name such as hash)")
    objective = _objective(raw.get("objective"), f"{where}: objective")
    seeds = raw.get("seeds", 1)
    if not isinstance(seeds, int) or seeds < 1:
        raise _error(f"{where}: seeds", f"must be an integer >= 1, got {seeds!r}")
    epochs = raw.get("epochs")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise _error(f"{where}: epochs", f"must be an integer >= 1 or null, got {epochs!r}")
    root = str(Path(data_root).expanduser())
    datasets = []
    for name, entry in (raw.get("datasets") or {}).items():
        datasets.append(_dataset(str(name), entry, f"{where}: datasets.{name}", root))
    if len(datasets) < 1:
        raise _error(f"{where}: datasets", "must name at least one data set")
    cands = raw.get("candidates") or {}
    if not isinstance(cands, Mapping) or len(cands) < 2:
        raise _error(f"{where}: candidates", "must map at least two candidate names to overlays (the first = default)")
    candidates = tuple(Candidate(str(n), _as_overrides(o, f"{where}: candidates.{n}")) for n, o in cands.items())
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list):
        raise _error(f"{where}: overrides", "must be a list of KEY=VALUE strings")
    configs = raw.get("configs") or []
    if not isinstance(configs, list):
        raise _error(f"{where}: configs", "must be a list of shipped config files, e.g. [autoencoder-implicit.yaml]")
    for name in configs:
        try:
            shipped_config(str(name))
        except ConfigError as e:
            raise _error(f"{where}: configs", str(e)) from None
    split = raw["split"]
    selection = Selection(task, objective, split, seeds, epochs, tuple(datasets), candidates,
                          tuple(str(o) for o in overrides), tuple(str(c) for c in configs))
    selection = dataclasses.replace(selection, base_config=_read_config_files(selection))
    train = {"train": {"epochs": epochs}} if epochs else {}
    resolved: dict[str, str] = {}  # every overlay is a valid config reporting the objective, before any data is read
    for cand in candidates:
        key = repr(to_dict(_candidate_config(selection, cand, list(selection.overrides),
                                             {"data": {"split": split}, **train}, where)))
        if key in resolved:  # two rows of the table would be one configuration measured twice
            raise _error(f"{where}: candidates.{cand.name}",
                         f"resolves to the same config as candidates.{resolved[key]}; pin the values it differs in "
                         "(after adopting a winner, the earlier default becomes a pinned candidate)")
        resolved[key] = cand.name
    for entry in selection.datasets:  # a data set's own split / objective: every candidate reports it there too
        if entry.split or entry.objective:
            own = {} if "quick" in entry.data else dict(entry.data)  # e.g. data.predefined beside split: predefined
            for cand in candidates:
                _candidate_config(selection, cand, list(selection.overrides),
                                  {"data": {**own, "split": selection.split_of(entry)}, **train}, where, entry)
    return selection


def restrict_datasets(selection: Selection, names: str | None) -> Selection:
    """``selection`` with only the data sets named in ``names`` (comma-separated; ``None`` or empty: all).

    The candidates, objective and budget are unchanged, so the runs are those the full file makes on
    these data sets; ``choose`` can combine their ``results.json`` values with other data sets' later.

    Raises:
      ConfigError: a name the selection file does not hold (one line listing the ones it does).
    """
    if not names:
        return selection
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = [d.name for d in selection.datasets]
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        raise _error("--datasets", f"unknown data set(s) {', '.join(unknown) or repr(names)}: the selection file "
                                   f"names {', '.join(known)}")
    return dataclasses.replace(selection, datasets=tuple(d for d in selection.datasets if d.name in wanted))


def _read_config_files(selection: Selection) -> dict[str, Any]:
    """``configs/<task>.yaml`` then the selection's ``configs`` overlays, read now and merged (later
    files winning), as :func:`tfrs_lab.config.load_config` merges its ``files``."""
    from tfrs_lab.config import default_config_file, read_yaml, shipped_config
    from tfrs_lab.tuning.space import merge

    merged: dict[str, Any] = {}
    for path in (default_config_file(selection.task), *(shipped_config(c) for c in selection.configs)):
        raw = read_yaml(path) or {}
        if not isinstance(raw, Mapping):
            raise _error(str(path), "must hold a mapping at the top level")
        merged = merge(merged, raw)
    return merged


def _resolve(selection: Selection, overrides: list[str], extra: Mapping[str, Any]) -> Any:
    """The task config: the config files as :func:`load_selection` read them < ``extra`` < ``overrides``."""
    from tfrs_lab.config import load_config
    from tfrs_lab.tuning.space import merge

    return load_config(selection.task, (), overrides, extra=merge(selection.base_config, extra))


def _candidate_config(selection: Selection, cand: Candidate, base: list[str], extra: Mapping[str, Any],
                      where: str = "", entry: DatasetEntry | None = None) -> Any:
    """The resolved config of ``cand`` (:attr:`Selection.base_config` < ``extra`` < ``base`` < the candidate's overlay).

    Raises:
      ConfigError: the overlay is not a valid config, or its runs do not report the objective (that of
        ``entry`` when given, else the file's; the message starts with ``where``, the selection file, when given).
    """
    from tfrs_lab.config import ConfigError
    from tfrs_lab.tuning.space import validation_metric_names

    prefix = f"{where}: " if where else ""
    try:
        cfg = _resolve(selection, [*base, *cand.overrides], extra)
    except ConfigError as e:
        raise _error(f"{prefix}candidates.{cand.name}", str(e)) from None
    names = validation_metric_names(cfg)
    objective = selection.objective if entry is None else selection.objective_of(entry)
    for metric in objective.split(","):
        if metric not in names:
            own = entry is not None and (entry.objective or entry.split)
            at = f"datasets.{entry.name}.objective" if own else "objective"
            split = "" if entry is None else f" on split {selection.split_of(entry)}"
            raise _error(f"{prefix}{at}", f"the {selection.task} runs report no validation_{metric}{split}; "
                                          f"choose an objective among {', '.join(sorted(names))}")
    return cfg


def _dataset(name: str, entry: Any, where: str, root: str) -> DatasetEntry:
    if not isinstance(entry, Mapping):
        raise _error(where, "must be a mapping with data: {...} or archive/interactions/columns")
    unknown = set(entry) - {"data", "archive", "interactions", "columns", "items", "item_columns", "overrides",
                            "split", "objective"}
    if unknown:
        raise _error(where, f"unknown key(s) {', '.join(sorted(unknown))}")
    overrides = tuple(str(o) for o in entry.get("overrides") or ())
    protocol: dict[str, str] = {}
    if "split" in entry:
        if not isinstance(entry["split"], str) or not entry["split"]:
            raise _error(f"{where}.split", "must be a non-empty string (a split name), or left out for the file's")
        protocol["split"] = entry["split"]
    if "objective" in entry:
        protocol["objective"] = _objective(entry["objective"], f"{where}.objective")
    if "data" in entry:
        if "split" in (entry["data"] or {}):
            raise _error(f"{where}.data.split", f"is set by the selection: write split: {entry['data']['split']} "
                                                "beside data instead")
        data = {k: (v.format(data_root=root) if isinstance(v, str) else v) for k, v in dict(entry["data"]).items()}
        return DatasetEntry(name, data, overrides, **protocol)
    if "interactions" not in entry or "columns" not in entry:
        raise _error(where, "needs data: {...} or the quick path interactions + columns (+ items, item_columns)")
    archive = entry.get("archive")
    quick = {k: entry.get(k) for k in ("interactions", "columns", "items", "item_columns")}
    return DatasetEntry(name, {"quick": quick}, overrides,
                        archive.format(data_root=root) if isinstance(archive, str) else None, **protocol)


def _data_options(entry: DatasetEntry, data_dir: Path) -> dict[str, Any]:
    """The ``data`` config section of ``entry`` (an archive is extracted once under ``data_dir``)."""
    if "quick" not in entry.data:
        return dict(entry.data)
    from tfrs_lab.data.spec import quick_source

    base = Path(".")
    if entry.archive is not None:
        base = data_dir / entry.name
        if not base.is_dir():
            archive = Path(entry.archive)
            if not archive.is_file():
                raise _error(f"datasets.{entry.name}.archive", f"{archive} does not exist: pass --data-root DIR "
                                                               "holding it")
            tmp = base.with_name(base.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            with zipfile.ZipFile(archive) as z:
                z.extractall(tmp)
            tmp.replace(base)
    q = entry.data["quick"]
    source = quick_source(str(base / q["interactions"]), q["columns"],
                          None if q.get("items") is None else str(base / q["items"]), q.get("item_columns"))
    return {"dataset": "own", "source": source}


def choose(values: Mapping[str, Mapping[str, float]],
           minimise: bool | Mapping[str, bool]) -> tuple[str, dict[str, dict[str, float]]]:
    """The winning candidate and every candidate's relative scores.

    Args:
      values: ``values[dataset][candidate]`` = mean validation objective (each data set its own).
      minimise: whether lower is better: one flag for all data sets, or ``{dataset: flag}``.

    Returns:
      ``(winner, relative)`` with ``relative[candidate][dataset]`` in (0, 1] (1 = best on that data set)
      plus ``relative[candidate]["mean"]`` and ``["worst"]``.
    """
    candidates = list(next(iter(values.values())))
    relative: dict[str, dict[str, float]] = {c: {} for c in candidates}
    for d, per in values.items():
        lower = minimise[d] if isinstance(minimise, Mapping) else minimise
        best = min(per.values()) if lower else max(per.values())
        for c, v in per.items():
            relative[c][d] = (best / v if v > 0 else 0.0) if lower else (v / best if best > 0 else 0.0)
    for c, r in relative.items():
        scores = [r[d] for d in values]
        r["mean"], r["worst"] = float(np.mean(scores)), float(np.min(scores))
    winner = max(candidates, key=lambda c: (relative[c]["mean"], relative[c]["worst"]))
    return winner, relative


def run_select(selection: Selection, output_dir: Path, *, seeds: int | None = None,
               epochs: int | None = None) -> tuple[dict[str, Any], str]:
    """Runs every candidate on every data set (validation only); writes ``results.json``,
    ``selected.yaml`` and ``select.png`` into ``output_dir``. Returns ``(results, table)``.

    ``seeds``/``epochs`` override the file's values (``epochs`` caps training; early stopping on the
    validation metric picks the best epoch below it).
    """
    from tfrs_lab.config import parse_override
    from tfrs_lab.training.runner import load_data, run_task
    from tfrs_lab.training.task import TaskInputs
    from tfrs_lab.tuning.space import merge

    output_dir.mkdir(parents=True, exist_ok=True)
    seeds = seeds or selection.seeds
    epochs = epochs or selection.epochs
    task = selection.task
    key = ",".join(f"validation_{o}" for o in selection.objective.split(","))
    columns = selection.columns()
    objectives = {c: metric for c, (_, metric) in columns.items()}
    column_split = {c: selection.split_of(entry) for c, (entry, _) in columns.items()}
    splits = {e.name: selection.split_of(e) for e in selection.datasets}
    minimise = {c: o in _MINIMISED for c, o in objectives.items()}
    runs: list[dict[str, Any]] = []
    values: dict[str, dict[str, float]] = {}
    datasets: dict[str, Any] = {}
    for entry in selection.datasets:
        extra: dict[str, Any] = {"data": {**_data_options(entry, output_dir / "data"), "split": splits[entry.name]}}
        if epochs is not None:
            extra["train"] = {"epochs": epochs}
        base = [*selection.overrides, *entry.overrides, "export.verify=false"]
        data = load_data(_resolve(selection, base, extra))
        datasets[entry.name] = {"dataset": data.dataset, "num_ratings": data.num_ratings,
                                "num_users": len(set(data.ratings["user_id"])),
                                "num_items": len(data.movies["movie_id"])}
        own = {c: metric for c, (e, metric) in columns.items() if e.name == entry.name}
        for column in own:
            values[column] = {}
        for cand in selection.candidates:
            cand_cfg = _candidate_config(selection, cand, base, extra, entry=entry)
            per_seed: dict[str, list[float]] = {column: [] for column in own}
            for offset in range(seeds):
                cfg = dataclasses.replace(cand_cfg, train=dataclasses.replace(
                    cand_cfg.train, seed=cand_cfg.train.seed + offset))
                run_dir = output_dir / "runs" / f"{entry.name}-{cand.name}-seed{cfg.train.seed}"
                shutil.rmtree(run_dir, ignore_errors=True)
                logger.info("select %s: %s on %s, seed %d", task, cand.name, entry.name, cfg.train.seed)
                start = time.perf_counter()
                metrics = run_task(task, cfg, run_dir, TaskInputs(data), verbose=0, evaluate_test=False).metrics
                scored = {metric: float(metrics[f"validation_{metric}"]) for metric in own.values()}
                for column, metric in own.items():
                    per_seed[column].append(scored[metric])
                runs.append({"dataset": entry.name, "candidate": cand.name, "seed": cfg.train.seed,
                             "value": next(iter(scored.values())), "values": scored,
                             "best_epoch": metrics.get("best_epoch"),
                             "seconds": round(time.perf_counter() - start, 1), "run_dir": str(run_dir)})
            for column, per in per_seed.items():
                values[column][cand.name] = float(np.mean(per))
    winner, relative = choose(values, minimise)
    per_dataset = {d: (min if minimise[d] else max)(per, key=per.get) for d, per in values.items()}
    overlay = merge(*(parse_override(o) for o in next(c for c in selection.candidates if c.name == winner).overrides))
    protocols = ", ".join(f"{d} ({column_split[d]}, {objectives[d]})" for d in values)
    header = (f"# Selected by `python -m tfrs_lab.bench select --tasks {task}` on validation\n"
              f"# (data sets {protocols}; {seeds} seed(s)): candidate {winner}.\n"
              + "".join(f"# Overlays configs/{c} (apply it too).\n" for c in selection.configs))
    (output_dir / "selected.yaml").write_text(header + yaml.safe_dump(
        {"task": task, **overlay}, sort_keys=False))
    rows = [{"candidate": c, **{d: values[d][c] for d in values}, "relative_mean": relative[c]["mean"],
             "relative_worst": relative[c]["worst"]} for c in relative]
    results = {"suite": "select", "task": task, "configs": list(selection.configs), "objective": key,
               "split": selection.split, "objectives": {d: f"validation_{o}" for d, o in objectives.items()},
               "splits": splits, "seeds": seeds,
               "epochs": epochs, "machine": common.machine(), "datasets": datasets, "runs": runs,
               "values": values, "relative": relative, "winner": winner, "winner_per_dataset": per_dataset,
               "test_evaluated": False}
    plot = common.bar_chart(output_dir / "select.png", [{"method": c, **relative[c]} for c in relative],
                            [*values, "mean"], f"{task}: validation objective relative to the best "
                                               "candidate per data set", label="method")
    results["plots"] = [str(plot)] if plot else []
    common.write_results(output_dir, results)
    table = common.format_table(rows, [*values, "relative_mean", "relative_worst"], first="candidate")
    table += (f"\nwinner: {winner} (validation {protocols}); per data set: "
              + ", ".join(f"{d}: {c}" for d, c in per_dataset.items()))
    return results, table
