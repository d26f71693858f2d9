"""Signatures of a loaded SavedModel and tensor conversions (TensorProto, JSON, numpy).

Validation messages follow TF Serving's wording so clients see the same errors from the built-in
server and from ``tensorflow_model_server``.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from tfrs_lab.export import signatures as sig_names

from .errors import ServingError, invalid_argument

__all__ = ["arrays_to_columns", "arrays_to_rows", "batch_size_of", "build_signature", "check_input_names",
           "check_json_rows", "check_output_filter", "check_proto_inputs", "CLASSIFY_METHOD", "columns_to_arrays",
           "error_for_tf", "MAX_RANK", "ndarray_from_json", "ndarray_from_proto", "PREDICT_METHOD",
           "proto_from_ndarray", "REGRESS_METHOD", "REQUEST_DTYPES", "rows_error", "rows_to_arrays", "Signature",
           "TensorSpecInfo", "to_input_tensors", "utf8"]

PREDICT_METHOD = "tensorflow/serving/predict"
MAX_RANK = 64  # deeper JSON lists are refused before conversion (TensorFlow allows rank <= 254)
# Request tensors must hold values: DT_RESOURCE / DT_VARIANT (handles) and quantized types are refused.
REQUEST_DTYPES = frozenset(d.as_datatype_enum for d in (
    tf.float16, tf.bfloat16, tf.float32, tf.float64, tf.int8, tf.int16, tf.int32, tf.int64,
    tf.uint8, tf.uint16, tf.uint32, tf.uint64, tf.bool, tf.string, tf.complex64, tf.complex128,
))
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


@dataclasses.dataclass(frozen=True)
class TensorSpecInfo:
    """One named signature input/output: dtype and (possibly partial) shape."""

    alias: str
    dtype: tf.DType
    shape: tf.TensorShape


@dataclasses.dataclass(frozen=True)
class Signature:
    """A callable serving signature with its ``SignatureDef``."""

    name: str
    method_name: str
    inputs: Mapping[str, TensorSpecInfo]
    outputs: Mapping[str, TensorSpecInfo]
    fn: Any  # tf ConcreteFunction taking keyword tensors, returning a dict of tensors
    proto: meta_graph_pb2.SignatureDef


def _spec_from_tensor_info(alias: str, info: meta_graph_pb2.TensorInfo) -> TensorSpecInfo:
    shape = tf.TensorShape(None) if info.tensor_shape.unknown_rank else tf.TensorShape(
        [None if d.size < 0 else d.size for d in info.tensor_shape.dim]
    )
    return TensorSpecInfo(alias=alias, dtype=tf.dtypes.as_dtype(info.dtype), shape=shape)


def build_signature(name: str, proto: meta_graph_pb2.SignatureDef, fn: Any) -> Signature:
    """Describe signature ``name`` from its ``SignatureDef`` proto and loaded concrete function."""
    return Signature(
        name=name,
        method_name=proto.method_name or PREDICT_METHOD,
        inputs={k: _spec_from_tensor_info(k, v) for k, v in sorted(proto.inputs.items())},
        outputs={k: _spec_from_tensor_info(k, v) for k, v in sorted(proto.outputs.items())},
        fn=fn,
        proto=proto,
    )


def _names(names: Sequence[str]) -> str:
    return ",".join(sorted(names))


def check_input_names(signature: Signature, given: Sequence[str]) -> None:
    """Raise TF Serving's INVALID_ARGUMENT when inputs are missing or not in the signature."""
    expected = set(signature.inputs)
    sent = set(given)
    if sent == expected:
        return
    _check_item_names(signature, sent, expected)
    if len(sent) != len(expected):
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{_names(list(sent))}}}) != len({{{_names(list(expected))}}}). "
            f"Sent extra: {{{_names(list(sent - expected))}}}. "
            f"Missing but required: {{{_names(list(expected - sent))}}}."
        )
    extra = sorted(sent - expected)
    raise invalid_argument(
        f"input tensor alias not found in signature: {extra[0]}. "
        f"Inputs expected to be in the set {{{_names(list(expected))}}}."
    )


def _check_item_names(signature: Signature, sent: set[str], expected: set[str]) -> None:
    """INVALID_ARGUMENT in one line when the mismatch is the movie -> item rename: a pre-rename
    export asked with today's names, or today's export asked with the old ones."""
    old_model = {o: n for o, n in sig_names.pre_rename_names(expected - sent).items() if n in sent}
    if old_model:
        raise invalid_argument(sig_names.pre_rename_error(f"the model behind signature {signature.name!r}", old_model))
    old_client = {o: n for o, n in sig_names.pre_rename_names(sent - expected).items() if n in expected}
    if old_client:
        renamed = ", ".join(f"{o} -> {n}" for o, n in old_client.items())
        raise invalid_argument(f"signature {signature.name!r} takes item names now ({renamed}): "
                               f"update the request - {sig_names.RENAME_DOC}")


