"""The ``scale`` suite: time and memory of every stage against data size, each stage in a watched child.

For each size (MovieLens-25M-shaped synthetic data, :func:`tfrs_lab.data.synthetic.write_synthetic_parquet`)
and task, the stages are::

    generate   python -m tfrs_lab.data.generate            once per size, shared by the tasks
    prepare    python -m tfrs_lab.data prepare --data SPEC    once per size (the prepared-dataset cache)
    prepare (cache hit)  the same command again: hashing the files and finding the cache
    load, train, evaluate, export, report
               one ``python -m tfrs_lab.train TASK --data SPEC --data-dir CACHE --set train.epochs=1`` process
               per task (its load reads the prepared cache the prepare stage wrote); its
               phases come from metrics.json (phase_<name>_seconds / _peak_rss_bytes), or from its log
               lines when the run was killed (the phases it finished)

Every child runs in its own process group under a memory watchdog (:func:`run_watched`): the resident
set of the child and all its descendants is polled (psutil when installed, else ``/proc``) and the
group is killed above ``memory_cap`` bytes, so an over-sized run never takes the machine down; the
row says ``over memory cap`` and the suite moves on. With your own files (the own-data flags:
``--interactions ... --columns ...`` or ``--data SPEC.yaml``) the stages after ``generate`` run on
them instead of the synthetic sizes (data set ``own``; ``--tasks none``: preparation only). Writes ``results.json`` (``rows`` and ``targets``),
``results.md`` (the table) and ``scale.png`` (seconds and peak RSS against size).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from tfrs_lab.bench import common
from tfrs_lab.data.prepared import PREPARED_DIR
from tfrs_lab.data.synthetic import SPEC_FILE, count_label
from tfrs_lab.training.rundir import METRICS_FILE, PHASES, parse_phase_log, parse_train_throughput

__all__ = ["DEFAULT_MEMORY_CAP", "DEFAULT_SIZES", "OVER_CAP", "OWN_DATASET", "parse_bytes", "plot",
           "PREPARE_CACHE_HIT", "prepare_command", "markdown_table", "ROW_KEYS", "run_scale", "run_watched", "targets",
           "tree_rss", "Watched", "write_own_spec"]

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_CAP = 10 * 2**30
"""Default watchdog cap: 10 GiB for a stage's whole process tree."""

DEFAULT_SIZES = (1_000_000, 5_000_000, 25_000_000)

OVER_CAP = "over memory cap"

PREPARE_CACHE_HIT = "prepare (cache hit)"
"""The stage re-running ``prepare`` on the same files: hashing them and finding the cache."""

OWN_DATASET = "own"
"""The ``dataset`` of the rows measured on your own files (``run_scale(source=...)``)."""

ROW_KEYS = ("size", "dataset", "task", "stage", "seconds", "peak_rss_bytes", "examples_per_second", "status")
"""Keys of every ``results.json`` row (train runs' rows add ``tree_peak_rss_bytes``: the watchdog's
peak of the whole process tree, the export's reload-check child included)."""

_GiB = 2**30


def parse_bytes(text: str | int) -> int:
    """``"10G"`` / ``"10GiB"`` -> 10 * 2**30; ``"512M"`` -> 512 * 2**20; ``"1000"`` -> 1000 bytes.

    Raises:
        ValueError: naming the text and the accepted forms.
    """
    s = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    power = {"K": 1, "M": 2, "G": 3, "T": 4}.get(s[-1:], 0)
    try:
        value = int(float(s[:-1] if power else s) * 1024**power)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{text!r} is not a positive size: write e.g. 10G, 512M or 10737418240 (bytes)")
    return value


# --------------------------------------------------------------------------- the watchdog


def _children_proc() -> dict[int, list[int]]:
    """``{parent pid: [child pids]}`` of every process, read from ``/proc/<pid>/stat``."""
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the process ended meanwhile
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])  # the name may hold spaces: split after ")"
        out.setdefault(ppid, []).append(int(entry))
    return out


