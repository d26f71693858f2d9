"""The built-in TF-Serving-protocol server: gRPC ``PredictionService`` / ``ModelService`` on the
official ``tensorflow_serving.apis`` stubs, the REST API (see ``rest.py``), gRPC health checks,
Prometheus metrics and graceful drain.

Use :class:`ModelServer` from Python, or ``python -m tfrs_lab.serving.start`` from a shell.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
    status_pb2,
)


from . import deadline, inference
from .config import (DEFAULT_MAX_BATCH_ROWS, BatchingParameters, ConfigError, ModelConfig, MonitoringConfig,
                     model_config_from_proto)
from .errors import ServingError, code_number, invalid_argument
from .metrics import Metrics
from .model_manager import ModelManager
from .servable import Servable
from .sockets import DEFAULT_BACKLOG, grpc_address, listening_socket
from .tensors import check_proto_inputs, rows_error
from .tls import SslConfig

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "MODEL_SERVICE", "ModelServer", "ModelServicer",
           "PREDICTION_SERVICE", "PredictionServicer", "ServerOptions", "T"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
T = TypeVar("T")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerOptions:
    """Settings of :class:`ModelServer` (TF Serving flag names in brackets).

    ``grpc_port`` / ``rest_port``: 0 picks a free port, ``None`` disables that front end.
    ``host`` defaults to loopback: pass ``"0.0.0.0"`` to serve other machines.
    """

    host: str = "127.0.0.1"
    grpc_port: int | None = 8500  # --port
    rest_port: int | None = 8501  # --rest_api_port
    max_workers: int = 16  # --grpc_max_threads / --rest_api_num_threads
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # --grpc_max_message_size (send and receive)
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS  # rows per request, refused before any work (0 = no limit)
    poll_interval_s: float = 1.0  # --file_system_poll_wait_seconds
    warmup: bool = True  # --enable_model_warmup
    batching: BatchingParameters | None = None  # --enable_batching + --batching_parameters_file
    monitoring: MonitoringConfig = dataclasses.field(default_factory=MonitoringConfig)
    rest_timeout_s: float = 30.0  # --rest_api_timeout_in_ms
    enable_model_management: bool = False  # HandleReloadConfigRequest answers UNIMPLEMENTED unless on
    max_load_retries: int = 5  # --max_num_load_retries
    load_retry_interval_s: float = 60.0  # --load_retry_interval_micros
    ssl: SslConfig | None = None  # --ssl_config_file: TLS on gRPC and REST
    reuse_port: bool = False  # SO_REUSEPORT: several worker processes share the ports
    listen_backlog: int = DEFAULT_BACKLOG

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1 or self.max_batch_rows < 0 or self.max_workers < 1:
            raise ConfigError("max_message_bytes and max_workers must be >= 1 and max_batch_rows >= 0, got "
                              f"{self.max_message_bytes}, {self.max_workers}, {self.max_batch_rows}")


def _spec_args(spec: Any) -> tuple[str, int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    label = spec.version_label if choice == "version_label" else None
    if not spec.name:
        raise invalid_argument("Missing ModelSpec name: set model_spec.name to the served model's name")
    return spec.name, version, label


class ModelServer:
    """Serves models over TF Serving's gRPC and REST APIs.

    ``start()`` loads every model (warm-up included) before binding the ports, like
    ``tensorflow_model_server``; ``stop()`` drains in-flight requests.
    """

    def __init__(self, models: Sequence[ModelConfig], options: ServerOptions | None = None) -> None:
        self.options = options or ServerOptions()
        self.metrics = Metrics(m.name for m in models)
        batcher_factory: Callable[[Any], Any] | None = None
        if self.options.batching is not None:
            from .batching import make_batcher_factory

            batcher_factory = make_batcher_factory(self.options.batching)
        self.manager = ModelManager(
            models,
            poll_interval_s=self.options.poll_interval_s,
            warmup=self.options.warmup,
            batcher_factory=batcher_factory,
            metrics=self.metrics,
            max_load_retries=self.options.max_load_retries,
            load_retry_interval_s=self.options.load_retry_interval_s,
        )
        self.health = health.HealthServicer()
        self._grpc: grpc.Server | None = None
        self._rest: Any = None
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._stopped = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "ModelServer":
        """Load models, then start the gRPC and REST front ends. Returns ``self``."""
        self.manager.start()
        try:
            self._start_front_ends()
        except BaseException:
            self.stop(grace_s=0)
            raise
        for service in ("", PREDICTION_SERVICE, MODEL_SERVICE):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        logger.info("serving %s on gRPC port %s, REST port %s", self.manager.available(), self.grpc_port, self.rest_port)
        return self

    def _start_front_ends(self) -> None:
        opts = self.options
        if opts.grpc_port is not None:
            self._grpc = grpc.server(
                futures.ThreadPoolExecutor(max_workers=opts.max_workers, thread_name_prefix="grpc"),
                options=[
                    ("grpc.max_send_message_length", opts.max_message_bytes),
                    ("grpc.max_receive_message_length", opts.max_message_bytes),
                    ("grpc.so_reuseport", 1 if opts.reuse_port else 0),
                ],
                maximum_concurrent_rpcs=None,
            )
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(self), self._grpc)
            model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self), self._grpc)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
            address = grpc_address(opts.host, opts.grpc_port)
            try:
                if opts.ssl is not None:
                    port = self._grpc.add_secure_port(address, opts.ssl.grpc_credentials())
                else:
                    port = self._grpc.add_insecure_port(address)
            except RuntimeError as e:
                raise OSError(f"cannot bind gRPC port {address} ({e}); choose a free --port") from e
            if port == 0:
                raise OSError(f"cannot bind gRPC port {address}; choose a free --port")
            self.grpc_port = port
            self._grpc.start()
        if opts.rest_port is not None:
            from .rest import RestFrontEnd

            sock = listening_socket(opts.host, opts.rest_port, reuse_port=opts.reuse_port, backlog=opts.listen_backlog)
            self._rest = RestFrontEnd(self, sock, opts.ssl.ssl_context() if opts.ssl is not None else None)
            self.rest_port = self._rest.port
            self._rest.start()

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting requests and let in-flight ones finish for up to ``grace_s`` seconds;
        requests still running then are answered UNAVAILABLE (gRPC) / 503 (REST). Unloads models."""
        if self._stopped.is_set():
            return
        started = time.monotonic()
        self.health.enter_graceful_shutdown()
        grpc_stopped = self._grpc.stop(grace_s) if self._grpc is not None else None
        if self._rest is not None:
            self._rest.stop(grace_s)
        if grpc_stopped is not None:
            grpc_stopped.wait(max(0.0, grace_s - (time.monotonic() - started)) + 1.0)
        self.manager.stop(timeout_s=1.0)
        self._stopped.set()
        logger.info("server stopped in %.2fs", time.monotonic() - started)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until :meth:`stop` has run (or ``timeout_s``); True when stopped."""
        return self._stopped.wait(timeout_s)

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request plumbing shared by gRPC and REST -----------------------------------------------

    def handle(self, api: str, entrypoint: str, model: str, fn: Callable[[], tuple[T, Servable | None]]) -> T:
        """Run ``fn``, recording metrics; raises :class:`ServingError` on failure."""
        started = time.monotonic()
        status, version = "OK", ""
        try:
            result, servable = fn()
            if servable is not None:
                version = str(servable.version)
            return result
        except ServingError as e:
            status = e.code.name
            raise
        except Exception as e:  # request boundary: an unexpected bug answers INTERNAL, never kills the server
            logger.exception("internal error in %s for model %s", api, model)
            status = "INTERNAL"
            raise ServingError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}") from e
        finally:
            seconds = time.monotonic() - started
            self.metrics.observe(
                model=model, version=version, api=api, entrypoint=entrypoint, status=status, seconds=seconds,
            )
            if logger.isEnabledFor(logging.DEBUG):  # access log: --log-level DEBUG (--log-format json)
                logger.debug("%s %s %s -> %s in %.2f ms", entrypoint, api, model, status, seconds * 1e3, extra={
                    "event": "request", "model": model, "version": version, "api": api,
                    "entrypoint": entrypoint, "status": status, "latency_ms": round(seconds * 1e3, 3)})

    def check_examples(self, inp: Any) -> None:
        """Refuse a Classify/Regress/MultiInference input over ``max_batch_rows`` examples."""
        kind = inp.WhichOneof("kind")
        rows = len(getattr(inp, kind).examples) if kind else 0
        if self.options.max_batch_rows and rows > self.options.max_batch_rows:
            raise rows_error(rows, self.options.max_batch_rows)

    def resolve(self, spec: Any) -> Servable:
        """The servable for a request ModelSpec."""
        name, version, label = _spec_args(spec)
        return self.manager.resolve(name, version, label)

    def model_status(self, request: get_model_status_pb2.GetModelStatusRequest) -> get_model_status_pb2.GetModelStatusResponse:
        """``GetModelStatus`` on the manager."""
        name, version, label = _spec_args(request.model_spec)
        response = get_model_status_pb2.GetModelStatusResponse()
        for st in self.manager.status(name, version, label):
            entry = response.model_version_status.add(version=st.version, state=int(st.state))
            if st.error is not None:
                entry.status.CopyFrom(status_pb2.StatusProto(error_code=code_number(st.error.code), error_message=st.error.message))
            else:
                entry.status.CopyFrom(status_pb2.StatusProto(error_code=0))
        return response

    def reload_config(self, request: model_management_pb2.ReloadConfigRequest) -> model_management_pb2.ReloadConfigResponse:
        """``HandleReloadConfigRequest``: replace the served models (all or nothing).

        Off unless ``enable_model_management``: the RPC carries no authentication.
        """
        if not self.options.enable_model_management:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                               "Model management is disabled on this server; start it with "
                               "--enable-model-management (and keep the port private) to allow reloads")
        config = request.config
        if config.WhichOneof("config") != "model_config_list":
            raise invalid_argument("ReloadConfigRequest.config must hold a model_config_list")
        try:
            models = [model_config_from_proto(c) for c in config.model_config_list.config]
        except ConfigError as e:
            raise invalid_argument(str(e)) from e
        self.manager.reload_config(models)
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = 0
        return response


class _GrpcBase:
    def __init__(self, server: ModelServer) -> None:
        self._server = server

    def _run(self, context: grpc.ServicerContext, api: str, model: str, fn: Callable[[], tuple[T, Servable | None]]) -> T:
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline exceeded before the request was processed")
        try:
            with deadline.scope(remaining):
                return self._server.handle(api, "GRPC", model, fn)
        except ServingError as e:
            error = e
        context.abort(error.code, error.message)
        raise AssertionError("unreachable: context.abort raises")


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer, _GrpcBase):
    """``tensorflow.serving.PredictionService``."""

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def fn() -> tuple[Any, Servable]:
            opts = self._server.options
            check_proto_inputs(request.inputs, opts.max_batch_rows, opts.max_message_bytes)
            s = self._server.resolve(request.model_spec)
            return inference.predict(s, request), s

        return self._run(context, "predict", request.model_spec.name, fn)

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def fn() -> tuple[Any, Servable]:
            s = self._server.resolve(request.model_spec)
            return inference.metadata(s, request), s

        return self._run(context, "get_model_metadata", request.model_spec.name, fn)

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def fn() -> tuple[Any, Servable]:
            self._server.check_examples(request.input)
            s = self._server.resolve(request.model_spec)
            return inference.classify(s, request), s

        return self._run(context, "classify", request.model_spec.name, fn)

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def fn() -> tuple[Any, Servable]:
            self._server.check_examples(request.input)
            s = self._server.resolve(request.model_spec)
            return inference.regress(s, request), s

        return self._run(context, "regress", request.model_spec.name, fn)

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def fn() -> tuple[Any, Servable]:
            if not request.tasks:
                raise invalid_argument("Tasks field is empty.")
            self._server.check_examples(request.input)
            s = self._server.resolve(request.tasks[0].model_spec)
            return inference.multi_inference(s, request), s

        name = request.tasks[0].model_spec.name if request.tasks else ""
        return self._run(context, "multi_inference", name, fn)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer, _GrpcBase):
    """``tensorflow.serving.ModelService``."""

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._run(context, "get_model_status", request.model_spec.name,
                         lambda: (self._server.model_status(request), None))

    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._run(context, "reload_config", "", lambda: (self._server.reload_config(request), None))