def check_output_filter(signature: Signature, output_filter: Sequence[str]) -> list[str]:
    """Return the output aliases to compute (all when ``output_filter`` is empty)."""
    if not output_filter:
        return list(signature.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} "
                f"Outputs expected to be in the set {{{_names(list(signature.outputs))}}}."
            )
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias in output_filter: {alias}")
        seen.add(alias)
    return list(output_filter)


def to_input_tensors(signature: Signature, arrays: Mapping[str, np.ndarray]) -> dict[str, tf.Tensor]:
    """Validate dtype and shape of each input array and convert to tensors for ``signature.fn``."""
    check_input_names(signature, list(arrays))
    tensors: dict[str, tf.Tensor] = {}
    for index, (alias, spec) in enumerate(signature.inputs.items()):
        array = arrays[alias]
        given = _dtype_of(array)
        if given is not None and given != spec.dtype:
            raise invalid_argument(
                f"Expects arg[{index}] to be {_tf_type_name(spec.dtype)} but {_tf_type_name(given)} is provided"
            )
        if not spec.shape.is_compatible_with(array.shape):
            raise invalid_argument(
                f"input '{alias}' has shape {_shape_str(array.shape)} which is incompatible with the "
                f"signature shape {_shape_str(spec.shape)}"
            )
        tensors[alias] = tf.constant(array, dtype=spec.dtype)
    return tensors


def batch_size_of(arrays: Mapping[str, np.ndarray]) -> int | None:
    """The common first dimension of ``arrays``, or None when they disagree or are scalars."""
    sizes = {a.shape[0] for a in arrays.values() if a.ndim > 0}
    return sizes.pop() if len(sizes) == 1 else None


def _tf_type_name(dtype: tf.DType) -> str:
    """TensorFlow's ``DataTypeString`` spelling (``float``, ``double``), as in TF Serving errors."""
    return {"float32": "float", "float64": "double", "float16": "half"}.get(dtype.name, dtype.name)


def _shape_str(shape: Any) -> str:
    dims = tf.TensorShape(shape)
    if dims.rank is None:
        return "<unknown>"
    return "[" + ",".join("?" if d is None else str(d) for d in dims.as_list()) + "]"


def _dtype_of(array: np.ndarray) -> tf.DType | None:
    if array.dtype == object or array.dtype.kind in ("S", "U"):
        return tf.string
    try:
        return tf.dtypes.as_dtype(array.dtype)
    except TypeError:
        return None


# ---------------------------------------------------------------------------------------------
# TensorProto <-> numpy
# ---------------------------------------------------------------------------------------------


def check_proto_inputs(inputs: Mapping[str, tensor_pb2.TensorProto], max_rows: int, max_elements: int) -> None:
    """Refuse request tensors that are not values or that are too large, before decoding any.

    ``max_rows`` bounds the batch (first) dimension (0 = no limit); ``max_elements`` bounds the
    element count (a one-value proto with a huge shape would otherwise be broadcast in memory).
    """
    for alias, proto in inputs.items():
        if proto.dtype not in REQUEST_DTYPES:
            name = types_pb2.DataType.Name(proto.dtype) if proto.dtype in types_pb2.DataType.values() else str(proto.dtype)
            raise invalid_argument(f"tensor {alias}: dtype {name} cannot be sent in a request; send a value tensor "
                                   "(e.g. DT_STRING, DT_INT64, DT_FLOAT)")
        dims = [d.size for d in proto.tensor_shape.dim]
        if any(d < 0 for d in dims):
            raise invalid_argument(f"tensor {alias}: negative dimension in shape {dims}")
        if dims and max_rows and dims[0] > max_rows:
            raise rows_error(dims[0], max_rows)
        elements = 1
        for d in dims:
            elements *= d
        if elements > max_elements:
            raise invalid_argument(f"tensor {alias}: shape {dims} has {elements} elements, more than the "
                                   f"{max_elements} a request may carry; send smaller batches")


def rows_error(rows: int, max_rows: int) -> ServingError:
    """INVALID_ARGUMENT for a request batch over ``--max-batch-rows``."""
    return invalid_argument(f"Request has {rows} rows, more than --max-batch-rows={max_rows}; "
                            "split it into smaller requests or raise --max-batch-rows")


