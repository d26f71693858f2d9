"""``train.distribution``: TensorFlow's own distributed runtime, configured by ``TF_CONFIG``.

* ``default``: the single-device default strategy (what a plain run always did).
* ``mirrored``: :class:`tf.distribute.MirroredStrategy`, synchronous data parallelism over the
  local devices (GPUs) of one machine; ``TF_CONFIG`` is not used.
* ``multi_worker_mirrored``: :class:`tf.distribute.MultiWorkerMirroredStrategy`, synchronous data
  parallelism over the ``worker`` (and optional ``chief``) tasks of ``TF_CONFIG``. Every worker runs
  the same command; each reads the whole (in-memory) data set and keeps its own share of every
  global batch (``AutoShardPolicy.DATA``), so ``train.batch_size`` is the *global* batch.
* ``parameter_server``: :class:`tf.distribute.ParameterServerStrategy`. Variables (embedding tables
  above ``train.ps_min_shard_bytes``) are split row-wise over the ``ps`` tasks; the ``chief`` task
  is the coordinator that runs the training script, dispatches steps to the ``worker`` tasks through
  a :class:`ClusterCoordinator`, evaluates and exports. ``worker`` and ``ps`` tasks run the same
  command and only serve (they block until killed).

Only the chief (the ``chief`` task, or worker 0 when the cluster has no chief; the coordinator
under ``parameter_server``) writes the run directory; the other workers stage theirs in a
temporary directory that is discarded. Training state is backed up every epoch with
:class:`tf.keras.callbacks.BackupAndRestore`, so a worker (or the whole job) restarted with the
same command and output directory resumes from the last finished epoch.

Exports are written from a single-device copy of the trained model, so a distributed run exports
exactly the SavedModel layout and signatures a single-machine run does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import tensorflow as tf

from tfrs_lab.config import ConfigError

__all__ = ["backup_dir", "cluster_failures", "ClusterSpec", "Distribution", "DISTRIBUTIONS", "fault_tolerance_callbacks",
           "finish_training", "fit_dataset", "is_chief", "make_distribution", "parse_tf_config", "Probe", "ResumeProbe",
           "run_directory", "serve_forever", "single_device_copy", "SUMMARY_FILE", "TF_CONFIG", "variable_devices"]

logger = logging.getLogger(__name__)

TF_CONFIG = "TF_CONFIG"
DISTRIBUTIONS = ("default", "mirrored", "multi_worker_mirrored", "parameter_server")
_TASK_TYPES = {
    "multi_worker_mirrored": ("chief", "worker"),
    "parameter_server": ("chief", "worker", "ps"),
}


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
    """A validated ``TF_CONFIG``: ``cluster`` (job name -> ``host:port`` list) and this task."""

    cluster: dict[str, list[str]]
    task_type: str
    task_index: int

    @property
    def num_workers(self) -> int:
        return len(self.cluster.get("worker", ()))

    @property
    def num_ps(self) -> int:
        return len(self.cluster.get("ps", ()))

    def as_json(self) -> str:
        return json.dumps({"cluster": self.cluster, "task": {"type": self.task_type, "index": self.task_index}})


def parse_tf_config(distribution: str, env: Mapping[str, str] | None = None) -> ClusterSpec:
    """Reads and checks ``TF_CONFIG`` for ``distribution`` (multi_worker_mirrored | parameter_server).

    Raises :class:`ConfigError` naming what is missing or wrong and how to fix it.
    """
    env = os.environ if env is None else env
    where = f"train.distribution={distribution}"
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if distribution == "parameter_server":
        example = ('TF_CONFIG=\'{"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222"], '
                   '"ps": ["host2:2222"]}, "task": {"type": "chief", "index": 0}}\'')
    raw = env.get(TF_CONFIG, "").strip()
    if not raw:
        raise ConfigError(f"{where} needs the {TF_CONFIG} environment variable describing the cluster "
                          f"and this task, e.g. {example}")
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{TF_CONFIG} is not valid JSON ({e.msg} at char {e.pos}): e.g. {example}") from e
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict) or not spec["cluster"]:
        raise ConfigError(f"{TF_CONFIG} must hold a non-empty 'cluster' mapping of job name -> "
                          f"['host:port', ...], e.g. {example}")
    cluster: dict[str, list[str]] = {}
    for job, addresses in spec["cluster"].items():
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses)):
            raise ConfigError(f"{TF_CONFIG} cluster.{job} must be a non-empty list of 'host:port' "
                              f"strings, got {addresses!r}")
        cluster[str(job)] = list(addresses)
    allowed = _TASK_TYPES[distribution]
    unknown = sorted(set(cluster) - set(allowed) - {"evaluator"})
    if unknown:
        raise ConfigError(f"{TF_CONFIG} cluster has job(s) {unknown} that {where} does not use: "
                          f"use {', '.join(allowed)}")
    if "worker" not in cluster:
        raise ConfigError(f"{TF_CONFIG} cluster needs a 'worker' job for {where}")
    if distribution == "parameter_server":
        if "ps" not in cluster or len(cluster.get("chief", ())) != 1:
            raise ConfigError(f"{TF_CONFIG} cluster needs one 'chief' (the coordinator), 'worker' and 'ps' "
                              f"jobs for {where}, got jobs {sorted(cluster)}")
    elif len(cluster.get("chief", ())) > 1:
        raise ConfigError(f"{TF_CONFIG} cluster.chief must list at most one task, got {cluster['chief']}")
    task = spec.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise ConfigError(f"{TF_CONFIG} needs 'task': {{'type': ..., 'index': ...}} naming this process, "
                          f"e.g. {example}")
    task_type, index = task["type"], task.get("index", 0)
    if task_type not in allowed:
        raise ConfigError(f"{TF_CONFIG} task.type must be one of {', '.join(allowed)} for {where}, got {task_type!r}")
    if task_type not in cluster:
        raise ConfigError(f"{TF_CONFIG} task.type {task_type!r} has no entry in the cluster {sorted(cluster)}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise ConfigError(f"{TF_CONFIG} task.index must be an integer in [0, {len(cluster[task_type])}) "
                          f"for task type {task_type!r}, got {index!r}")
    return ClusterSpec(cluster=cluster, task_type=task_type, task_index=index)


@dataclasses.dataclass
class Distribution:
    """The strategy of a run and this process's role in it."""

    name: str
    strategy: tf.distribute.Strategy
    is_chief: bool = True
    cluster: ClusterSpec | None = None
    ps_server_role: bool = False  # a parameter-server cluster's worker/ps task: serve only

    @property
    def is_parameter_server(self) -> bool:
        return self.name == "parameter_server"

    @property
    def num_ps(self) -> int:
        return self.cluster.num_ps if self.cluster else 0

    @property
    def num_workers(self) -> int:
        return self.cluster.num_workers if self.cluster else 1


