"""``--workers N``: N serving processes sharing the gRPC and REST ports.

The supervisor (this module; it loads no model) resolves the ports (0 = a free one) by binding
``SO_REUSEPORT`` sockets it keeps but never listens on, then starts N copies of
``python -m tfrs_lab.serving.start --workers 1 --reuse-port`` on those ports. Each worker loads,
polls, warms up and hot-swaps its models on its own; the kernel spreads new connections across
the workers' listening sockets. ``PROMETHEUS_MULTIPROC_DIR`` points every worker at one metrics
directory, so any worker's metrics endpoint reports the whole server. SIGTERM/SIGINT are passed to
every worker (each drains for ``--grace-seconds``); a worker that dies takes the server down
(exit 1) so that an orchestrator restarts it whole.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from .config import ModelConfig, to_model_server_config_text
from .metrics import MULTIPROC_ENV
from .sockets import bound_socket

__all__ = ["ready_line", "READY_TIMEOUT_S", "reserve_port", "run_workers", "worker_command"]

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 600.0  # loading and warming up large models takes a while


_SET_BY_SUPERVISOR = ("model", "model_config_file", "engine", "workers", "reuse_port", "port", "rest_port")
"""``start.build_parser`` destinations the supervisor sets itself for each worker (the models travel as one
config file, the ports are the reserved shared ones); every other flag is forwarded as given."""


def worker_command(args: argparse.Namespace, config_path: str, grpc_port: int, rest_port: int) -> list[str]:
    """The command line of one worker: the same flags, one process, fixed shared ports.

    The flags are those of ``args`` (parsed by ``start.build_parser``, their one declaration): each
    ``dest`` is forwarded as ``--dest-with-dashes`` (a true boolean as the bare flag, None left out, a
    ``*_file`` as an absolute path), except :data:`_SET_BY_SUPERVISOR`.
    """
    cmd = [sys.executable, "-m", "tfrs_lab.serving.start", "--engine", "builtin", "--workers", "1", "--reuse-port",
           "--model-config-file", config_path, "--port", str(grpc_port), "--rest-port", str(rest_port)]
    for dest, value in sorted(vars(args).items()):
        if dest in _SET_BY_SUPERVISOR or value is None or value is False:
            continue
        flag = "--" + dest.replace("_", "-")
        if value is True:
            cmd.append(flag)
        else:
            cmd += [flag, os.path.abspath(value) if dest.endswith("_file") else str(value)]
    return cmd


def ready_line(models: Sequence[ModelConfig], host: str, grpc_port: int | None, rest_port: int | None,
               workers: int = 1) -> str:
    """The line printed once the server answers (tools such as the benchmark wait for it)."""
    suffix = f" ({workers} workers)" if workers > 1 else ""
    return f"serving {', '.join(m.name for m in models)}: gRPC {host}:{grpc_port}, REST {host}:{rest_port}{suffix}"


def run_workers(args: argparse.Namespace, models: Sequence[ModelConfig]) -> int:
    """Start ``args.workers`` workers, print the ready line when all answer, supervise until a signal."""
    reserved = [reserve_port(args.host, port) for port in (args.port, args.rest_port) if port >= 0]
    grpc_port = reserved[0].getsockname()[1] if args.port >= 0 else -1
    rest_port = reserved[-1].getsockname()[1] if args.rest_port >= 0 else -1
    tmp = tempfile.mkdtemp(prefix="tfrs-serving-")
    metrics_dir = os.path.join(tmp, "metrics")
    os.mkdir(metrics_dir)
    config_path = os.path.join(tmp, "models.config")
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(to_model_server_config_text(models))
    env = {**os.environ, MULTIPROC_ENV: metrics_dir}
    cmd = worker_command(args, config_path, grpc_port, rest_port)
    procs: list[subprocess.Popen[str]] = []
    stopping = threading.Event()

    def stop_all(signum: int = signal.SIGTERM, _frame: Any = None) -> None:
        stopping.set()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    try:
        for _ in range(args.workers):
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
        for i, p in enumerate(procs):
            line = _first_line(p, READY_TIMEOUT_S)
            if not line.startswith("serving "):
                logger.error("worker %d did not start (exit code %s)", i, p.poll())
                stop_all()
                return _reap(procs, args.grace_seconds) or 1
        print(ready_line(models, args.host, grpc_port if grpc_port >= 0 else None,
                         rest_port if rest_port >= 0 else None, workers=len(procs)), flush=True)
        while not stopping.is_set():
            dead = [(i, p.returncode) for i, p in enumerate(procs) if p.poll() is not None]
            if dead:
                logger.error("worker(s) %s exited; stopping the server", dead)
                stop_all()
                _reap(procs, args.grace_seconds)
                return 1
            stopping.wait(0.5)
        return _reap(procs, args.grace_seconds)
    finally:
        stop_all()
        _reap(procs, 1.0)
        for sock in reserved:
            sock.close()
        shutil.rmtree(tmp, ignore_errors=True)


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, never listening ``SO_REUSEPORT`` socket holding ``host:port`` for the workers.

    A fixed port is first bound *without* ``SO_REUSEPORT``: that fails when any process listens
    there, whereas a ``SO_REUSEPORT`` bind would silently join another server of the same user
    and share its traffic.
    """
    if port != 0:
        bound_socket(host, port, reuse_port=False).close()
    return bound_socket(host, port, reuse_port=True)


def _first_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The worker's first stdout line (its ready line), or '' when it exits or times out."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline() if proc.stdout else ""),
                              daemon=True)
    reader.start()
    reader.join(timeout_s)
    return result[0] if result else ""


def _reap(procs: Sequence[subprocess.Popen[str]], grace_s: float) -> int:
    """Wait for every worker (grace + 5 s, then kill); 0 when all exited cleanly."""
    deadline = time.monotonic() + grace_s + 5
    code = 0
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("worker %d did not exit in time; killing it", p.pid)
            p.kill()
            p.wait(timeout=10)
        code = code or (p.returncode or 0)
    return code
