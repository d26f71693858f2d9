"""The search: a Keras Tuner ``BaseTuner`` whose trials run the task's ``train`` code.

Keras Tuner 1.4.8 type-checks Keras 3 models and ``History`` objects, and TFRS models are tf-keras
models (TFRS runs on Keras 2; see ``tfrs_lab/__init__.py``), so the stock ``Tuner`` cannot train them. :class:`TrainerTuner` overrides
``run_trial``: it resolves the trial's config with :func:`tfrs_lab.config.load_config`, calls the
task registered in :data:`tfrs_lab.config.TASKS` (the same code ``python -m tfrs_lab.train``
runs) on a trial run directory, and returns the trial's validation objective from ``metrics.json``.
``get_best_models`` is never used: the best configuration is retrained instead (``final_fit``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import yaml

from tfrs_lab.config import ConfigError, load_config
from tfrs_lab.data.movielens import DataError
from tfrs_lab.training import rundir
from tfrs_lab.training.rundir import RunDirError
from tfrs_lab.tuning.space import SearchSpace, base_extra, load_space, merge

__all__ = ["BEST_HYPERPARAMETERS_TXT", "BEST_OVERLAY_YAML", "distributed_role", "FINAL_DIR", "KERAS_TUNER_DIR",
           "oracle_seed", "ProgressFn", "PROJECT_NAME", "Role", "run_final_fit", "run_search", "SEARCH_FILE",
           "SearchResult", "TRIAL_RECORD", "TRIAL_RUN_DIR", "TrialRecord", "TRIALS_CSV", "TUNER_RESULTS_JSON",
           "TUNERS"]

logger = logging.getLogger(__name__)

TUNERS = ("random", "bayesian", "hyperband", "grid")
BEST_HYPERPARAMETERS_TXT = "best_hyperparameters.txt"
TUNER_RESULTS_JSON = "tuner_results.json"
BEST_OVERLAY_YAML = "best_hyperparameters.yaml"
TRIALS_CSV = "trials.csv"
SEARCH_FILE = "search.json"
KERAS_TUNER_DIR = "keras_tuner"
PROJECT_NAME = "search"
FINAL_DIR = "final"
TRIAL_RECORD = "tfrs_lab_trial.json"
TRIAL_RUN_DIR = "run"

Role = Literal["local", "chief", "worker"]


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the search saw it.

    ``status``: ``RUNNING`` (reported at the start), ``COMPLETED``, ``FAILED`` or ``INTERRUPTED``
    (a search ended by resuming with fewer ``max_trials``). ``objective`` is the
    validation metric (``None`` unless completed); ``seconds`` wall time of the whole trial;
    ``metrics`` every ``validation_*`` value the trial's ``metrics.json`` holds.
    """

    trial_id: str
    status: str
    hyperparameters: dict[str, Any]
    objective: float | None = None
    seconds: float | None = None
    seed: int | None = None
    best_epoch: int | None = None
    tuner_id: str = ""
    run_dir: str = ""
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


ProgressFn = Callable[[TrialRecord], None]


@dataclass(frozen=True)
class SearchResult:
    """What :func:`run_search` produced. Paths are absolute; ``None`` where a file is not this
    process's to write (a distributed ``worker``: the chief writes the results)."""

    role: Role
    output_dir: Path
    objective: str
    direction: str
    trials: tuple[TrialRecord, ...]
    best_trial_id: str | None
    best_value: float | None
    best_overlay: dict[str, Any] | None
    best_hyperparameters_txt: Path | None
    tuner_results_json: Path | None
    best_overlay_yaml: Path | None
    trials_csv: Path | None
    keras_tuner_dir: Path
    seconds: float
    final_run_dir: Path | None = None
    final_metrics: dict[str, Any] | None = None

    @property
    def num_completed(self) -> int:
        return sum(t.status == "COMPLETED" for t in self.trials)

    @property
    def num_failed(self) -> int:
        return sum(t.status == "FAILED" for t in self.trials)


# --------------------------------------------------------------------------- distributed roles


