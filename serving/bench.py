"""``python -m tfrs_lab.serving.bench``: load-test the built-in server (a benchmark, not a test).

    python -m tfrs_lab.serving.bench --model retrieval=runs/r1/export/retrieval --output bench-out/serving.json
    python -m tfrs_lab.serving.bench --build-synthetic /tmp/synth1m --items 1000000 --dim 64 \\
        --output bench-out/serving.json

For each ``--workers`` setting (and, with ``--baseline-pythonpath``, an older checkout of the
server) and each of server-side batching off/on, the built-in server runs as its own process
(``python -m tfrs_lab.serving.start --engine builtin``) on 127.0.0.1; a load generator in separate
processes (no TensorFlow in them: requests are serialized once, up front) sends retrieval top-k
``serving_default`` Predict calls, one user per request, from 1, 8, 32 and 64 concurrent clients over
gRPC and REST for a bounded duration each, and reports QPS, p50/p95/p99 latency and errors.
The *floor* is the same SavedModel signature called in-process (no server, no network): the
server overhead is the served latency minus the floor.

``--build-synthetic DIR`` writes (once) a ScaNN retrieval export over a random ``--items`` x
``--dim`` catalogue to ``DIR/1/`` with :func:`tfrs_lab.export.index.build_index` and
benchmarks it when no ``--model`` is given. Results are merged into ``--output`` by ``--label``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tfrs_lab  # noqa: F401  (sets TF_USE_LEGACY_KERAS / quiet logs before TensorFlow loads anywhere)

__all__ = ["build_parser", "build_synthetic_export", "DEFAULT_BATCHING", "known_user_ids", "main", "make_payloads",
           "measure_floor", "PREDICT_METHOD", "run_load", "SERVER_READY", "ServerProcess", "summarize"]

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
DEFAULT_BATCHING = (
    "max_batch_size { value: 32 }\n"
    "batch_timeout_micros { value: 1000 }\n"
    "max_enqueued_batches { value: 100 }\n"
    "num_batch_threads { value: 2 }\n"
)
SERVER_READY = re.compile(r"gRPC [^:]+:(\d+), REST [^:]+:(\d+)")


# -- synthetic catalogue export ----------------------------------------------------------------


def build_synthetic_export(base: Path, *, items: int, dim: int, users: int = 10_000, k: int = 10,
                           seed: int = 0) -> Path:
    """Write a ScaNN retrieval SavedModel over ``items`` random ``dim``-d vectors to ``base/1``.

    ``serving_default(user_id)`` hashes the id into ``users`` random query vectors and returns the
    top-``k`` ``item_ids``/``scores``, like the trained exports. Reused when it already exists.
    """
    version_dir = base / "1"
    if (version_dir / "saved_model.pb").is_file():
        return version_dir
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    from tfrs_lab.export import signatures as sig
    from tfrs_lab.export.index import IndexSettings, build_index

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, dim)).astype(np.float32)  # some structure, as in real catalogues
    vectors = centers[rng.integers(0, len(centers), items)] + 0.5 * rng.standard_normal((items, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.array([str(i) for i in range(items)], dtype=object)
    started = time.perf_counter()
    index = build_index(vectors, ids, IndexSettings(kind="scann", k=k), k)
    print(f"built ScaNN index over {items} x {dim} in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    del vectors

    class SyntheticRetrieval(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.index = index
            self.num_users = users
            self.user_vectors = tf.Variable(rng.standard_normal((users, dim)).astype(np.float32), trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=sig.USER_ID)])
        def serve(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
            query = tf.gather(self.user_vectors, tf.strings.to_hash_bucket_fast(user_id, self.num_users))
            scores, item_ids = self.index(query, k=k)
            return {sig.ITEM_IDS: item_ids, sig.SCORES: scores}

    module = SyntheticRetrieval()
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".1.partial-", dir=base))
    tf.saved_model.save(module, str(tmp), signatures={sig.SERVING_DEFAULT: module.serve},
                        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))
    (tmp / "assets.extra").mkdir(exist_ok=True)
    with tf.io.TFRecordWriter(str(tmp / "assets.extra" / sig.WARMUP_FILE)) as writer:
        for batch in (["1"], [str(u) for u in range(8)]):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "retrieval"
            request.inputs[sig.USER_ID].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
            writer.write(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())
    tmp.rename(version_dir)
    return version_dir


# -- requests ------------------------------------------------------------------------------------


def make_payloads(model: str, user_ids: Sequence[str]) -> tuple[list[bytes], list[bytes]]:
    """Serialized gRPC PredictRequests and REST JSON bodies, one user per request."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from tfrs_lab.export import signatures as sig

    grpc_payloads, rest_payloads = [], []
    for user in user_ids:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = sig.SERVING_DEFAULT
        request.inputs[sig.USER_ID].CopyFrom(tf.make_tensor_proto([user], dtype=tf.string))
        grpc_payloads.append(request.SerializeToString())
        rest_payloads.append(json.dumps({"signature_name": sig.SERVING_DEFAULT,
                                         "instances": [{sig.USER_ID: user}]}).encode())
    return grpc_payloads, rest_payloads