def _rss_proc(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss(pid: int, *, use_psutil: bool | None = None) -> int:
    """Resident bytes of ``pid`` and all its descendants (0 once it is gone).

    Args:
        use_psutil: ``None`` uses psutil when installed, else ``/proc``; ``False`` forces ``/proc``.
    """
    if use_psutil is not False:
        try:
            import psutil  # pylint: disable=import-outside-toplevel
        except ImportError:
            psutil = None
        if psutil is not None:
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return 0
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            return total
    children = _children_proc()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _rss_proc(p)
        todo += children.get(p, [])
    return total


@dataclasses.dataclass(frozen=True)
class Watched:
    """A finished (or killed) child.

    Attributes:
        returncode: the exit code (negative: killed by that signal).
        seconds: wall seconds from start to exit.
        peak_rss_bytes: the largest process-tree resident set seen by the watchdog (sampled).
        over_cap: killed by the watchdog for exceeding the memory cap.
        timed_out: killed for running past the time limit.
        log: the child's stdout and stderr.
    """

    returncode: int
    seconds: float
    peak_rss_bytes: int
    over_cap: bool
    timed_out: bool
    log: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.over_cap and not self.timed_out

    def status(self) -> str:
        """``ok``, ``over memory cap`` or ``failed: <one line>``."""
        if self.over_cap:
            return OVER_CAP
        if self.timed_out:
            return "failed: timed out"
        if self.returncode != 0:
            return f"failed: {_failure_line(self.log, self.returncode)}"
        return "ok"


def _failure_line(log: str, returncode: int) -> str:
    """The informative line of a failed child's log: its ``error:`` line or the exception's last line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error:") or "Error:" in ln or "Error " in ln:
            return ln[:300]
    return (lines[-1][:300] if lines else f"exit code {returncode}")


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's own process group (it was started in a new session: only our children)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_watched(argv: Sequence[str], *, memory_cap: int = DEFAULT_MEMORY_CAP, log_path: Path,
                timeout: float | None = None, poll_seconds: float = 0.1) -> Watched:
    """Runs ``argv`` in a new process group, killing the group when its process tree's resident set
    exceeds ``memory_cap`` bytes or it runs past ``timeout`` seconds.

    Args:
        log_path: where the child's stdout and stderr go (also returned in :attr:`Watched.log`).
        poll_seconds: how often the tree's RSS is sampled (a spike shorter than this can be missed).
            The watchdog is only as prompt as its own scheduling: on a heavily loaded machine (or when
            run niced) a fast-growing tree can overshoot the cap before it is killed.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    peak, over, late = 0, False, False
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while proc.poll() is None:
                rss = tree_rss(proc.pid)
                peak = max(peak, rss)
                if rss > memory_cap:
                    over = True
                    logger.warning("%s: %.2f GiB over the %.2f GiB cap: killed", argv[-1], rss / _GiB,
                                   memory_cap / _GiB)
                    break
                if timeout is not None and time.perf_counter() - start > timeout:
                    late = True
                    break
                time.sleep(poll_seconds)
        finally:
            _kill_group(proc)  # the over-cap / late child, or stragglers a finished child left behind
            returncode = proc.wait()
    seconds = time.perf_counter() - start
    return Watched(returncode, seconds, peak, over, late, log_path.read_text(errors="replace"))


# --------------------------------------------------------------------------- the stages


def prepare_command(spec_path: Path, data_dir: Path) -> list[str]:
    """The ``prepare`` stage: ``python -m tfrs_lab.data prepare --data SPEC`` into ``data_dir/prepared``,
    the cache a run with ``--data-dir data_dir`` reads (so the runs' ``load`` reuses it)."""
    return [sys.executable, "-m", "tfrs_lab.data", "prepare", "--data", str(spec_path), "--output-dir",
            str(data_dir / PREPARED_DIR)]


def _prepared_count(log: str) -> int | None:
    """The interactions a ``prepare`` run reports (its ``N interactions, ...`` line), or None."""
    m = re.search(r"^(\d+) interactions", log, re.M)
    return int(m.group(1)) if m else None


def write_own_spec(source: dict[str, Any], path: Path) -> Path:
    """``source`` (the ``data.source`` mapping of the own-data flags) as a spec file for ``--data``,
    its relative paths made absolute (relative to the working directory, as the flags are)."""
    from tfrs_lab.data.spec import resolve_spec_paths  # pylint: disable=import-outside-toplevel

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(resolve_spec_paths(source, Path.cwd()), sort_keys=False))
    return path