def distributed_role() -> Role:
    """``local`` without ``KERASTUNER_ORACLE_IP``; else ``chief`` when ``KERASTUNER_TUNER_ID``
    contains ``chief`` (Keras Tuner's rule), ``worker`` otherwise."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "local"
    for var in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        if not os.environ.get(var):
            raise ConfigError(f"distributed tuning: KERASTUNER_ORACLE_IP is set but {var} is not: set "
                              "KERASTUNER_TUNER_ID (chief or tuner0, tuner1 ...) and KERASTUNER_ORACLE_PORT")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


# --------------------------------------------------------------------------- the tuner


class _Fatal(Exception):
    """Wraps an error every trial would hit (missing data): stops the search."""


def _make_tuner_class():
    import keras_tuner as kt

    class FatalTrialError(kt.errors.FatalError):
        """A user error every trial would repeat; ``cause`` is re-raised by :func:`run_search`."""

        def __init__(self, cause: Exception) -> None:
            super().__init__(str(cause))
            self.cause = cause

    class TrainerTuner(kt.engine.base_tuner.BaseTuner):
        """Runs each trial through the task's trainer; ``run_trial`` returns ``{objective: value}``."""

        def __init__(self, oracle, *, job: "_Job", directory: str, project_name: str) -> None:
            super().__init__(oracle, hypermodel=None, directory=directory, project_name=project_name)
            self.job = job

        def on_trial_begin(self, trial) -> None:
            self.job.report(TrialRecord(trial.trial_id, "RUNNING", self.job.space_values(trial.hyperparameters),
                                        tuner_id=self.tuner_id))

        def run_trial(self, trial, *args, **kwargs) -> dict[str, float]:
            try:
                return self.job.run_trial(trial.trial_id, trial.hyperparameters.values,
                                          Path(self.get_trial_dir(trial.trial_id)), self.tuner_id)
            except _Fatal as e:
                raise FatalTrialError(e.__cause__) from e

        def on_trial_end(self, trial) -> None:
            super().on_trial_end(trial)
            record = self.job.read_record(Path(self.get_trial_dir(trial.trial_id)))
            if record is not None:
                self.job.report(record)

    return TrainerTuner, FatalTrialError


def oracle_seed(seed: int) -> int:
    """The seed handed to Keras Tuner for the user's ``seed``.

    Keras Tuner draws value *i* of a search with ``random.Random(seed + i).random()``; for small
    seeds such as 42 the first draws of nearby Mersenne Twister seeds are strongly correlated (the
    same hyperparameter came out near the same quantile in every early trial), so the oracle gets a
    28-bit hash of ``seed`` instead (NumPy, used by the Bayesian oracle, takes seeds below 2**32).
    """
    return int(hashlib.sha256(f"tfrs_lab-tuner-{seed}".encode()).hexdigest()[:7], 16)  # < 2**28: numpy needs < 2**32


