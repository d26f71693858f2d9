"""Model lifecycle: version policies, labels, file-system polling, hot swap and status.

The manager mirrors TF Serving's ``ServerCore`` with the availability-preserving policy: a new
version is loaded (and warmed up) *before* an old one is retired, so requests never see a gap; a
version that fails to load never replaces a serving one, and its error is kept for
``GetModelStatus``. Requests take a reference to a :class:`~.servable.Servable` under a lock and
then run outside it, so retiring a version never interrupts requests already running on it.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc

from .config import ModelConfig
from .errors import ServingError, invalid_argument, not_found
from .metrics import Metrics
from .layout import fingerprint, incomplete_reason, list_versions
from .servable import Servable, load_servable, register_scann_ops
from .tensors import Signature
from .warmup import replay_warmup

__all__ = ["ModelManager", "State", "validate_configs", "VersionStatus"]

logger = logging.getLogger(__name__)


class State(enum.IntEnum):
    """``ModelVersionStatus.State`` values."""

    UNKNOWN = 0
    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclasses.dataclass
class VersionStatus:
    """State of one version and, for failed loads, the error."""

    version: int
    state: State
    error: ServingError | None = None


@dataclasses.dataclass
class _Model:
    config: ModelConfig
    servables: dict[int, Servable] = dataclasses.field(default_factory=dict)
    status: dict[int, VersionStatus] = dataclasses.field(default_factory=dict)
    failed: dict[int, _Failure] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Failure:
    """A version that failed to load: its files then, attempts so far, when to try again."""

    fingerprint: tuple[Any, ...]
    attempts: int
    retry_at: float


class ModelManager:
    """Serves a set of models from their base paths.

    Args:
        configs: models to serve.
        poll_interval_s: seconds between file-system polls (TF Serving's
            ``--file_system_poll_wait_seconds``); 0 disables polling after the initial load.
        warmup: replay ``assets.extra/tf_serving_warmup_requests`` before a version is AVAILABLE.
        batcher_factory: optional per-signature batcher constructor (see ``batching.py``).
        metrics: where load attempts are counted.
        max_load_retries: TF Serving's ``--max_num_load_retries``: a failed version is tried again
            this many times (on later polls, ``load_retry_interval_s`` apart) while its files stay
            the same; any change to its files starts a fresh round of attempts.
        load_retry_interval_s: TF Serving's ``--load_retry_interval_micros`` in seconds.
    """

    def __init__(
        self,
        configs: Sequence[ModelConfig],
        *,
        poll_interval_s: float = 1.0,
        warmup: bool = True,
        batcher_factory: Callable[[Signature], Any] | None = None,
        metrics: Metrics | None = None,
        max_load_retries: int = 5,
        load_retry_interval_s: float = 60.0,
    ) -> None:
        if max_load_retries < 0 or load_retry_interval_s < 0:
            raise ValueError("max_load_retries and load_retry_interval_s must be >= 0")
        self._metrics = metrics
        self._max_load_retries = max_load_retries
        self._load_retry_interval_s = load_retry_interval_s
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()  # one poll (and thus one loader) at a time
        self._models: dict[str, _Model] = {}
        self._poll_interval_s = poll_interval_s
        self._warmup = warmup
        self._batcher_factory = batcher_factory
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        validate_configs(configs)
        self._set_configs(configs)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Load every model once (blocking), then poll base paths in a background thread."""
        register_scann_ops()
        self.poll_once()
        if self._poll_interval_s > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop polling (waiting up to ``timeout_s`` for a running poll) and release every servable."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None
        with self._lock:
            for model in self._models.values():
                for servable in model.servables.values():
                    servable.close()
                model.servables.clear()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll_interval_s):
            try:
                self.poll_once()
            except OSError as e:  # a vanished or unreadable file system must not stop polling
                logger.warning("model poll failed: %s", e)

    # -- configuration ---------------------------------------------------------------------------

    def _set_configs(self, configs: Iterable[ModelConfig]) -> None:
        with self._lock:
            for config in configs:
                if config.name in self._models:
                    self._models[config.name].config = config
                else:
                    self._models[config.name] = _Model(config=config)
            if self._metrics is not None:
                self._metrics.set_models(self._models)

    def reload_config(self, configs: Sequence[ModelConfig]) -> None:
        """Replace the served set (``HandleReloadConfigRequest`` semantics) and load synchronously.

        The whole config is validated first: a rejected config raises INVALID_ARGUMENT and changes
        nothing. Models missing from ``configs`` are unloaded; new ones are loaded before this returns.
        """
        validate_configs(configs)
        new_names = {c.name for c in configs}
        with self._poll_lock:  # no poll may run on a half-replaced set
            with self._lock:
                retired = [self._models.pop(n) for n in [n for n in self._models if n not in new_names]]
                self._set_configs(configs)
        for model in retired:
            for version, servable in model.servables.items():
                logger.info("unloading model %s version %d (removed from config)", model.config.name, version,
                            extra={"event": "unload", "model": model.config.name, "version": version})
                servable.close()
        self.poll_once()

    def configs(self) -> list[ModelConfig]:
        """The current model configs."""
        with self._lock:
            return [m.config for m in self._models.values()]

    # -- polling ---------------------------------------------------------------------------------

    def poll_once(self) -> None:
        """Scan every base path once: load wanted versions, then retire unwanted ones."""
        with self._poll_lock:
            with self._lock:
                models = list(self._models.values())
            for model in models:
                self._poll_model(model)

    def _poll_model(self, model: _Model) -> None:
        config = model.config
        on_disk = list_versions(config.base_path)
        if not on_disk:
            with self._lock:
                serving = sorted(model.servables)
            if serving:
                logger.warning(
                    "no versions found under %s for model %s; keeping version(s) %s", config.base_path, config.name, serving
                )
            elif not model.status:
                logger.error(
                    "no versions found under base path %s for model %s; export a version to %s/<int>/",
                    config.base_path, config.name, config.base_path,
                )
            return
        wanted = config.wanted_versions(on_disk)
        for version in sorted(wanted):
            if version in model.servables:
                continue
            path = os.path.join(config.base_path, str(version))
            fingerprint_now = fingerprint(path)  # a stat per file: cheap next to reading them all
            failure = model.failed.get(version)
            attempt = 1
            if failure is not None and failure.fingerprint == fingerprint_now:
                if failure.attempts > self._max_load_retries or time.monotonic() < failure.retry_at:
                    continue  # unchanged files, retries used up or not due: no need to read them again
                attempt = failure.attempts + 1
            reason = incomplete_reason(path)
            if reason is not None:  # still being copied: look again on the next poll
                with self._lock:
                    model.status[version] = VersionStatus(version, State.START, ServingError(
                        grpc.StatusCode.UNAVAILABLE, f"Version directory {path} is incomplete: {reason}"))
                continue
            self._load(model, version, path, fingerprint_now, attempt)
        with self._lock:
            if self._models.get(config.name) is not model:
                return  # removed by a concurrent reload
            if any(v in model.servables for v in wanted):
                for version in [v for v in model.servables if v not in wanted]:
                    servable = model.servables.pop(version)
                    model.status[version] = VersionStatus(version, State.END)
                    logger.info("retired model %s version %d", config.name, version,
                                extra={"event": "retire", "model": config.name, "version": version})
                    servable.close()

    def _load(self, model: _Model, version: int, path: str, fingerprint: tuple[Any, ...], attempt: int) -> None:
        name = model.config.name
        with self._lock:
            model.status[version] = VersionStatus(version, State.LOADING)
        started = time.monotonic()
        try:
            servable = load_servable(name, version, path, batcher_factory=self._batcher_factory)
            if self._warmup:
                try:
                    servable.warmup_count = replay_warmup(servable)
                except Exception:
                    servable.close()
                    raise
        except ServingError as e:
            error = e
        except Exception as e:  # any loader failure must leave the serving versions untouched
            logger.exception("unexpected error loading model %s version %d", name, version)
            error = ServingError(grpc.StatusCode.UNKNOWN, f"Failed to load {path}: {type(e).__name__}: {e}")
        else:
            with self._lock:
                model.servables[version] = servable
                model.status[version] = VersionStatus(version, State.AVAILABLE)
                model.failed.pop(version, None)
            if self._metrics:
                self._metrics.observe_load(model=name, status="OK")
            seconds = time.monotonic() - started
            logger.info(
                "loaded model %s version %d from %s in %.2fs (%d warm-up requests)",
                name, version, path, seconds, servable.warmup_count,
                extra={"event": "load", "model": name, "version": version, "path": path,
                       "load_seconds": round(seconds, 3), "warmup_requests": servable.warmup_count},
            )
            return
        if self._metrics:
            self._metrics.observe_load(model=name, status=error.code.name)
        retries_left = self._max_load_retries - (attempt - 1)
        logger.error("model %s version %d failed to load (attempt %d, %d retries left): %s",
                     name, version, attempt, max(0, retries_left), error.message,
                     extra={"event": "load_failed", "model": name, "version": version, "code": error.code.name,
                            "attempt": attempt})
        with self._lock:
            model.status[version] = VersionStatus(version, State.END, error)
            model.failed[version] = _Failure(fingerprint, attempt, time.monotonic() + self._load_retry_interval_s)

    # -- queries ---------------------------------------------------------------------------------

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable for a request's ModelSpec (TF Serving's errors when there is none)."""
        with self._lock:
            model = self._models.get(name)
            if label:
                if model is None or label not in model.config.labels:
                    if model is None:
                        raise not_found(f"Servable not found for request: Latest({name})")
                    raise invalid_argument(f"Unrecognized servable version label: {label}")
                version = model.config.labels[label]
            if version is not None:
                servable = model.servables.get(version) if model else None
                if servable is None:
                    raise not_found(f"Servable not found for request: Specific({name}, {version})")
                return servable
            if model is None or not model.servables:
                raise not_found(f"Servable not found for request: Latest({name})")
            return model.servables[max(model.servables)]

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        """``GetModelStatus``: every known version (or one), highest first."""
        with self._lock:
            model = self._models.get(name)
            if model is None or not model.status:
                raise not_found(f"Could not find any versions of model {name}")
            if label:
                if label not in model.config.labels:
                    raise invalid_argument(f"Unrecognized servable version label: {label}")
                version = model.config.labels[label]
            if version is not None:
                if version not in model.status:
                    raise not_found(f"Could not find version {version} of model {name}")
                return [dataclasses.replace(model.status[version])]
            return [dataclasses.replace(s) for _, s in sorted(model.status.items(), reverse=True)]

    def available(self) -> dict[str, list[int]]:
        """Model name -> AVAILABLE versions."""
        with self._lock:
            return {n: sorted(m.servables) for n, m in self._models.items()}


def validate_configs(configs: Sequence[ModelConfig]) -> None:
    """Raise INVALID_ARGUMENT for a model set that cannot be served (before anything changes)."""
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise invalid_argument(f"model names must be unique, repeated: {', '.join(duplicates)}")
    for config in configs:
        for label in config.labels:
            if not label:
                raise invalid_argument(f"model {config.name}: empty version label")