def _row(size: int, dataset: str, task: str | None, stage: str, seconds: float | None, peak: int | None,
         examples: float | None, status: str, **extra: Any) -> dict[str, Any]:
    eps = round(examples / seconds, 1) if examples and seconds and status == "ok" else None
    return {"size": size, "dataset": dataset, "task": task, "stage": stage,
            "seconds": None if seconds is None else round(seconds, 3), "peak_rss_bytes": peak,
            "examples_per_second": eps, "status": status, **extra}


def _task_rows(size: int, dataset: str, task: str, w: Watched, run_dir: Path) -> list[dict[str, Any]]:
    """One row per phase of a ``train`` run: from metrics.json, or from the log of a killed run."""
    metrics_file = run_dir / METRICS_FILE
    extra = {"tree_peak_rss_bytes": w.peak_rss_bytes}
    if w.ok and metrics_file.exists():
        m = json.loads(metrics_file.read_text())
        work = {"load": size, "train": m.get("num_train_examples", 0) * max(m.get("epochs_trained", 1), 1),
                "evaluate": m.get("num_test_examples")}
        rows = []
        for phase in PHASES:
            seconds = m.get(f"phase_{phase}_seconds")
            if seconds is None:
                continue
            row = _row(size, dataset, task, phase, seconds, m.get(f"phase_{phase}_peak_rss_bytes"),
                       work.get(phase), "ok", **extra)
            if phase == "train":  # the fit alone (validation excluded), as metrics.json reports it
                row["examples_per_second"] = m.get("train_examples_per_second")
                if "epoch_fraction" in m:  # train.max_steps_per_epoch: a share of one epoch, not a whole one
                    row["epoch_fraction"] = m["epoch_fraction"]
            rows.append(row)
        return rows
    done = parse_phase_log(w.log)
    rows, spent = [], 0.0
    for phase in PHASES:
        if phase in done:
            seconds, rss = done[phase]
            spent += seconds
            rows.append(_row(size, dataset, task, phase, seconds, rss, size if phase == "load" else None, "ok", **extra))
            if phase == "train":  # the run logged its fit's speed before it was killed (metrics.json's figure)
                rows[-1]["examples_per_second"] = parse_train_throughput(w.log)
        elif not any(r["status"] != "ok" for r in rows):  # the phase it died in
            rows.append(_row(size, dataset, task, phase, max(w.seconds - spent, 0.0), w.peak_rss_bytes, None,
                             w.status() if not w.ok else "failed: no metrics.json", **extra))
        else:
            rows.append(_row(size, dataset, task, phase, None, None, None, "skipped", **extra))
    return rows


def _train_argv(task: str, data_args: list[str], run_dir: Path, epochs: int, overrides: Sequence[str]) -> list[str]:
    sets = [a for o in ("train.epochs=%d" % epochs, *overrides) for a in ("--set", o)]
    return [sys.executable, "-m", "tfrs_lab.train", task, *data_args, *sets, "--output-dir", str(run_dir),
            "--overwrite"]


