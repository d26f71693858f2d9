"""The built-in server on models exported by our own exporter (``python -m tfrs_lab.train retrieval``).

One tiny synthetic model is trained per export variant through the real ``tfrs_lab.train.main``:
ScaNN (version 1) and brute force (version 2, which also serves as the "re-export" for the hot
swap). Every call goes over real gRPC or REST on 127.0.0.1 with bounded loops and deadlines.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tfrs_lab.export import signatures as sig
from tfrs_lab.serving import logs, query
from tfrs_lab.serving.client import ServingClient, ServingClientError
from tfrs_lab.serving.config import BatchingParameters, ModelConfig

from serving_fixtures import install_version, make_server

K = 20  # export.k below
TINY = ["--dataset", "synthetic", "--epochs", "1",
        "--set", "data.synthetic.num_users=150", "--set", "data.synthetic.num_movies=100",
        "--set", "data.synthetic.ratings_per_user=25", "--set", "export.k=20", "--set", "export.max_exclude=20",
        "--set", "export.verify=false"]  # these tests are the verification: skip the exporter's fresh-process check
KNOWN_USERS = ["1", "2", "77", "150"]


def _train(out: Path, *extra: str) -> Path:
    from tfrs_lab.train import main

    assert main(["retrieval", *TINY, *extra, "--output-dir", str(out)]) == 0
    return out / "export" / "retrieval"


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """Export base paths: ``scann`` (holds version 1) and ``brute_force`` (holds version 2)."""
    root = tmp_path_factory.mktemp("exported")
    return {
        "scann": _train(root / "run_scann"),
        "brute_force": _train(root / "run_bf", "--set", "export.index=brute_force", "--set", "export.version=2"),
    }


@pytest.fixture(scope="module")
def server(exports):
    srv = make_server([
        ModelConfig(name="retrieval", base_path=str(exports["scann"])),
        ModelConfig(name="retrieval_bf", base_path=str(exports["brute_force"])),
    ], poll_interval_s=0)
    try:
        yield srv
    finally:
        srv.stop(grace_s=1)


def _grpc(server) -> ServingClient:
    return ServingClient(f"127.0.0.1:{server.grpc_port}", timeout_s=20, retries=0)


def _rest(server) -> ServingClient:
    return ServingClient(f"127.0.0.1:{server.rest_port}", protocol="rest", timeout_s=20, retries=0)


def _ids(array) -> list[list[str]]:
    return [[m.decode() if isinstance(m, bytes) else str(m) for m in row] for row in np.asarray(array)]


def _catalogue(exports, variant: str) -> set[str]:
    version = max(int(v) for v in os.listdir(exports[variant]) if v.isdigit())
    tsv = exports[variant] / str(version) / "assets.extra" / sig.ITEM_TITLES_FILE
    return {line.split("\t")[0] for line in tsv.read_text(encoding="utf-8").splitlines()}


# -- the exported layout is what the server expects ------------------------------------------


def test_exports_are_versioned_and_scann_needs_custom_ops(exports):
    from tfrs_lab.serving.servable import custom_ops, read_saved_model_proto

    assert sorted(os.listdir(exports["scann"])) == ["1"]
    assert sorted(os.listdir(exports["brute_force"])) == ["2"]
    scann_ops = custom_ops(read_saved_model_proto(str(exports["scann"] / "1")))
    assert any(op.startswith("Scann>") for op in scann_ops)
    assert custom_ops(read_saved_model_proto(str(exports["brute_force"] / "2"))) == set()  # stock TF Serving can load it


# -- every signature over gRPC and REST ------------------------------------------------------


@pytest.mark.parametrize("model", ["retrieval", "retrieval_bf"])
def test_metadata_lists_the_named_signatures(server, model):
    with _grpc(server) as client:
        defs = client.signature_defs(model)
    for name in (sig.SERVING_DEFAULT, sig.QUERY_FEATURES, sig.EXCLUDE_SEEN):
        assert name in defs, sorted(defs)
        assert set(defs[name]["outputs"]) == {sig.ITEM_IDS, sig.SCORES}
    assert set(defs[sig.SERVING_DEFAULT]["inputs"]) == {sig.USER_ID}
    assert set(defs[sig.EXCLUDE_SEEN]["inputs"]) == {sig.USER_ID, sig.EXCLUDE_ITEM_IDS}
    assert {sig.USER_ID, sig.TIMESTAMP, sig.HISTORY} <= set(defs[sig.QUERY_FEATURES]["inputs"])
    with _rest(server) as client:
        assert set(client.signature_defs(model)) == set(defs)


@pytest.mark.parametrize("model, variant", [("retrieval", "scann"), ("retrieval_bf", "brute_force")])
def test_serving_default_over_grpc_and_rest_agree_with_the_in_process_call(server, exports, model, variant):
    with _grpc(server) as client:
        out = client.predict(model, {sig.USER_ID: KNOWN_USERS})
    ids, scores = _ids(out[sig.ITEM_IDS]), np.asarray(out[sig.SCORES])
    assert scores.shape == (len(KNOWN_USERS), K) and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 1e-6), "scores must be sorted best first"
    catalogue = _catalogue(exports, variant)
    for row in ids:
        assert len(set(row)) == K and set(row) <= catalogue
    with _rest(server) as client:
        rest = client.predict(model, {sig.USER_ID: KNOWN_USERS})
    assert _ids(rest[sig.ITEM_IDS]) == ids
    np.testing.assert_allclose(np.asarray(rest[sig.SCORES], dtype=np.float32), scores, rtol=1e-5, atol=1e-6)
    servable = server.manager.resolve(model)
    direct = servable.signatures[sig.SERVING_DEFAULT].fn(user_id=tf.constant(KNOWN_USERS))
    assert _ids(direct[sig.ITEM_IDS].numpy()) == ids


def test_rest_row_format_on_serving_default(server):
    import urllib.request

    url = f"http://127.0.0.1:{server.rest_port}/v1/models/retrieval:predict"
    body = json.dumps({"instances": [{sig.USER_ID: "1"}, {sig.USER_ID: "2"}]}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as resp:
        predictions = json.loads(resp.read())["predictions"]
    assert len(predictions) == 2
    assert len(predictions[0][sig.ITEM_IDS]) == K and len(predictions[0][sig.SCORES]) == K
    with _grpc(server) as client:
        assert client.recommend("retrieval", ["1", "2"]) == [
            [(m, pytest.approx(s, rel=1e-5, abs=1e-6)) for m, s in zip(p[sig.ITEM_IDS], p[sig.SCORES])]
            for p in predictions
        ]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_recommend_excluding_never_returns_excluded_movies(server, protocol):
    client = _grpc(server) if protocol == "grpc" else _rest(server)
    with client:
        top = _ids(client.predict("retrieval", {sig.USER_ID: ["1", "2"]})[sig.ITEM_IDS])
        exclude = [top[0][:5], top[1][:3] + ["", ""]]  # '' pads the ragged second row
        out = client.predict("retrieval", {sig.USER_ID: ["1", "2"], sig.EXCLUDE_ITEM_IDS: exclude},
                             signature_name=sig.EXCLUDE_SEEN)
    got = _ids(out[sig.ITEM_IDS])
    assert not set(got[0]) & set(top[0][:5]) and not set(got[1]) & set(top[1][:3])
    assert got[0][: K - 5] == top[0][5:]  # the rest keeps its order
    assert got[1][: K - 3] == top[1][3:]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_client_recommend_takes_an_exclude_list(server, protocol):
    """``ServingClient.recommend(..., exclude=...)`` (what ``query --exclude`` calls): the listed
    movies never come back, for every user, and the rest keeps its order."""
    client = _grpc(server) if protocol == "grpc" else _rest(server)
    with client:
        plain = client.recommend("retrieval", ["1", "2"])
        banned = [m for m, _ in plain[0][:4]]
        got = client.recommend("retrieval", ["1", "2"], exclude=banned)
    for before, after in zip(plain, got):
        assert not {m for m, _ in after} & set(banned)
        assert [m for m, _ in after][:K - 4] == [m for m, _ in before if m not in banned][:K - 4]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_query_with_features_answers_explicit_features(server, protocol):
    inputs = {
        sig.USER_ID: ["1", "not-a-user"],
        sig.TIMESTAMP: np.array([880_000_000, 890_000_000], dtype=np.int64),
        "bucketized_user_age": np.array([25.0, 45.0], dtype=np.float32),
        "user_gender": np.array([1, 0], dtype=np.int64),
        "user_occupation_label": np.array([3, 7], dtype=np.int64),
        sig.HISTORY: [["1", "2", ""], ["", "", ""]],
    }
    client = _grpc(server) if protocol == "grpc" else _rest(server)
    with client:
        out = client.predict("retrieval", inputs, signature_name=sig.QUERY_FEATURES)
        other = client.predict("retrieval", {**inputs, sig.HISTORY: [["50", "60", "70"], ["", "", ""]]},
                               signature_name=sig.QUERY_FEATURES, output_filter=[sig.ITEM_IDS])
    assert np.asarray(out[sig.SCORES]).shape == (2, K)
    assert set(other) == {sig.ITEM_IDS}  # output_filter honoured
    assert _ids(other[sig.ITEM_IDS])[1] == _ids(out[sig.ITEM_IDS])[1]  # same features, same answer
    assert len(set(_ids(out[sig.ITEM_IDS])[0])) == K


def test_wrong_dtype_on_an_exported_signature_is_invalid_argument_and_server_keeps_serving(server):
    with _grpc(server) as client:
        with pytest.raises(ServingClientError) as e:
            client.predict("retrieval", {sig.USER_ID: np.array([1, 2], dtype=np.int64)})
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(ServingClientError) as e:
            client.predict("retrieval", {sig.USER_ID: ["1"]}, signature_name="no_such_signature")
        assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert len(client.recommend("retrieval", ["1"])[0]) == K


# -- unknown users, warm-up ------------------------------------------------------------------


@pytest.mark.parametrize("model", ["retrieval", "retrieval_bf"])
def test_unknown_users_get_the_popularity_fallback(server, model):
    with _grpc(server) as client:
        rows = client.recommend(model, ["never-seen-1", "", "1"])
        unknown, empty, known = rows
        assert [m for m, _ in unknown] == [m for m, _ in empty]  # every unknown user: the same popular list
        shares = [s for _, s in unknown]
        assert all(0 < s <= 1 for s in shares) and sum(shares) <= 1 + 1e-6  # training shares, best first
        assert shares == sorted(shares, reverse=True)
        assert [m for m, _ in known] != [m for m, _ in unknown]
        # recommend_excluding ranks the same popular list for unknown users
        first = unknown[0][0]
        out = client.predict(model, {sig.USER_ID: ["never-seen-1"], sig.EXCLUDE_ITEM_IDS: [[first]]},
                             signature_name=sig.EXCLUDE_SEEN)
        assert _ids(out[sig.ITEM_IDS])[0][: K - 1] == [m for m, _ in unknown[1:]]


def test_warmup_records_were_replayed_before_available(server, exports):
    for model, variant, version in (("retrieval", "scann", 1), ("retrieval_bf", "brute_force", 2)):
        path = exports[variant] / str(version) / "assets.extra" / sig.WARMUP_FILE
        records = sum(1 for _ in tf.data.TFRecordDataset(str(path)))
        assert records > 0
        servable = server.manager.resolve(model)
        assert servable.warmup_count == records
    with _grpc(server) as client:
        assert [s["state"] for s in client.model_status("retrieval")] == ["AVAILABLE"]
        assert client.model_status("retrieval_bf")[0]["version"] == 2


def _grpc_ok_count(server) -> float:
    import re
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/monitoring/prometheus/metrics", timeout=10) as r:
        text = r.read().decode()
    match = re.search(r':tensorflow:serving:request_count_total\{API="predict",entrypoint="GRPC",'
                      r'model_name="retrieval",model_version="1",status="OK"\} (\S+)', text)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_requests_on_exported_models(server):
    before = _grpc_ok_count(server)
    with _grpc(server) as client:
        for user in ("3", "4", "5"):
            client.recommend("retrieval", [user])
    assert _grpc_ok_count(server) == before + 3


# -- the query CLI ---------------------------------------------------------------------------


def test_query_cli_prints_titles_from_the_export(server, exports, capsys):
    base = str(exports["scann"])
    assert query.main(["--target", f"127.0.0.1:{server.grpc_port}", "--model", "retrieval", "--user-id", "42",
                       "--k", "5", "--model-dir", base]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "user 42: top 5" and len(lines) == 6
    assert all("Synthetic Movie" in line for line in lines[1:]), lines
    assert query.main(["--target", f"127.0.0.1:{server.rest_port}", "--rest", "--json", "--model", "retrieval",
                       "--user-id", "42", "--k", "3", "--model-dir", base]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["user_id"] == "42" and len(answer["items"]) == 3
    assert all(m["title"].startswith("Synthetic Movie") for m in answer["items"])
    assert [m["item_id"] for m in answer["items"]] == [line.split()[1] for line in lines[1:4]]


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_explain_over_the_wire_agrees_with_the_in_process_call(server, protocol):
    """3-D outputs (``because_ids`` [batch, k, 3]) travel over gRPC and REST; an unknown user gets pads."""
    users = [*KNOWN_USERS, "never-seen-1"]
    direct = server.manager.resolve("retrieval_bf").signatures[sig.EXPLAIN].fn(user_id=tf.constant(users))
    with _grpc(server) if protocol == "grpc" else _rest(server) as client:
        out = client.predict("retrieval_bf", {sig.USER_ID: users}, signature_name=sig.EXPLAIN)
        rows = client.recommend("retrieval_bf", users, explain=True)
    because = np.asarray(out[sig.BECAUSE_IDS])
    assert because.shape == (len(users), K, 3)
    assert [_ids(b) for b in because] == [_ids(b) for b in direct[sig.BECAUSE_IDS].numpy()]
    scores = np.asarray(out[sig.BECAUSE_SCORES], dtype=np.float32)  # REST sends -inf as "-Infinity"
    np.testing.assert_allclose(scores, direct[sig.BECAUSE_SCORES].numpy(), rtol=1e-5, atol=1e-6)
    assert _ids(because[-1]) == [[""] * 3] * K and np.isneginf(scores[-1]).all()
    assert [m for m, _, _ in rows[0]] == _ids(direct[sig.ITEM_IDS].numpy())[0]
    assert [m for m, _ in rows[0][0][2]] == [m for m in _ids(direct[sig.BECAUSE_IDS].numpy()[0])[0] if m]
    assert all(not because_list for _, _, because_list in rows[-1])  # no history: nothing cited


def test_query_cli_explain_prints_because_you_watched_with_titles(server, exports, capsys):
    base = str(exports["brute_force"])
    target = ["--target", f"127.0.0.1:{server.rest_port}", "--rest", "--model", "retrieval_bf"]
    assert query.main([*target, "--user-id", "1", "--k", "3", "--explain", "--model-dir", base]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "user 1: top 3" and len(lines) == 7
    assert all(line.strip().startswith("because you watched: Synthetic Movie") for line in lines[2::2]), lines
    assert query.main([*target, "--json", "--user-id", "1", "--k", "3", "--explain", "--model-dir", base]) == 0
    answer = json.loads(capsys.readouterr().out)
    direct = server.manager.resolve("retrieval_bf").signatures[sig.EXPLAIN].fn(user_id=tf.constant(["1"]))
    want = [[m for m in row if m] for row in _ids(direct[sig.BECAUSE_IDS].numpy()[0])[:3]]
    assert [[b["item_id"] for b in m["because"]] for m in answer["items"]] == want
    assert all(b["title"].startswith("Synthetic Movie") for m in answer["items"] for b in m["because"])
    cited = [b["title"] for b in answer["items"][0]["because"]]
    assert lines[2].strip() == "because you watched: " + ", ".join(cited)
    # --explain with --exclude is refused in one line, exit 2
    assert query.main([*target, "--user-id", "1", "--explain", "--exclude", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--explain" in err[0] and "--exclude" in err[0]


# -- batching and hot swap on real exports -----------------------------------------------------


def test_server_side_batching_gives_the_unbatched_answers(exports, server):
    with _grpc(server) as client:
        expected = {u: client.recommend("retrieval", [u])[0] for u in map(str, range(1, 17))}
    batched = make_server([ModelConfig(name="retrieval", base_path=str(exports["scann"]))], poll_interval_s=0,
                          batching=BatchingParameters(max_batch_size=8, batch_timeout_micros=20_000, num_batch_threads=1))
    got: dict[str, list] = {}
    errors: list[str] = []
    try:
        def ask(users: list[str]) -> None:
            with _grpc(batched) as client:
                for u in users:
                    try:
                        got[u] = client.recommend("retrieval", [u])[0]
                    except ServingClientError as e:
                        errors.append(str(e))

        threads = [threading.Thread(target=ask, args=([str(u) for u in range(i, 17, 8)],)) for i in range(1, 9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        batched.stop(grace_s=1)
    assert errors == []
    assert set(got) == set(expected)
    for u, row in expected.items():
        assert [m for m, _ in got[u]] == [m for m, _ in row], u
        np.testing.assert_allclose([s for _, s in got[u]], [s for _, s in row], rtol=1e-4, atol=1e-5)


def test_hot_swap_to_a_reexported_version_under_load_has_zero_failures(exports, tmp_path):
    base = str(tmp_path / "retrieval")
    install_version(str(exports["scann"] / "1"), base, 1)
    srv = make_server([ModelConfig(name="retrieval", base_path=base)], poll_interval_s=0.2)
    failures: list[str] = []
    versions: set[int] = set()
    answered = [0]
    stop = threading.Event()
    lock = threading.Lock()

    def worker(seed: int) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{srv.grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            for i in range(2000):  # bounded; stopped earlier by the event
                if stop.is_set():
                    return
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "retrieval"
                request.inputs[sig.USER_ID].CopyFrom(tf.make_tensor_proto([str(1 + (seed + i) % 150)], dtype=tf.string))
                try:
                    response = stub.Predict(request, timeout=20)
                except grpc.RpcError as e:
                    with lock:
                        failures.append(f"{e.code()}: {e.details()}")
                    continue
                shape = tuple(d.size for d in response.outputs[sig.ITEM_IDS].tensor_shape.dim)
                with lock:
                    if shape != (1, K):
                        failures.append(f"version {response.model_spec.version.value} answered shape {shape}")
                    versions.add(response.model_spec.version.value)
                    answered[0] += 1
        finally:
            channel.close()

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while answered[0] < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        install_version(str(exports["brute_force"] / "2"), base, 2)  # the re-exported model, atomically
        deadline = time.monotonic() + 60
        while srv.manager.available()["retrieval"] != [2] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert srv.manager.available()["retrieval"] == [2]
        after_swap = answered[0]
        deadline = time.monotonic() + 20
        while answered[0] < after_swap + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        srv.stop(grace_s=1)
    assert failures == []
    assert versions == {1, 2}
    states = {s.version: s.state.name for s in srv.manager.status("retrieval")}
    assert states == {2: "AVAILABLE", 1: "END"}


def test_debug_access_log_has_structured_fields(server, caplog):
    with caplog.at_level(logging.DEBUG, logger="tfrs_lab.serving.server"):
        with _grpc(server) as client:
            client.recommend("retrieval", ["5"])
    records = [r for r in caplog.records if getattr(r, "event", None) == "request"]
    assert records, [r.getMessage() for r in caplog.records]
    out = json.loads(logs.JsonFormatter().format(records[-1]))
    assert out["model"] == "retrieval" and out["version"] == "1" and out["api"] == "predict"
    assert out["entrypoint"] == "GRPC" and out["status"] == "OK" and out["latency_ms"] > 0


# -- the benchmark's load generator (the benchmark itself is not a test) ---------------------


def test_bench_summary_percentiles_by_hand():
    from tfrs_lab.serving.bench import summarize

    out = summarize([0.001 * i for i in range(1, 101)], errors=2, duration_s=4.0)  # 1..100 ms
    assert out["requests"] == 100 and out["errors"] == 2 and out["qps"] == 25.0
    assert out["p50_ms"] == pytest.approx(50.5) and out["p99_ms"] == pytest.approx(99.01)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_bench_load_generator_runs_against_an_exported_model(server, protocol):
    from tfrs_lab.serving.bench import make_payloads, run_load

    grpc_payloads, rest_payloads = make_payloads("retrieval", KNOWN_USERS)
    port = server.grpc_port if protocol == "grpc" else server.rest_port
    result = run_load(protocol, f"127.0.0.1:{port}", "retrieval",
                      grpc_payloads if protocol == "grpc" else rest_payloads,
                      clients=2, processes=1, warmup_s=0.2, duration_s=0.5, timeout_s=5)
    assert result["errors"] == 0 and result["requests"] > 0, result
    assert result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    bad = make_payloads("no_such_model", ["1"])[0 if protocol == "grpc" else 1]
    failed = run_load(protocol, f"127.0.0.1:{port}", "no_such_model", bad,
                      clients=1, processes=1, warmup_s=0.0, duration_s=0.3, timeout_s=5)
    assert failed["requests"] == 0 and failed["errors"] > 0  # errors are counted, not timed
