"""Client retries, the query CLI, the launcher and the config files."""

from __future__ import annotations

import shutil
import os
import re
import signal
import subprocess
import sys
import time
import json
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfrs_lab.export import signatures as sig
from tfrs_lab.serving import query, start
from tfrs_lab.serving.client import ServingClient, ServingClientError
from tfrs_lab.serving.config import (
    ConfigError,
    ModelConfig,
    load_batching_parameters,
    load_model_config_file,
    load_monitoring_config,
    parse_model_server_config,
)

from serving_fixtures import K, install_version

REPO = Path(__file__).resolve().parents[2]


class FlakyPredict(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers UNAVAILABLE ``failures`` times, then a fixed response."""

    def __init__(self, failures: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        self.failures, self.code, self.calls = failures, code, 0

    def Predict(self, request, context):  # noqa: N802
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(self.code, "warming up")
        response = predict_pb2.PredictResponse()
        response.outputs[sig.ITEM_IDS].CopyFrom(tf.make_tensor_proto([["a", "b"]]))
        response.outputs[sig.SCORES].CopyFrom(tf.make_tensor_proto([[2.0, 1.0]]))
        return response


@pytest.fixture
def flaky():
    servers = []

    def make(failures, code=grpc.StatusCode.UNAVAILABLE):
        servicer = FlakyPredict(failures, code)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return servicer, f"127.0.0.1:{port}"

    yield make
    for s in servers:
        s.stop(0)


def test_client_retries_unavailable_with_backoff(flaky):
    servicer, target = flaky(2)
    with ServingClient(target, retries=3, backoff_s=0.01) as client:
        assert client.recommend("m", ["1"]) == [[("a", 2.0), ("b", 1.0)]]
    assert servicer.calls == 3
    servicer, target = flaky(5)
    with ServingClient(target, retries=1, backoff_s=0.01) as client:
        with pytest.raises(ServingClientError) as info:
            client.recommend("m", ["1"])
    assert info.value.code == grpc.StatusCode.UNAVAILABLE and servicer.calls == 2


def test_client_does_not_retry_other_errors(flaky):
    servicer, target = flaky(5, grpc.StatusCode.INVALID_ARGUMENT)
    with ServingClient(target, retries=3, backoff_s=0.01) as client:
        with pytest.raises(ServingClientError):
            client.recommend("m", ["1"])
    assert servicer.calls == 1


def test_client_rest_unreachable_is_unavailable():
    with ServingClient("127.0.0.1:1", protocol="rest", retries=1, backoff_s=0.01, timeout_s=2) as client:
        with pytest.raises(ServingClientError) as info:
            client.model_status("m")
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


def test_query_cli_end_to_end(served, capsys, tmp_path):
    titles_dir = tmp_path / "export" / "1" / "assets.extra"
    titles_dir.mkdir(parents=True)
    movies = [m for m, _ in ServingClient(f"127.0.0.1:{served.grpc_port}").recommend("retrieval", ["42"])[0]]
    (titles_dir / query.TITLES_FILE).write_text(f"{movies[0]}\tToy Story (1995)\n", encoding="utf-8")

    assert query.main(["--target", f"127.0.0.1:{served.grpc_port}", "--model", "retrieval", "--user-id", "42",
                       "--k", "3", "--model-dir", str(tmp_path / "export")]) == 0
    out = capsys.readouterr().out
    assert "user 42: top 3" in out and "Toy Story (1995)" in out and movies[2] in out

    assert query.main(["--target", f"127.0.0.1:{served.rest_port}", "--rest", "--json", "--model", "scann",
                       "--user-id", "7"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["user_id"] == "7" and len(data["items"]) == K


@pytest.mark.parametrize("argv, code, fragment", [
    (["--model", "nope", "--user-id", "1"], 2, "Servable not found"),
    (["--model", "retrieval", "--user-id", "1", "--k", "0"], 2, "--k must be >= 1"),
    (["--model", "retrieval"], 2, "--user-id"),
])
def test_query_cli_user_errors(served, capsys, argv, code, fragment):
    assert query.main(["--target", f"127.0.0.1:{served.grpc_port}", *argv]) == code
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err


def test_query_cli_unreachable_is_exit_1(capsys):
    assert query.main(["--target", "127.0.0.1:1", "--model", "m", "--user-id", "1", "--retries", "0", "--timeout", "2"]) == 1
    assert capsys.readouterr().err.startswith("error: m at 127.0.0.1:1: UNAVAILABLE")


def test_config_files_parse():
    [retrieval, ranking] = load_model_config_file(str(REPO / "configs/serving/models.config"))
    assert (retrieval.name, retrieval.policy, retrieval.num_versions) == ("retrieval", "latest", 1)
    assert ranking.policy == "specific" and ranking.versions == (1, 2) and dict(ranking.labels) == {"stable": 1, "canary": 2}
    assert ranking.wanted_versions([3, 2, 1]) == [2, 1]
    batching = load_batching_parameters(str(REPO / "configs/serving/batching.config"))
    assert batching.max_batch_size == 32 and batching.batch_timeout_micros == 1000
    assert load_monitoring_config(str(REPO / "configs/serving/monitoring.config")).path == "/monitoring/prometheus/metrics"
    with pytest.raises(ConfigError, match="not a valid text ModelServerConfig"):
        parse_model_server_config("model_config_list { bogus: 1 }")


def test_engine_choice(model_store, tmp_path, monkeypatch):
    plain = ModelConfig(name="r", base_path=str(tmp_path / "r"))
    scann = ModelConfig(name="s", base_path=str(tmp_path / "s"))
    install_version(model_store["table_v1"], plain.base_path, 1)
    install_version(model_store["scann"], scann.base_path, 1)
    assert start.needs_custom_ops(plain) == set()
    assert "Scann>ScannSearchBatched" in start.needs_custom_ops(scann)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    assert start.choose_engine("auto", [plain]) == "tfserving"
    assert start.choose_engine("auto", [plain, scann]) == "builtin"
    with pytest.raises(ConfigError, match="export the brute_force variant"):
        start.choose_engine("tfserving", [scann])
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert start.choose_engine("auto", [plain]) == "builtin"


def test_start_cli_errors(capsys, tmp_path):
    assert start.main([]) == 2
    assert "no models" in capsys.readouterr().err
    assert start.main(["--model", f"r={tmp_path / 'missing'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert start.main(["--model", "no-equals-sign"]) == 2


def _start_builtin(model: str, *, workers: int, rest_port: int, poll_seconds: str) -> subprocess.Popen:
    """``python -m tfrs_lab.serving.start`` on the built-in engine as a child process (gRPC on a free
    port; its first stdout line names the ports)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tfrs_lab.serving.start", "--engine", "builtin", "--model", model,
         "--workers", str(workers), "--port", "0", "--rest-port", str(rest_port), "--poll-seconds", poll_seconds],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )


