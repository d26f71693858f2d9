"""Model management: hot swap under load, broken versions, disappearing dirs, reload, batching, drain."""

from __future__ import annotations

import os
import shutil
import threading
import time

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc

from tfrs_lab.export import signatures as sig
from tfrs_lab.serving.client import ServingClient, ServingClientError
from tfrs_lab.serving.config import BatchingParameters, ModelConfig
from tfrs_lab.serving.errors import ServingError

from serving_fixtures import install_version, make_server, predict_request, wait_for


def _served_version(client: ServingClient, model: str = "retrieval") -> str:
    return client.recommend(model, ["1"])[0][0][0].split("_")[0]


def test_hot_swap_under_load_has_zero_failures(model_store, tmp_path):
    base = str(tmp_path / "retrieval")
    install_version(model_store["table_v1"], base, 1)
    server = make_server([ModelConfig(name="retrieval", base_path=base)])
    failures: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def worker() -> None:
        with ServingClient(f"127.0.0.1:{server.grpc_port}", timeout_s=10, retries=0) as client:
            for _ in range(400):  # bounded
                if stop.is_set():
                    return
                try:
                    seen.add(_served_version(client))
                except ServingClientError as e:
                    failures.append(str(e))

    try:
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        install_version(model_store["table_v2"], base, 2)
        assert wait_for(lambda: server.manager.available()["retrieval"] == [2])
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert failures == []
        assert seen == {"v1", "v2"}
        states = {s.version: s.state.name for s in server.manager.status("retrieval")}
        assert states == {2: "AVAILABLE", 1: "END"}
    finally:
        stop.set()
        server.stop(grace_s=1)


def test_broken_version_never_replaces_healthy_one(model_store, tmp_path):
    base = str(tmp_path / "retrieval")
    install_version(model_store["table_v1"], base, 1)
    server = make_server([ModelConfig(name="retrieval", base_path=base)])
    try:
        broken = os.path.join(base, "3")
        os.makedirs(os.path.join(broken, "variables"))
        for name in ("saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001"):
            with open(os.path.join(broken, name), "wb") as f:  # every file present, none valid
                f.write(b"this is not a SavedModel")
        assert wait_for(lambda: server.manager.status("retrieval", 3)[0].state.name == "END"
                         if 3 in {s.version for s in server.manager.status("retrieval")} else False)
        with ServingClient(f"127.0.0.1:{server.grpc_port}") as client:
            assert _served_version(client) == "v1"
            by_version = {s["version"]: s for s in client.model_status("retrieval")}
        assert by_version[1]["state"] == "AVAILABLE"
        assert by_version[3]["state"] == "END"
        assert by_version[3]["error_code"] != "OK" and "saved_model.pb" in by_version[3]["error_message"]
        # A fixed version 3 (rewritten in place) is retried and takes over.
        shutil.rmtree(broken)
        install_version(model_store["table_v2"], base, 3)
        assert wait_for(lambda: server.manager.available()["retrieval"] == [3])
    finally:
        server.stop(grace_s=1)


def test_failed_warmup_fails_the_load(model_store, tmp_path):
    base = str(tmp_path / "retrieval")
    version_dir = install_version(model_store["table_v1"], base, 1)
    with tf.io.TFRecordWriter(os.path.join(version_dir, "assets.extra", sig.WARMUP_FILE)) as writer:
        writer.write(b"garbage")
    server = make_server([ModelConfig(name="retrieval", base_path=base)], poll_interval_s=0)
    try:
        [status] = server.manager.status("retrieval")
        assert status.state.name == "END" and "Malformed warm-up record" in status.error.message
    finally:
        server.stop(grace_s=1)


def test_model_dir_disappearing_keeps_current_version(model_store, tmp_path):
    base = str(tmp_path / "retrieval")
    install_version(model_store["table_v1"], base, 1)
    server = make_server([ModelConfig(name="retrieval", base_path=base)])
    try:
        shutil.rmtree(base)
        time.sleep(0.6)  # several polls
        with ServingClient(f"127.0.0.1:{server.grpc_port}") as client:
            assert _served_version(client) == "v1"
    finally:
        server.stop(grace_s=1)


