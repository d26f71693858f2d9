"""The defects a network probe found, each reproduced on 127.0.0.1 with bounded loops and timeouts:
request smuggling, Content-Length abuse, connection resets under 64 clients, unbounded metric
labels, request amplification, client errors answered 500, grace not capping shutdown, and a
slowly copied version that never loaded."""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import shutil
import socket
import threading
import urllib.request

import grpc
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tfrs_lab.export import signatures as sig
from tfrs_lab.serving.config import ModelConfig

from serving_fixtures import install_version, make_server, predict_request, wait_for


# -- raw HTTP helpers ------------------------------------------------------------------------


def _read_response(f) -> tuple[int, dict[str, str], bytes] | None:
    """One HTTP/1.1 response from a socket file (Content-Length framed), None at EOF."""
    line = f.readline()
    if not line:
        return None
    status = int(line.split()[1])
    headers: dict[str, str] = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    body = f.read(int(headers.get("content-length", "0")))
    return status, headers, body


def _raw_exchange(port: int, data: bytes, max_responses: int = 4) -> list[tuple[int, dict[str, str], bytes]]:
    """Send ``data`` on one connection and read responses until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        f = sock.makefile("rb")
        out = []
        for _ in range(max_responses):
            try:
                response = _read_response(f)
            except (ConnectionResetError, socket.timeout):
                break
            if response is None:
                break
            out.append(response)
        return out


def _assert_json_error(response: tuple[int, dict[str, str], bytes], status: int) -> str:
    code, headers, body = response
    assert code == status, (code, body)
    assert headers["content-type"].startswith("application/json"), headers
    return json.loads(body)["error"]


# -- smuggling and framing -------------------------------------------------------------------


SMUGGLED = b"GET /v1/models/SMUGGLED HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("method", [b"PUT", b"GET", b"DELETE", b"POST"])
def test_a_body_never_runs_as_the_next_request(served, method):
    first = (method + b" /v1/models/retrieval HTTP/1.1\r\nHost: x\r\nContent-Length: "
             + str(len(SMUGGLED)).encode() + b"\r\n\r\n" + SMUGGLED)
    last = b"GET /v1/models/retrieval HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    responses = _raw_exchange(served.rest_port, first + last)
    assert responses, "no answer"
    assert all(b"SMUGGLED" not in body for _, _, body in responses), responses
    assert len(responses) <= 2
    if method == b"GET":
        assert responses[0][0] == 200
    else:
        _assert_json_error(responses[0], 405)
    if len(responses) == 2:  # the connection stayed open: the next answer is the legitimate request's
        assert responses[1][0] == 200 and b"model_version_status" in responses[1][2]


def test_content_length_with_transfer_encoding_is_refused(served):
    data = (b"POST /v1/models/retrieval:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED)
    responses = _raw_exchange(served.rest_port, data)
    assert len(responses) == 1
    _assert_json_error(responses[0], 400)


@pytest.mark.parametrize("length", [b"-1", b"+5", b"abc", b"1e3", b"5, 5"])
def test_invalid_content_length_is_a_json_400_and_closes(served, length):
    data = b"POST /v1/models/retrieval:predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n{}"
    responses = _raw_exchange(served.rest_port, data + SMUGGLED)
    assert len(responses) == 1, responses  # closed after the error: nothing after it is parsed
    assert "Malformed HTTP request" in _assert_json_error(responses[0], 400)


@pytest.fixture(scope="module")
def small_server(model_store, tmp_path_factory):
    """retrieval with a 4 kB message limit and at most 4 rows per request."""
    base = str(tmp_path_factory.mktemp("small") / "retrieval")
    install_version(model_store["table_v1"], base, 1)
    server = make_server([ModelConfig(name="retrieval", base_path=base)], poll_interval_s=0,
                         max_message_bytes=4096, max_batch_rows=4)
    try:
        yield server
    finally:
        server.stop(grace_s=1)


def test_oversized_content_length_is_refused_before_the_body_is_read(small_server):
    with socket.create_connection(("127.0.0.1", small_server.rest_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/models/retrieval:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 300000000\r\n\r\n")
        response = _read_response(sock.makefile("rb"))  # answered with no body byte sent
    assert "exceeds the maximum message size 4096" in _assert_json_error(response, 413)


def test_oversized_chunked_body_is_refused(small_server):
    chunk = b"x" * 3000
    data = (b"POST /v1/models/retrieval:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 3 + b"0\r\n\r\n")
    responses = _raw_exchange(small_server.rest_port, data)
    assert "maximum message size 4096" in _assert_json_error(responses[0], 413)


def test_oversized_headers_are_a_json_400(served):
    data = b"GET /v1/models/retrieval HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    responses = _raw_exchange(served.rest_port, data)
    _assert_json_error(responses[0], 400)


# -- 64 concurrent clients -------------------------------------------------------------------


def test_64_concurrent_rest_clients_get_no_resets(served):
    n, per_client = 64, 3
    barrier = threading.Barrier(n, timeout=30)
    failures: list[str] = []
    answered = [0]
    lock = threading.Lock()
    body = json.dumps({"instances": ["1"]})

    def client() -> None:
        try:
            barrier.wait()  # every client connects at once
            conn = http.client.HTTPConnection("127.0.0.1", served.rest_port, timeout=30)
            for _ in range(per_client):
                conn.request("POST", "/v1/models/retrieval:predict", body=body)
                response = conn.getresponse()
                payload = response.read()
                with lock:
                    if response.status != 200:
                        failures.append(f"{response.status} {payload[:100]!r}")
                    else:
                        answered[0] += 1
            conn.close()
        except Exception as e:  # noqa: BLE001 (a reset is the failure under test)
            with lock:
                failures.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=client) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    assert answered[0] == n * per_client


# -- metrics ---------------------------------------------------------------------------------


def _metrics(server) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics", timeout=10) as r:
        return r.read().decode()


def test_metric_cardinality_is_bounded_by_the_configured_models(served):
    rng = random.Random(7)
    conn = http.client.HTTPConnection("127.0.0.1", served.rest_port, timeout=10)
    try:
        for _ in range(300):
            name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
            conn.request("POST", f"/v1/models/{name}:predict", body=b'{"instances": ["1"]}')
            response = conn.getresponse()
            response.read()
            assert response.status == 404
    finally:
        conn.close()
    text = _metrics(served)
    names = set(re.findall(r'model_name="([^"]*)"', text))
    assert names <= {"retrieval", "examples", "scann", "__unknown__"}, names
    unknown = re.search(r':tensorflow:serving:request_count_total\{API="predict",entrypoint="REST",'
                        r'model_name="__unknown__",model_version="",status="NOT_FOUND"\} (\d+)', text)
    assert unknown is not None and float(unknown.group(1)) >= 300


# -- request amplification -------------------------------------------------------------------


def _stub(server) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))


def _grpc_error(stub, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(request, timeout=10)
    return info.value.code(), info.value.details()


def test_row_limit_is_answered_before_any_work(small_server, monkeypatch):
    servable = small_server.manager.resolve("retrieval")
    calls = []
    original = servable.run
    monkeypatch.setattr(servable, "run", lambda *a, **k: (calls.append(1), original(*a, **k))[1])
    stub = _stub(small_server)
    assert stub.Predict(predict_request("retrieval", ["1", "2", "3", "4"]), timeout=10).outputs
    assert calls == [1]
    code, details = _grpc_error(stub, predict_request("retrieval", [str(i) for i in range(5)]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "--max-batch-rows=4" in details
    huge = predict_request("retrieval", ["1"])  # one value broadcast to 10^8 rows: tiny message, huge tensor
    huge.inputs[sig.USER_ID].tensor_shape.dim[0].size = 10 ** 8
    code, details = _grpc_error(stub, huge)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "--max-batch-rows=4" in details
    wide = predict_request("retrieval", ["1"])
    wide.inputs[sig.USER_ID].tensor_shape.dim.add().size = 10 ** 9
    code, details = _grpc_error(stub, wide)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "elements" in details
    conn = http.client.HTTPConnection("127.0.0.1", small_server.rest_port, timeout=10)
    for body in ({"instances": [str(i) for i in range(5)]}, {"inputs": {sig.USER_ID: [str(i) for i in range(5)]}}):
        conn.request("POST", "/v1/models/retrieval:predict", body=json.dumps(body))
        response = conn.getresponse()
        assert response.status == 400 and "--max-batch-rows=4" in json.loads(response.read())["error"]
    conn.close()
    assert calls == [1]  # the refused requests never reached the model


@pytest.mark.parametrize("dtype", [types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT, types_pb2.DT_QINT8, 999])
def test_non_value_tensors_are_invalid_argument(served, dtype):
    request = predict_request("retrieval", ["1"])
    request.inputs[sig.USER_ID].dtype = dtype
    code, details = _grpc_error(_stub(served), request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "cannot be sent in a request" in details


# -- shutdown --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_grace_caps_the_drain_and_cancels_with_unavailable(model_store, tmp_path, protocol):
    base = str(tmp_path / "retrieval")
    install_version(model_store["table_v1"], base, 1)
    server = make_server([ModelConfig(name="retrieval", base_path=base)], poll_interval_s=0)
    release = threading.Event()
    entered = threading.Event()
    servable = server.manager.resolve("retrieval")
    original = servable.run

    def stuck_run(*args, **kwargs):
        entered.set()
        release.wait(60)  # a model call that would outlive any grace period
        return original(*args, **kwargs)

    servable.run = stuck_run  # type: ignore[method-assign]
    outcome: list[object] = []

    def call() -> None:
        if protocol == "grpc":
            try:
                _stub(server).Predict(predict_request("retrieval", ["1"]), timeout=60)
                outcome.append("ok")
            except grpc.RpcError as e:
                outcome.append(e.code())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=60)
            conn.request("POST", "/v1/models/retrieval:predict", body=b'{"instances": ["1"]}')
            response = conn.getresponse()
            outcome.append((response.status, json.loads(response.read())))

    caller = threading.Thread(target=call)
    try:
        caller.start()
        assert entered.wait(20)
        stopper = threading.Thread(target=server.stop, kwargs={"grace_s": 0.5})
        stopper.start()
        stopper.join(timeout=20)
        assert not stopper.is_alive(), "stop() waited for a request past its grace period"
        caller.join(timeout=20)
        assert len(outcome) == 1
        if protocol == "grpc":
            assert outcome[0] == grpc.StatusCode.UNAVAILABLE
        else:
            status, body = outcome[0]
            assert status == 503 and "grace" in body["error"]
    finally:
        release.set()
        caller.join(timeout=10)
        server.stop(grace_s=0)


# -- loads that recover ----------------------------------------------------------------------


def test_slowly_copied_version_loads_once_its_files_are_complete(model_store, tmp_path):
    base = tmp_path / "retrieval"
    install_version(model_store["table_v1"], str(base), 1)
    server = make_server([ModelConfig(name="retrieval", base_path=str(base))], poll_interval_s=0.1,
                         max_load_retries=0, load_retry_interval_s=0.1)
    try:
        src, dst = model_store["table_v2"], base / "2"
        # The copy so far: the graph and index, a data shard cut short.
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("variables.data-*"))
        data = os.path.join("variables", "variables.data-00000-of-00001")
        full = open(os.path.join(src, data), "rb").read()
        (dst / data).write_bytes(full[: len(full) // 3])
        status = lambda: {s.version: s for s in server.manager.status("retrieval")}  # noqa: E731
        assert wait_for(lambda: 2 in status() and status()[2].state.name == "END")
        assert server.manager.available() == {"retrieval": [1]}  # the broken copy never replaces v1
        (dst / data).write_bytes(full)  # the copy completes
        assert wait_for(lambda: server.manager.available() == {"retrieval": [2]})
    finally:
        server.stop(grace_s=1)


def test_version_without_its_variables_waits_instead_of_failing(model_store, tmp_path):
    base = tmp_path / "retrieval"
    install_version(model_store["table_v1"], str(base), 1)
    server = make_server([ModelConfig(name="retrieval", base_path=str(base))], poll_interval_s=0.1)
    try:
        dst = base / "2"
        shutil.copytree(model_store["table_v2"], dst, ignore=shutil.ignore_patterns("variables.data-*"))
        assert wait_for(lambda: 2 in {s.version for s in server.manager.status("retrieval")})
        [st] = server.manager.status("retrieval", 2)
        assert st.state.name == "START" and "variables.data-00000-of-00001 is missing" in st.error.message
        shutil.copy(os.path.join(model_store["table_v2"], "variables", "variables.data-00000-of-00001"),
                    dst / "variables")
        assert wait_for(lambda: server.manager.available() == {"retrieval": [2]})
    finally:
        server.stop(grace_s=1)


# -- fuzz ------------------------------------------------------------------------------------


def _random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2 ** 65, 1.5, float("1e308"), -0.0])
    if kind == 2:
        return rng.choice(["", "1", "\ud800", "\x00", "b64", "NaN", "Infinity", "a" * 50])
    if kind == 3:
        return {"b64": rng.choice(["!!!", "AAAA", 5, None])}
    if kind == 4:
        return rng.choice([[], [[]], [[], [1]]])
    if kind in (5, 6):
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["instances", "inputs", "signature_name", "output_filter", sig.USER_ID, sig.EXCLUDE_ITEM_IDS, "x"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def _random_body(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:  # valid JSON of the wrong shape
        return json.dumps(_random_json(rng)).encode()
    if kind == 1:  # a predict body with random content
        key = rng.choice(["instances", "inputs"])
        return json.dumps({key: _random_json(rng), "signature_name": rng.choice(["", sig.EXCLUDE_SEEN, 3])}).encode()
    if kind == 2:  # broken JSON
        text = json.dumps({"instances": [_random_json(rng)]}).encode()
        cut = rng.randrange(len(text))
        return text[:cut] + bytes([rng.randrange(256)]) + text[cut + 1:]
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))  # binary noise


def test_fuzzed_rest_bodies_get_json_4xx_and_the_server_stays_healthy(served):
    rng = random.Random(1234)
    conn = http.client.HTTPConnection("127.0.0.1", served.rest_port, timeout=10)
    seen_statuses = set()
    succeeded = 0
    try:
        for i in range(300):
            body = _random_body(rng)
            path = rng.choice(["/v1/models/retrieval:predict", "/v1/models/examples:regress",
                               "/v1/models/examples:classify"])
            conn.request("POST", path, body=body)
            response = conn.getresponse()
            payload = response.read()
            if response.status == 200:  # a body that happens to be a correct call gets a real answer
                assert set(json.loads(payload)) & {"predictions", "outputs", "results"}, (i, body, payload)
                succeeded += 1
                continue
            seen_statuses.add(response.status)
            assert 400 <= response.status < 500, (i, body, response.status, payload)
            assert response.getheader("Content-Type", "").startswith("application/json"), (i, payload)
            assert isinstance(json.loads(payload)["error"], str)
    finally:
        conn.close()
    assert seen_statuses <= {400}, seen_statuses
    assert succeeded < 30  # the fuzz mostly sends malformed requests
    conn = http.client.HTTPConnection("127.0.0.1", served.rest_port, timeout=10)
    conn.request("POST", "/v1/models/retrieval:predict", body=b'{"instances": ["1"]}')
    assert conn.getresponse().status == 200
    conn.close()


def test_fuzzed_grpc_tensors_get_client_errors_and_the_server_stays_healthy(served):
    rng = random.Random(4321)
    stub = _stub(served)
    dtypes = [types_pb2.DT_STRING, types_pb2.DT_FLOAT, types_pb2.DT_INT64, types_pb2.DT_BOOL, types_pb2.DT_RESOURCE,
              types_pb2.DT_HALF, types_pb2.DT_INVALID, 77]
    client_codes = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND}
    for i in range(200):
        request = predict_request("retrieval", ["1"])
        proto = tensor_pb2.TensorProto(dtype=rng.choice(dtypes))
        for _ in range(rng.randrange(4)):
            proto.tensor_shape.dim.add().size = rng.choice([0, 1, 2, 3, 1000, -1])
        if rng.random() < 0.5:
            proto.string_val.extend([b"1", b"\xff"][: rng.randrange(3)])
        if rng.random() < 0.5:
            proto.float_val.extend([1.0] * rng.randrange(3))
        if rng.random() < 0.3:
            proto.tensor_content = bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
        alias = rng.choice([sig.USER_ID, sig.USER_ID, "nope"])
        del request.inputs[sig.USER_ID]
        request.inputs[alias].CopyFrom(proto)
        try:
            stub.Predict(request, timeout=10)
        except grpc.RpcError as e:
            assert e.code() in client_codes, (i, proto, e.code(), e.details())
    assert stub.Predict(predict_request("retrieval", ["1"]), timeout=10).outputs[sig.ITEM_IDS].string_val
    assert tf.make_ndarray(stub.Predict(predict_request("retrieval", ["2"]), timeout=10).outputs[sig.SCORES]).shape
