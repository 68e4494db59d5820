"""Predict, Regress, Classify and MultiInference on one Servable, with TF-Serving's checks.

Why separate from the gRPC and REST layers: both front ends (and warm-up) run exactly this
code, so a request fails or succeeds identically whichever way it arrives. Validation and
messages follow TF-Serving's predict_util.cc / regressor.cc / classifier.cc:
unknown Predict signature -> FAILED_PRECONDITION; unknown Regress/Classify signature, wrong
input aliases, dtypes or shapes -> INVALID_ARGUMENT.

One deliberate extension: Regress/Classify also accept a *predict*-method signature that takes
exactly one string tensor named `examples` or `inputs` (serialized tf.Examples) and returns
`outputs` (Regress) or `scores`/`classes` (Classify). TF2's `tf.saved_model.save` can only
write predict-method signatures, and that is how this project's `serving_tf_example` looks.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (classification_pb2, inference_pb2, input_pb2, model_pb2, predict_pb2,
                                     regression_pb2)

from serving import errors
from serving.limits import RequestLimits
from serving.servable import (CLASSIFY_METHOD, DEFAULT_SIGNATURE, PREDICT_METHOD, REGRESS_METHOD, Servable,
                              Signature)
from serving.tensors import from_ndarray, to_ndarray, type_name

EXAMPLE_INPUT_ALIASES = ("examples", "inputs")
DEFAULT_LIMITS = RequestLimits()


def fill_model_spec(spec: model_pb2.ModelSpec, servable: Servable, signature_name: str | None) -> None:
    spec.Clear()
    spec.name = servable.name
    spec.version.value = servable.version
    if signature_name is not None:
        spec.signature_name = signature_name or DEFAULT_SIGNATURE


def _sorted(keys: Iterable[str]) -> str:
    return ",".join(sorted(keys))


# --- Predict --------------------------------------------------------------------------
def predict_signature(servable: Servable, signature_name: str) -> Signature:
    name = signature_name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(name)
    if signature is None:
        raise errors.failed_precondition(f"Serving signature key \"{name}\" not found.")
    if signature.method_name not in (PREDICT_METHOD, CLASSIFY_METHOD, REGRESS_METHOD):
        raise errors.internal(f"Expected prediction signature method_name to be one of {{{PREDICT_METHOD}, "
                              f"{CLASSIFY_METHOD}, {REGRESS_METHOD}}}. Was: {signature.method_name}")
    return signature


def check_input_aliases(signature: Signature, aliases: Iterable[str]) -> None:
    """Same set of input aliases as the signature, TF-Serving's wording on mismatch."""
    sent = set(aliases)
    expected = set(signature.inputs)
    if len(sent) != len(expected) or sent != expected:
        if len(sent) != len(expected):
            raise errors.invalid_argument(
                f"input size does not match signature: {len(sent)}!={len(expected)} len({{{_sorted(sent)}}}) != "
                f"len({{{_sorted(expected)}}}). Sent extra: {{{_sorted(sent - expected)}}}. "
                f"Missing but required: {{{_sorted(expected - sent)}}}.")
        unknown = sorted(sent - expected)[0]
        raise errors.invalid_argument(f"input tensor alias not found in signature: {unknown}. "
                                      f"Inputs expected to be in the set {{{_sorted(expected)}}}.")


def check_output_filter(signature: Signature, output_filter: Iterable[str]) -> list[str]:
    """The output aliases to return: the filter if given (validated), else all of them."""
    chosen: list[str] = []
    for alias in output_filter:
        if alias not in signature.outputs:
            raise errors.invalid_argument(f"output tensor alias not found in signature: {alias} Outputs expected "
                                          f"to be in the set {{{_sorted(signature.outputs)}}}.")
        if alias in chosen:
            raise errors.invalid_argument(f"duplicate output tensor alias: {alias}")
        chosen.append(alias)
    return chosen or sorted(signature.outputs)