def test_version_policies_and_reload_config(model_store, tmp_path):
    base = str(tmp_path / "retrieval")
    install_version(model_store["table_v1"], base, 1)
    install_version(model_store["table_v2"], base, 2)
    server = make_server([ModelConfig(name="retrieval", base_path=base, policy="all")], poll_interval_s=0,
                         enable_model_management=True)
    try:
        assert server.manager.available() == {"retrieval": [1, 2]}
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        model_stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = model_management_pb2.ReloadConfigRequest()
        cfg = request.config.model_config_list.config.add(name="pinned", base_path=base, model_platform="tensorflow")
        cfg.model_version_policy.specific.versions.append(1)
        response = model_stub.HandleReloadConfigRequest(request, timeout=30)
        assert response.status.error_code == 0
        assert server.manager.available() == {"pinned": [1]}  # replace semantics: retrieval is gone
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            predict.Predict(predict_request("retrieval", ["1"]), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert predict.Predict(predict_request("pinned", ["1"]), timeout=10).model_spec.version.value == 1
        channel.close()
    finally:
        server.stop(grace_s=1)


def _reload_request(*configs: tuple[str, str]) -> model_management_pb2.ReloadConfigRequest:
    request = model_management_pb2.ReloadConfigRequest()
    for name, base in configs:
        request.config.model_config_list.config.add(name=name, base_path=base, model_platform="tensorflow")
    return request


def test_model_management_is_off_by_default(model_store, tmp_path):
    base = str(tmp_path / "retrieval")
    install_version(model_store["table_v1"], base, 1)
    server = make_server([ModelConfig(name="retrieval", base_path=base)], poll_interval_s=0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.HandleReloadConfigRequest(_reload_request(("other", base)), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "--enable-model-management" in info.value.details()
        assert server.manager.available() == {"retrieval": [1]}
    finally:
        server.stop(grace_s=1)


@pytest.mark.parametrize("bad", ["duplicate_names", "empty_name", "platform"])
def test_rejected_reload_changes_nothing(model_store, tmp_path, bad):
    base = str(tmp_path / "retrieval")
    install_version(model_store["table_v1"], base, 1)
    server = make_server([ModelConfig(name="retrieval", base_path=base)], poll_interval_s=0,
                         enable_model_management=True)
    try:
        if bad == "duplicate_names":
            request = _reload_request(("pinned", base), ("pinned", base))
        elif bad == "empty_name":
            request = _reload_request(("pinned", base), ("", base))
        else:
            request = _reload_request(("pinned", base))
            request.config.model_config_list.config[0].model_platform = "pytorch"
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.HandleReloadConfigRequest(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert predict.Predict(predict_request("retrieval", ["1"]), timeout=10).model_spec.version.value == 1
        assert server.manager.available() == {"retrieval": [1]}
    finally:
        server.stop(grace_s=1)


def test_batching_merges_concurrent_requests_and_rejects_oversized(model_store, tmp_path):
    base = str(tmp_path / "retrieval")
    install_version(model_store["table_v1"], base, 1)
    params = BatchingParameters(max_batch_size=8, batch_timeout_micros=2000, num_batch_threads=1)
    server = make_server([ModelConfig(name="retrieval", base_path=base)], batching=params, poll_interval_s=0)
    errors: list[str] = []
    try:
        with ServingClient(f"127.0.0.1:{server.grpc_port}", retries=0) as reference:
            expected = {u: reference.recommend("retrieval", [u])[0] for u in ("1", "2", "3")}

        def worker(user: str) -> None:
            with ServingClient(f"127.0.0.1:{server.grpc_port}", retries=0) as client:
                for _ in range(20):
                    if client.recommend("retrieval", [user])[0] != expected[user]:
                        errors.append(user)

        threads = [threading.Thread(target=worker, args=(u,)) for u in ("1", "2", "3", "1")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        with ServingClient(f"127.0.0.1:{server.grpc_port}", retries=0) as client:
            with pytest.raises(ServingClientError) as info:
                client.recommend("retrieval", [str(i) for i in range(9)])
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "Task size 9 is larger than maximum input batch size 8" in info.value.message
    finally:
        server.stop(grace_s=1)


def test_stop_drains_in_flight_requests(model_store, tmp_path):
    base = str(tmp_path / "retrieval")
    install_version(model_store["table_v1"], base, 1)
    server = make_server([ModelConfig(name="retrieval", base_path=base)], poll_interval_s=0)
    servable = server.manager.resolve("retrieval")
    original = servable.run
    results: list[object] = []

    def slow_run(*args, **kwargs):
        time.sleep(0.5)
        return original(*args, **kwargs)

    servable.run = slow_run  # type: ignore[method-assign]
    client = ServingClient(f"127.0.0.1:{server.rest_port}", protocol="rest", retries=0)
    t = threading.Thread(target=lambda: results.append(client.recommend("retrieval", ["1"])))
    t.start()
    time.sleep(0.2)
    server.stop(grace_s=5)
    t.join(timeout=10)
    assert len(results) == 1 and len(results[0][0]) > 0


def test_deadline_drops_a_batched_request_that_ran_out_of_time(model_store, tmp_path):
    """A request whose deadline passes while it waits for its batch answers DEADLINE_EXCEEDED and is
    never run; the server keeps serving."""
    from tfrs_lab.serving import deadline

    base = str(tmp_path / "retrieval")
    install_version(model_store["table_v1"], base, 1)
    server = make_server([ModelConfig(name="retrieval", base_path=base)], poll_interval_s=0,
                         batching=BatchingParameters(max_batch_size=8, batch_timeout_micros=600_000, num_batch_threads=1))
    try:
        servable = server.manager.resolve("retrieval")
        signature = servable.signature(sig.SERVING_DEFAULT)
        calls = []
        batcher = servable._batchers[sig.SERVING_DEFAULT]
        real_call = batcher._call
        batcher._call = lambda s, t: (calls.append(int(t[sig.USER_ID].shape[0])), real_call(s, t))[1]
        started = time.monotonic()
        with deadline.scope(0.1):
            with pytest.raises(ServingError) as e:
                servable.run(signature, {sig.USER_ID: tf.constant(["1"])})
        assert time.monotonic() - started < 0.5  # answered at its deadline, not after the batch timeout
        assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and "batch" in e.value.message
        with deadline.scope(0.0):
            with pytest.raises(ServingError) as e:
                servable.run(signature, {sig.USER_ID: tf.constant(["1"])})
        assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert wait_for(lambda: not batcher._queue.qsize(), 5)
        time.sleep(0.8)  # past the batch timeout: the expired task was dropped, not run
        assert calls == []
        with ServingClient(f"127.0.0.1:{server.grpc_port}", timeout_s=0.1, retries=0) as client:
            with pytest.raises(ServingClientError) as e:
                client.recommend("retrieval", ["1"])
            assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        with ServingClient(f"127.0.0.1:{server.grpc_port}", timeout_s=10, retries=0) as client:
            assert len(client.recommend("retrieval", ["1"])[0]) == 5
        assert calls == [1]
    finally:
        server.stop(grace_s=1)
