"""TF-Serving's REST JSON formats <-> numpy tensors and tf.Examples.

Mirrors tensorflow_serving/util/json_tensor.cc so REST clients written for TF-Serving work:
  * Predict, row format:    {"signature_name": s, "instances": [...]}  -> {"predictions": [...]}
  * Predict, columnar:      {"signature_name": s, "inputs": ... }      -> {"outputs": ...}
  * Regress / Classify:     {"signature_name": s, "context": {...}, "examples": [{...}]}
                            -> {"results": [v, ...]} / {"results": [[[label, score], ...], ...]}
  * binary strings as {"b64": "..."}; outputs whose alias ends in "_bytes" are written that way;
  * floats are written with the shortest text that round-trips the float32 (0.1, not
    0.10000000149011612), NaN/Infinity as bare tokens, as TF-Serving does.
Every malformed request is an INVALID_ARGUMENT with TF-Serving's message.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import input_pb2

from serving import errors
from serving.tensors import type_name

ROW = "row"
COLUMNAR = "columnar"

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT_RANGES = {
    types_pb2.DT_INT8: (-(2 ** 7), 2 ** 7 - 1), types_pb2.DT_UINT8: (0, 2 ** 8 - 1),
    types_pb2.DT_INT16: (-(2 ** 15), 2 ** 15 - 1), types_pb2.DT_UINT16: (0, 2 ** 16 - 1),
    types_pb2.DT_INT32: (-(2 ** 31), 2 ** 31 - 1), types_pb2.DT_UINT32: (0, 2 ** 32 - 1),
    types_pb2.DT_INT64: (-(2 ** 63), 2 ** 63 - 1), types_pb2.DT_UINT64: (0, 2 ** 64 - 1),
}
_NUMPY = {
    types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64, types_pb2.DT_BOOL: np.bool_,
    types_pb2.DT_INT8: np.int8, types_pb2.DT_UINT8: np.uint8, types_pb2.DT_INT16: np.int16,
    types_pb2.DT_UINT16: np.uint16, types_pb2.DT_INT32: np.int32, types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_INT64: np.int64, types_pb2.DT_UINT64: np.uint64,
}


# --- helpers for messages ---------------------------------------------------------------
def json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def json_text(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_b64_object(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def decode_b64(value: Any) -> bytes:
    if not is_b64_object(value):
        raise errors.invalid_argument(f"JSON Value: {json_text(value)} not formatted correctly for base64 data")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise errors.invalid_argument("Unable to base64 decode") from None


def _type_error(value: Any, dtype: int) -> errors.ServingError:
    return errors.invalid_argument(f"JSON Value: {json_text(value)} Type: {json_type(value)} is not of expected "
                                   f"type: {type_name(dtype)}")


# --- request parsing --------------------------------------------------------------------
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
#: byte -> its step in nesting depth: +1 for [ and {, -1 for ] and }, 0 for the rest.
_DEPTH_STEP = np.zeros(256, dtype=np.int8)
_DEPTH_STEP[[ord("["), ord("{")]] = 1
_DEPTH_STEP[[ord("]"), ord("}")]] = -1


def json_depth(body: bytes) -> int:
    """How deep a JSON text nests arrays and objects, read from its brackets outside string
    literals: C-speed (a regex and numpy), before a parser builds anything."""
    steps = _DEPTH_STEP[np.frombuffer(_JSON_STRING.sub(b'""', body), dtype=np.uint8)]
    steps = steps[steps != 0].astype(np.int32)
    return int(np.cumsum(steps).max()) if steps.size else 0


def parse_body(body: bytes, max_depth: int | None = None) -> dict:
    """The request's JSON object; INVALID_ARGUMENT (HTTP 400) for bad JSON and for nesting
    deeper than `max_depth` (checked first: a deep document costs the parser a stack frame a
    level and numpy refuses arrays of more than 64 dimensions)."""
    if not body.strip():
        raise errors.invalid_argument("JSON Parse error: The document is empty")
    if max_depth is not None:
        depth = json_depth(body)
        if depth > max_depth:
            raise errors.invalid_argument(f"JSON Parse error: the document nests {depth} levels deep, more than "
                                          f"this server's limit of {max_depth} (--max_json_depth)")
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise errors.invalid_argument(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    except (UnicodeDecodeError, RecursionError, ValueError) as error:
        raise errors.invalid_argument(f"JSON Parse error: {error}") from None
    if not isinstance(document, dict):
        raise errors.invalid_argument(f"JSON Value: {json_text(document)} Is not object")
    return document


def signature_name(document: dict) -> str:
    value = document.get("signature_name", "")
    if not isinstance(value, str):
        raise errors.invalid_argument(f"JSON Value: {json_text(document)} not formatted correctly. "
                                      "'signature_name' key must be a string value.")
    return value


def _leaf(value: Any, dtype: int) -> Any:
    """One JSON scalar -> a Python value of the tensor's type (TF-Serving's AddValueToTensor)."""
    if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
        if not _is_number(value):
            raise _type_error(value, dtype)
        if dtype == types_pb2.DT_FLOAT:
            if isinstance(value, int) and abs(value) > 2 ** 24 - 1:
                raise errors.invalid_argument(f"Cannot convert JSON value: {value} to float without loss of precision.")
            if isinstance(value, float) and np.isfinite(value) and abs(value) > _FLOAT32_MAX:
                raise errors.invalid_argument(f"Cannot convert JSON value: {value} to float without loss of precision.")
        elif isinstance(value, int) and abs(value) > 2 ** 53 - 1:
            raise errors.invalid_argument(f"Cannot convert JSON value: {value} to double without loss of precision.")
        return float(value)
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_BOOL:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if dtype == types_pb2.DT_STRING:
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict):
            return decode_b64(value)
        raise _type_error(value, dtype)
    raise errors.unimplemented(f"Conversion of JSON Value: {json_text(value)} to type: {type_name(dtype)}")


def _dense_shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value: Any, level: int, shape: list[int], dtype: int, out: list) -> None:
    if not isinstance(value, list):
        if level != len(shape):
            raise errors.invalid_argument(f"JSON Value: {json_text(value)} found at incorrect level: {level + 1} in "
                                          f"the JSON DOM. Expected at level: {len(shape)}")
        if isinstance(value, dict) and dtype != types_pb2.DT_STRING:
            raise _type_error(value, dtype)
        out.append(_leaf(value, dtype))
        return
    if level >= len(shape):
        raise errors.invalid_argument(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(value) != shape[level]:
        raise errors.invalid_argument(f"Encountered list at unexpected size: {len(value)} at level: {level} "
                                      f"expected size: {shape[level]}")
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _array(values: list, shape: list[int], dtype: int) -> np.ndarray:
    if dtype == types_pb2.DT_STRING:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array.reshape(shape)
    if dtype in _NUMPY:
        return np.array(values, dtype=_NUMPY[dtype]).reshape(shape)
    return np.array(values, dtype=tf.as_dtype(dtype).as_numpy_dtype).reshape(shape)


def tensor_from_json(value: Any, dtype: int) -> np.ndarray:
    """A JSON value (scalar or nested lists) -> a dense tensor of `dtype`."""
    shape = _dense_shape(value)
    values: list = []
    _fill(value, 0, shape, dtype, values)
    return _array(values, shape, dtype)


def _is_named_object(value: Any) -> bool:
    return isinstance(value, dict) and not is_b64_object(value)


def _from_instances(instances: Any, document: dict, specs: Mapping[str, int]) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise errors.invalid_argument(f"JSON Value: {json_text(document)} Excepting 'instances' to be an list/array")
    if not instances:
        raise errors.invalid_argument(f"JSON Value: {json_text(document)} No values in 'instances' array")
    if not isinstance(instances[0], dict) and len(specs) > 1:
        raise errors.invalid_argument("instances is a plain list, but expecting list of objects as multiple input "
                                      "tensors required as per tensorinfo_map")
    objects = _is_named_object(instances[0])
    names = sorted(specs)
    flat: dict[str, list] = {name: [] for name in names}
    shapes: dict[str, list[int]] = {}
    sizes: dict[str, int] = {}

    def add(item: Any, name: str) -> None:
        if name not in specs:
            raise errors.invalid_argument(f"JSON object: does not have named input: {name}")
        shape = _dense_shape(item)
        before = len(flat[name])
        _fill(item, 0, shape, specs[name], flat[name])
        size = len(flat[name]) - before
        if name not in shapes:
            shapes[name], sizes[name] = shape, size
        elif sizes[name] != size:
            raise errors.invalid_argument(f"Expecting tensor size: {sizes[name]} but got: {size}")
        elif shapes[name] != shape:
            raise errors.invalid_argument(f"Expecting shape [{','.join(map(str, shapes[name]))}] but got: "
                                          f"[{','.join(map(str, shape))}]")

    for index, element in enumerate(instances):
        if objects:
            if not _is_named_object(element):
                raise errors.invalid_argument(f"Expecting object but got list at item {index} of input list")
            for name, item in element.items():
                try:
                    add(item, name)
                except errors.ServingError as error:
                    raise errors.invalid_argument(f"Failed to process element: {index} key: {name} of 'instances' "
                                                  f"list. Error: {error}") from None
            if set(element) != set(specs):
                raise errors.invalid_argument(f"Failed to process element: {index} of 'instances' list. JSON object: "
                                              f"{json_text(element)} keys must be equal to: {','.join(names)}")
        else:
            if _is_named_object(element):
                raise errors.invalid_argument(f"Expecting value/list but got object at item {index} of input list")
            try:
                add(element, names[0])
            except errors.ServingError as error:
                raise errors.invalid_argument(f"Failed to process element: {index} of 'instances' list. "
                                              f"Error: {error}") from None
    return {name: _array(flat[name], [len(instances)] + shapes[name], specs[name]) for name in shapes}


def _from_columns(value: Any, specs: Mapping[str, int]) -> dict[str, np.ndarray]:
    if not isinstance(value, dict) or is_b64_object(value):
        if len(specs) > 1:
            raise errors.invalid_argument("inputs is a plain value/list, but expecting an object as multiple input "
                                          "tensors required as per tensorinfo_map")
        (name, dtype), = specs.items()
        return {name: tensor_from_json(value, dtype)}
    tensors = {}
    for name, dtype in specs.items():
        if name not in value:
            raise errors.invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = tensor_from_json(value[name], dtype)
    return tensors


def predict_inputs(document: dict, specs: Mapping[str, int]) -> tuple[dict[str, np.ndarray], str]:
    """(input tensors by alias, ROW or COLUMNAR) from a Predict body; `specs`: alias -> dtype."""
    if not specs:
        raise errors.invalid_argument("Failed to get input map for signature")
    has_instances = "instances" in document
    has_inputs = "inputs" in document
    if has_instances and has_inputs:
        raise errors.invalid_argument(f"JSON Value: {json_text(document)} Not formatted correctly expecting only one "
                                      "of 'inputs' or 'instances' keys to exist ")
    if has_instances:
        return _from_instances(document["instances"], document, specs), ROW
    if has_inputs:
        return _from_columns(document["inputs"], specs), COLUMNAR
    raise errors.invalid_argument("Missing 'inputs' or 'instances' key")


# --- tf.Example requests (Regress / Classify) -------------------------------------------
def _feature_kind_error(name: str, feature: tf.train.Feature) -> errors.ServingError:
    kind = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(feature.WhichOneof("kind"),
                                                                                     "UNKNOWN")
    return errors.invalid_argument(f"Unexpected element type in feature: {name} expecting type: {kind}")


def _add_feature_value(value: Any, name: str, feature: tf.train.Feature) -> None:
    kind = feature.WhichOneof("kind")
    if isinstance(value, bool):
        if kind not in (None, "int64_list"):
            raise _feature_kind_error(name, feature)
        feature.int64_list.value.append(int(value))
    elif isinstance(value, dict):
        if not is_b64_object(value):
            raise errors.invalid_argument(f"Feature: {name} has element with unexpected JSON type: Object")
        if kind not in (None, "bytes_list"):
            raise _feature_kind_error(name, feature)
        feature.bytes_list.value.append(decode_b64(value))
    elif isinstance(value, str):
        if kind not in (None, "bytes_list"):
            raise _feature_kind_error(name, feature)
        feature.bytes_list.value.append(value.encode("utf-8"))
    elif isinstance(value, float):
        if kind not in (None, "float_list"):
            raise _feature_kind_error(name, feature)
        if np.isfinite(value) and abs(value) > _FLOAT32_MAX:
            raise errors.invalid_argument(f"Cannot convert JSON value: {value} to float without loss of precision.")
        feature.float_list.value.append(value)
    elif isinstance(value, int):
        if kind not in (None, "int64_list"):
            raise _feature_kind_error(name, feature)
        if value > 2 ** 63 - 1:
            raise errors.invalid_argument(f"Feature: {name} has uint64 element. Only int64 is supported.")
        if value < -(2 ** 63):
            raise errors.invalid_argument(f"Feature: {name} has element out of the int64 range.")
        feature.int64_list.value.append(value)
    else:
        raise errors.invalid_argument(f"Feature: {name} has element with unexpected JSON type: {json_type(value)}")


def example_from_json(value: Any, example: tf.train.Example) -> None:
    if not isinstance(value, dict):
        raise errors.invalid_argument(f"Example must be JSON object but got JSON {json_type(value)}")
    for name, content in value.items():
        feature = tf.train.Feature()
        for item in (content if isinstance(content, list) else [content]):
            _add_feature_value(item, name, feature)
        example.features.feature[name].CopyFrom(feature)


def examples_input(document: dict, method: str) -> input_pb2.Input:
    """The tensorflow.serving.Input of a Regress/Classify body ("context" + "examples")."""
    request_input = input_pb2.Input()
    has_context = "context" in document
    if has_context:
        example_from_json(document["context"], request_input.example_list_with_context.context)
    if "examples" not in document:
        raise errors.invalid_argument(f"JSON Value: {json_text(document)} When method is {method}, key 'examples' is "
                                      "expected and was not found")
    examples = document["examples"]
    if not isinstance(examples, list):
        raise errors.invalid_argument(f"JSON Value: {json_text(document)} Expecting 'examples' value to be an "
                                      "list/array")
    if not examples:
        raise errors.invalid_argument(f"JSON Value: {json_text(document)} 'examples' value is an empty array")
    target = request_input.example_list_with_context if has_context else request_input.example_list
    for value in examples:
        example_from_json(value, target.examples.add())
    return request_input


# --- responses ----------------------------------------------------------------------------
def shortest_float32(value: float) -> float:
    """The float whose repr is the shortest text that round-trips `value` as a float32."""
    return float(str(np.float32(value)))


def _json_values(array: np.ndarray, alias: str) -> Any:
    """A tensor as nested JSON-ready lists (a bare value for scalars)."""
    if array.dtype.kind == "f" and array.dtype != np.float64:
        floats = np.array([float(text) for text in array.astype(np.float32).astype(str).ravel()], dtype=object)
        return floats.reshape(array.shape).tolist()
    if array.dtype.kind in "OSU":
        as_b64 = alias.endswith("_bytes")

        def text(value: Any) -> Any:
            raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
            if as_b64:
                return {"b64": base64.b64encode(raw).decode("ascii")}
            return raw.decode("utf-8", "replace")

        items = np.array([text(v) for v in array.ravel().tolist()], dtype=object)
        return items.reshape(array.shape).tolist()
    return array.tolist()


def predict_response(outputs: Mapping[str, np.ndarray], fmt: str) -> dict:
    if not outputs:
        raise errors.invalid_argument("Cannot convert empty tensor map to JSON")
    if fmt == COLUMNAR:
        columns = {alias: _json_values(value, alias) for alias, value in outputs.items()}
        return {"outputs": next(iter(columns.values())) if len(columns) == 1 else columns}
    batch = None
    for alias, value in outputs.items():
        if value.ndim == 0:
            raise errors.invalid_argument(f"Tensor name: {alias} has no shape information ")
        if batch is not None and value.shape[0] != batch:
            raise errors.invalid_argument(f"Tensor name: {alias} has inconsistent batch size: {value.shape[0]} "
                                          f"expecting: {batch}")
        batch = value.shape[0]
    rows = {alias: _json_values(value, alias) for alias, value in outputs.items()}
    if len(rows) == 1:
        return {"predictions": next(iter(rows.values()))}
    return {"predictions": [{alias: rows[alias][i] for alias in rows} for i in range(batch or 0)]}


def regression_response(result) -> dict:
    if not result.regressions:
        raise errors.invalid_argument("Cannot convert empty RegressionResults to JSON")
    return {"results": [shortest_float32(r.value) for r in result.regressions]}


def classification_response(result) -> dict:
    if not result.classifications:
        raise errors.invalid_argument("Cannot convert empty ClassificationResults to JSON")
    return {"results": [[[c.label, shortest_float32(c.score)] for c in row.classes]
                        for row in result.classifications]}


def dumps(payload: Any) -> bytes:
    """JSON text as TF-Serving writes it (NaN/Infinity allowed, UTF-8)."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=True).encode("utf-8")
