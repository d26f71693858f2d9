"""``python -m tfrs_lab.serving.start``: serve exported models over TF Serving's gRPC/REST APIs.

    python -m tfrs_lab.serving.start --model retrieval=runs/r1/export/retrieval --port 8500 --rest-port 8501
    python -m tfrs_lab.serving.start --model retrieval=runs/r1 --host 0.0.0.0 --workers 4

``--model NAME=PATH`` takes an export base path, a run directory or one version directory (which is
then the only version served). ``--engine auto`` runs ``tensorflow_model_server`` from ``PATH`` when
it is installed and no model needs custom ops (ScaNN exports do), else the built-in server;
``tfserving`` / ``builtin`` force one. The built-in server binds 127.0.0.1 unless ``--host`` says
otherwise, and runs ``--workers`` processes (default: one per core) sharing the ports with
``SO_REUSEPORT``. SIGTERM/SIGINT drain in-flight requests for at most ``--grace-seconds``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from .logs import FORMATS
from .logs import configure as configure_logging
from .config import (
    DEFAULT_MAX_BATCH_ROWS,
    ConfigError,
    ModelConfig,
    MonitoringConfig,
    load_batching_parameters,
    load_model_config_file,
    load_monitoring_config,
    to_model_server_config_text,
)
from .paths import model_config_from_flag

__all__ = ["build_parser", "check_numbers", "choose_engine", "main", "needs_custom_ops",
           "TF_SERVING_BINARY", "tfserving_command"]

logger = logging.getLogger("tfrs_lab.serving.start" if __name__ == "__main__" else __name__)

TF_SERVING_BINARY = "tensorflow_model_server"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = _Parser(prog="python -m tfrs_lab.serving.start", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                   help="model name and path: export base, run directory or one version directory")
    p.add_argument("--model-config-file", help="text ModelServerConfig (see the shipped configs/serving/models.config: python -m tfrs_lab.configs serving/models.config)")
    p.add_argument("--port", type=int, default=8500, help="gRPC port")
    p.add_argument("--rest-port", type=int, default=8501, help="REST port (0 = any free port, -1 = off)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    p.add_argument("--engine", choices=("auto", "tfserving", "builtin"), default="auto")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="serving processes sharing the ports (built-in engine; default: one per core)")
    p.add_argument("--batching-parameters-file", help="enables batching (see the shipped configs/serving/batching.config: python -m tfrs_lab.configs serving/batching.config)")
    p.add_argument("--monitoring-config-file", help="Prometheus endpoint (see the shipped configs/serving/monitoring.config: python -m tfrs_lab.configs serving/monitoring.config)")
    p.add_argument("--ssl-config-file", help="TLS for gRPC and REST: text SSLConfig (server_key, server_cert, "
                                             "custom_ca, client_verify)")
    p.add_argument("--poll-seconds", type=float, default=1.0, help="file-system poll interval (0 = off)")
    p.add_argument("--max-message-bytes", type=int, default=64 * 1024 * 1024, help="largest request/response")
    p.add_argument("--max-batch-rows", type=int, default=DEFAULT_MAX_BATCH_ROWS,
                   help="most rows (examples) per request, refused before any work (0 = no limit)")
    p.add_argument("--max-num-load-retries", type=int, default=5, help="retries of a failed version load")
    p.add_argument("--load-retry-interval-micros", type=int, default=60_000_000, help="time between load retries")
    p.add_argument("--enable-model-management", action="store_true",
                   help="allow HandleReloadConfigRequest (unauthenticated: keep the port private)")
    p.add_argument("--threads", type=int, default=16, help="request threads per worker (built-in engine)")
    p.add_argument("--no-warmup", action="store_true", help="skip warm-up replay")
    p.add_argument("--grace-seconds", type=float, default=10.0,
                   help="on SIGTERM, in-flight requests get this long; then they are cancelled (UNAVAILABLE)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-format", choices=FORMATS, default="text", help="json: one JSON object per line (for log shippers)")
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set on worker processes
    return p


def needs_custom_ops(config: ModelConfig) -> set[str]:
    """Custom ops (e.g. ``Scann>ScannSearchBatched``) used by any version the policy would load."""
    from .layout import list_versions
    from .servable import custom_ops, read_saved_model_proto

    ops: set[str] = set()
    for version in config.wanted_versions(list_versions(config.base_path)):
        ops |= custom_ops(read_saved_model_proto(os.path.join(config.base_path, str(version))))
    return ops


def choose_engine(engine: str, models: Sequence[ModelConfig]) -> str:
    """Resolve ``auto`` to ``tfserving`` or ``builtin``; refuse ``tfserving`` for custom ops."""
    if engine == "builtin":
        return "builtin"
    binary = shutil.which(TF_SERVING_BINARY)
    if binary is None and engine == "auto":  # decided without reading (or importing TensorFlow for) any model
        logger.info("%s not on PATH: using the built-in server", TF_SERVING_BINARY)
        return "builtin"
    ops = {m.name: needs_custom_ops(m) for m in models}
    blocked = {n: o for n, o in ops.items() if o}
    if engine == "tfserving":
        if binary is None:
            raise ConfigError(f"--engine tfserving: {TF_SERVING_BINARY} is not on PATH; install TF Serving or use --engine builtin")
        if blocked:
            raise ConfigError(
                "--engine tfserving cannot load models with custom ops "
                + "; ".join(f"{n}: {', '.join(sorted(o))}" for n, o in blocked.items())
                + ": export the brute_force variant or use --engine builtin"
            )
        return "tfserving"
    if blocked:
        logger.info("models %s need custom ops: using the built-in server", sorted(blocked))
        return "builtin"
    return "tfserving"


def tfserving_command(args: argparse.Namespace, models: Sequence[ModelConfig], config_path: str) -> list[str]:
    """The ``tensorflow_model_server`` command line for these flags."""
    cmd = [
        shutil.which(TF_SERVING_BINARY) or TF_SERVING_BINARY,
        f"--port={args.port}",
        f"--model_config_file={config_path}",
        f"--file_system_poll_wait_seconds={max(0, int(round(args.poll_seconds)))}",
        f"--grpc_max_threads={args.threads}",
    ]
    if args.rest_port >= 0:
        cmd.append(f"--rest_api_port={args.rest_port}")
    if args.batching_parameters_file:
        cmd += ["--enable_batching=true", f"--batching_parameters_file={os.path.abspath(args.batching_parameters_file)}"]
    if args.monitoring_config_file:
        cmd.append(f"--monitoring_config_file={os.path.abspath(args.monitoring_config_file)}")
    if not args.no_warmup:
        cmd.append("--enable_model_warmup=true")
    if args.ssl_config_file:
        cmd.append(f"--ssl_config_file={os.path.abspath(args.ssl_config_file)}")
    cmd += [f"--max_num_load_retries={args.max_num_load_retries}",
            f"--load_retry_interval_micros={args.load_retry_interval_micros}"]
    return cmd


def _run_tfserving(args: argparse.Namespace, models: Sequence[ModelConfig]) -> int:
    with tempfile.TemporaryDirectory(prefix="tfrs_serving_") as tmp:
        config_path = os.path.join(tmp, "models.config")
        with open(config_path, "w", encoding="utf-8") as f:
            f.write(to_model_server_config_text(models))
        cmd = tfserving_command(args, models, config_path)
        logger.info("running %s", " ".join(cmd))
        proc = subprocess.Popen(cmd)

        def forward(signum: int, _frame: Any) -> None:
            proc.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return proc.wait()


def _server_options(args: argparse.Namespace) -> Any:
    from .server import ServerOptions
    from .tls import load_ssl_config

    return ServerOptions(
        host=args.host,
        grpc_port=args.port,
        rest_port=None if args.rest_port < 0 else args.rest_port,
        max_workers=args.threads,
        max_message_bytes=args.max_message_bytes,
        max_batch_rows=args.max_batch_rows,
        poll_interval_s=args.poll_seconds,
        warmup=not args.no_warmup,
        batching=load_batching_parameters(args.batching_parameters_file) if args.batching_parameters_file else None,
        monitoring=load_monitoring_config(args.monitoring_config_file) if args.monitoring_config_file else MonitoringConfig(),
        enable_model_management=args.enable_model_management,
        max_load_retries=args.max_num_load_retries,
        load_retry_interval_s=args.load_retry_interval_micros / 1e6,
        ssl=load_ssl_config(args.ssl_config_file) if args.ssl_config_file else None,
        reuse_port=args.reuse_port,
    )


def _run_builtin(args: argparse.Namespace, models: Sequence[ModelConfig]) -> int:
    from .server import ModelServer
    from .workers import ready_line

    server = ModelServer(models, _server_options(args))
    server.start()
    print(ready_line(models, args.host, server.grpc_port, server.rest_port), flush=True)

    def on_signal(signum: int, _frame: Any) -> None:
        logger.info("signal %d: draining for up to %.1fs", signum, args.grace_seconds)
        import threading

        threading.Thread(target=server.stop, args=(args.grace_seconds,), daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not server.wait(timeout_s=1.0):
        pass
    return 0


def check_numbers(args: argparse.Namespace) -> None:
    """Refuse flag values the server cannot run with, naming the flag."""
    for flag, value, low in (("--workers", args.workers, 1), ("--threads", args.threads, 1),
                             ("--max-message-bytes", args.max_message_bytes, 1),
                             ("--max-batch-rows", args.max_batch_rows, 0),
                             ("--max-num-load-retries", args.max_num_load_retries, 0),
                             ("--load-retry-interval-micros", args.load_retry_interval_micros, 0),
                             ("--grace-seconds", args.grace_seconds, 0)):
        if value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}")
    if args.enable_model_management and args.workers > 1:
        raise ConfigError("--enable-model-management needs --workers 1: a reload would reach one worker only")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the launcher; returns the exit code (2 for configuration errors)."""
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    configure_logging(args.log_level, args.log_format)
    try:
        models = [model_config_from_flag(m) for m in args.model]
        if args.model_config_file:
            models += load_model_config_file(args.model_config_file)
        if not models:
            raise ConfigError("no models: pass --model NAME=PATH or --model-config-file FILE")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ConfigError(f"model names must be unique, got {names}")
        for m in models:
            if not os.path.isdir(m.base_path):
                raise ConfigError(f"model {m.name}: base path {m.base_path} does not exist; pass the export dir holding <version>/ subdirs")
        check_numbers(args)
        engine = choose_engine(args.engine, models)
        if engine == "tfserving":
            return _run_tfserving(args, models)
        if args.workers > 1:
            from .workers import run_workers

            return run_workers(args, models)
        return _run_builtin(args, models)
    except (ConfigError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # Not sys.exit: request threads stuck in a model call past --grace-seconds must not hold the exit.
    os._exit(code)