def run_predict(servable: Servable, signature: Signature, inputs: Mapping[str, np.ndarray],
                output_filter: Iterable[str] = (), limits: RequestLimits = DEFAULT_LIMITS) -> dict[str, np.ndarray]:
    """Validated inputs (numpy, right dtypes) -> the chosen outputs, by alias."""
    check_input_aliases(signature, inputs)
    limits.check_sizes((alias, int(np.size(value))) for alias, value in sorted(inputs.items()))
    limits.check_bytes((alias, array_bytes(value)) for alias, value in sorted(inputs.items()))
    wanted = check_output_filter(signature, output_filter)
    # Shapes are not checked against the SignatureDef, as in TF-Serving (a Session accepts a
    # [3] feed for a [-1, 1] tensor: the README's {"instances": [1.0, 2.0, 5.0]} relies on
    # it); TF2 functions check them themselves and fail with INVALID_ARGUMENT.
    outputs = servable.run(signature, inputs)
    return {alias: outputs[alias] for alias in wanted}


def predict(servable: Servable, request: predict_pb2.PredictRequest,
            limits: RequestLimits = DEFAULT_LIMITS) -> predict_pb2.PredictResponse:
    signature = predict_signature(servable, request.model_spec.signature_name)
    check_input_aliases(signature, request.inputs.keys())
    limits.check_declared(request.inputs)  # before any tensor is built from the protos
    arrays = {}
    for position, alias in enumerate(sorted(request.inputs)):
        proto = request.inputs[alias]
        expected = signature.inputs[alias].dtype
        if proto.dtype != expected:
            raise errors.invalid_argument(f"Expects arg[{position}] to be {type_name(expected)} but "
                                          f"{type_name(proto.dtype)} is provided")
        try:
            arrays[alias] = to_ndarray(proto)
        except ValueError as error:
            raise errors.invalid_argument(f"tensor parsing error: {alias} ({error})") from None
    outputs = run_predict(servable, signature, arrays, request.output_filter, limits)
    response = predict_pb2.PredictResponse()
    fill_model_spec(response.model_spec, servable, signature.name)
    for alias, value in outputs.items():
        response.outputs[alias].CopyFrom(from_ndarray(value, signature.outputs[alias].dtype))
    return response


def array_bytes(value: np.ndarray) -> int:
    """What an already decoded input (REST) takes as a tensor: its buffer, or its strings' lengths."""
    if value.dtype == object:
        return sum(len(v) if isinstance(v, (bytes, str)) else 8 for v in value.ravel().tolist())
    return int(value.nbytes)