def run_scale(output_dir: Path, *, sizes: Sequence[int] = DEFAULT_SIZES, tasks: Sequence[str] | None = None,
              memory_cap: int = DEFAULT_MEMORY_CAP, seed: int = 0, epochs: int = 1,
              overrides: Sequence[str] = (), data_zip: str | None = None, data_dir: str | None = None,
              stage_timeout: float | None = None, keep_data: bool = False,
              source: dict[str, Any] | None = None, poll_seconds: float = 0.1) -> tuple[dict[str, Any], str]:
    """Runs the suite; writes ``results.json``, ``results.md`` and ``scale.png`` into ``output_dir``.

    Args:
        sizes: interactions per synthetic data set (e.g. 1M, 5M, 25M).
        tasks: registered task names (default all of ``tfrs_lab.config.TASKS``; ``()``: the data stages only).
        memory_cap: watchdog cap in bytes for each stage's process tree.
        seed: the data seed; epochs: training epochs per run (the benchmark measures one).
        overrides: ``--set`` overrides for every train run.
        data_zip: MovieLens 100K zip: adds an ML-100K retrieval run for comparison (same settings).
        data_dir: TFDS cache for ``data_zip`` (default ``output_dir/tfds``).
        stage_timeout: seconds before a stage is killed (``failed: timed out``); ``None``: no limit.
        keep_data: keep the generated data and its prepared cache under ``output_dir/data`` and
            ``output_dir/cache`` (default: deleted after each size).
        source: your own data instead of the synthetic sizes (the ``data.source`` mapping of the
            own-data flags, :func:`tfrs_lab.train.own_data_source`): written to
            ``output_dir/own/dataset.yaml`` and measured like one size, as data set ``own`` (its
            size: the interactions its preparation counts); kept, like its prepared cache.
        poll_seconds: the watchdog's sampling interval.

    Returns:
        ``(results, table)``.
    """
    from tfrs_lab.config import TASKS  # pylint: disable=import-outside-toplevel

    tasks = tuple(TASKS if tasks is None else tasks)
    output_dir.mkdir(parents=True, exist_ok=True)
    logs = output_dir / "logs"
    watch = dict(memory_cap=memory_cap, timeout=stage_timeout, poll_seconds=poll_seconds)
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {"suite": "scale", "machine": common.machine(), "memory_cap_bytes": memory_cap,
                               "seed": seed, "epochs": epochs, "overrides": list(overrides), "rows": rows}

    def save() -> None:  # after every stage: a later kill of the suite keeps what was measured
        results["targets"] = targets(rows)
        common.write_results(output_dir, results)

    def measure(size: int | None, dataset: str, label: str, spec: Path, cache: Path) -> None:
        """The prepare stages (cold, then a cache hit) and every task's run on ``spec``."""
        for stage in ("prepare", PREPARE_CACHE_HIT):
            logger.info("scale suite: %s %s", label, stage)
            w = run_watched(prepare_command(spec, cache), log_path=logs / f"{label}-{stage.replace(' ', '-')}.log",
                            **watch)
            size = size or _prepared_count(w.log)  # own data: counted by its preparation
            rows.append(_row(size, dataset, None, stage, w.seconds, w.peak_rss_bytes, size, w.status()))
            save()
            if not w.ok:
                return
        for task in tasks:
            run_dir = output_dir / "runs" / f"{task}-{label}"
            logger.info("scale suite: %s %s (load, train, evaluate, export, report)", label, task)
            w = run_watched(_train_argv(task, ["--data", str(spec), "--data-dir", str(cache)], run_dir, epochs,
                                        overrides), log_path=logs / f"{label}-{task}.log", **watch)
            rows.extend(_task_rows(size or 0, dataset, task, w, run_dir))
            save()

    if source is not None:
        measure(None, OWN_DATASET, OWN_DATASET, write_own_spec(source, output_dir / OWN_DATASET / SPEC_FILE),
                output_dir / "cache" / OWN_DATASET)
    for size in sizes if source is None else ():
        label = count_label(size)
        dataset = f"synthetic-{label}"
        data = output_dir / "data" / label
        logger.info("scale suite: %s generate", label)
        w = run_watched([sys.executable, "-m", "tfrs_lab.data.generate", "--interactions", str(size), "--output-dir",
                         str(data), "--seed", str(seed), "--overwrite"], log_path=logs / f"{label}-generate.log", **watch)
        rows.append(_row(size, dataset, None, "generate", w.seconds, w.peak_rss_bytes, size, w.status()))
        save()
        if w.ok:
            measure(size, dataset, label, data / SPEC_FILE, output_dir / "cache" / label)
        if not keep_data:
            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(output_dir / "cache" / label, ignore_errors=True)
    if data_zip:
        logger.info("scale suite: ML-100K retrieval for comparison")
        run_dir = output_dir / "runs" / "retrieval-ml-100k"
        w = run_watched(_train_argv("retrieval", ["--data-zip", str(data_zip), "--data-dir",
                                                  str(data_dir or output_dir / "tfds")], run_dir, epochs, overrides),
                        log_path=logs / "ml-100k-retrieval.log", **watch)
        rows.extend(_task_rows(100_000, "ml-100k", "retrieval", w, run_dir))
    save()
    table = markdown_table(rows)
    (output_dir / "results.md").write_text(table + "\n")
    figure = plot(output_dir / "scale.png", rows, memory_cap)
    results["plots"] = [str(figure)] if figure else []
    save()
    return results, table + "\n\n" + _targets_table(results["targets"])


