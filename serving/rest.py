"""TF Serving's REST API on aiohttp's HTTP/1.1 server.

URLs (as in ``tensorflow_model_server --rest_api_port``)::

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature_def metadata
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    row or columnar predict
    POST ...:classify | ...:regress                              tf.Example-based APIs
    GET  /monitoring/prometheus/metrics                          Prometheus (monitoring config)

Every answer that is not a success is ``{"error": "<message>"}`` (JSON, never HTML): TF Serving's
HTTP status mapping for request errors, 400 for malformed requests (bad URL, version, JSON or
HTTP framing), 405 for a method the URL does not take, 413 for a body over ``--max-message-bytes``.

aiohttp parses HTTP/1.1 (llhttp, the parser of Node.js): every body is framed by its
Content-Length or chunked encoding whatever the method, so a body never runs as the next request
on a keep-alive connection; negative or malformed Content-Length, oversized request lines and
headers are refused by the parser. The event loop runs in one thread; model work runs in a thread
pool of ``max_workers``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import socket
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any, Protocol

import grpc
from aiohttp import web, web_protocol, web_server
from google.protobuf import json_format
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import classification_pb2, input_pb2, regression_pb2

from . import deadline, inference
from .errors import ServingError, invalid_argument
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .model_manager import ModelManager
from .servable import Servable
from .tensors import check_json_rows, utf8

__all__ = ["HttpError", "JSON", "json_response", "KEEPALIVE_TIMEOUT_S", "MAX_HEADER_BYTES", "MAX_HEADERS",
           "ModelServer", "parse_json", "RestFrontEnd"]

logger = logging.getLogger(__name__)

JSON = "application/json"
MAX_HEADER_BYTES = 8190  # one request line or header field (aiohttp's and most proxies' default)
MAX_HEADERS = 128
KEEPALIVE_TIMEOUT_S = 75.0
_MODEL_URL = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<suffix>/metadata|:predict|:classify|:regress)?/?$"
)
_POST_SUFFIXES = (":predict", ":classify", ":regress")


class ModelServer(Protocol):
    """What the REST front end needs of the server (``server.ModelServer``)."""

    options: Any  # server.ServerOptions
    metrics: Metrics
    manager: ModelManager

    def handle(self, api: str, entrypoint: str, model: str, fn: Callable[[], tuple[Any, Servable | None]]) -> Any:
        """Run one request with metrics and error mapping."""


class HttpError(Exception):
    """An HTTP-level refusal (405, 413) answered as ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def json_response(status: int, body: Any, *, close: bool = False, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response (NaN/Infinity allowed, as TF Serving writes them)."""
    text = json.dumps(body, separators=(",", ":"), allow_nan=True)
    response = web.Response(status=status, text=text, content_type=JSON, headers=headers)
    if close:
        response.force_close()
    return response


class _JsonErrorHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler, answering HTTP framing errors as JSON instead of text."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            logger.error("HTTP handler error from %s", getattr(request, "remote", "?"), exc_info=exc)
        else:
            logger.debug("bad HTTP request from %s: %s", getattr(request, "remote", "?"), message or exc)
        text = (message or (str(exc) if exc else "")).strip().split("\n", 1)[0] or HTTPStatus(status).phrase
        return json_response(status, {"error": f"Malformed HTTP request: {text}" if status == 400 else text}, close=True)


class _JsonErrorServer(web_server.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class RestFrontEnd:
    """The REST API of ``model_server`` on an already bound listening socket.

    :meth:`start` runs an event loop in a background thread; :meth:`stop` refuses new requests,
    waits up to ``grace_s`` for in-flight ones, then answers the rest UNAVAILABLE (503).
    """

    def __init__(self, model_server: ModelServer, sock: socket.socket,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._ms = model_server
        self._sock = sock
        self._ssl = ssl_context
        self.port: int = sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._pool = ThreadPoolExecutor(max_workers=model_server.options.max_workers, thread_name_prefix="rest")
        self._thread = threading.Thread(target=self._run, name="rest", daemon=True)
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._inflight: set[asyncio.Future[Any]] = set()
        self._idle = asyncio.Event()  # set while no request runs in the pool (the drain waits on it)
        self._idle.set()
        self._draining = False
        self._aborting = False
        self._runner: web.ServerRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start serving; raises if the server cannot start."""
        self._thread.start()
        self._ready.wait(30)
        if self._startup_error is not None:
            raise self._startup_error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._setup())
        except Exception as e:  # reported to start()
            self._startup_error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _setup(self) -> None:
        server = _JsonErrorServer(
            self._handle,
            max_line_size=MAX_HEADER_BYTES, max_field_size=MAX_HEADER_BYTES, max_headers=MAX_HEADERS,
            keepalive_timeout=KEEPALIVE_TIMEOUT_S, lingering_time=1.0, access_log=None,
        )
        self._runner = web.ServerRunner(server, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.SockSite(self._runner, self._sock, ssl_context=self._ssl,
                            backlog=self._ms.options.listen_backlog)
        await site.start()

    def stop(self, grace_s: float) -> None:
        """Drain for up to ``grace_s``, cancel what is left with 503, close every connection."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(grace_s), self._loop)
        try:
            future.result(timeout=grace_s + 5)
        except Exception:  # noqa: BLE001 (shutdown must go on; the loop is stopped below)
            logger.exception("REST shutdown did not finish cleanly")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _shutdown(self, grace_s: float) -> None:
        self._draining = True
        assert self._runner is not None
        for site in list(self._runner.sites):
            await site.stop()  # stop accepting connections; keep-alive ones get 503 + close
        if not await self._wait_idle(grace_s):
            logger.warning("REST drain: %d request(s) still running after %.1fs; answering UNAVAILABLE",
                           len(self._inflight), grace_s)
            self._aborting = True
            for future in list(self._inflight):
                future.cancel()
            await self._wait_idle(1.0)  # the handlers turn the cancellation into their 503s
        await self._runner.cleanup()

    async def _wait_idle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for the in-flight requests to finish; True when none is left."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except asyncio.TimeoutError:
            return False
        return True

    # -- requests ----------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if self._draining:
            return json_response(503, {"error": "Server is shutting down; retry on another replica"}, close=True)
        try:
            work = self._route(request.method, request.path)
            body = await self._read_body(request)
            return await self._run_in_pool(work, body)
        except ServingError as e:
            return json_response(e.http_status, {"error": e.message})
        except HttpError as e:
            return json_response(e.status, {"error": e.message}, headers=e.headers, close=e.status == 413)

    async def _run_in_pool(self, work: Callable[[bytes], tuple[int, Any, str]], body: bytes) -> web.StreamResponse:
        timeout_s = self._ms.options.rest_timeout_s

        def call() -> tuple[int, Any, str]:
            with deadline.scope(timeout_s):
                return work(body)

        future = self._loop.run_in_executor(self._pool, call)
        self._inflight.add(future)
        self._idle.clear()
        try:
            status, payload, content_type = await future
        except asyncio.CancelledError:
            if not self._aborting:
                raise
            raise ServingError(grpc.StatusCode.UNAVAILABLE,
                               "Server shut down before the request finished (--grace-seconds passed); retry") from None
        finally:
            self._inflight.discard(future)
            if not self._inflight:
                self._idle.set()
        if content_type == JSON:
            return json_response(status, payload)
        return web.Response(status=status, body=payload, headers={"Content-Type": content_type})

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        """The whole body, refused (413) past ``--max-message-bytes`` before it is buffered."""
        limit = self._ms.options.max_message_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise HttpError(413, f"Request body of {length} bytes exceeds the maximum message size {limit}; "
                                 "split the batch or raise --max-message-bytes")
        chunks, total = [], 0
        while True:
            chunk = await request.content.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise HttpError(413, f"Request body exceeds the maximum message size {limit}; "
                                     "split the batch or raise --max-message-bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _route(self, method: str, path: str) -> Callable[[bytes], tuple[int, Any, str]]:
        """The work for ``method path``; raises 400/404/405 for URLs and methods it does not serve."""
        monitoring = self._ms.options.monitoring
        if monitoring.enable and path == monitoring.path:
            if method != "GET":
                raise HttpError(405, f"Method {method} is not allowed on {path}; use GET", {"Allow": "GET"})
            return lambda _body: (200, self._ms.metrics.render(), METRICS_CONTENT_TYPE)
        m = _MODEL_URL.match(path)
        if m is None:
            if path.startswith("/v1/"):
                raise invalid_argument(f"Malformed request: {method} {path}")
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Not found: {path}; the REST API lives under /v1/models/<name>")
        name, version_text, label, suffix = m.group("name"), m.group("version"), m.group("label"), m.group("suffix")
        version: int | None = None
        if version_text is not None:
            if not version_text.isdigit() or not version_text.isascii() or int(version_text) < 1 \
                    or int(version_text) >= 2 ** 63:
                raise invalid_argument(
                    f"Malformed request: {method} {path}: version must be a positive integer, got {version_text!r}")
            version = int(version_text)
        allowed = "POST" if suffix in _POST_SUFFIXES else "GET"
        if method != allowed:
            raise HttpError(405, f"Method {method} is not allowed on {path}; use {allowed}", {"Allow": allowed})
        if suffix is None:
            return lambda _body: (200, self._status(name, version, label), JSON)
        if suffix == "/metadata":
            return lambda _body: (200, self._metadata(name, version, label), JSON)
        api = suffix[1:]
        return lambda body: (200, self._ms.handle(api, "REST", name,
                                                  lambda: self._infer(api, name, version, label, body)), JSON)

    def _status(self, name: str, version: int | None, label: str | None) -> dict[str, Any]:
        def fn() -> tuple[dict[str, Any], None]:
            statuses = []
            for st in self._ms.manager.status(name, version, label):
                statuses.append({
                    "version": str(st.version),
                    "state": st.state.name,
                    "status": {
                        "error_code": st.error.code.name if st.error else "OK",
                        "error_message": st.error.message if st.error else "",
                    },
                })
            return {"model_version_status": statuses}, None

        return self._ms.handle("get_model_status", "REST", name, fn)

    def _metadata(self, name: str, version: int | None, label: str | None) -> dict[str, Any]:
        def fn() -> tuple[dict[str, Any], Servable]:
            s = self._ms.manager.resolve(name, version, label)
            sig = json_format.MessageToDict(s.signature_def_map, preserving_proto_field_name=True)
            return {
                "model_spec": {"name": s.name, "signature_name": "", "version": str(s.version)},
                "metadata": {"signature_def": sig},
            }, s

        return self._ms.handle("get_model_metadata", "REST", name, fn)

    def _infer(self, api: str, name: str, version: int | None, label: str | None, raw: bytes) -> tuple[Any, Servable]:
        deadline.check("before the request was processed")
        body = parse_json(raw)
        max_rows = self._ms.options.max_batch_rows
        check_json_rows(body, "examples" if api != "predict" else None, max_rows)
        servable = self._ms.manager.resolve(name, version, label)
        if api == "predict":
            return inference.predict_json(servable, body), servable
        return _example_api(api, servable, body), servable


def parse_json(raw: bytes) -> Any:
    """Parse a request body, answering INVALID_ARGUMENT (never INTERNAL) for anything malformed."""
    if not raw.strip():
        raise invalid_argument("JSON Parse error: The document is empty. at offset: 0")
    try:
        return json.loads(raw)
    except UnicodeDecodeError as e:
        raise invalid_argument(f"JSON Parse error: Invalid encoding in string. at offset: {e.start}") from e
    except json.JSONDecodeError as e:
        raise invalid_argument(f"JSON Parse error: {e.msg}. at offset: {e.pos}") from e
    except RecursionError as e:
        raise invalid_argument("JSON Parse error: the document nests too deeply; send at most a few hundred levels") from e


# -- :classify / :regress ---------------------------------------------------------------------------


def _feature(key: str, value: Any) -> feature_pb2.Feature:
    values = value if isinstance(value, list) else [value]
    feature = feature_pb2.Feature()
    if all(isinstance(v, bool) or isinstance(v, int) for v in values) and values:
        if any(not -2 ** 63 <= int(v) < 2 ** 63 for v in values):
            raise invalid_argument(f"Feature {key}: integer out of the int64 range")
        feature.int64_list.value.extend(int(v) for v in values)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and values:
        feature.float_list.value.extend(float(v) for v in values)
    elif all(isinstance(v, (str, dict)) for v in values):
        out = []
        for v in values:
            if isinstance(v, dict):
                if set(v) != {"b64"} or not isinstance(v["b64"], str):
                    raise invalid_argument(f"Feature {key}: objects must be {{\"b64\": \"<base64>\"}}")
                try:
                    out.append(base64.b64decode(v["b64"], validate=True))
                except ValueError as e:
                    raise invalid_argument(f"Feature {key}: invalid base64") from e
            else:
                out.append(utf8(v, f"feature {key}"))
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
    if not isinstance(signature_name, str):
        raise invalid_argument("'signature_name' must be a string")
    if api == "classify":
        request = classification_pb2.ClassificationRequest(input=inp)
        request.model_spec.signature_name = signature_name
        result = inference.classify(servable, request).result
        return {"results": [[[c.label, c.score] for c in row.classes] for row in result.classifications]}
    request = regression_pb2.RegressionRequest(input=inp)
    request.model_spec.signature_name = signature_name
    result = inference.regress(servable, request).result
    return {"results": [r.value for r in result.regressions]}
