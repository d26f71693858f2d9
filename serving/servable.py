"""One loaded model version (a *servable*): SavedModel loading, ScaNN op registration, warm-up.

A version directory follows TF Serving's layout::

    <base_path>/<version>/saved_model.pb, variables/, assets/, assets.extra/tf_serving_warmup_requests
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from tfrs_lab.export import signatures as sig_names

from . import deadline
from .errors import ServingError, failed_precondition
from .layout import SAVED_MODEL_PB, SAVED_MODEL_PBTXT, list_versions  # noqa: F401  (re-exported)
from .tensors import Signature, build_signature, check_output_filter, error_for_tf

__all__ = ["call_signature", "custom_ops", "INIT_OP_SIGNATURE", "load_servable", "read_saved_model_proto",
           "register_scann_ops", "SCANN_OP_PREFIX", "Servable", "serve_meta_graph"]

logger = logging.getLogger(__name__)

INIT_OP_SIGNATURE = "__saved_model_init_op"
SCANN_OP_PREFIX = "Scann>"

_scann_lock = threading.Lock()
_scann_state: dict[str, Any] = {}


def register_scann_ops() -> str | None:
    """Import ``scann`` so its TensorFlow ops are registered; return an error text if it cannot be."""
    with _scann_lock:
        if "error" not in _scann_state:
            try:
                import scann  # noqa: F401
                from scann.scann_ops.py import scann_ops  # noqa: F401  (loads the op library)

                _scann_state["error"] = None
            except ImportError as e:
                _scann_state["error"] = f"{e}"
                logger.warning("scann is not importable (%s); ScaNN SavedModels will not load", e)
        return _scann_state["error"]


def read_saved_model_proto(path: str) -> saved_model_pb2.SavedModel:
    """Parse ``<path>/saved_model.pb`` (or ``.pbtxt``)."""
    pb = os.path.join(path, SAVED_MODEL_PB)
    pbtxt = os.path.join(path, SAVED_MODEL_PBTXT)
    proto = saved_model_pb2.SavedModel()
    if os.path.exists(pb):
        with open(pb, "rb") as f:
            data = f.read()
        try:
            proto.ParseFromString(data)
        except DecodeError as e:
            raise ServingError(
                grpc.StatusCode.DATA_LOSS, f"Could not parse SavedModel at {pb}: {e}; re-export the version"
            ) from e
        return proto
    if os.path.exists(pbtxt):
        from google.protobuf import text_format

        with open(pbtxt, encoding="utf-8") as f:
            text_format.Parse(f.read(), proto)
        return proto
    raise ServingError(
        grpc.StatusCode.NOT_FOUND,
        f"SavedModel file does not exist at: {path}/{{{SAVED_MODEL_PBTXT}|{SAVED_MODEL_PB}}}",
    )


def custom_ops(proto: saved_model_pb2.SavedModel) -> set[str]:
    """Ops in the graph (and its function library) that stock TensorFlow does not register."""
    ops: set[str] = set()
    for meta_graph in proto.meta_graphs:
        ops.update(n.op for n in meta_graph.graph_def.node)
        for fn in meta_graph.graph_def.library.function:
            ops.update(n.op for n in fn.node_def)
    return {op for op in ops if ">" in op}


def serve_meta_graph(proto: saved_model_pb2.SavedModel, path: str) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraphDef tagged ``serve``."""
    for meta_graph in proto.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    raise failed_precondition(f"SavedModel at {path} has no MetaGraph tagged 'serve'; export with tf.saved_model.save")