# --------------------------------------------------------------------------- targets, table, plot

_TARGETS = (  # issue #16: (name, stage, tasks or None for any, limit, unit)
    ("prepare 25M <= 10 min", "prepare", None, 600.0, "seconds"),
    ("retrieval train >= 30k examples/s at 25M", "train", ("retrieval",), 30_000.0, "examples_per_second"),
    ("test evaluation <= 10 min at 25M", "evaluate", None, 600.0, "seconds"),
    ("ScaNN export <= 5 min at 25M", "export", ("retrieval", "sequential", "autoencoder"), 300.0, "seconds"),
)


def targets(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each ``{"target", "value", "met"}`` (``met`` is ``None`` when not measured):
    the 25M limits above, peak RSS <= 8 GiB in every stage, and 5M -> 25M within 1.25x of linear
    (seconds per stage and task)."""
    out = []
    big = [r for r in rows if r["size"] == 25_000_000 and r["dataset"].startswith("synthetic")]
    for name, stage, tasks, limit, unit in _TARGETS:
        hits = [r for r in big if r["stage"] == stage and (tasks is None or r["task"] in tasks)]
        if not hits:
            out.append({"target": name, "value": None, "met": None})
        for r in hits:
            v = r[unit] if r["status"] == "ok" else None
            met = (v >= limit if unit == "examples_per_second" else v <= limit) if v is not None else False
            out.append({"target": name, "task": r["task"], "value": v, "status": r["status"], "met": met})
    def peak(r: dict[str, Any]) -> int:  # the stage's process, or its whole tree where the watchdog saw more
        return max(r.get("peak_rss_bytes") or 0, r.get("tree_peak_rss_bytes") or 0)

    measured = [r for r in rows if r.get("peak_rss_bytes") is not None or r["status"] == OVER_CAP]
    worst = max(measured, key=lambda r: (r["status"] == OVER_CAP, peak(r)), default=None)
    out.append({"target": "peak RSS <= 8 GiB in every stage", "value": None if worst is None else peak(worst),
                "where": None if worst is None else " ".join(filter(None, (worst["dataset"], worst["task"], worst["stage"]))),
                "met": None if worst is None else (worst["status"] != OVER_CAP and peak(worst) <= 8 * _GiB)})
    by = {(r["size"], r["task"], r["stage"]): r for r in rows if r["dataset"].startswith("synthetic")}
    for (size, task, stage), r5 in sorted(by.items(), key=lambda kv: str(kv[0])):
        r25 = by.get((25_000_000, task, stage))
        if size != 5_000_000 or r25 is None:
            continue
        ok = r5["status"] == "ok" and r25["status"] == "ok" and r5["seconds"]
        ratio = round(r25["seconds"] / r5["seconds"] / 5.0, 3) if ok else None
        out.append({"target": "5M -> 25M within 1.25x of linear", "task": task, "stage": stage,
                    "value": ratio, "met": None if not ok else ratio <= 1.25})
    return out


def _gib(v: Any) -> str:
    return "" if v is None else f"{v / _GiB:.2f}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table (seconds, GiB, examples/s)."""
    lines = ["| data | task | stage | seconds | peak RSS GiB | examples/s | status |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        eps = r.get("examples_per_second")
        status = r["status"]
        seconds = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        rate = "" if eps is None else f"{eps:,.0f}"
        lines.append(f"| {r['dataset']} | {r['task'] or '(shared)'} | {r['stage']} | {seconds} | "
                     f"{_gib(r['peak_rss_bytes'])} | {rate} | {status} |")
    return "\n".join(lines)


def _targets_table(rows: Sequence[dict[str, Any]]) -> str:
    return common.format_table([{**t, "met": {True: "met", False: "missed", None: "not measured"}[t["met"]]}
                                for t in rows], ["task", "stage", "value", "met"], first="target")


def plot(path: Path, rows: Sequence[dict[str, Any]], memory_cap: int) -> Path | None:
    """Seconds and peak RSS against size (log-log), one line per task and stage; ok rows, plus a red
    cross at the cap for each stage the watchdog killed."""
    ok = [r for r in rows if r["status"] == "ok" and r["dataset"].startswith("synthetic") and r["seconds"] is not None]
    if not ok:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    plt = common.pyplot()
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.8))
    series: dict[str, list[dict[str, Any]]] = {}
    for r in ok:
        series.setdefault(f"{r['task'] or 'data'}: {r['stage']}", []).append(r)
    stages = ("generate", "prepare", PREPARE_CACHE_HIT, *PHASES)
    tasks = sorted({r["task"] for r in ok if r["task"]})
    markers = "o^Dvsp*"
    for name, pts in sorted(series.items()):
        pts = sorted(pts, key=lambda r: r["size"])
        x = [r["size"] for r in pts]
        task, stage = pts[0]["task"], pts[0]["stage"]
        style = dict(color=f"C{stages.index(stage) % 10}" if stage in stages else "black", label=name,
                     marker="s" if task is None else markers[tasks.index(task) % len(markers)],
                     linestyle="-" if task is None or tasks.index(task) == 0 else "--")
        ax_t.plot(x, [max(r["seconds"], 1e-3) for r in pts], **style)
        ax_m.plot(x, [(r["peak_rss_bytes"] or 0) / _GiB for r in pts], **style)
    killed = [r for r in rows if r["status"] == OVER_CAP and r["dataset"].startswith("synthetic")]
    if killed:  # the misses: at the cap, where the watchdog stopped them
        ax_m.scatter([r["size"] for r in killed], [memory_cap / _GiB] * len(killed), marker="x", s=80, color="red",
                     zorder=3, label="over memory cap: " + ", ".join(sorted({f"{r['task']} {r['stage']}" for r in killed})))
    ax_m.axhline(memory_cap / _GiB, color="red", linestyle="--", linewidth=1, label="watchdog cap")
    ax_m.axhline(8, color="grey", linestyle=":", linewidth=1, label="target 8 GiB")
    for ax, ylabel in ((ax_t, "wall seconds"), (ax_m, "peak RSS (GiB)")):
        ax.set_xscale("log")
        ax.set_xlabel("interactions")
        ax.set_ylabel(ylabel)
    ax_t.set_yscale("log")
    ax_t.legend(fontsize=6, ncol=2)
    ax_m.legend(fontsize=6, ncol=2)
    fig.suptitle("scale: time and memory per stage against data size (failed / over-cap stages left out)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


