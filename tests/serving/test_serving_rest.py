"""Real HTTP calls against the built-in server's REST API (TF Serving URLs, formats and errors)."""

from __future__ import annotations

import base64
import http.client
import json

import pytest

from tfrs_lab.export import signatures as sig

from serving_fixtures import K


def _call(server, method, path, body=None, raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
        ctype = resp.getheader("Content-Type", "")
        return resp.status, (json.loads(payload) if "json" in ctype else payload.decode())
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/v1/models/retrieval", "/v1/models/retrieval/versions/1", "/v1/models/retrieval/labels/stable"])
def test_model_status_urls(served, path):
    status, body = _call(served, "GET", path)
    assert status == 200
    assert body == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]}


def test_metadata(served):
    status, body = _call(served, "GET", "/v1/models/retrieval/metadata")
    assert status == 200
    assert body["model_spec"] == {"name": "retrieval", "signature_name": "", "version": "1"}
    default = body["metadata"]["signature_def"]["signature_def"][sig.SERVING_DEFAULT]
    assert default["inputs"][sig.USER_ID]["dtype"] == "DT_STRING"
    assert set(default["outputs"]) == {sig.ITEM_IDS, sig.SCORES}


def test_predict_row_format(served):
    status, body = _call(served, "POST", "/v1/models/retrieval:predict", {"instances": ["1", {"b64": base64.b64encode(b"2").decode()}]})
    assert status == 200, body
    rows = body["predictions"]
    assert len(rows) == 2 and set(rows[0]) == {sig.ITEM_IDS, sig.SCORES}
    assert len(rows[0][sig.ITEM_IDS]) == K and rows[0][sig.ITEM_IDS][0].startswith("v1_")
    # {"b64": "Mg=="} is the same user as "2".
    _, same = _call(served, "POST", "/v1/models/retrieval:predict", {"instances": [{"user_id": "2"}]})
    assert same["predictions"][0] == rows[1]


def test_predict_columnar_format_with_filter_and_signature(served):
    status, body = _call(served, "POST", "/v1/models/retrieval/versions/1:predict",
                         {"inputs": {"user_id": ["1", "2"]}, "output_filter": [sig.SCORES]})
    assert status == 200, body
    assert len(body["outputs"]) == 2 and len(body["outputs"][0]) == K  # single output -> bare value
    status, body = _call(served, "POST", "/v1/models/retrieval/labels/stable:predict", {
        "signature_name": sig.EXCLUDE_SEEN,
        "inputs": {sig.USER_ID: ["1"], sig.EXCLUDE_ITEM_IDS: [["v1_m0", ""]]},
    })
    assert status == 200, body
    assert set(body["outputs"]) == {sig.ITEM_IDS, sig.SCORES}


def test_scann_model_over_rest(served):
    status, body = _call(served, "POST", "/v1/models/scann:predict", {"instances": ["3"]})
    assert status == 200 and len(body["predictions"][0][sig.ITEM_IDS]) == K


