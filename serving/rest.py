"""TF Serving's REST API on the standard library's ``ThreadingHTTPServer``.

URLs (as in ``tensorflow_model_server --rest_api_port``)::

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature_def metadata
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    row or columnar predict
    POST ...:classify | ...:regress                              tf.Example-based APIs
    GET  /monitoring/prometheus/metrics                          Prometheus (monitoring config)

Errors answer ``{"error": "<TF Serving message>"}`` with TF Serving's HTTP status mapping.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import json_format
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from . import deadline, inference
from .errors import ServingError, invalid_argument
from .servable import Servable

if TYPE_CHECKING:
    from .server import ModelServer

logger = logging.getLogger(__name__)

_MODEL_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<suffix>/metadata|:predict|:classify|:regress)?/?$"
)


class RestServer(ThreadingHTTPServer):
    """HTTP server that counts in-flight requests so shutdown can drain them."""

    daemon_threads = True  # idle keep-alive connections must not block shutdown
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], model_server: "ModelServer") -> None:
        super().__init__(address, RestHandler)
        self.model_server = model_server
        self._inflight = 0
        self._cond = threading.Condition()
        self.draining = False

    def enter(self) -> bool:
        """Register a request; False when draining (the request is refused)."""
        with self._cond:
            if self.draining:
                return False
            self._inflight += 1
            return True

    def leave(self) -> None:
        """A request finished."""
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()

    def drain(self, grace_s: float) -> None:
        """Refuse new requests and wait (up to ``grace_s``) for in-flight ones."""
        deadline = time.monotonic() + grace_s
        with self._cond:
            self.draining = True
            while self._inflight > 0 and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            if self._inflight:
                logger.warning("REST drain timed out with %d request(s) in flight", self._inflight)


def make_rest_server(model_server: "ModelServer", host: str, port: int) -> RestServer:
    """Bind the REST server (port 0 picks a free port)."""
    server = RestServer((host, port), model_server)
    RestHandler.timeout = model_server.options.rest_timeout_s
    return server


class RestHandler(BaseHTTPRequestHandler):
    """One HTTP request -> one TF Serving REST call."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms per keep-alive request on Linux). TF Serving sets TCP_NODELAY too.
    disable_nagle_algorithm = True
    server: RestServer
    server_version = "tfrs_lab-serving"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (BaseHTTPRequestHandler API)
        logger.debug("%s - " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # -------------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        if not self.server.enter():
            self._drain_body()
            self._send_json(503, {"error": "Server is shutting down; retry on another replica"}, close=True)
            return
        try:
            with deadline.scope(self.server.model_server.options.rest_timeout_s):
                status, body, content_type = self._route(method)
        except ServingError as e:
            status, body, content_type = e.http_status, {"error": e.message}, "application/json"
        finally:
            self.server.leave()
        if content_type == "application/json":
            self._send_json(status, body)
        else:
            self._send(status, body.encode("utf-8"), content_type)

    def _route(self, method: str) -> tuple[int, Any, str]:
        ms = self.server.model_server
        path = self.path.split("?", 1)[0]
        monitoring = ms.options.monitoring
        if method == "GET" and monitoring.enable and path == monitoring.path:
            return 200, ms.metrics.render(), "text/plain; version=0.0.4"
        m = _MODEL_URL.match(path)
        body = self._read_body() if method == "POST" else b""
        if m is None or method not in ("GET", "POST"):
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {self.path}")
        name, version_text, label, suffix = m.group("name"), m.group("version"), m.group("label"), m.group("suffix")
        version: int | None = None
        if version_text is not None:
            if not version_text.isdigit():
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {self.path}")
            version = int(version_text)
        if method == "GET" and suffix is None:
            return 200, self._status(name, version, label), "application/json"
        if method == "GET" and suffix == "/metadata":
            return 200, self._metadata(name, version, label), "application/json"
        if method == "POST" and suffix in (":predict", ":classify", ":regress"):
            api = suffix[1:]
            result = ms.handle(api, "REST", name, lambda: self._infer(api, name, version, label, body))
            return 200, result, "application/json"
        raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {method} {self.path}")

    def _status(self, name: str, version: int | None, label: str | None) -> dict[str, Any]:
        ms = self.server.model_server

        def fn() -> tuple[dict[str, Any], None]:
            statuses = []
            for st in ms.manager.status(name, version, label):
                statuses.append({
                    "version": str(st.version),
                    "state": st.state.name,
                    "status": {
                        "error_code": st.error.code.name if st.error else "OK",
                        "error_message": st.error.message if st.error else "",
                    },
                })
            return {"model_version_status": statuses}, None

        return ms.handle("get_model_status", "REST", name, fn)

    def _metadata(self, name: str, version: int | None, label: str | None) -> dict[str, Any]:
        ms = self.server.model_server

        def fn() -> tuple[dict[str, Any], Servable]:
            s = ms.manager.resolve(name, version, label)
            sig = json_format.MessageToDict(s.signature_def_map, preserving_proto_field_name=True)
            return {
                "model_spec": {"name": s.name, "signature_name": "", "version": str(s.version)},
                "metadata": {"signature_def": sig},
            }, s

        return ms.handle("get_model_metadata", "REST", name, fn)

    def _infer(self, api: str, name: str, version: int | None, label: str | None, raw: bytes) -> tuple[Any, Servable]:
        ms = self.server.model_server
        deadline.check("before the request was processed")
        body = _parse_json(raw)
        servable = ms.manager.resolve(name, version, label)
        if api == "predict":
            return inference.predict_json(servable, body), servable
        return _example_api(api, servable, body), servable

    # -- I/O -------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self.close_connection = True
                raise invalid_argument("Chunked request bodies are not supported; send Content-Length")
            return b""
        try:
            length = int(length_text)
        except ValueError as e:
            self.close_connection = True
            raise invalid_argument(f"Invalid Content-Length: {length_text!r}") from e
        limit = self.server.model_server.options.max_message_bytes
        if length > limit:
            self.close_connection = True
            raise ServingError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"Request body of {length} bytes exceeds the maximum message size {limit}; "
                "split the batch or raise --max-message-bytes",
            )
        return self.rfile.read(length)

    def _drain_body(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if 0 < length <= self.server.model_server.options.max_message_bytes:
            self.rfile.read(length)

    def _send_json(self, status: int, body: Any, close: bool = False) -> None:
        data = json.dumps(body, separators=(",", ":"), allow_nan=True).encode("utf-8")
        self._send(status, data, "application/json", close)

    def _send(self, status: int, data: bytes, content_type: str, close: bool = False) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if close or self.close_connection:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("client went away before the response was written")
            self.close_connection = True


def _parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise invalid_argument("JSON Parse error: The document is empty. at offset: 0")
    try:
        return json.loads(raw)
    except UnicodeDecodeError as e:
        raise invalid_argument(f"JSON Parse error: Invalid encoding in string. at offset: {e.start}") from e
    except json.JSONDecodeError as e:
        raise invalid_argument(f"JSON Parse error: {e.msg}. at offset: {e.pos}") from e


# -- :classify / :regress ---------------------------------------------------------------------------


def _feature(key: str, value: Any) -> feature_pb2.Feature:
    values = value if isinstance(value, list) else [value]
    feature = feature_pb2.Feature()
    if all(isinstance(v, bool) or isinstance(v, int) for v in values) and values:
        feature.int64_list.value.extend(int(v) for v in values)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and values:
        feature.float_list.value.extend(float(v) for v in values)
    elif all(isinstance(v, (str, dict)) for v in values):
        out = []
        for v in values:
            if isinstance(v, dict):
                if set(v) != {"b64"}:
                    raise invalid_argument(f"Feature {key}: objects must be {{\"b64\": ...}}")
                out.append(base64.b64decode(v["b64"]))
            else:
                out.append(v.encode("utf-8"))
        feature.bytes_list.value.extend(out)
    else:
        raise invalid_argument(f"Feature {key} has mixed or unsupported value types: {json.dumps(value)[:100]}")
    return feature


def _example(obj: Any) -> example_pb2.Example:
    if not isinstance(obj, dict):
        raise invalid_argument("Each entry of 'examples' (and 'context') must be a JSON object of features")
    example = example_pb2.Example()
    for key, value in obj.items():
        example.features.feature[key].CopyFrom(_feature(key, value))
    return example


def _example_api(api: str, servable: Servable, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("examples"), list):
        raise invalid_argument("Request body must be a JSON object with an 'examples' list")
    inp = input_pb2.Input()
    examples = [_example(e) for e in body["examples"]]
    if "context" in body:
        inp.example_list_with_context.context.CopyFrom(_example(body["context"]))
        inp.example_list_with_context.examples.extend(examples)
    else:
        inp.example_list.examples.extend(examples)
    signature_name = body.get("signature_name", "")
    if api == "classify":
        request = classification_pb2.ClassificationRequest(input=inp)
        request.model_spec.signature_name = signature_name
        result = inference.classify(servable, request).result
        return {"results": [[[c.label, c.score] for c in row.classes] for row in result.classifications]}
    request = regression_pb2.RegressionRequest(input=inp)
    request.model_spec.signature_name = signature_name
    result = inference.regress(servable, request).result
    return {"results": [r.value for r in result.regressions]}