class Servable:
    """A loaded, callable model version.

    ``run`` is thread-safe: TensorFlow concrete functions may be called concurrently. When a
    ``batcher_factory`` is given, calls are routed through a server-side batcher per signature.
    """

    def __init__(
        self,
        *,
        name: str,
        version: int,
        path: str,
        module: Any,
        signatures: Mapping[str, Signature],
        signature_def_map: meta_graph_pb2.SignatureDef | Any,
        custom_op_names: set[str],
        batcher_factory: Callable[[Signature], Any] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.module = module
        self.signatures = dict(signatures)
        self.signature_def_map = signature_def_map
        self.custom_op_names = custom_op_names
        self.warmup_count = 0
        self._batchers = {n: batcher_factory(s) for n, s in self.signatures.items()} if batcher_factory else {}

    def signature(self, name: str) -> Signature:
        """The signature called ``name`` ("" means ``serving_default``)."""
        key = name or sig_names.SERVING_DEFAULT
        try:
            return self.signatures[key]
        except KeyError:
            raise failed_precondition(f'Serving signature name: "{key}" not found in signature def') from None

    def run(
        self, signature: Signature, tensors: Mapping[str, tf.Tensor], output_filter: Sequence[str] = ()
    ) -> dict[str, np.ndarray]:
        """Call ``signature`` on validated input tensors, returning the requested outputs."""
        aliases = check_output_filter(signature, output_filter)
        batcher = self._batchers.get(signature.name)
        if batcher is not None:
            outputs = batcher.run(tensors)
        else:
            deadline.check("before the model was called")
            outputs = call_signature(signature, tensors)
        return {a: outputs[a] for a in aliases}

    def close(self) -> None:
        """Stop batch threads; the TF resources are freed when the last reference goes."""
        for batcher in self._batchers.values():
            batcher.close()


def call_signature(signature: Signature, tensors: Mapping[str, tf.Tensor]) -> dict[str, np.ndarray]:
    """Call the concrete function and convert every output to numpy, mapping TF errors."""
    try:
        result = signature.fn(**tensors)
    except (tf.errors.OpError, ValueError, TypeError) as e:
        raise error_for_tf(e) from e
    if not isinstance(result, Mapping):
        raise ServingError(grpc.StatusCode.INTERNAL, f"signature {signature.name} did not return a dict of outputs")
    return {k: v.numpy() for k, v in result.items()}


def load_servable(
    name: str,
    version: int,
    path: str,
    *,
    batcher_factory: Callable[[Signature], Any] | None = None,
) -> Servable:
    """Load ``path`` as version ``version`` of model ``name`` (warm-up: :mod:`.warmup`).

    Raises :class:`ServingError` with the reason when the version cannot serve.
    """
    started = time.monotonic()
    proto = read_saved_model_proto(path)
    meta_graph = serve_meta_graph(proto, path)
    ops = custom_ops(proto)
    if any(op.startswith(SCANN_OP_PREFIX) for op in ops):
        error = register_scann_ops()
        if error:
            raise failed_precondition(
                f"{path} uses ScaNN ops ({', '.join(sorted(ops))}) but scann cannot be imported ({error}); "
                "install scann==1.4.2 or export the brute_force variant"
            )
    try:
        module = tf.saved_model.load(path, tags=["serve"])
    except (tf.errors.OpError, ValueError, OSError, KeyError, TypeError, AssertionError) as e:
        raise ServingError(grpc.StatusCode.INTERNAL, f"Failed to load SavedModel at {path}: {e}") from e
    loaded_fns = dict(getattr(module, "signatures", {}))
    signatures: dict[str, Signature] = {}
    for sig_name, sig_proto in meta_graph.signature_def.items():
        if sig_name == INIT_OP_SIGNATURE or sig_name not in loaded_fns:
            continue
        signatures[sig_name] = build_signature(sig_name, sig_proto, loaded_fns[sig_name])
    if not signatures:
        raise failed_precondition(f"SavedModel at {path} has no serving signatures; export with signatures={{...}}")
    old = sig_names.pre_rename_names(
        n for s in signatures.values() for n in (*s.inputs, *s.outputs))
    if old:  # still served as it is (TF Serving would), but today's clients will not find their names
        logger.warning("%s", sig_names.pre_rename_error(f"model {name!r} version {version} ({path})", old))
    from tensorflow_serving.apis import get_model_metadata_pb2

    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for sig_name, sig_proto in meta_graph.signature_def.items():
        sig_map.signature_def[sig_name].CopyFrom(sig_proto)
    servable = Servable(
        name=name,
        version=version,
        path=path,
        module=module,
        signatures=signatures,
        signature_def_map=sig_map,
        custom_op_names=ops,
        batcher_factory=batcher_factory,
    )
    logger.debug("loaded model %s version %d from %s in %.2fs", name, version, path, time.monotonic() - started)
    return servable
