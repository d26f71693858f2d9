"""Python client for TF-Serving-protocol servers (the built-in server or ``tensorflow_model_server``).

>>> client = ServingClient("localhost:8500")                       # gRPC
>>> client = ServingClient("localhost:8501", protocol="rest")      # REST
>>> client.recommend("retrieval", ["42"], k=10)                    # [[("50", 3.1), ...]]
>>> client.rerank("ranking", ["42"], [["1", "50", "181"]])          # [[("50", 4.2), ("1", 3.9), ...]]
>>> client.recommend_from_history("sequential", [["1", "50"]], k=5)  # [[("181", 7.3), ...]]
>>> client.recommend("retrieval", ["42"], k=3, explain=True)       # [[("50", 3.1, [("181", 0.93), ...]), ...]]

Calls have a deadline (``timeout_s``) and retry on UNAVAILABLE (server starting, draining, or a
replica restart) with exponential backoff; other errors raise :class:`ServingClientError` at once.
"""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfrs_lab.export import signatures as sig_names

from .errors import code_from_number

__all__ = ["ServingClient", "ServingClientError", "T"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_HTTP_TO_CODE = {
    400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND, 409: grpc.StatusCode.ABORTED, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED, 501: grpc.StatusCode.UNIMPLEMENTED, 503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class ServingClientError(Exception):
    """A call failed: ``code`` is the gRPC status code (mapped from HTTP for REST)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class ServingClient:
    """gRPC or REST client with deadlines, retries and message-size limits.

    Args:
        target: ``host:port`` (gRPC port 8500 / REST port 8501 by convention).
        protocol: ``"grpc"`` or ``"rest"``.
        timeout_s: deadline of each attempt.
        retries: extra attempts after an UNAVAILABLE answer (0 = no retry).
        backoff_s: first retry delay; doubles each attempt (with jitter) up to ``max_backoff_s``.
        max_message_bytes: gRPC send/receive limit.
    """

    def __init__(
        self,
        target: str,
        *,
        protocol: str = "grpc",
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.1,
        max_backoff_s: float = 2.0,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if protocol not in ("grpc", "rest"):
            raise ValueError(f"protocol must be 'grpc' or 'rest', got {protocol!r}")
        if timeout_s <= 0 or retries < 0 or backoff_s < 0:
            raise ValueError("timeout_s must be > 0, retries and backoff_s >= 0")
        self.target = target
        self.protocol = protocol
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._channel: grpc.Channel | None = None
        if protocol == "grpc":
            self._channel = grpc.insecure_channel(
                target,
                options=[
                    ("grpc.max_send_message_length", max_message_bytes),
                    ("grpc.max_receive_message_length", max_message_bytes),
                ],
            )
            self._predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
            self._model_stub = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        """Close the gRPC channel."""
        if self._channel is not None:
            self._channel.close()

    def __enter__(self) -> "ServingClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- retries ---------------------------------------------------------------------------------

    def _with_retries(self, fn: Callable[[], T]) -> T:
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except ServingClientError as e:
                if e.code != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise
                sleep = min(delay, self.max_backoff_s) * (0.5 + random.random() / 2)
                logger.info("%s unavailable (%s); retry %d/%d in %.2fs", self.target, e.message, attempt + 1, self.retries, sleep)
                time.sleep(sleep)
                delay *= 2
        raise AssertionError("unreachable")

    def _grpc(self, method: Callable[..., T], request: Any) -> T:
        def call() -> T:
            try:
                return method(request, timeout=self.timeout_s)
            except grpc.RpcError as e:
                raise ServingClientError(e.code(), e.details() or "") from None

        return self._with_retries(call)

    def _rest(self, method: str, path: str, body: Any = None) -> Any:
        url = f"http://{self.target}{path}"
        data = None if body is None else json.dumps(body).encode("utf-8")

        def call() -> Any:
            req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as e:
                payload = e.read()
                try:
                    message = json.loads(payload).get("error", "")
                except (ValueError, AttributeError):
                    message = payload.decode("utf-8", "replace")[:500]
                raise ServingClientError(_HTTP_TO_CODE.get(e.code, grpc.StatusCode.UNKNOWN), message) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                code = grpc.StatusCode.DEADLINE_EXCEEDED if isinstance(reason, TimeoutError) else grpc.StatusCode.UNAVAILABLE
                raise ServingClientError(code, f"cannot reach {url}: {reason}") from None

        return self._with_retries(call)

    @staticmethod
    def _url(model: str, version: int | None, label: str | None) -> str:
        path = f"/v1/models/{model}"
        if version is not None:
            path += f"/versions/{version}"
        elif label:
            path += f"/labels/{label}"
        return path

    @staticmethod
    def _spec(spec: Any, model: str, version: int | None, label: str | None, signature_name: str | None = None) -> None:
        spec.name = model
        if version is not None:
            spec.version.value = version
        elif label:
            spec.version_label = label
        if signature_name:
            spec.signature_name = signature_name

    # -- API -------------------------------------------------------------------------------------

    def predict(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        signature_name: str = sig_names.SERVING_DEFAULT,
        version: int | None = None,
        label: str | None = None,
        output_filter: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        """Predict on named inputs (array-likes; strings as ``str`` or ``bytes``) -> named outputs."""
        if self.protocol == "grpc":
            request = predict_pb2.PredictRequest()
            self._spec(request.model_spec, model, version, label, signature_name)
            for alias, value in inputs.items():
                request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
            request.output_filter.extend(output_filter)
            response = self._grpc(self._predict_stub.Predict, request)
            return {alias: tf.make_ndarray(t) for alias, t in response.outputs.items()}
        body: dict[str, Any] = {"signature_name": signature_name, "inputs": {k: _jsonable(v) for k, v in inputs.items()}}
        if output_filter:
            body["output_filter"] = list(output_filter)
        outputs = self._rest("POST", self._url(model, version, label) + ":predict", body)["outputs"]
        if not isinstance(outputs, dict):
            outputs = {(output_filter[0] if output_filter else "output"): outputs}
        return {k: np.array(v, dtype=object if _is_strings(v) else None) for k, v in outputs.items()}

    def recommend(
        self, model: str, user_ids: Sequence[str], *, k: int | None = None, exclude: Sequence[str] | None = None,
        allow: Sequence[str] | None = None, version: int | None = None, label: str | None = None,
        explain: bool = False
    ) -> list[list[tuple]]:
        """Top items per user: ``[[(item_id, score)]]``, best first.

        Retrieval models (and cascades, which answer the same way): ``serving_default`` (exports
        exclude the items each user rated by default); with ``exclude`` (item ids never to return,
        for every user) its ``recommend_excluding`` signature. A list longer than the export's
        ``max_exclude`` is answered, with fewer exclusions guaranteed. ``k`` keeps the first k.

        With ``allow`` (the only items to return; ``()`` = no restriction) the model must be a
        retrieve -> rank cascade (``python -m tfrs_lab.export cascade``): its ``recommend`` signature
        gets ``k`` (default 10, at most the cascade's candidates), ``exclude`` and ``allow``, and the
        scores are the ranking model's.

        With ``explain`` the ``explain`` signature: ``[[(item_id, score, because)]]``, ``because`` the
        user's history items most similar to ``item_id``, ``[(item_id, cosine)]`` most similar
        first (empty for a user without history); not combined with ``exclude`` or ``allow``."""
        users = np.array(list(user_ids), dtype=object)
        if explain:
            if exclude or allow is not None:
                raise ValueError("explain cannot be combined with exclude or allow: the explain signature excludes "
                                 "the user's known items only")
            outputs = self.predict(model, {sig_names.USER_ID: users}, signature_name=sig_names.EXPLAIN,
                                   version=version, label=label)
            return _explained_rows(outputs, model, "a retrieval model", k)
        if allow is not None:
            def rows(ids: Sequence[str] | None) -> np.ndarray:
                return _padded([list(ids) or [""]] * len(users), "user_ids")

            inputs = {sig_names.USER_ID: users, sig_names.K: np.full(len(users), k or 10, dtype=np.int32),
                      sig_names.EXCLUDE_ITEM_IDS: rows(exclude or ()), sig_names.ALLOW_ITEM_IDS: rows(allow)}
            outputs = self.predict(model, inputs, signature_name=sig_names.RECOMMEND, version=version, label=label)
            return _ranked_rows(outputs, model, "a retrieve -> rank cascade", k)
        if exclude:
            inputs = {sig_names.USER_ID: users,
                      sig_names.EXCLUDE_ITEM_IDS: _padded([list(exclude)] * len(users), "exclude")}
            outputs = self.predict(model, inputs, signature_name=sig_names.EXCLUDE_SEEN, version=version, label=label)
        else:
            outputs = self.predict(model, {sig_names.USER_ID: users}, version=version, label=label)
        return _ranked_rows(outputs, model, "a retrieval model", k)

    def rerank(
        self,
        model: str,
        user_ids: Sequence[str],
        candidate_item_ids: Sequence[Sequence[str]],
        *,
        k: int | None = None,
        version: int | None = None,
        label: str | None = None,
    ) -> list[list[tuple[str, float]]]:
        """Re-rank candidates per user with a ranking model's ``rerank`` signature.

        ``candidate_item_ids[i]`` are user ``i``'s candidates (rows of different lengths are padded
        with ''). Returns ``[[(item_id, score)]]`` best first, pads dropped; ``k`` keeps the first k.
        """
        if len(user_ids) != len(candidate_item_ids):
            raise ValueError(f"{len(user_ids)} user ids but {len(candidate_item_ids)} candidate lists")
        inputs = {
            sig_names.USER_ID: np.array(list(user_ids), dtype=object),
            sig_names.CANDIDATE_ITEM_IDS: _padded(candidate_item_ids, "candidate_item_ids"),
        }
        outputs = self.predict(model, inputs, signature_name=sig_names.RERANK, version=version, label=label)
        return _ranked_rows(outputs, model, "a ranking model", k)

    def recommend_from_history(
        self,
        model: str,
        histories: Sequence[Sequence[str]],
        *,
        k: int | None = None,
        version: int | None = None,
        label: str | None = None,
        explain: bool = False,
    ) -> list[list[tuple]]:
        """Next items per viewing history (oldest first, newest last) from a sequential model's
        ``serving_default``: ``[[(item_id, score)]]``; the history's own items are not returned.
        With ``explain`` its ``explain`` signature: ``[[(item_id, score, because)]]`` as for
        :meth:`recommend`, ``because`` drawn from the given history."""
        inputs = {sig_names.HISTORY: _padded(histories, "histories")}
        if explain:
            outputs = self.predict(model, inputs, signature_name=sig_names.EXPLAIN, version=version, label=label)
            return _explained_rows(outputs, model, "a sequential model", k)
        outputs = self.predict(model, inputs, version=version, label=label)
        return _ranked_rows(outputs, model, "a sequential model", k)

    def model_status(self, model: str, *, version: int | None = None, label: str | None = None) -> list[dict[str, Any]]:
        """Version states: ``[{"version": 1, "state": "AVAILABLE", "error_code": "OK", "error_message": ""}]``."""
        if self.protocol == "grpc":
            request = get_model_status_pb2.GetModelStatusRequest()
            self._spec(request.model_spec, model, version, label)
            response = self._grpc(self._model_stub.GetModelStatus, request)
            return [
                {
                    "version": s.version,
                    "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                    "error_code": code_from_number(s.status.error_code).name,
                    "error_message": s.status.error_message,
                }
                for s in response.model_version_status
            ]
        body = self._rest("GET", self._url(model, version, label))
        return [
            {"version": int(s["version"]), "state": s["state"], "error_code": s["status"]["error_code"],
             "error_message": s["status"].get("error_message", "")}
            for s in body["model_version_status"]
        ]

    def signature_defs(self, model: str, *, version: int | None = None, label: str | None = None) -> dict[str, Any]:
        """``GetModelMetadata``: the model's signature_def map as JSON-style dicts."""
        from google.protobuf import json_format

        if self.protocol == "grpc":
            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            self._spec(request.model_spec, model, version, label)
            response = self._grpc(self._predict_stub.GetModelMetadata, request)
            sig_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(sig_map)
            return json_format.MessageToDict(sig_map, preserving_proto_field_name=True).get("signature_def", {})
        body = self._rest("GET", self._url(model, version, label) + "/metadata")
        return body["metadata"]["signature_def"]["signature_def"]


def _padded(rows: Sequence[Sequence[str]], what: str) -> np.ndarray:
    """[batch, width] object array of strings, short rows padded with ''."""
    rows = [[_text(v) for v in row] for row in rows]
    if not rows:
        raise ValueError(f"{what} is empty")
    width = max(len(row) for row in rows)
    if width == 0:
        raise ValueError(f"{what} holds no item ids")
    array = np.empty((len(rows), width), dtype=object)
    for i, row in enumerate(rows):
        array[i] = row + [""] * (width - len(row))
    return array


def _ranked_rows(
    outputs: Mapping[str, np.ndarray], model: str, kind: str, k: int | None, *, drop_pads: bool = True
) -> list[list[tuple[str, float]]]:
    """``item_ids``/``scores`` outputs -> ``[[(item_id, score)]]`` (first ``k``), '' pads dropped if asked."""
    if sig_names.ITEM_IDS not in outputs or sig_names.SCORES not in outputs:
        old = sig_names.pre_rename_names(outputs)
        if old:
            raise ServingClientError(grpc.StatusCode.FAILED_PRECONDITION,
                                     sig_names.pre_rename_error(f"model {model}", old))
        raise ServingClientError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"model {model} did not return {sig_names.ITEM_IDS}/{sig_names.SCORES}; is it {kind}?",
        )
    result = []
    for ids, scores in zip(outputs[sig_names.ITEM_IDS], outputs[sig_names.SCORES]):
        row = [(_text(i), float(s)) for i, s in zip(ids, scores) if _text(i) or not drop_pads]
        result.append(row[:k] if k else row)
    return result


def _explained_rows(
    outputs: Mapping[str, np.ndarray], model: str, kind: str, k: int | None
) -> list[list[tuple[str, float, list[tuple[str, float]]]]]:
    """``explain`` outputs -> ``[[(item_id, score, [(because_id, cosine)])]]`` (first ``k``), pads dropped."""
    if sig_names.BECAUSE_IDS not in outputs or sig_names.BECAUSE_SCORES not in outputs:
        raise ServingClientError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"model {model} did not return {sig_names.BECAUSE_IDS}/{sig_names.BECAUSE_SCORES}; is it {kind} "
            "exported with an explain signature?")
    rows = _ranked_rows(outputs, model, kind, None, drop_pads=False)
    result = []
    for row, because_ids, because_scores in zip(rows, outputs[sig_names.BECAUSE_IDS], outputs[sig_names.BECAUSE_SCORES]):
        explained = [(item_id, score, [(_text(b), float(c)) for b, c in zip(ids, cos) if _text(b)])
                     for (item_id, score), ids, cos in zip(row, because_ids, because_scores) if item_id]
        result.append(explained[:k] if k else explained)
    return result


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _is_strings(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, (str, dict))


def _jsonable(value: Any) -> Any:
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind in ("S", "U"):
        return np.vectorize(_text, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()