def test_start_builtin_process_serves_and_drains_on_sigterm(model_store, tmp_path):
    base = tmp_path / "retrieval"
    install_version(model_store["table_v1"], str(base), 1)
    proc = _start_builtin(f"retrieval={base}", workers=1, rest_port=0, poll_seconds="0")
    try:
        line = proc.stdout.readline()  # "serving retrieval: gRPC 127.0.0.1:P, REST 127.0.0.1:Q"
        assert line.startswith("serving retrieval: gRPC 127.0.0.1:"), line  # loopback unless --host
        grpc_target = line.split("gRPC ")[1].split(",")[0]
        with ServingClient(grpc_target) as client:
            assert len(client.recommend("retrieval", ["1"])[0]) == K
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_two_workers_share_the_ports_report_metrics_together_and_both_hot_swap(model_store, tmp_path):
    base = tmp_path / "run" / "export" / "retrieval"
    install_version(model_store["table_v1"], str(base), 1)
    proc = _start_builtin(f"retrieval={tmp_path / 'run'}", workers=2, rest_port=0, poll_seconds="0.2")
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving retrieval: gRPC 127.0.0.1:") and "(2 workers)" in line, line
        grpc_target = line.split("gRPC ")[1].split(",")[0]
        rest_target = line.split("REST ")[1].split(" ")[0]
        for _ in range(10):  # new connections each time: the kernel spreads them over the workers
            with ServingClient(grpc_target, retries=0) as client:
                assert len(client.recommend("retrieval", ["1"])[0]) == K
            with ServingClient(rest_target, protocol="rest", retries=0) as client:
                assert len(client.recommend("retrieval", ["2"])[0]) == K
        import urllib.request

        counts = []
        for _ in range(4):  # any worker's endpoint reports the whole server
            with urllib.request.urlopen(f"http://{rest_target}/monitoring/prometheus/metrics", timeout=10) as r:
                text = r.read().decode()
            counts.append({entrypoint: float(v) for entrypoint, v in re.findall(
                r'request_count_total\{API="predict",entrypoint="(\w+)",model_name="retrieval",'
                r'model_version="1",status="OK"\} (\S+)', text)})
        assert all(c == {"GRPC": 10.0, "REST": 10.0} for c in counts), counts
        install_version(model_store["table_v2"], str(base), 2)

        def version_on_a_new_connection() -> str:
            with ServingClient(grpc_target, retries=0) as client:
                return client.recommend("retrieval", ["1"])[0][0][0].split("_")[0]

        # Each new connection lands on either worker: 30 in a row on v2 means both swapped
        # (a worker that never swaps answers v1 to about half of them).
        deadline = time.monotonic() + 60
        answers: list[str] = []
        while time.monotonic() < deadline:
            answers = [version_on_a_new_connection() for _ in range(30)]
            if answers == ["v2"] * 30:
                break
            time.sleep(0.2)
        assert answers == ["v2"] * 30, answers
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_workers_refuse_a_port_another_server_listens_on(model_store, tmp_path, capsys):
    import socket

    base = tmp_path / "retrieval"
    install_version(model_store["table_v1"], str(base), 1)
    with socket.socket() as other:  # another server, even one that set SO_REUSEPORT itself
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert start.main(["--engine", "builtin", "--model", f"retrieval={base}", "--workers", "2",
                           "--port", str(port), "--rest-port", "-1"]) == 2
    assert f"cannot bind 127.0.0.1:{port}" in capsys.readouterr().err