def known_user_ids(version_dir: Path, n: int = 512) -> list[str]:
    """User ids from the export's warm-up records (known users), padded with "1".."n"."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from tfrs_lab.export import signatures as sig

    users: list[str] = []
    path = version_dir / "assets.extra" / sig.WARMUP_FILE
    if path.is_file():
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            log = prediction_log_pb2.PredictionLog.FromString(record)
            tensor = log.predict_log.request.inputs.get(sig.USER_ID)
            if tensor is not None:
                users += [u.decode() for u in tf.make_ndarray(tensor).ravel()]
    users = list(dict.fromkeys(users))
    return (users + [str(i) for i in range(1, n + 1) if str(i) not in users])[:n]


# -- percentiles ---------------------------------------------------------------------------------


def summarize(latencies_s: Sequence[float], errors: int, duration_s: float) -> dict[str, Any]:
    """QPS, latency percentiles (ms) and error count of one measured window."""
    import numpy as np

    lat = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    out: dict[str, Any] = {"requests": int(lat.size), "errors": int(errors),
                           "qps": round(lat.size / duration_s, 1) if duration_s > 0 else 0.0}
    if lat.size:
        p50, p95, p99 = np.percentile(lat, [50, 95, 99])
        out.update(p50_ms=round(float(p50), 3), p95_ms=round(float(p95), 3), p99_ms=round(float(p99), 3),
                   mean_ms=round(float(lat.mean()), 3))
    return out


# -- in-process floor ----------------------------------------------------------------------------


def measure_floor(version_dir: Path, user_ids: Sequence[str], *, seconds: float,
                  thread_counts: Sequence[int] = (1, 8)) -> list[dict[str, Any]]:
    """The SavedModel's ``serving_default`` called in this process (outputs converted to numpy,
    as the server does) from each of ``thread_counts`` threads: the latency no server can beat."""
    import tensorflow as tf

    from tfrs_lab.export import signatures as sig
    from tfrs_lab.serving.servable import register_scann_ops

    register_scann_ops()
    fn = tf.saved_model.load(str(version_dir)).signatures[sig.SERVING_DEFAULT]
    inputs = [tf.constant([u]) for u in user_ids]
    for x in inputs[:20]:
        {k: v.numpy() for k, v in fn(user_id=x).items()}
    return [_floor_run(fn, inputs, seconds, threads) for threads in thread_counts]


def _floor_run(fn: Any, inputs: Sequence[Any], seconds: float, threads: int) -> dict[str, Any]:
    results: list[list[float]] = [[] for _ in range(threads)]

    def run(slot: int) -> None:
        end = time.perf_counter() + seconds
        i = slot
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            {k: v.numpy() for k, v in fn(user_id=inputs[i % len(inputs)]).items()}
            results[slot].append(time.perf_counter() - t0)
            i += threads

    workers = [threading.Thread(target=run, args=(s,)) for s in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {"threads": threads, **summarize([x for r in results for x in r], 0, seconds)}


# -- load generator (runs in its own processes) --------------------------------------------------


def _grpc_caller(target: str) -> Any:
    import grpc

    channel = grpc.insecure_channel(target)
    predict = channel.unary_unary(PREDICT_METHOD, request_serializer=None, response_deserializer=None)

    def call(payload: bytes, timeout: float) -> bool:
        try:
            predict(payload, timeout=timeout)
            return True
        except grpc.RpcError:
            return False

    return call


def _rest_caller(target: str, model: str) -> Any:
    import http.client

    host, port = target.rsplit(":", 1)
    path = f"/v1/models/{model}:predict"
    state: dict[str, Any] = {"conn": None}

    def call(payload: bytes, timeout: float) -> bool:
        for attempt in range(2):  # one reconnect when the server closed a keep-alive connection
            if state["conn"] is None:
                state["conn"] = http.client.HTTPConnection(host, int(port), timeout=timeout)
            try:
                state["conn"].request("POST", path, body=payload, headers={"Content-Type": "application/json"})
                resp = state["conn"].getresponse()
                resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    state["conn"].close()
                    state["conn"] = None
                return resp.status == 200
            except (ConnectionError, http.client.HTTPException, OSError):
                state["conn"].close()
                state["conn"] = None
                if attempt == 1:
                    return False
        return False

    return call


def _load_process(protocol: str, target: str, model: str, payloads: list[bytes], threads: int, offset: int,
                  warmup_s: float, duration_s: float, timeout_s: float, ready: Any, go: Any, results: Any) -> None:
    """One load-generator process: ``threads`` closed-loop clients, each with its own connection."""
    callers = [(_grpc_caller(target) if protocol == "grpc" else _rest_caller(target, model)) for _ in range(threads)]
    ready.put(os.getpid())
    if not go.wait(timeout=120):
        results.put(([], 0))
        return
    start = time.perf_counter() + warmup_s
    end = start + duration_s
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]

    def client(slot: int) -> None:
        call = callers[slot]
        mine: list[float] = []
        failed = 0
        i = offset + slot * 7919
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                break
            ok = call(payloads[i % len(payloads)], timeout_s)
            t1 = time.perf_counter()
            i += 1
            if t0 >= start:
                if ok:
                    mine.append(t1 - t0)
                else:
                    failed += 1
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    workers = [threading.Thread(target=client, args=(s,)) for s in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    results.put((latencies, errors[0]))


def run_load(protocol: str, target: str, model: str, payloads: list[bytes], *, clients: int, processes: int,
             warmup_s: float, duration_s: float, timeout_s: float = 10.0) -> dict[str, Any]:
    """Run ``clients`` concurrent closed-loop clients spread over up to ``processes`` processes."""
    ctx = mp.get_context("spawn")
    procs_n = max(1, min(processes, clients))
    split = [clients // procs_n + (1 if p < clients % procs_n else 0) for p in range(procs_n)]
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_load_process, daemon=True,
                         args=(protocol, target, model, payloads, n, p * 1009, warmup_s, duration_s, timeout_s,
                               ready, go, results))
             for p, n in enumerate(split)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=120)
        load_before = os.getloadavg()[0]
        go.set()
        latencies: list[float] = []
        errors = 0
        for _ in procs:
            lat, err = results.get(timeout=warmup_s + duration_s + timeout_s + 60)
            latencies += lat
            errors += err
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
    return {"protocol": protocol, "clients": clients, "load_processes": procs_n,
            **summarize(latencies, errors, duration_s), "loadavg_1m_at_start": round(load_before, 2)}


# -- the server under test -----------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class ServerProcess:
    """``python -m tfrs_lab.serving.start --engine builtin`` on 127.0.0.1 with free ports.

    ``workers`` is passed as ``--workers`` (None: the flag is left out, for servers that predate it);
    ``pythonpath`` runs another checkout of the server (the baseline of a before/after comparison).
    """

    def __init__(self, models: Sequence[str], *, batching_file: str | None, threads: int, log_path: Path,
                 workers: int | None = None, pythonpath: str | None = None) -> None:
        cmd = [sys.executable, "-m", "tfrs_lab.serving.start", "--engine", "builtin", "--host", "127.0.0.1",
               "--port", "0", "--rest-port", "0", "--poll-seconds", "0", "--threads", str(threads),
               "--log-level", "WARNING"]
        for m in models:
            cmd += ["--model", m]
        if batching_file:
            cmd += ["--batching-parameters-file", batching_file]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        self.cmd = cmd
        self._log = open(log_path, "w", encoding="utf-8")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        if pythonpath:  # also the working directory: ``python -m`` puts the cwd first on sys.path
            env["PYTHONPATH"] = pythonpath
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True, env=env,
                                     cwd=pythonpath or None)
        self.grpc_port = self.rest_port = 0
        self.load_seconds = 0.0

    def wait_ready(self, timeout_s: float = 600) -> None:
        started = time.monotonic()
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        while time.monotonic() - started < timeout_s:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}; see {self._log.name}")
                continue
            match = SERVER_READY.search(line)
            if match:
                self.grpc_port, self.rest_port = int(match.group(1)), int(match.group(2))
                self.load_seconds = time.monotonic() - started
                return
        raise RuntimeError(f"server not ready after {timeout_s}s; see {self._log.name}")

    def memory_mb(self) -> dict[str, Any]:
        """Resident memory of the serving process(es): per worker and in total (supervisor included)."""
        workers = _children(self.proc.pid) or [self.proc.pid]
        per_worker = [round(_rss_mb(p), 1) for p in workers]
        total = sum(per_worker) + (_rss_mb(self.proc.pid) if workers != [self.proc.pid] else 0.0)
        return {"per_worker_rss_mb": per_worker, "total_rss_mb": round(total, 1)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


# -- CLI -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tfrs_lab.serving.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", metavar="NAME=PATH", help="export base path holding <version>/ (retrieval model)")
    p.add_argument("--build-synthetic", metavar="DIR", help="build (once) and benchmark a synthetic ScaNN export in DIR")
    p.add_argument("--items", type=int, default=1_000_000, help="synthetic catalogue size")
    p.add_argument("--dim", type=int, default=64, help="synthetic embedding size")
    p.add_argument("--output", default="bench-out/serving.json", help="JSON results (merged by --label)")
    p.add_argument("--label", help="name of this run in the output (default: the model dir name)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per setting")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each setting")
    p.add_argument("--floor-seconds", type=float, default=5.0, help="in-process floor measurement time")
    p.add_argument("--clients", default="1,8,32,64", help="concurrent clients, comma separated")
    p.add_argument("--workers", default=f"1,{os.cpu_count() or 1}",
                   help="server --workers settings to compare, comma separated")
    p.add_argument("--baseline-pythonpath", metavar="DIR",
                   help="also run the server found first on this PYTHONPATH (e.g. an older checkout whose "
                        "tfrs_lab/serving is the code before a change), labelled 'baseline', same settings")
    p.add_argument("--protocols", default="grpc,rest", help="grpc, rest or both")
    p.add_argument("--batching", choices=("off", "on", "both"), default="both")
    p.add_argument("--batching-parameters-file", help="TF Serving batching parameters (default: max 32, 1 ms, 2 threads)")
    p.add_argument("--load-processes", type=int, default=2, help="load-generator processes (clients are split over them)")
    p.add_argument("--server-threads", type=int, default=32, help="server request threads")
    return p


def _version_dir(base: Path) -> Path:
    versions = sorted((int(v.name) for v in base.iterdir() if v.name.isdigit()), reverse=True)
    if not versions:
        raise SystemExit(f"error: no <version>/ directory under {base}")
    return base / str(versions[0])


def _machine() -> dict[str, Any]:
    import tensorflow as tf

    return {
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
        "tensorflow": tf.__version__, "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "note": "server, load generator and floor share the same cores (load generator and server compete for "
                "CPU); other jobs on the machine may run concurrently: see loadavg fields",
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.model and not args.build_synthetic:
        print("error: pass --model NAME=PATH or --build-synthetic DIR", file=sys.stderr)
        return 2
    if args.build_synthetic:
        build_synthetic_export(Path(args.build_synthetic), items=args.items, dim=args.dim)
    name, _, path = (args.model or f"retrieval={args.build_synthetic}").partition("=")
    if not path:
        print("error: --model must be NAME=PATH", file=sys.stderr)
        return 2
    base = Path(path).resolve()
    if not base.is_dir():
        print(f"error: {base} does not exist; pass the export base path holding <version>/", file=sys.stderr)
        return 2
    version_dir = _version_dir(base)
    clients = [int(c) for c in args.clients.split(",") if c]
    protocols = [p for p in args.protocols.split(",") if p]
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.batching]
    out_path = Path(args.output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="tfrs_bench_"))

    users = known_user_ids(version_dir)
    grpc_payloads, rest_payloads = make_payloads(name, users)
    record: dict[str, Any] = {
        "model": name, "path": str(base), "version": int(version_dir.name), "request": "serving_default, 1 user",
        "machine": _machine(), "duration_s": args.duration, "warmup_s": args.warmup, "users": len(users),
    }
    print(f"[bench] in-process floor ({args.floor_seconds:.0f}s)...", file=sys.stderr, flush=True)
    floor_code = (
        "import json,sys; from pathlib import Path; from tfrs_lab.serving.bench import measure_floor as m; "
        "u=json.loads(sys.argv[2]); "
        "print(json.dumps(m(Path(sys.argv[1]),u,seconds=float(sys.argv[3]))))"
    )
    proc = subprocess.run([sys.executable, "-c", floor_code, str(version_dir), json.dumps(users), str(args.floor_seconds)],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    floor = json.loads(proc.stdout.strip().splitlines()[-1])
    record["floor_in_process"] = floor
    print(f"[bench] floor p50 {floor[0].get('p50_ms')} ms, {floor[0]['qps']} qps (1 thread); "
          f"{floor[1]['qps']} qps (8 threads)", file=sys.stderr, flush=True)

    record["settings"] = []
    variants: list[tuple[str, int | None, str | None]] = []
    if args.baseline_pythonpath:
        variants.append(("baseline", None, os.path.abspath(args.baseline_pythonpath)))
    variants += [(f"workers={w}", int(w), None) for w in dict.fromkeys(args.workers.split(",")) if w]
    record["memory"] = {}
    for variant, workers, pythonpath in variants:
        for batching in modes:
            batching_file = None
            if batching:
                batching_file = args.batching_parameters_file
                if not batching_file:
                    batching_file = str(workdir / "batching.config")
                    Path(batching_file).write_text(DEFAULT_BATCHING, encoding="utf-8")
            tag = f"{variant.replace('=', '')}-batching-{'on' if batching else 'off'}"
            server = ServerProcess([f"{name}={base}"], batching_file=batching_file, threads=args.server_threads,
                                   log_path=workdir / f"server-{tag}.log", workers=workers, pythonpath=pythonpath)
            try:
                server.wait_ready()
                print(f"[bench] server {variant} (batching {'on' if batching else 'off'}) ready in "
                      f"{server.load_seconds:.1f}s", file=sys.stderr, flush=True)
                for protocol in protocols:
                    target = f"127.0.0.1:{server.grpc_port if protocol == 'grpc' else server.rest_port}"
                    payloads = grpc_payloads if protocol == "grpc" else rest_payloads
                    for c in clients:
                        result = run_load(protocol, target, name, payloads, clients=c, processes=args.load_processes,
                                          warmup_s=args.warmup, duration_s=args.duration)
                        result.update(server=variant, batching=batching,
                                      server_load_seconds=round(server.load_seconds, 2))
                        record["settings"].append(result)
                        print(f"[bench] {variant:9s} {protocol:4s} batching={'on ' if batching else 'off'} "
                              f"clients={c:2d}: {result['qps']:8.1f} qps  p50 {result.get('p50_ms')} ms  "
                              f"p95 {result.get('p95_ms')} ms  p99 {result.get('p99_ms')} ms  "
                              f"errors {result['errors']}", file=sys.stderr, flush=True)
                record["memory"][tag] = server.memory_mb()
            finally:
                server.stop()
            if batching_file:
                record["batching_parameters"] = Path(batching_file).read_text(encoding="utf-8")

    single = [s for s in record["settings"] if s["clients"] == 1 and s.get("p50_ms") is not None]
    floor_p50 = floor[0].get("p50_ms")
    record["server_overhead_ms_at_1_client"] = {
        f"{s['server']}_{s['protocol']}_batching_{'on' if s['batching'] else 'off'}": round(s["p50_ms"] - floor_p50, 3)
        for s in single
    } if floor_p50 is not None else {}
    floor_8 = next((f["qps"] for f in floor if f["threads"] == 8), None)
    if floor_8:
        record["grpc_qps_at_32_clients_over_floor_8_threads"] = {
            f"{s['server']}_batching_{'on' if s['batching'] else 'off'}": round(s["qps"] / floor_8, 3)
            for s in record["settings"] if s["protocol"] == "grpc" and s["clients"] == 32
        }
    record["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    existing: dict[str, Any] = {}
    if out_path.is_file():
        try:
            existing = json.loads(out_path.read_text(encoding="utf-8"))
        except ValueError:
            existing = {}
    runs = existing.get("runs", {}) if isinstance(existing, dict) else {}
    label = args.label or (base.parent.parent.name if base.parent.name == "export" else base.name)
    runs[label] = record
    out_path.write_text(json.dumps({"benchmark": "tfrs_lab.serving.bench", "runs": runs}, indent=2) + "\n",
                        encoding="utf-8")
    print(f"[bench] wrote {out_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