def is_chief(spec: ClusterSpec) -> bool:
    """The task that writes results: ``chief`` if the cluster has one, else worker 0."""
    if "chief" in spec.cluster:
        return spec.task_type == "chief"
    return spec.task_type == "worker" and spec.task_index == 0


def make_distribution(train_cfg, env: Mapping[str, str] | None = None) -> Distribution:
    """The strategy ``train_cfg.distribution`` names (create it before any other TensorFlow work:
    multi-worker collectives must be configured at program start-up)."""
    name = train_cfg.distribution
    if name == "default":
        return Distribution(name, tf.distribute.get_strategy())
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        logger.info("mirrored strategy over %d local device(s)", strategy.num_replicas_in_sync)
        return Distribution(name, strategy)
    spec = parse_tf_config(name, env)
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(spec.cluster), task_type=spec.task_type, task_id=spec.task_index,
        rpc_layer="grpc")
    if name == "multi_worker_mirrored":
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING,
            timeout_seconds=train_cfg.collective_timeout_seconds or None)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)
        logger.info("multi-worker mirrored: task %s:%d of %d worker(s), %d replica(s) in sync",
                    spec.task_type, spec.task_index, spec.num_workers, strategy.num_replicas_in_sync)
        return Distribution(name, strategy, is_chief=is_chief(spec), cluster=spec)
    # parameter_server
    if spec.task_type in ("worker", "ps"):
        return Distribution(name, tf.distribute.get_strategy(), is_chief=False, cluster=spec, ps_server_role=True)
    partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
        min_shard_bytes=train_cfg.ps_min_shard_bytes, max_shards=spec.num_ps)
    strategy = tf.distribute.ParameterServerStrategy(resolver, variable_partitioner=partitioner)
    logger.info("parameter-server coordinator: %d worker(s), %d parameter server(s), variables over "
                "%d bytes split over up to %d shards", spec.num_workers, spec.num_ps,
                train_cfg.ps_min_shard_bytes, spec.num_ps)
    return Distribution(name, strategy, is_chief=True, cluster=spec)