def check_json_rows(body: Any, examples_key: str | None, max_rows: int) -> None:
    """Refuse a parsed REST body whose batch exceeds ``max_rows`` (0 = no limit), before any work.

    ``examples_key`` names the list of a classify/regress body; predict bodies are counted by
    ``instances`` (rows) or the first dimension of each ``inputs`` value.
    """
    if not max_rows or not isinstance(body, dict):
        return
    if examples_key is not None:
        counts = [len(body[examples_key])] if isinstance(body.get(examples_key), list) else []
    elif isinstance(body.get("instances"), list):
        counts = [len(body["instances"])]
    else:
        inputs = body.get("inputs")
        values = inputs.values() if isinstance(inputs, dict) else [inputs]
        counts = [len(v) for v in values if isinstance(v, list)]
    rows = max(counts, default=0)
    if rows > max_rows:
        raise rows_error(rows, max_rows)


def ndarray_from_proto(alias: str, proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a request TensorProto, answering INVALID_ARGUMENT for malformed content."""
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError, KeyError, IndexError) as e:
        raise invalid_argument(f"tensor parsing error: {alias}: {e}") from e


def proto_from_ndarray(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Encode an output array as a TensorProto (strings via ``string_val``)."""
    return tf.make_tensor_proto(array)


# ---------------------------------------------------------------------------------------------
# JSON (REST) <-> numpy
# ---------------------------------------------------------------------------------------------

_JSON_TYPE = {bool: "Bool", int: "Number", float: "Number", str: "String", list: "Array", dict: "Object"}


def _json_type(value: Any) -> str:
    return "Null" if value is None else _JSON_TYPE.get(type(value), type(value).__name__)


def utf8(value: str, what: str) -> bytes:
    """``value`` encoded as UTF-8; INVALID_ARGUMENT for strings that cannot be (lone surrogates)."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise invalid_argument(
            f"{what}: string {_dump(value)[:80]} is not valid Unicode (lone surrogate at {e.start}); "
            "send bytes as {\"b64\": ...}"
        ) from e


def _leaf(value: Any, dtype: tf.DType) -> Any:
    if dtype == tf.string:
        if isinstance(value, str):
            return utf8(value, "JSON Value")
        if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except ValueError as e:
                raise invalid_argument(f"Unable to base64 decode {value['b64']!r}") from e
        raise invalid_argument(f"JSON Value: {_dump(value)} Type: {_json_type(value)} is not of expected type: string")
    if dtype == tf.bool:
        if isinstance(value, bool):
            return value
        raise invalid_argument(f"JSON Value: {_dump(value)} Type: {_json_type(value)} is not of expected type: bool")
    if dtype.is_integer:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise invalid_argument(
            f"JSON Value: {_dump(value)} Type: {_json_type(value)} is not of expected type: {dtype.name}"
        )
    if dtype.is_floating:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if value in ("NaN", "Infinity", "-Infinity"):
            return float(value.replace("Infinity", "inf"))
        raise invalid_argument(
            f"JSON Value: {_dump(value)} Type: {_json_type(value)} is not of expected type: {dtype.name}"
        )
    raise invalid_argument(f"dtype {dtype.name} is not supported by the REST API; use gRPC")


def _dump(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def _convert(value: Any, dtype: tf.DType, depth: int = 0) -> tuple[Any, tuple[int, ...]]:
    """Convert nested JSON lists to nested Python values, returning (values, shape)."""
    if isinstance(value, list):
        if depth >= MAX_RANK:
            raise invalid_argument(f"JSON tensor nests deeper than {MAX_RANK} levels; tensors have rank <= {MAX_RANK}")
        if not value:
            return [], (0,)
        converted = [_convert(v, dtype, depth + 1) for v in value]
        shapes = {s for _, s in converted}
        if len(shapes) != 1:
            raise invalid_argument(
                f"Expecting all list elements to have the same shape, got ragged list {_dump(value)[:200]}"
            )
        return [v for v, _ in converted], (len(value),) + shapes.pop()
    return _leaf(value, dtype), ()


def ndarray_from_json(alias: str, value: Any, spec: TensorSpecInfo) -> np.ndarray:
    """Convert a JSON value (possibly nested lists, ``{"b64": ...}`` for bytes) for input ``alias``."""
    values, shape = _convert(value, spec.dtype)
    if spec.dtype == tf.string:
        return np.array(values, dtype=object).reshape(shape)
    return np.array(values, dtype=spec.dtype.as_numpy_dtype).reshape(shape)


def rows_to_arrays(signature: Signature, instances: Any) -> dict[str, np.ndarray]:
    """Row format: ``instances`` (one entry per example) -> one batched array per input."""
    if not isinstance(instances, list):
        raise invalid_argument("Excepting 'instances' to be an list/array")
    if not instances:
        raise invalid_argument("'instances' must be a non-empty list; send one entry per example")
    aliases = list(signature.inputs)
    per_alias: dict[str, list[Any]] = {a: [] for a in aliases}
    for i, instance in enumerate(instances):
        if isinstance(instance, dict) and not (len(aliases) == 1 and set(instance) == {"b64"}):
            check_input_names(signature, list(instance))
            for alias in aliases:
                per_alias[alias].append(instance[alias])
        elif len(aliases) == 1:
            per_alias[aliases[0]].append(instance)
        else:
            raise invalid_argument(
                f"Expecting object but got list at item {i} of input list: the signature has several "
                f"inputs ({_names(aliases)}), so each instance must be an object of named inputs"
            )
    return {alias: ndarray_from_json(alias, values, signature.inputs[alias]) for alias, values in per_alias.items()}


def columns_to_arrays(signature: Signature, inputs: Any) -> dict[str, np.ndarray]:
    """Columnar format: ``inputs`` (a value for a single-input signature, else an object)."""
    aliases = list(signature.inputs)
    if isinstance(inputs, dict) and not (len(aliases) == 1 and set(inputs) == {"b64"}):
        check_input_names(signature, list(inputs))
        return {a: ndarray_from_json(a, inputs[a], signature.inputs[a]) for a in aliases}
    if len(aliases) != 1:
        check_input_names(signature, [])
    return {aliases[0]: ndarray_from_json(aliases[0], inputs, signature.inputs[aliases[0]])}


def _jsonable(array: np.ndarray, alias: str) -> Any:
    if array.dtype == object or array.dtype.kind == "S":
        as_b64 = alias.endswith("_bytes")

        def enc(x: Any) -> Any:
            if isinstance(x, bytes):
                if not as_b64:
                    try:
                        return x.decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                return {"b64": base64.b64encode(x).decode("ascii")}
            return x

        return np.vectorize(enc, otypes=[object])(array).tolist() if array.size else array.tolist()
    if array.dtype.kind == "f":
        def fix(x: float) -> Any:
            return x if math.isfinite(x) else ("NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity"))

        values = array.astype(np.float64).tolist()
        if array.ndim == 0:
            return fix(values)
        return _map_nested(values, fix) if not np.isfinite(array).all() else values
    return array.tolist()


def _map_nested(values: Any, fn: Any) -> Any:
    if isinstance(values, list):
        return [_map_nested(v, fn) for v in values]
    return fn(values)


def arrays_to_rows(outputs: Mapping[str, np.ndarray]) -> list[Any]:
    """Row format response: ``predictions`` (one entry per example)."""
    sizes = {alias: (a.shape[0] if a.ndim else None) for alias, a in outputs.items()}
    batch = {s for s in sizes.values()}
    if len(batch) != 1 or None in batch:
        raise invalid_argument(
            "Output tensors do not share a batch dimension ("
            + ", ".join(f"{k}: {v}" for k, v in sizes.items())
            + "); request the columnar format with 'inputs' instead of 'instances'"
        )
    converted = {alias: _jsonable(a, alias) for alias, a in outputs.items()}
    if len(converted) == 1:
        return next(iter(converted.values()))
    n = batch.pop()
    return [{alias: converted[alias][i] for alias in converted} for i in range(n)]


def arrays_to_columns(outputs: Mapping[str, np.ndarray]) -> Any:
    """Columnar format response: ``outputs`` (a value for a single output, else an object)."""
    converted = {alias: _jsonable(a, alias) for alias, a in outputs.items()}
    if len(converted) == 1:
        return next(iter(converted.values()))
    return converted


def error_for_tf(e: Exception) -> ServingError:
    """Translate an exception raised by a model call into a :class:`ServingError`."""
    import grpc

    from .errors import code_from_number

    if isinstance(e, tf.errors.OpError):
        return ServingError(code_from_number(e.error_code), _assertion_text(e.message))
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(e))


def _assertion_text(message: str) -> str:
    """A failed ``tf.debugging.assert_*`` in a model answers with its own message (e.g. "k must be
    between 1 and 200"), not the multi-line graph error around it; other messages are kept."""
    found = re.search(r"assertion failed: \[(.+?)\](?: \[|\s*$)", message)
    return found.group(1) if found else message
