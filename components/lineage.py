"""Lineage store on SQLite mirroring ML Metadata's entities.

Tables: ``artifact_types``, ``execution_types``, ``context_types``, ``artifacts``, ``executions``,
``events`` (INPUT/OUTPUT, with the channel key), ``contexts``, ``attributions`` (context ↔ artifact)
and ``associations`` (context ↔ execution). Contexts are TFX's: ``pipeline`` (the pipeline name),
``pipeline_run`` (one run) and ``node`` (``<pipeline>.<component id>``).

Execution states: ``RUNNING``, ``COMPLETE``, ``CACHED`` (outputs reused from an earlier execution
with the same cache key) and ``FAILED`` (with the error message). Every execution records the
process running it (``pid``, ``host``, ``process_start``); :meth:`LineageStore.fail_dead_executions`
(called when a pipeline run starts) marks ``FAILED`` an execution still ``RUNNING`` whose process
is gone, e.g. a killed Trainer.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from tfrs_lab.components import artifacts as A
from tfrs_lab.components.artifacts import Artifact
from tfrs_lab.components.processes import ProcessInfo, current, is_gone

__all__ = ["DB_FILE", "Event", "Execution", "LineageStore", "Provenance", "serving_provenance"]

RUNNING, COMPLETE, CACHED, FAILED = "RUNNING", "COMPLETE", "CACHED", "FAILED"
INPUT, OUTPUT = "INPUT", "OUTPUT"
PIPELINE, PIPELINE_RUN, NODE = "pipeline", "pipeline_run", "node"
DB_FILE = "metadata.sqlite"
_PROCESS_COLUMNS = {"pid": "INTEGER", "host": "TEXT", "process_start": "REAL"}  # added to stores written before them

_SCHEMA = """
CREATE TABLE IF NOT EXISTS artifact_types (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS execution_types (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS context_types (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS artifacts (
  id INTEGER PRIMARY KEY, type_id INTEGER NOT NULL REFERENCES artifact_types(id), uri TEXT NOT NULL,
  state TEXT NOT NULL, properties TEXT NOT NULL, fingerprint TEXT NOT NULL, create_time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS executions (
  id INTEGER PRIMARY KEY, type_id INTEGER NOT NULL REFERENCES execution_types(id), node_id TEXT NOT NULL,
  state TEXT NOT NULL, cache_key TEXT NOT NULL, parameters TEXT NOT NULL, code_fingerprint TEXT NOT NULL,
  error TEXT, cached_from INTEGER REFERENCES executions(id), start_time REAL NOT NULL, end_time REAL,
  pid INTEGER, host TEXT, process_start REAL);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY, artifact_id INTEGER NOT NULL REFERENCES artifacts(id),
  execution_id INTEGER NOT NULL REFERENCES executions(id), type TEXT NOT NULL, key TEXT NOT NULL, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS contexts (
  id INTEGER PRIMARY KEY, type_id INTEGER NOT NULL REFERENCES context_types(id), name TEXT NOT NULL,
  UNIQUE (type_id, name));
CREATE TABLE IF NOT EXISTS attributions (context_id INTEGER NOT NULL, artifact_id INTEGER NOT NULL,
  PRIMARY KEY (context_id, artifact_id));
CREATE TABLE IF NOT EXISTS associations (context_id INTEGER NOT NULL, execution_id INTEGER NOT NULL,
  PRIMARY KEY (context_id, execution_id));
CREATE INDEX IF NOT EXISTS executions_cache ON executions (cache_key, state);
CREATE INDEX IF NOT EXISTS executions_state ON executions (state);
CREATE INDEX IF NOT EXISTS events_artifact ON events (artifact_id);
CREATE INDEX IF NOT EXISTS events_execution ON events (execution_id);
"""


@dataclasses.dataclass
class Execution:
    id: int
    type_name: str  # the component type, e.g. "Trainer"
    node_id: str  # the component id in its pipeline
    state: str
    cache_key: str
    parameters: dict[str, Any]
    code_fingerprint: str
    error: str | None
    cached_from: int | None
    start_time: float
    end_time: float | None
    process: ProcessInfo | None = None  # who ran it (None in stores written before this was recorded)


@dataclasses.dataclass
class Event:
    artifact_id: int
    execution_id: int
    type: str  # INPUT | OUTPUT
    key: str


class LineageStore:
    """The metadata database of a pipeline root (``<root>/metadata.sqlite``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(_SCHEMA)
        self._add_missing_columns("executions", _PROCESS_COLUMNS)
        self._db.commit()

    def _add_missing_columns(self, table: str, columns: dict[str, str]) -> None:
        """Upgrades a store written by an older version in place."""
        have = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
        for name, sql_type in columns.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "LineageStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- types and contexts ---------------------------------------------------------------------

    def _type_id(self, table: str, name: str) -> int:
        row = self._db.execute(f"SELECT id FROM {table} WHERE name = ?", (name,)).fetchone()
        if row:
            return int(row["id"])
        return int(self._db.execute(f"INSERT INTO {table} (name) VALUES (?)", (name,)).lastrowid)

    def context(self, type_name: str, name: str) -> int:
        """Id of the context ``(type_name, name)``, created if new."""
        type_id = self._type_id("context_types", type_name)
        row = self._db.execute("SELECT id FROM contexts WHERE type_id = ? AND name = ?", (type_id, name)).fetchone()
        if row:
            return int(row["id"])
        cid = int(self._db.execute("INSERT INTO contexts (type_id, name) VALUES (?, ?)", (type_id, name)).lastrowid)
        self._db.commit()
        return cid

    # -- writes ---------------------------------------------------------------------------------

    def start_execution(self, type_name: str, node_id: str, *, cache_key: str, parameters: dict[str, Any],
                        code_fingerprint: str, contexts: Iterable[int], process: ProcessInfo | None = None) -> int:
        """Records a ``RUNNING`` execution run by ``process`` (default: this process)."""
        proc = process or current()
        eid = int(self._db.execute(
            "INSERT INTO executions (type_id, node_id, state, cache_key, parameters, code_fingerprint, start_time, "
            "pid, host, process_start) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self._type_id("execution_types", type_name), node_id, RUNNING, cache_key,
             json.dumps(parameters, sort_keys=True, default=str), code_fingerprint, time.time(),
             proc.pid, proc.host, proc.started)).lastrowid)
        for cid in contexts:
            self._db.execute("INSERT OR IGNORE INTO associations VALUES (?, ?)", (cid, eid))
        self._db.commit()
        return eid

    def put_artifact(self, art: Artifact, contexts: Iterable[int] = ()) -> int:
        """Inserts (``art.id`` is None) or updates ``art``; returns its id (also set on ``art``)."""
        props = json.dumps(art.properties, sort_keys=True, default=str)
        if art.id is None:
            art.id = int(self._db.execute(
                "INSERT INTO artifacts (type_id, uri, state, properties, fingerprint, create_time) VALUES (?, ?, ?, ?, ?, ?)",
                (self._type_id("artifact_types", art.type_name), art.uri, "LIVE", props, art.fingerprint,
                 time.time())).lastrowid)
        else:
            self._db.execute("UPDATE artifacts SET uri = ?, properties = ?, fingerprint = ? WHERE id = ?",
                             (art.uri, props, art.fingerprint, art.id))
        for cid in contexts:
            self._db.execute("INSERT OR IGNORE INTO attributions VALUES (?, ?)", (cid, art.id))
        self._db.commit()
        return art.id

    def put_event(self, artifact_id: int, execution_id: int, type_: str, key: str) -> None:
        self._db.execute("INSERT INTO events (artifact_id, execution_id, type, key, time) VALUES (?, ?, ?, ?, ?)",
                         (artifact_id, execution_id, type_, key, time.time()))
        self._db.commit()

    def finish_execution(self, execution_id: int, state: str, *, error: str | None = None,
                         cached_from: int | None = None) -> None:
        self._db.execute("UPDATE executions SET state = ?, error = ?, cached_from = ?, end_time = ? WHERE id = ?",
                         (state, error, cached_from, time.time(), execution_id))
        self._db.commit()

    def fail_dead_executions(self) -> list[Execution]:
        """Marks ``FAILED`` every ``RUNNING`` execution whose process is gone (killed, crashed) and
        returns them, updated. Executions of live processes, or of another host, stay ``RUNNING``."""
        dead = [ex for ex in self.get_executions(state=RUNNING) if ex.process is not None and is_gone(ex.process)]
        for ex in dead:
            self.finish_execution(ex.id, FAILED, error=f"process gone: {ex.process.describe()} ended while the "
                                                       f"execution was RUNNING (killed or crashed)")
        return [self.get_execution(ex.id) for ex in dead]

    # -- reads ----------------------------------------------------------------------------------

    def _artifact(self, row: sqlite3.Row) -> Artifact:
        return Artifact(row["type_name"], row["uri"], json.loads(row["properties"]), int(row["id"]), row["fingerprint"])

    def _execution(self, row: sqlite3.Row) -> Execution:
        return Execution(int(row["id"]), row["type_name"], row["node_id"], row["state"], row["cache_key"],
                         json.loads(row["parameters"]), row["code_fingerprint"], row["error"], row["cached_from"],
                         row["start_time"], row["end_time"],
                         None if row["pid"] is None else ProcessInfo(int(row["pid"]), row["host"], row["process_start"]))

    _ARTIFACTS = "SELECT a.*, t.name AS type_name FROM artifacts a JOIN artifact_types t ON t.id = a.type_id"
    _EXECUTIONS = "SELECT e.*, t.name AS type_name FROM executions e JOIN execution_types t ON t.id = e.type_id"

    def get_artifact(self, artifact_id: int) -> Artifact:
        row = self._db.execute(self._ARTIFACTS + " WHERE a.id = ?", (artifact_id,)).fetchone()
        if row is None:
            raise KeyError(f"no artifact {artifact_id}")
        return self._artifact(row)

    def get_artifacts(self, type_name: str | None = None, *, context: tuple[str, str] | None = None) -> list[Artifact]:
        """Artifacts (oldest first), optionally of one type and attributed to ``(context type, name)``."""
        rows = self._select(self._ARTIFACTS, "a.id", [
            ("t.name = ?", type_name),
            ("a.id IN (SELECT artifact_id FROM attributions WHERE context_id = ?)",
             None if context is None else self.context(*context))])
        return [self._artifact(r) for r in rows]

    def get_execution(self, execution_id: int) -> Execution:
        row = self._db.execute(self._EXECUTIONS + " WHERE e.id = ?", (execution_id,)).fetchone()
        if row is None:
            raise KeyError(f"no execution {execution_id}")
        return self._execution(row)

    def get_executions(self, *, state: str | None = None, node_id: str | None = None,
                       context: tuple[str, str] | None = None) -> list[Execution]:
        rows = self._select(self._EXECUTIONS, "e.id", [
            ("e.state = ?", state), ("e.node_id = ?", node_id),
            ("e.id IN (SELECT execution_id FROM associations WHERE context_id = ?)",
             None if context is None else self.context(*context))])
        return [self._execution(r) for r in rows]

    def _select(self, sql: str, order_by: str, filters: list[tuple[str, Any]]) -> list[Any]:
        """Rows of ``sql`` matching every ``(condition with one ?, value)`` whose value is not None."""
        used = [(cond, value) for cond, value in filters if value is not None]
        if used:
            sql += " WHERE " + " AND ".join(cond for cond, _ in used)
        return self._db.execute(f"{sql} ORDER BY {order_by}", [value for _, value in used]).fetchall()

    def events(self, *, execution_id: int | None = None, artifact_id: int | None = None) -> list[Event]:
        sql, args = "SELECT * FROM events", []
        if execution_id is not None:
            sql, args = sql + " WHERE execution_id = ?", [execution_id]
        elif artifact_id is not None:
            sql, args = sql + " WHERE artifact_id = ?", [artifact_id]
        return [Event(r["artifact_id"], r["execution_id"], r["type"], r["key"]) for r in self._db.execute(sql + " ORDER BY id", args)]

    def io(self, execution_id: int, type_: str) -> dict[str, Artifact]:
        """The execution's input (or output) artifacts by channel key."""
        return {e.key: self.get_artifact(e.artifact_id) for e in self.events(execution_id=execution_id) if e.type == type_}

    def cached_execution(self, cache_key: str) -> Execution | None:
        """The latest COMPLETE execution with ``cache_key`` whose outputs all still exist."""
        rows = self._db.execute(self._EXECUTIONS + " WHERE e.cache_key = ? AND e.state = ? ORDER BY e.id DESC",
                                (cache_key, COMPLETE)).fetchall()
        for row in rows:
            ex = self._execution(row)
            outs = self.io(ex.id, OUTPUT)
            if all(a.path.is_dir() for a in outs.values()):
                return ex
        return None

    def producer(self, artifact_id: int) -> Execution | None:
        """The execution that wrote the artifact (not a later cached reuse)."""
        for e in self.events(artifact_id=artifact_id):
            if e.type == OUTPUT:
                ex = self.get_execution(e.execution_id)
                if ex.state == COMPLETE:
                    return ex
        return None

    def upstream(self, artifact_id: int) -> list[tuple[Execution, dict[str, Artifact], dict[str, Artifact]]]:
        """Every execution the artifact depends on, nearest first: ``(execution, inputs, outputs)``."""
        chain, seen, frontier = [], set(), [artifact_id]
        while frontier:
            aid = frontier.pop(0)
            ex = self.producer(aid)
            if ex is None or ex.id in seen:
                continue
            seen.add(ex.id)
            inputs = self.io(ex.id, INPUT)
            chain.append((ex, inputs, self.io(ex.id, OUTPUT)))
            frontier.extend(a.id for a in inputs.values())
        return chain

    def latest_blessed(self, pipeline: str, *, exclude_execution: int | None = None) -> Artifact | None:
        """The newest blessed ModelBlessing of ``pipeline`` (TFX's latest-blessed-model baseline)."""
        for art in reversed(self.get_artifacts(A.MODEL_BLESSING, context=(PIPELINE, pipeline))):
            if not art.properties.get(A.BLESSED):
                continue
            ex = self.producer(art.id)
            if ex is not None and ex.id != exclude_execution:
                return art
        return None


@dataclasses.dataclass
class Provenance:
    """Answer to "which data, config and hyperparameters produced the model now serving?"."""

    pushed: Artifact
    model: Artifact
    trainer: Execution
    example_gen: Execution | None
    transform: Execution | None
    hyperparameters: Artifact | None
    evaluation: dict[str, Any]
    chain: list[Execution]
    model_run: Artifact | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pushed_destination": self.pushed.pushed_destination, "pushed_version": self.pushed.pushed_version,
            "model": {"id": self.model.id, "uri": self.model.uri, **self.model.properties},
            "data": None if self.example_gen is None else {"execution": self.example_gen.id, **self.example_gen.parameters},
            "transform": None if self.transform is None else {"execution": self.transform.id, **self.transform.parameters},
            "trainer": {"execution": self.trainer.id, **self.trainer.parameters,
                        "resolved_config": None if self.model_run is None else str(self.model_run.path / "config.yaml")},
            "hyperparameters": None if self.hyperparameters is None else {
                "uri": self.hyperparameters.uri, **self.hyperparameters.properties},
            "evaluation": self.evaluation,
            "chain": [f"{e.type_name}({e.node_id})#{e.id}" for e in self.chain],
        }


def serving_provenance(store: LineageStore, pipeline: str | None = None) -> Provenance | None:
    """Traces the newest pushed model (of ``pipeline`` when given) back to its data, Transform,
    Trainer config/hyperparameters and evaluation. ``None`` when nothing was pushed."""
    pushed = [a for a in store.get_artifacts(A.PUSHED_MODEL, context=None if pipeline is None else (PIPELINE, pipeline))
              if a.pushed]
    if not pushed:
        return None
    latest = max(pushed, key=lambda a: (a.pushed_version or 0, a.id))
    chain = store.upstream(latest.id)
    by_type: dict[str, tuple[Execution, dict[str, Artifact], dict[str, Artifact]]] = {}
    for ex, ins, outs in chain:
        by_type.setdefault(ex.type_name, (ex, ins, outs))
    pusher_ex, pusher_in, _ = chain[0]
    model = pusher_in.get("model")
    trainer = store.producer(model.id) if model is not None else None
    if model is None or trainer is None:
        return None
    trainer_in = store.io(trainer.id, INPUT)
    examples = trainer_in.get("examples")
    example_gen = store.producer(examples.id) if examples is not None else None
    transform_art = trainer_in.get("transform_graph")
    transform = store.producer(transform_art.id) if transform_art is not None else None
    evaluation: dict[str, Any] = {}
    blessing = pusher_in.get("model_blessing")
    if blessing is not None:
        evaluation = {"blessed": bool(blessing.properties.get(A.BLESSED)), **json.loads(blessing.properties.get("metrics", "{}"))}
    return Provenance(latest, model, trainer, example_gen, transform, trainer_in.get("hyperparameters"), evaluation,
                      [c[0] for c in chain], store.io(trainer.id, OUTPUT).get("model_run"))