# --- tf.Example inputs ------------------------------------------------------------------
def serialized_examples(request_input: input_pb2.Input,
                        limits: RequestLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Input -> 1-D object array of serialized tf.Examples, context merged as TF-Serving does
    (context bytes + example bytes: the parser merges the two feature maps, example wins).
    The number of examples counts against the request caps like a tensor's elements, and the
    bytes they expand to (the context copied into each) against --max_request_bytes, both
    checked before a record is built."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples = request_input.example_list.examples
        limits.check_examples(0, [example.ByteSize() for example in examples])
        records = [example.SerializeToString() for example in examples]
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        limits.check_examples(with_context.context.ByteSize(), [example.ByteSize() for example in with_context.examples])
        context = with_context.context.SerializeToString()
        records = [context + example.SerializeToString() for example in with_context.examples]
    else:
        records = []
    if not records:
        raise errors.invalid_argument("Input is empty.")
    array = np.empty(len(records), dtype=object)
    array[:] = records
    return array


def _example_input_alias(signature: Signature) -> str | None:
    """The one string input of a predict-method signature that takes serialized Examples."""
    if len(signature.inputs) != 1:
        return None
    (alias, spec), = signature.inputs.items()
    return alias if alias in EXAMPLE_INPUT_ALIASES and spec.dtype == types_pb2.DT_STRING else None


def _describe(signature: Signature) -> str:
    return text_format.MessageToString(signature.definition, as_one_line=True)


def _run_on_examples(servable: Servable, signature: Signature, input_alias: str,
                     examples: np.ndarray) -> dict[str, np.ndarray]:
    spec = signature.inputs[input_alias]
    if spec.dtype != types_pb2.DT_STRING:
        raise errors.invalid_argument(f"Expected input tensor {input_alias} of signature {signature.name} to be "
                                      f"DT_STRING (serialized tf.Examples) but it is {type_name(spec.dtype)}")
    return servable.run(signature, {input_alias: examples})


def _check_batch(name: str, value: np.ndarray, batch: int, dtype_kind: str, dtype_label: str) -> None:
    if value.ndim == 0 or value.shape[0] != batch:
        got = value.shape[0] if value.ndim else 0
        raise errors.invalid_argument(f"Input batch size did not match output batch size: {batch} vs. {got}")
    if value.dtype.kind not in dtype_kind:
        raise errors.invalid_argument(f"Expected {name} Tensor of {dtype_label}.  Got: {value.dtype}")


# --- Regress --------------------------------------------------------------------------
def regression_signature(servable: Servable, signature_name: str) -> tuple[Signature, str]:
    """(signature, its examples input alias) for Regress, or TF-Serving's error."""
    name = signature_name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(name)
    if signature is None:
        raise errors.invalid_argument(f"No signature was found with the name: {name}")
    if signature.method_name == REGRESS_METHOD:
        if len(signature.inputs) != 1:
            raise errors.invalid_argument("Expected one input Tensor.")
        if len(signature.outputs) != 1:
            raise errors.invalid_argument("Expected one output Tensor.")
        if "inputs" not in signature.inputs:
            raise errors.failed_precondition(f"No regression inputs found in SignatureDef: {_describe(signature)}")
        if "outputs" not in signature.outputs:
            raise errors.failed_precondition(f"No regression outputs found in SignatureDef: {_describe(signature)}")
        return signature, "inputs"
    alias = _example_input_alias(signature) if signature.method_name == PREDICT_METHOD else None
    if alias is not None and "outputs" in signature.outputs:
        return signature, alias
    raise errors.invalid_argument(f"Expected regression signature method_name to be {REGRESS_METHOD}. "
                                  f"Was: {signature.method_name}")


def run_regression(servable: Servable, signature: Signature, input_alias: str,
                   examples: np.ndarray) -> regression_pb2.RegressionResult:
    output = _run_on_examples(servable, signature, input_alias, examples)["outputs"]
    batch = len(examples)
    if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
        raise errors.invalid_argument("Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                                      f"but got {list(output.shape)}")
    _check_batch("output", output, batch, "f", "DT_FLOAT")
    if output.dtype != np.float32:
        raise errors.invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {output.dtype}")
    result = regression_pb2.RegressionResult()
    for value in output.reshape(batch).tolist():
        result.regressions.add(value=value)
    return result


def regress(servable: Servable, request: regression_pb2.RegressionRequest,
            limits: RequestLimits = DEFAULT_LIMITS) -> regression_pb2.RegressionResponse:
    signature, alias = regression_signature(servable, request.model_spec.signature_name)
    response = regression_pb2.RegressionResponse()
    response.result.CopyFrom(run_regression(servable, signature, alias, serialized_examples(request.input, limits)))
    fill_model_spec(response.model_spec, servable, signature.name)
    return response


# --- Classify -------------------------------------------------------------------------
def classification_signature(servable: Servable, signature_name: str) -> tuple[Signature, str]:
    name = signature_name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(name)
    if signature is None:
        raise errors.invalid_argument(f"No signature was found with the name: {name}")
    has_outputs = "classes" in signature.outputs or "scores" in signature.outputs
    if signature.method_name == CLASSIFY_METHOD:
        if len(signature.inputs) != 1:
            raise errors.invalid_argument("Expected one input Tensor.")
        if len(signature.outputs) not in (1, 2):
            raise errors.invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
        if "inputs" not in signature.inputs:
            raise errors.failed_precondition(f"No classification inputs found in SignatureDef: {_describe(signature)}")
        if not has_outputs:
            raise errors.failed_precondition("Expected classification signature outputs to contain at least one of "
                                             f"classes or scores. Signature was: {_describe(signature)}")
        return signature, "inputs"
    alias = _example_input_alias(signature) if signature.method_name == PREDICT_METHOD else None
    if alias is not None and has_outputs:
        return signature, alias
    raise errors.invalid_argument(f"Expected classification signature method_name to be {CLASSIFY_METHOD}. "
                                  f"Was: {signature.method_name}")


def run_classification(servable: Servable, signature: Signature, input_alias: str,
                       examples: np.ndarray) -> classification_pb2.ClassificationResult:
    outputs = _run_on_examples(servable, signature, input_alias, examples)
    batch = len(examples)
    classes = outputs.get("classes")
    scores = outputs.get("scores")
    num_classes = None
    for name, value, kind, label in (("classes", classes, "OSU", "DT_STRING"), ("scores", scores, "f", "DT_FLOAT")):
        if value is None:
            continue
        if value.ndim != 2:
            raise errors.invalid_argument(f"Expected Tensor shape: [batch_size num_classes] but got {list(value.shape)}")
        _check_batch(name, value, batch, kind, label)
        if num_classes is not None and value.shape[1] != num_classes:
            raise errors.invalid_argument("Tensors class and score should match in dim[1]. "
                                          f"Got {num_classes} vs. {value.shape[1]}")
        num_classes = value.shape[1]
    result = classification_pb2.ClassificationResult()
    labels = classes.tolist() if classes is not None else None
    values = scores.astype(np.float32).tolist() if scores is not None else None
    for i in range(batch):
        row = result.classifications.add()
        for c in range(num_classes or 0):
            item = row.classes.add()
            if labels is not None:
                label = labels[i][c]
                item.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            if values is not None:
                item.score = values[i][c]
    return result


def classify(servable: Servable, request: classification_pb2.ClassificationRequest,
             limits: RequestLimits = DEFAULT_LIMITS) -> classification_pb2.ClassificationResponse:
    signature, alias = classification_signature(servable, request.model_spec.signature_name)
    response = classification_pb2.ClassificationResponse()
    response.result.CopyFrom(run_classification(servable, signature, alias,
                                                serialized_examples(request.input, limits)))
    fill_model_spec(response.model_spec, servable, signature.name)
    return response


# --- MultiInference ---------------------------------------------------------------------
def multi_inference(servable: Servable, request: inference_pb2.MultiInferenceRequest,
                    limits: RequestLimits = DEFAULT_LIMITS) -> inference_pb2.MultiInferenceResponse:
    """Several Regress/Classify signatures of one model version over one set of Examples."""
    if not request.tasks:
        raise errors.invalid_argument("Tasks is empty")
    model_name = request.tasks[0].model_spec.name
    seen: set[str] = set()
    for task in request.tasks:
        if task.model_spec.name != model_name:
            raise errors.invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        signature_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature_name in seen:
            raise errors.invalid_argument(f"Duplicate evaluation of signature: {signature_name}")
        seen.add(signature_name)
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise errors.unimplemented(f"Unsupported signature method_name: {task.method_name}")
    examples = serialized_examples(request.input, limits)
    response = inference_pb2.MultiInferenceResponse()
    for task in request.tasks:
        result = response.results.add()
        if task.method_name == CLASSIFY_METHOD:
            signature, alias = classification_signature(servable, task.model_spec.signature_name)
            result.classification_result.CopyFrom(run_classification(servable, signature, alias, examples))
        else:
            signature, alias = regression_signature(servable, task.model_spec.signature_name)
            result.regression_result.CopyFrom(run_regression(servable, signature, alias, examples))
        fill_model_spec(result.model_spec, servable, signature.name)
    return response