def test_a_dead_worker_takes_the_server_down(model_store, tmp_path):
    base = tmp_path / "retrieval"
    install_version(model_store["table_v1"], str(base), 1)
    proc = _start_builtin(f"retrieval={base}", workers=2, rest_port=-1, poll_seconds="0")
    try:
        assert "(2 workers)" in proc.stdout.readline()
        children = [int(p) for p in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()]
        assert len(children) == 2
        os.kill(children[0], signal.SIGKILL)
        assert proc.wait(timeout=60) == 1  # the orchestrator sees the failure and restarts the server
        assert not os.path.exists(f"/proc/{children[1]}") or "Z" in open(f"/proc/{children[1]}/stat").read().split()[2]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.skipif(shutil.which("tensorflow_model_server") is None, reason="tensorflow_model_server not on PATH")
def test_tfserving_engine_serves_brute_force_export(model_store, tmp_path):
    base = tmp_path / "retrieval"
    install_version(model_store["table_v1"], str(base), 1)
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    proc = subprocess.Popen([sys.executable, "-m", "tfrs_lab.serving.start", "--engine", "tfserving",
                             "--model", f"retrieval={base}", "--port", str(ports[0]), "--rest-port", str(ports[1])])
    try:
        with ServingClient(f"127.0.0.1:{ports[0]}", retries=8, backoff_s=0.5, timeout_s=5) as client:
            assert len(client.recommend("retrieval", ["1"])[0]) == K
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_worker_command_forwards_every_flag_the_supervisor_does_not_set(tmp_path):
    from tfrs_lab.serving.workers import worker_command

    batching = tmp_path / "batching.config"
    given = start.build_parser().parse_args(
        ["--model", "m=/x", "--workers", "3", "--host", "0.0.0.0", "--threads", "7", "--poll-seconds", "0.5",
         "--max-message-bytes", "1234", "--max-batch-rows", "9", "--max-num-load-retries", "2",
         "--load-retry-interval-micros", "17", "--grace-seconds", "3.5", "--log-level", "DEBUG",
         "--log-format", "json", "--no-warmup", "--batching-parameters-file", str(batching)])
    cmd = worker_command(given, "/tmp/models.config", 8600, 8601)
    assert cmd[1:3] == ["-m", "tfrs_lab.serving.start"]
    worker = start.build_parser().parse_args(cmd[3:])
    expected = {**vars(given), "model": [], "model_config_file": "/tmp/models.config", "engine": "builtin",
                "workers": 1, "reuse_port": True, "port": 8600, "rest_port": 8601}
    assert vars(worker) == expected