def serve_forever(dist: Distribution) -> None:
    """Runs this ``worker``/``ps`` task of a parameter-server cluster; returns only if the server stops."""
    spec = dist.cluster
    assert spec is not None and dist.ps_server_role
    os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")  # TF's advice: let the coordinator see failures
    server = tf.distribute.Server(tf.train.ClusterSpec(spec.cluster), job_name=spec.task_type,
                                  task_index=spec.task_index, protocol="grpc", start=True)
    logger.info("parameter-server cluster: serving as %s:%d (the chief coordinates; stop with a signal)",
                spec.task_type, spec.task_index)
    server.join()


@contextlib.contextmanager
def run_directory(dist: Distribution, output_dir: Path, staged: Callable[[Path], Any]) -> Iterator[Path]:
    """The chief stages the real run directory (``staged(output_dir)``); other workers get a
    temporary directory that is deleted afterwards, so only the chief's results survive."""
    if dist.is_chief:
        with staged(output_dir) as stage:
            yield stage
        return
    scratch = Path(tempfile.mkdtemp(prefix="tfrs_lab-worker-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def backup_dir(train_cfg, output_dir: Path) -> Path:
    """Where :class:`BackupAndRestore` keeps training state: ``train.backup_dir`` or, by default,
    the hidden sibling ``.<output dir name>.backup`` (the same for every restart of the command;
    on several hosts point it at shared storage)."""
    if train_cfg.backup_dir:
        return Path(train_cfg.backup_dir).expanduser().absolute()
    output_dir = Path(output_dir)
    return output_dir.parent / f".{output_dir.name}.backup"


_LOST_PEER = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
              tf.errors.AbortedError)
"""What a collective or a remote step raises when another task of the cluster died or hangs."""


@contextlib.contextmanager
def cluster_failures(dist: Distribution, train_cfg, output_dir: Path) -> Iterator[None]:
    """Turns a lost peer during training (another worker killed, a parameter server gone, a
    collective past ``train.collective_timeout_seconds``) into one line
    (:class:`~tfrs_lab.training.rundir.RunFailed`: nothing was published; restart every task to
    resume from the backup). Errors of single-process runs pass through unchanged."""
    from tfrs_lab.training.rundir import RunFailed  # pylint: disable=import-outside-toplevel

    try:
        yield
    except _LOST_PEER as e:
        if dist.name in ("default", "mirrored"):
            raise
        detail = " ".join((e.message or "").split())[:200]
        raise RunFailed(f"a task of the {dist.name} cluster stopped during training ({type(e).__name__}: {detail}): "
                        f"nothing was published to {output_dir}; restart every task with the same command to "
                        f"resume from the last finished epoch backed up in {backup_dir(train_cfg, output_dir)}") from e


class ResumeProbe(tf.keras.callbacks.Callback):
    """Records the epoch (0-based) ``fit`` starts at: > 0 after :class:`BackupAndRestore` restored.
    At the end of a finished ``fit`` it removes the (then empty) backup directory."""

    def __init__(self, backup: Path | None = None) -> None:
        super().__init__()
        self.initial_epoch: int | None = None
        self.backup = backup

    def on_train_end(self, logs=None) -> None:
        if self.backup is not None:  # BackupAndRestore has deleted this worker's checkpoints
            with contextlib.suppress(OSError):  # another worker's files are still there, or gone already
                self.backup.rmdir()

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if self.initial_epoch is None:
            self.initial_epoch = epoch
            if epoch:
                logger.info("resumed from the backup at epoch %d", epoch + 1)


def fault_tolerance_callbacks(dist: Distribution, train_cfg, output_dir: Path) -> tuple[list, ResumeProbe]:
    """``[BackupAndRestore, ResumeProbe]`` for distributed runs (``[ResumeProbe]`` for ``default``)."""
    if dist.name == "default":
        probe = ResumeProbe()
        return [probe], probe
    path = backup_dir(train_cfg, output_dir)
    probe = ResumeProbe(path)  # the last worker to finish removes the empty directory
    logger.info("backing up training state every epoch to %s", path)
    return [tf.keras.callbacks.BackupAndRestore(str(path)), probe], probe


def fit_dataset(dist: Distribution, make: Callable[[int], tf.data.Dataset], num_examples: int,
                batch_size: int) -> tuple[Any, dict[str, Any]]:
    """The training input and extra ``fit`` keyword arguments for ``dist``.

    ``make(batch_size)`` builds the (shuffled, batched) training dataset. ``batch_size`` is the
    global batch: under ``multi_worker_mirrored`` each worker keeps its share of every global batch
    (data sharding), so the optimiser sees the same batches as a single machine; under
    ``parameter_server`` each worker draws whole batches from its own shard of the data and the
    coordinator runs ``ceil(num_examples / batch_size)`` steps per epoch.
    """
    if dist.is_parameter_server:
        def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
            ds = make(batch_size)  # each worker step is a whole global batch (steps are asynchronous)
            return ds.shard(context.num_input_pipelines, context.input_pipeline_id).repeat()

        steps = max(1, math.ceil(num_examples / batch_size))
        return tf.keras.utils.experimental.DatasetCreator(dataset_fn), {"steps_per_epoch": steps}
    ds = make(batch_size)
    if dist.name == "multi_worker_mirrored":
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        ds = ds.with_options(options)
    return ds, {}


Probe = Callable[[tf.keras.Model, Mapping[str, tf.Tensor]], tf.Tensor]
"""``probe(model, features)``: an output of ``model`` on a batch of ``features`` (the query
embeddings of a two-tower model, a ranking model's scores …) that a copy must reproduce."""


def single_device_copy(model: tf.keras.Model, build: Callable[[], tf.keras.Model],
                       sample: Mapping[str, Any], probe: Probe) -> tf.keras.Model:
    """A plain (default-strategy) copy of the distributed ``model`` with its trained weights.

    ``build()`` constructs an identical, unbuilt model; ``sample`` is one small training batch (what
    ``compute_loss`` reads) that creates its variables. The weights travel through a TensorFlow
    checkpoint, which stores sharded parameter-server variables whole, so the copy has ordinary
    variables. ``probe(copy, sample)`` must equal ``probe(model, sample)`` (checked).
    """
    copy = build()
    features = {k: tf.constant(v) for k, v in sample.items()}
    copy.compute_loss(features)
    with tempfile.TemporaryDirectory(prefix="tfrs_lab-copy-") as tmp:
        path = tf.train.Checkpoint(model=model).write(os.path.join(tmp, "model"))
        tf.train.Checkpoint(model=copy).read(path).assert_existing_objects_matched()
    expected, got = np.asarray(probe(model, features)), np.asarray(probe(copy, features))
    if not np.allclose(expected, got, rtol=1e-5, atol=1e-6):
        raise RuntimeError("the single-device copy of the distributed model computes different outputs")
    return copy


SUMMARY_FILE = "distribution.json"


def finish_training(dist: Distribution, model: tf.keras.Model, build: Callable[[], tf.keras.Model],
                    sample: Mapping[str, Any], run_dir: Path, probe: Probe) -> tf.keras.Model:
    """After ``fit``: writes ``run_dir/distribution.json`` (strategy, cluster, this task, and the
    device of every variable shard) and returns the model to evaluate and export — ``model``
    itself under ``default``, else its :func:`single_device_copy` (``build``, ``sample``, ``probe``
    as there)."""
    if dist.name == "default":
        return model
    summary = {
        "distribution": dist.name,
        "num_replicas_in_sync": dist.strategy.num_replicas_in_sync,
        "cluster": dist.cluster.cluster if dist.cluster else None,
        "task": {"type": dist.cluster.task_type, "index": dist.cluster.task_index} if dist.cluster else None,
        "variables": variable_devices(model),  # where each (sharded) table lives
    }
    (Path(run_dir) / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return single_device_copy(model, build, sample, probe)


_PART = re.compile(r"^(?P<base>.*)/part_(?P<index>\d+)(?::\d+)?$")


def variable_devices(model: tf.keras.Model) -> list[dict[str, Any]]:
    """Every model variable: ``name``, full ``shape`` and the ``devices`` of its shards in order
    (one entry when it is not partitioned; parameter-server shards split the first axis)."""
    tables: dict[str, list[tuple[int, tf.Variable]]] = {}
    for v in model.weights:  # Keras lists a partitioned variable as its shards ``<name>/part_<i>``
        m = _PART.match(v.name)
        name = m["base"] if m else v.name.rpartition(":")[0] or v.name
        tables.setdefault(name, []).append((int(m["index"]) if m else 0, v))
    out = []
    for name, parts in tables.items():
        shards = [v for _, v in sorted(parts, key=lambda p: p[0])]
        shape = [int(d) for d in shards[0].shape]
        if shape:
            shape[0] = sum(int(v.shape[0]) for v in shards)
        out.append({"name": name, "shape": shape, "devices": [v.device for v in shards]})
    return out