@pytest.mark.parametrize(
    "method, path, payload, http_status, fragment",
    [
        ("POST", "/v1/models/nope:predict", {"instances": ["1"]}, 404, "Servable not found for request: Latest(nope)"),
        ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("GET", "/v1/models/retrieval/versions/9", None, 404, "Could not find version 9 of model retrieval"),
        ("POST", "/v1/models/retrieval/versions/9:predict", {"instances": ["1"]}, 404, "Specific(retrieval, 9)"),
        ("POST", "/v1/models/retrieval/labels/canary:predict", {"instances": ["1"]}, 400, "Unrecognized servable version label: canary"),
        ("POST", "/v1/models/retrieval:predict", {"signature_name": "nope", "instances": ["1"]}, 400, 'Serving signature name: "nope" not found'),
        ("POST", "/v1/models/retrieval:predict", {"instances": [{"uid": "1"}]}, 400, "input tensor alias not found in signature: uid"),
        ("POST", "/v1/models/retrieval:predict", {"inputs": {"user_id": ["1"], "x": [1]}}, 400, "Sent extra: {x}"),
        ("POST", "/v1/models/retrieval:predict", {"instances": [1.5]}, 400, "JSON Value: 1.5 Type: Number is not of expected type: string"),
        ("POST", "/v1/models/retrieval:predict", {"instances": [["a"], ["b", "c"]]}, 400, "ragged"),
        ("POST", "/v1/models/retrieval:predict", {"nothing": 1}, 400, "Unknown key(s) in request: nothing"),
        ("POST", "/v1/models/retrieval:predict", {}, 400, "Missing 'inputs' or 'instances' key"),
        ("POST", "/v1/models/retrieval:predict", {"instances": ["1"], "inputs": ["1"]}, 400, "Not both 'instances' and 'inputs'"),
        ("POST", "/v1/models/retrieval:predict", b"{not json", 400, "JSON Parse error"),
        ("POST", "/v1/models/retrieval:predict", b"", 400, "JSON Parse error: The document is empty"),
        ("GET", "/v1/nothing/here", None, 400, "Malformed request: GET /v1/nothing/here"),
        ("POST", "/v1/models/retrieval:explode", {"instances": ["1"]}, 400, "Malformed request"),
        ("GET", "/v1/models/retrieval/versions/abc", None, 400, "version must be a positive integer, got 'abc'"),
        ("POST", "/v1/models/retrieval/versions/-1:predict", {"instances": ["1"]}, 400, "version must be a positive integer"),
        ("POST", "/v1/models/retrieval/versions/0:predict", {"instances": ["1"]}, 400, "version must be a positive integer"),
        ("GET", "/elsewhere", None, 404, "Not found: /elsewhere"),
        ("PUT", "/v1/models/retrieval", {"x": 1}, 405, "Method PUT is not allowed on /v1/models/retrieval; use GET"),
        ("DELETE", "/v1/models/retrieval:predict", None, 405, "use POST"),
        ("GET", "/v1/models/retrieval:predict", None, 405, "use POST"),
        ("BREW", "/v1/models/retrieval", None, 400, "Malformed HTTP request: Invalid method"),  # llhttp refuses it
        ("POST", "/monitoring/prometheus/metrics", None, 405, "use GET"),
        ("POST", "/v1/models/retrieval:predict", b'{"instances": ["\\ud800"]}', 400, "lone surrogate"),
        ("POST", "/v1/models/retrieval:predict", b"[" * 100_000 + b"]" * 100_000, 400, "nests too deeply"),
        ("POST", "/v1/models/retrieval:predict", b'{"instances": [' + b"[" * 70 + b'"a"' + b"]" * 70 + b"]}", 400,
         "nests deeper than 64"),
        ("POST", "/v1/models/retrieval:predict", b"\xff\xfe", 400, "JSON Parse error"),
        ("POST", "/v1/models/examples:regress", {"examples": [{"x": "\ud800"}]}, 400, "lone surrogate"),
        ("POST", "/v1/models/examples:regress", {"examples": [{"x": 2 ** 70}]}, 400, "int64 range"),
    ],
)
def test_bad_requests_answer_tf_serving_errors(served, method, path, payload, http_status, fragment):
    raw = payload if isinstance(payload, bytes) else None
    status, body = _call(served, method, path, None if raw is not None else payload, raw=raw)
    assert status == http_status, body
    assert fragment in body["error"]
    ok, _ = _call(served, "POST", "/v1/models/retrieval:predict", {"instances": ["1"]})
    assert ok == 200


def test_classify_and_regress_over_rest(served):
    status, body = _call(served, "POST", "/v1/models/examples:regress", {"signature_name": "regress_x", "examples": [{"x": 1.5}]})
    assert status == 200 and body["results"] == pytest.approx([3.0])
    status, body = _call(served, "POST", "/v1/models/examples:classify", {"signature_name": "classify_x", "examples": [{"x": 0.5}]})
    assert status == 200 and [c[0] for c in body["results"][0]] == ["neg", "pos"]


def test_prometheus_metrics(served):
    _call(served, "POST", "/v1/models/retrieval:predict", {"instances": ["1"]})
    _call(served, "POST", "/v1/models/nope:predict", {"instances": ["1"]})
    status, text = _call(served, "GET", "/monitoring/prometheus/metrics")
    assert status == 200
    assert (':tensorflow:serving:request_count_total{API="predict",entrypoint="REST",model_name="retrieval",'
            'model_version="1",status="OK"}') in text
    assert 'model_name="__unknown__",model_version="",status="NOT_FOUND"' in text
    assert 'nope' not in text  # unknown model names never become label values
    assert ':tensorflow:serving:request_latency_bucket{API="predict",entrypoint="REST",le="+Inf",model_name="retrieval"}' in text
