"""Request handling on a loaded :class:`~.servable.Servable`: Predict, Classify, Regress,
MultiInference and metadata, for both proto (gRPC, warm-up) and JSON (REST) requests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    input_pb2,
    predict_pb2,
    regression_pb2,
)

from .errors import invalid_argument
from .servable import Servable
from .tensors import (
    CLASSIFY_METHOD,
    REGRESS_METHOD,
    Signature,
    arrays_to_columns,
    arrays_to_rows,
    columns_to_arrays,
    ndarray_from_proto,
    proto_from_ndarray,
    rows_to_arrays,
    to_input_tensors,
)

__all__ = ["classify", "metadata", "multi_inference", "predict", "predict_arrays", "predict_json", "regress",
           "SIGNATURE_DEF_FIELD"]

SIGNATURE_DEF_FIELD = "signature_def"


def _fill_spec(spec: Any, servable: Servable, signature_name: str | None) -> None:
    spec.name = servable.name
    spec.version.value = servable.version
    if signature_name is not None:
        spec.signature_name = signature_name


def predict_arrays(
    servable: Servable, signature_name: str, arrays: Mapping[str, np.ndarray], output_filter: list[str] | tuple[str, ...] = ()
) -> tuple[Signature, dict[str, np.ndarray]]:
    """Validate ``arrays`` against the signature and run it."""
    signature = servable.signature(signature_name)
    tensors = to_input_tensors(signature, arrays)
    return signature, servable.run(signature, tensors, output_filter)


def predict(servable: Servable, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """gRPC ``Predict``."""
    arrays = {alias: ndarray_from_proto(alias, t) for alias, t in request.inputs.items()}
    signature, outputs = predict_arrays(
        servable, request.model_spec.signature_name, arrays, list(request.output_filter)
    )
    response = predict_pb2.PredictResponse()
    _fill_spec(response.model_spec, servable, signature.name)
    for alias, array in outputs.items():
        response.outputs[alias].CopyFrom(proto_from_ndarray(array))
    return response


def predict_json(servable: Servable, body: Any) -> dict[str, Any]:
    """REST ``:predict`` on a parsed JSON body (row or columnar format)."""
    if not isinstance(body, dict):
        raise invalid_argument("Request body must be a JSON object with 'instances' or 'inputs'")
    if "instances" in body and "inputs" in body:
        raise invalid_argument("Not both 'instances' and 'inputs' can be specified in the request")
    allowed = {"signature_name", "instances", "inputs", "output_filter"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise invalid_argument(f"Unknown key(s) in request: {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid_argument("'signature_name' must be a string")
    output_filter = body.get("output_filter", [])
    if not isinstance(output_filter, list) or not all(isinstance(x, str) for x in output_filter):
        raise invalid_argument("'output_filter' must be a list of output names")
    signature = servable.signature(signature_name)
    if "instances" in body:
        arrays = rows_to_arrays(signature, body["instances"])
        _, outputs = predict_arrays(servable, signature.name, arrays, output_filter)
        return {"predictions": arrays_to_rows(outputs)}
    if "inputs" in body:
        arrays = columns_to_arrays(signature, body["inputs"])
        _, outputs = predict_arrays(servable, signature.name, arrays, output_filter)
        return {"outputs": arrays_to_columns(outputs)}
    raise invalid_argument("Missing 'inputs' or 'instances' key")


def metadata(servable: Servable, request: get_model_metadata_pb2.GetModelMetadataRequest) -> get_model_metadata_pb2.GetModelMetadataResponse:
    """gRPC ``GetModelMetadata`` (only the ``signature_def`` field exists, as in TF Serving)."""
    if not request.metadata_field:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    _fill_spec(response.model_spec, servable, "")
    for field in request.metadata_field:
        if field != SIGNATURE_DEF_FIELD:
            raise invalid_argument(f"Metadata field {field} is not supported")
        response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map)
    return response


# ------------------------------------------------------------------------------------------------
# Classify / Regress (signatures with method_name tensorflow/serving/classify|regress)
# ------------------------------------------------------------------------------------------------


def _serialized_examples(inp: input_pb2.Input) -> np.ndarray:
    kind = inp.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in inp.example_list.examples]
    elif kind == "example_list_with_context":
        context = inp.example_list_with_context.context
        examples = []
        for e in inp.example_list_with_context.examples:
            merged = type(e)()
            merged.CopyFrom(context)
            merged.MergeFrom(e)
            examples.append(merged.SerializeToString())
    else:
        raise invalid_argument("Input is empty.")
    if not examples:
        raise invalid_argument("Input is empty.")
    return np.array(examples, dtype=object)


def _typed_signature(servable: Servable, name: str, method: str, what: str) -> Signature:
    signature = servable.signature(name)
    if signature.method_name != method:
        raise invalid_argument(
            f"Expected {what} signature method_name to be {method}. Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument(f"Expected one input Tensor in the {what} signature, got {len(signature.inputs)}")
    return signature


def _run_examples(servable: Servable, signature: Signature, inp: input_pb2.Input) -> tuple[dict[str, np.ndarray], int]:
    examples = _serialized_examples(inp)
    alias = next(iter(signature.inputs))
    tensors = {alias: tf.constant(examples, dtype=tf.string)}
    return servable.run(signature, tensors), len(examples)


def _classification_result(servable: Servable, signature: Signature, inp: input_pb2.Input) -> classification_pb2.ClassificationResult:
    outputs, n = _run_examples(servable, signature, inp)
    classes = outputs.get("classes")
    scores = outputs.get("scores")
    if classes is None and scores is None:
        raise invalid_argument("Expected classification signature outputs 'classes' and/or 'scores'")
    result = classification_pb2.ClassificationResult()
    for i in range(n):
        row = result.classifications.add()
        width = (classes if classes is not None else scores).reshape(n, -1).shape[1]
        for j in range(width):
            cls = row.classes.add()
            if classes is not None:
                value = classes.reshape(n, -1)[i, j]
                cls.label = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            if scores is not None:
                cls.score = float(scores.reshape(n, -1)[i, j])
    return result


def _regression_result(servable: Servable, signature: Signature, inp: input_pb2.Input) -> regression_pb2.RegressionResult:
    outputs, n = _run_examples(servable, signature, inp)
    if "outputs" not in outputs:
        raise invalid_argument("Expected regression signature output 'outputs'")
    values = outputs["outputs"].reshape(n, -1)
    if values.shape[1] != 1:
        raise invalid_argument(f"Expected regression output shape [batch] or [batch, 1], got {list(outputs['outputs'].shape)}")
    result = regression_pb2.RegressionResult()
    for i in range(n):
        result.regressions.add().value = float(values[i, 0])
    return result


def classify(servable: Servable, request: classification_pb2.ClassificationRequest) -> classification_pb2.ClassificationResponse:
    """gRPC ``Classify``."""
    signature = _typed_signature(servable, request.model_spec.signature_name, CLASSIFY_METHOD, "classification")
    response = classification_pb2.ClassificationResponse()
    _fill_spec(response.model_spec, servable, signature.name)
    response.result.CopyFrom(_classification_result(servable, signature, request.input))
    return response


def regress(servable: Servable, request: regression_pb2.RegressionRequest) -> regression_pb2.RegressionResponse:
    """gRPC ``Regress``."""
    signature = _typed_signature(servable, request.model_spec.signature_name, REGRESS_METHOD, "regression")
    response = regression_pb2.RegressionResponse()
    _fill_spec(response.model_spec, servable, signature.name)
    response.result.CopyFrom(_regression_result(servable, signature, request.input))
    return response


def multi_inference(servable: Servable, request: inference_pb2.MultiInferenceRequest) -> inference_pb2.MultiInferenceResponse:
    """gRPC ``MultiInference``: several classify/regress tasks over the same input."""
    if not request.tasks:
        raise invalid_argument("Tasks field is empty.")
    response = inference_pb2.MultiInferenceResponse()
    for task in request.tasks:
        if task.model_spec.name and task.model_spec.name != servable.name:
            raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        result = response.results.add()
        _fill_spec(result.model_spec, servable, None)
        if task.method_name == CLASSIFY_METHOD:
            signature = _typed_signature(servable, task.model_spec.signature_name, CLASSIFY_METHOD, "classification")
            result.classification_result.CopyFrom(_classification_result(servable, signature, request.input))
        elif task.method_name == REGRESS_METHOD:
            signature = _typed_signature(servable, task.model_spec.signature_name, REGRESS_METHOD, "regression")
            result.regression_result.CopyFrom(_regression_result(servable, signature, request.input))
        else:
            raise invalid_argument(f"Unsupported signature method_name: {task.method_name}")
        result.model_spec.signature_name = signature.name
    return response