def _oracle(tuner: str, space: SearchSpace, max_trials: int | None, seed: int):
    import keras_tuner as kt

    objective = kt.Objective(space.objective.key, direction=space.objective.direction)
    common = dict(objective=objective, seed=oracle_seed(seed), hyperparameters=space.keras_tuner_space(),
                  allow_new_entries=False, tune_new_entries=False, max_consecutive_failed_trials=10**6)
    if tuner == "random":
        return kt.oracles.RandomSearchOracle(max_trials=max_trials, **common)
    if tuner == "bayesian":
        # Keras Tuner's default (3 random points per hyperparameter) would leave short searches all random.
        initial = max(2, min(3 * len(space.hyperparameters), (max_trials or 10) // 3))
        return kt.oracles.BayesianOptimizationOracle(max_trials=max_trials, num_initial_points=initial, **common)
    if tuner == "grid":
        return kt.oracles.GridSearchOracle(max_trials=max_trials, **common)
    oracle = kt.oracles.HyperbandOracle(max_epochs=space.hyperband_max_epochs, factor=space.hyperband_factor,
                                        **common)
    oracle.max_trials = max_trials  # Hyperband sizes its brackets itself; --max-trials caps the total
    return oracle


@dataclass
class _Job:
    """What every trial shares: the task, the space, the base config sources and the reporting."""

    task: str
    space: SearchSpace
    config_files: tuple[str, ...]
    user_extra: dict[str, Any]
    progress: ProgressFn | None
    inputs: Any = None  # tfrs_lab.training.task.TaskInputs | None: prepared data every trial trains on

    def space_values(self, hps) -> dict[str, Any]:
        return {k: v for k, v in hps.values.items() if k in self.space.names() or k == "tuner/epochs"}

    def report(self, record: TrialRecord) -> None:
        if self.progress is not None:
            self.progress(record)

    def trial_config(self, values: Mapping[str, Any], output_dir: Path):
        extra = merge(self.space.trial_config, self.user_extra, self.space.overlay(values),
                      {"output_dir": str(output_dir)})
        return load_config(self.task, self.config_files, (), extra=extra)

    def run_trial(self, trial_id: str, values: Mapping[str, Any], trial_dir: Path, tuner_id: str) -> dict[str, float]:
        from tfrs_lab.training.runner import run_task

        start = time.perf_counter()
        run_dir = trial_dir / TRIAL_RUN_DIR
        hp = {k: v for k, v in values.items() if k in self.space.names() or k == "tuner/epochs"}
        record = dict(trial_id=trial_id, hyperparameters=hp, tuner_id=tuner_id, run_dir=str(run_dir))
        try:
            cfg = self.trial_config(values, run_dir)
            record["seed"] = cfg.train.seed
            out = rundir.check_output_dir(run_dir, overwrite=True)
            # A trial trains and validates only: no test evaluation, no export (selection on validation).
            metrics = run_task(self.task, cfg, out, self.inputs, verbose=0, evaluate_test=False).metrics
            key = self.space.objective.key
            if key not in metrics:
                raise ValueError(f"the trial's metrics.json has no {key}")
            value = float(metrics[key])
        except DataError as e:
            self._write_record(trial_dir, record, "FAILED", start, error=str(e))
            raise _Fatal(str(e)) from e
        except Exception as e:  # recorded as failed; Keras Tuner marks the trial FAILED and goes on
            logger.warning("trial %s failed: %s", trial_id, e)
            self._write_record(trial_dir, record, "FAILED", start, error=f"{type(e).__name__}: {e}")
            raise
        validation = {k: float(v) for k, v in metrics.items() if k.startswith("validation_")}
        self._write_record(trial_dir, record, "COMPLETED", start, objective=value, metrics=validation,
                           best_epoch=int(metrics.get("best_epoch", 0)) or None)
        return {self.space.objective.key: value}

    @staticmethod
    def _write_record(trial_dir: Path, record: dict[str, Any], status: str, start: float, **more: Any) -> None:
        data = {**record, "status": status, "seconds": round(time.perf_counter() - start, 3), **more}
        tmp = trial_dir / f".{TRIAL_RECORD}.tmp"
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
        tmp.replace(trial_dir / TRIAL_RECORD)

    @staticmethod
    def read_record(trial_dir: Path) -> TrialRecord | None:
        path = trial_dir / TRIAL_RECORD
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return TrialRecord(**{k: data.get(k) for k in ("trial_id", "status", "hyperparameters", "objective",
                                                       "seconds", "seed", "best_epoch", "error")},
                           tuner_id=data.get("tuner_id", ""), run_dir=data.get("run_dir", ""),
                           metrics=data.get("metrics") or {})


# --------------------------------------------------------------------------- state and outputs


def _search_state(task: str, tuner: str, space: SearchSpace, config_files: Sequence[str], user_extra: Mapping,
                  seed: int) -> dict[str, Any]:
    return {"task": task, "tuner": tuner, "seed": seed, "space_fingerprint": space.fingerprint(),
            "space": space.raw, "config_files": [str(Path(f).absolute()) for f in config_files],
            "config_overrides": user_extra}


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        path = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{path}.")
        elif a != b:
            out.append(f"{path} was {json.dumps(a, default=str)}, now {json.dumps(b, default=str)}")
    return out


def _prepare_output_dir(out: Path, state: dict[str, Any], *, resume: bool, overwrite: bool, role: Role) -> None:
    """Checks ``out`` for a fresh search, a resume, or a distributed worker (which only joins)."""
    state_file = out / SEARCH_FILE
    if role == "worker":
        out.mkdir(parents=True, exist_ok=True)
        return
    if resume:
        if not state_file.is_file():
            raise RunDirError(f"--resume: {str(out)!r} holds no search to resume (no {SEARCH_FILE}): "
                              "start a new search without --resume")
        old = json.loads(state_file.read_text())
        diff = _differences({k: v for k, v in old.items() if k != "space_fingerprint"},
                            {k: v for k, v in state.items() if k != "space_fingerprint"})
        if diff:
            raise RunDirError("refusing to resume: the search changed since it started, so its finished trials "
                              f"would not be comparable ({'; '.join(diff[:3])}); restore the original space and "
                              "options, or start a new search in another --output-dir (or pass --overwrite)")
        return
    rundir.check_output_dir(out, overwrite=overwrite)
    if overwrite and out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(state_file, json.dumps(state, indent=2, sort_keys=True, default=str) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _collect(oracle, space: SearchSpace, project_dir: Path) -> list[TrialRecord]:
    """Every trial the oracle knows, its status from the oracle and timing/seed from the trial record."""
    records = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        saved = _Job.read_record(project_dir / f"trial_{trial_id}")
        status = {"COMPLETED": "COMPLETED", "RUNNING": "INTERRUPTED", "IDLE": "INTERRUPTED"}.get(trial.status, "FAILED")
        values = {k: v for k, v in trial.hyperparameters.values.items() if k in space.names() or k == "tuner/epochs"}
        objective = trial.score if status == "COMPLETED" else None
        error = None
        if status == "FAILED":  # our record's message, else the last line of Keras Tuner's traceback
            lines = (trial.message or "").strip().splitlines()
            error = saved.error if saved and saved.error else (lines[-1] if lines else "unknown error")
        records.append(TrialRecord(
            trial_id=trial_id, status=status, hyperparameters=values,
            objective=None if objective is None else float(objective),
            seconds=saved.seconds if saved else None, seed=saved.seed if saved else None,
            best_epoch=saved.best_epoch if saved else None, tuner_id=saved.tuner_id if saved else "",
            run_dir=saved.run_dir if saved else "", error=error, metrics=saved.metrics if saved else {}))
    return records


def _write_outputs(out: Path, space: SearchSpace, oracle, records: list[TrialRecord]) -> tuple[Any, dict | None]:
    """trials.csv always; best_hyperparameters.{txt,yaml} and tuner_results.json when a trial completed."""
    names = [*space.names(), *(["tuner/epochs"] if any("tuner/epochs" in r.hyperparameters for r in records) else [])]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["trial_id", "status", space.objective.key, "seconds", "seed", "best_epoch", "tuner_id",
                     *names, "error"])
    for r in records:
        writer.writerow([r.trial_id, r.status, "" if r.objective is None else f"{r.objective:.6f}",
                         "" if r.seconds is None else f"{r.seconds:.1f}", "" if r.seed is None else r.seed,
                         "" if r.best_epoch is None else r.best_epoch, r.tuner_id,
                         *(r.hyperparameters.get(n, "") for n in names), (r.error or "")[:300]])
    _atomic_write(out / TRIALS_CSV, buf.getvalue())

    best = oracle.get_best_trials(1)
    best = [t for t in best if t.status == "COMPLETED"]
    if not best:
        return None, None
    trial = best[0]
    # TFX Tuner's format: best_hyperparameters.txt = json.dumps(HyperParameters.get_config());
    # tuner_results.json = [{"trial_id", "score", <hyperparameter>: value ...}] best first.
    _atomic_write(out / BEST_HYPERPARAMETERS_TXT, json.dumps(trial.hyperparameters.get_config()))
    ranked = oracle.get_best_trials(len(oracle.trials))
    results = [{"trial_id": t.trial_id, "score": t.score,
                **{k: v for k, v in t.hyperparameters.values.items() if k in names}}
               for t in ranked if t.status == "COMPLETED"]
    _atomic_write(out / TUNER_RESULTS_JSON, json.dumps(results, indent=2, default=str) + "\n")
    overlay = {"task": space.task, **space.overlay(trial.hyperparameters.values)}
    header = (f"# Best of {len(records)} trials ({space.objective.key} = {trial.score:.6f}, trial {trial.trial_id}).\n"
              f"# Use: python -m tfrs_lab.train {space.task} --config configs/{space.task}.yaml "
              f"--config {out / BEST_OVERLAY_YAML}\n")
    _atomic_write(out / BEST_OVERLAY_YAML, header + yaml.safe_dump(overlay, sort_keys=False))
    return trial, overlay


# --------------------------------------------------------------------------- entry point


def run_search(
    task: str,
    output_dir: str | os.PathLike,
    *,
    space_file: str | os.PathLike | None = None,
    config_files: Sequence[str | os.PathLike] = (),
    overrides: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
    tuner: str = "bayesian",
    max_trials: int | None = 10,
    seed: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    final_fit: bool = False,
    progress: ProgressFn | None = None,
    inputs: Any = None,
) -> SearchResult:
    """Searches ``task``'s hyperparameters and writes the results into ``output_dir``.

    Args:
      task: a registered task (a key of :data:`tfrs_lab.config.TASKS`).
      output_dir: the search directory (see :mod:`tfrs_lab.tuning` for its contents).
      space_file: search space YAML (default ``configs/tuning/<task>.yaml``).
      config_files, overrides, extra: the base config, exactly as :func:`tfrs_lab.config.load_config`
        takes them (default files: ``configs/<task>.yaml``). A trial's config is: defaults <
        ``config_files`` < the space's ``trial_config`` < ``extra`` < ``overrides`` < its
        hyperparameter values. The final fit leaves ``trial_config`` out.
      tuner: ``random``, ``bayesian``, ``hyperband`` (its ``tuner/epochs`` becomes ``train.epochs``)
        or ``grid`` (finite spaces only).
      max_trials: trials to run in total (a resumed search counts the finished ones); ``None`` lets
        grid/hyperband run their whole schedule.
      seed: the tuner's sampling seed (default: the config's ``train.seed``; every trial trains with
        the config's ``train.seed``, recorded per trial).
      resume: continue the search in ``output_dir``: finished trials are kept, an interrupted one is
        run again; refused when the space, tuner or base config changed. With ``max_trials`` <= the
        finished trials it only writes the results (the interrupted trial is listed as INTERRUPTED).
      overwrite: replace a non-empty ``output_dir``.
      final_fit: afterwards retrain the best configuration on train + validation for the best trial's
        best-epoch count (``train.include_validation``) and evaluate once on test, into
        ``output_dir/final`` (a normal run directory).
      progress: called with a :class:`TrialRecord` when a trial starts (``RUNNING``) and ends.
      inputs: prepared :class:`tfrs_lab.training.task.TaskInputs` every trial (and the final fit)
        trains on; ``None`` loads the config's data source in each trial.

    Raises:
      ConfigError: invalid space, objective or arguments; RunDirError: unusable ``output_dir`` or a
      refused resume; DataError: the data cannot be loaded; RuntimeError: no trial completed.
    """
    start = time.perf_counter()
    if tuner not in TUNERS:
        raise ConfigError(f"tuner must be one of {', '.join(TUNERS)}, got {tuner!r}")
    if max_trials is not None and max_trials < 1:
        raise ConfigError(f"max_trials must be >= 1, got {max_trials}")
    if max_trials is None and tuner in ("random", "bayesian"):
        raise ConfigError(f"max_trials is required for the {tuner} tuner")
    role = distributed_role()
    from tfrs_lab.config import default_config_file

    files = tuple(str(f) for f in config_files) or (str(default_config_file(task)),)
    space = load_space(task, space_file, files, overrides, extra)
    if tuner == "grid":
        infinite = [hp.name for hp in space.hyperparameters if not hp.is_finite()]
        if infinite:
            raise ConfigError(f"grid search needs a finite space: hyperparameters.{infinite[0]} is a float range; "
                              "give it a step or make it a choice")
    user_extra = base_extra(overrides, extra)
    base_seed = load_config(task, files, (), extra=merge(space.trial_config, user_extra)).train.seed
    if final_fit:  # fail now, not after the search, when the task cannot train on train + validation
        load_config(task, files, (), extra=merge(user_extra, {"train": {"include_validation": True}}))
    seed = base_seed if seed is None else seed
    out = Path(output_dir).expanduser().absolute()
    state = _search_state(task, tuner, space, files, user_extra, seed)
    _prepare_output_dir(out, state, resume=resume, overwrite=overwrite, role=role)

    TrainerTuner, FatalTrialError = _make_tuner_class()
    job = _Job(task, space, files, user_extra, progress, inputs)
    kt_dir = out / KERAS_TUNER_DIR
    search = TrainerTuner(_oracle(tuner, space, max_trials, seed), job=job, directory=str(kt_dir),
                          project_name=PROJECT_NAME)
    if max_trials is not None:
        search.oracle.max_trials = max_trials  # a resumed search may be given more trials
    logger.info("%s search of %s (%s): %d hyperparameters, objective %s (%s), up to %s trials", tuner, task, role,
                len(space.hyperparameters), space.objective.key, space.objective.direction, max_trials or "all")
    finished = len(search.oracle.end_order) if role != "worker" else 0
    if resume and max_trials is not None and finished >= max_trials:
        # Resuming with --max-trials <= the finished trials ends the search: results from those,
        # an interrupted trial is reported as INTERRUPTED and not run again.
        logger.info("%d trials already finished (max_trials %d): writing the results", finished, max_trials)
    else:
        try:
            search.search(verbose=1 if role == "chief" else 0)
        except FatalTrialError as e:
            raise e.cause from e
    project_dir = kt_dir / PROJECT_NAME
    if role == "worker":
        return SearchResult(role, out, space.objective.key, space.objective.direction, (), None, None, None,
                            None, None, None, None, project_dir, time.perf_counter() - start)

    records = _collect(search.oracle, space, project_dir)
    best, overlay = _write_outputs(out, space, search.oracle, records)
    result = SearchResult(
        role, out, space.objective.key, space.objective.direction, tuple(records),
        best.trial_id if best else None, float(best.score) if best else None, overlay,
        out / BEST_HYPERPARAMETERS_TXT if best else None, out / TUNER_RESULTS_JSON if best else None,
        out / BEST_OVERLAY_YAML if best else None, out / TRIALS_CSV, project_dir, time.perf_counter() - start)
    if best is None:
        errors = sorted({r.error for r in records if r.error})
        raise RuntimeError(f"no trial completed ({len(records)} failed); first error: {errors[0] if errors else '?'}")
    if final_fit:
        best_record = next(r for r in records if r.trial_id == best.trial_id)
        final_dir, final_metrics = run_final_fit(task, out, overlay, files, user_extra, best_record, inputs)
        result = SearchResult(**{**{f: getattr(result, f) for f in result.__dataclass_fields__},
                                 "final_run_dir": final_dir, "final_metrics": final_metrics,
                                 "seconds": time.perf_counter() - start})
    return result


def run_final_fit(task: str, out: Path, overlay: Mapping[str, Any], config_files: Sequence[str],
                  user_extra: Mapping[str, Any], best: TrialRecord, inputs: Any = None) -> tuple[Path, dict[str, Any]]:
    """Retrains ``overlay`` on train + validation for ``best.best_epoch`` epochs; evaluates test once."""
    from tfrs_lab.training.runner import run_task

    epochs = best.best_epoch or overlay.get("train", {}).get("epochs")
    final = {"train": {"include_validation": True, **({"epochs": int(epochs)} if epochs else {})}}
    run_dir = rundir.check_output_dir(out / FINAL_DIR, overwrite=True)
    cfg = load_config(task, config_files, (), extra=merge(user_extra, overlay, final, {"output_dir": str(run_dir)}))
    logger.info("final fit: best configuration on train + validation for %d epochs -> %s", cfg.train.epochs, run_dir)
    return run_dir, run_task(task, cfg, run_dir, inputs).metrics
