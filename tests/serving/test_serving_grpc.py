"""Real gRPC calls against the built-in server: every RPC and the bad-input cases."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tfrs_lab.export import signatures as sig

from serving_fixtures import K, predict_request


@pytest.fixture(scope="module")
def stubs(served):
    channel = grpc.insecure_channel(f"127.0.0.1:{served.grpc_port}")
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel), channel)
    channel.close()


def _err(fn, request):
    with pytest.raises(grpc.RpcError) as info:
        fn(request, timeout=10)
    return info.value.code(), info.value.details()


def test_predict_returns_named_outputs(stubs):
    predict, _, _ = stubs
    response = predict.Predict(predict_request("retrieval", ["1", "2", "unknown"]), timeout=10)
    ids = tf.make_ndarray(response.outputs[sig.ITEM_IDS])
    scores = tf.make_ndarray(response.outputs[sig.SCORES])
    assert ids.shape == (3, K) and scores.shape == (3, K) and scores.dtype == np.float32
    assert all(m.startswith(b"v1_") for m in ids.ravel())
    assert response.model_spec.name == "retrieval"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == sig.SERVING_DEFAULT


def test_predict_output_filter_version_and_label(stubs):
    predict, _, _ = stubs
    request = predict_request("retrieval", ["1"])
    request.output_filter.append(sig.SCORES)
    request.model_spec.version_label = "stable"
    response = predict.Predict(request, timeout=10)
    assert list(response.outputs) == [sig.SCORES]
    request.model_spec.version.value = 1
    assert predict.Predict(request, timeout=10).model_spec.version.value == 1


def test_predict_named_signature(stubs):
    predict, _, _ = stubs
    request = predict_request("retrieval", ["1", "2"])
    request.model_spec.signature_name = sig.EXCLUDE_SEEN
    request.inputs[sig.EXCLUDE_ITEM_IDS].CopyFrom(tf.make_tensor_proto([["a", ""], ["b", "c"]]))
    response = predict.Predict(request, timeout=10)
    assert tf.make_ndarray(response.outputs[sig.ITEM_IDS]).shape == (2, K)


@pytest.mark.parametrize(
    "mutate, code, fragment",
    [
        (lambda r: setattr(r.model_spec, "name", "nope"), grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        (lambda r: r.model_spec.version.__setattr__("value", 7), grpc.StatusCode.NOT_FOUND, "Specific(retrieval, 7)"),
        (lambda r: setattr(r.model_spec, "version_label", "canary"), grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable version label: canary"),
        (lambda r: setattr(r.model_spec, "signature_name", "nope"), grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature name: "nope" not found'),
        (lambda r: r.inputs.pop(sig.USER_ID), grpc.StatusCode.INVALID_ARGUMENT, "Missing but required: {user_id}"),
        (lambda r: r.inputs["extra"].CopyFrom(tf.make_tensor_proto([1])), grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: {extra}"),
        (lambda r: r.inputs[sig.USER_ID].CopyFrom(tf.make_tensor_proto([1.5])), grpc.StatusCode.INVALID_ARGUMENT, "Expects arg[0] to be string but float is provided"),
        (lambda r: r.inputs[sig.USER_ID].CopyFrom(tf.make_tensor_proto([["a"]])), grpc.StatusCode.INVALID_ARGUMENT, "incompatible with the signature shape [?]"),
        (lambda r: r.output_filter.append("nope"), grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias not found in signature: nope"),
    ],
    ids=["model", "version", "label", "signature", "missing", "extra", "dtype", "shape", "output_filter"],
)
def test_predict_bad_requests_keep_server_alive(stubs, mutate, code, fragment):
    predict, _, _ = stubs
    request = predict_request("retrieval", ["1"])
    mutate(request)
    got_code, details = _err(predict.Predict, request)
    assert got_code == code
    assert fragment in details
    assert predict.Predict(predict_request("retrieval", ["1"]), timeout=10).outputs[sig.ITEM_IDS].string_val


def test_swapped_input_name_message(stubs):
    predict, _, _ = stubs
    request = predict_request("retrieval", ["1"])
    request.inputs["uid"].CopyFrom(request.inputs.pop(sig.USER_ID))
    code, details = _err(predict.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "input tensor alias not found in signature: uid. Inputs expected to be in the set {user_id}."


def test_get_model_metadata(stubs):
    predict, _, _ = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "retrieval"
    response = predict.GetModelMetadata(request, timeout=10)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    default = sig_map.signature_def[sig.SERVING_DEFAULT]
    assert set(default.inputs) == {sig.USER_ID}
    assert set(default.outputs) == {sig.ITEM_IDS, sig.SCORES}
    assert default.method_name == "tensorflow/serving/predict"
    assert response.model_spec.version.value == 1
    bad = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["nope"])
    bad.model_spec.name = "retrieval"
    assert _err(predict.GetModelMetadata, bad) == (grpc.StatusCode.INVALID_ARGUMENT, "Metadata field nope is not supported")


def test_get_model_status(stubs):
    _, model, _ = stubs
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "retrieval"
    response = model.GetModelStatus(request, timeout=10)
    [status] = response.model_version_status
    assert status.version == 1
    assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0
    request.model_spec.name = "nope"
    assert _err(model.GetModelStatus, request) == (grpc.StatusCode.NOT_FOUND, "Could not find any versions of model nope")


def _examples(xs):
    request_input = []
    for x in xs:
        e = example_pb2.Example()
        e.features.feature["x"].float_list.value.append(x)
        request_input.append(e)
    return request_input


def test_regress_classify_multi_inference(stubs):
    predict, _, _ = stubs
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "examples"
    regress.model_spec.signature_name = "regress_x"
    regress.input.example_list.examples.extend(_examples([1.0, 2.5]))
    values = [r.value for r in predict.Regress(regress, timeout=10).result.regressions]
    assert values == pytest.approx([2.0, 5.0])

    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "examples"
    classify.model_spec.signature_name = "classify_x"
    classify.input.example_list.examples.extend(_examples([0.25]))
    [row] = predict.Classify(classify, timeout=10).result.classifications
    assert [(c.label, round(c.score, 4)) for c in row.classes] == [("neg", 0.75), ("pos", 0.25)]

    multi = inference_pb2.MultiInferenceRequest()
    multi.input.example_list.examples.extend(_examples([1.0]))
    for name, method in (("regress_x", "tensorflow/serving/regress"), ("classify_x", "tensorflow/serving/classify")):
        task = multi.tasks.add(method_name=method)
        task.model_spec.name = "examples"
        task.model_spec.signature_name = name
    results = predict.MultiInference(multi, timeout=10).results
    assert results[0].regression_result.regressions[0].value == pytest.approx(2.0)
    assert len(results[1].classification_result.classifications[0].classes) == 2


def test_classify_on_predict_signature_is_tf_serving_error(stubs):
    predict, _, _ = stubs
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "retrieval"
    classify.input.example_list.examples.extend(_examples([0.25]))
    code, details = _err(predict.Classify, classify)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == ("Expected classification signature method_name to be tensorflow/serving/classify. "
                       "Was: tensorflow/serving/predict")


def test_scann_model_served_and_warmed_up(stubs, served):
    predict, _, _ = stubs
    response = predict.Predict(predict_request("scann", ["1", "2"]), timeout=10)
    ids = tf.make_ndarray(response.outputs[sig.ITEM_IDS])
    scores = tf.make_ndarray(response.outputs[sig.SCORES])
    assert ids.shape == (2, K)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # sorted best first
    servable = served.manager.resolve("scann")
    assert any(op.startswith("Scann>") for op in servable.custom_op_names)
    assert servable.warmup_count == 2
    assert served.manager.resolve("retrieval").warmup_count == 3


def test_health_service(stubs):
    _, _, channel = stubs
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    assert health.Check(
        health_pb2.HealthCheckRequest(service="tensorflow.serving.PredictionService"), timeout=10
    ).status == health_pb2.HealthCheckResponse.SERVING
