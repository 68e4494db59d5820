"""TensorProto <-> numpy conversion on the request path.

Why not just tf.make_tensor_proto: TF-Serving answers Predict with the *typed* value fields
(`float_val`, `int64_val`, ...; Tensor::AsProtoField), and many clients read
`response.outputs["y"].float_val` directly, so the server must fill those fields, not
`tensor_content`. Doing it here with numpy is also several times faster than
tf.make_tensor_proto for the small tensors a rating request carries. Reading accepts both
encodings with Tensor::FromProto's rules for value lists that do not match the shape;
anything unusual (half floats, complex) falls back to tf.make_ndarray.
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

# dtype enum -> (numpy dtype, TensorProto value field) for the typed-field encoding.
_FIELDS: dict[int, tuple[np.dtype, str]] = {
    types_pb2.DT_FLOAT: (np.dtype(np.float32), "float_val"),
    types_pb2.DT_DOUBLE: (np.dtype(np.float64), "double_val"),
    types_pb2.DT_INT32: (np.dtype(np.int32), "int_val"),
    types_pb2.DT_INT16: (np.dtype(np.int16), "int_val"),
    types_pb2.DT_INT8: (np.dtype(np.int8), "int_val"),
    types_pb2.DT_UINT8: (np.dtype(np.uint8), "int_val"),
    types_pb2.DT_UINT16: (np.dtype(np.uint16), "int_val"),
    types_pb2.DT_INT64: (np.dtype(np.int64), "int64_val"),
    types_pb2.DT_UINT32: (np.dtype(np.uint32), "uint32_val"),
    types_pb2.DT_UINT64: (np.dtype(np.uint64), "uint64_val"),
    types_pb2.DT_BOOL: (np.dtype(np.bool_), "bool_val"),
}

# TF's DataTypeString spelling ("float", not "float32"), used in TF-Serving's messages.
_TYPE_NAMES = {
    types_pb2.DT_FLOAT: "float", types_pb2.DT_DOUBLE: "double", types_pb2.DT_INT32: "int32",
    types_pb2.DT_INT16: "int16", types_pb2.DT_INT8: "int8", types_pb2.DT_UINT8: "uint8",
    types_pb2.DT_UINT16: "uint16", types_pb2.DT_INT64: "int64", types_pb2.DT_UINT32: "uint32",
    types_pb2.DT_UINT64: "uint64", types_pb2.DT_BOOL: "bool", types_pb2.DT_STRING: "string",
    types_pb2.DT_HALF: "half", types_pb2.DT_BFLOAT16: "bfloat16",
}


def type_name(dtype_enum: int) -> str:
    """DataTypeString(dtype): 'float', 'int64', 'string', ..."""
    if dtype_enum in _TYPE_NAMES:
        return _TYPE_NAMES[dtype_enum]
    try:
        return tf.as_dtype(dtype_enum).name
    except TypeError:
        return f"<invalid dtype {dtype_enum}>"


def item_bytes(dtype_enum: int) -> int:
    """Bytes per element of a numeric DataType (TF's DType.size); 8 for one TF cannot size."""
    try:
        return tf.as_dtype(dtype_enum).size or 8
    except TypeError:
        return 8


def shape_of(proto: tensor_pb2.TensorProto) -> tuple[int, ...]:
    return tuple(int(d.size) for d in proto.tensor_shape.dim)


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The tensor's values as a numpy array (object array of bytes for strings), read the way
    TF's Tensor::FromProto reads them -- what TF-Serving does with a Predict input:

      * tensor_content must hold exactly size x itemsize bytes;
      * a typed value list (int64_val, float_val, string_val, ...) longer than the shape is
        cut to it, a shorter one is filled up by repeating its last value, an empty one
        gives zeros (empty strings);
      * a shape with no elements gives an empty array, whatever the values.

    The caller bounds the declared size first (serving.limits), because the filling rule
    turns a few bytes into as many elements as the shape declares. Raises ValueError for
    protos whose values cannot make the declared tensor.
    """
    shape = shape_of(proto)
    if any(d < 0 for d in shape):
        raise ValueError(f"tensor shape {list(shape)} has a negative dimension")
    size = math.prod(shape)  # not np.prod: a few microseconds per tensor on the request path
    dtype = proto.dtype
    if dtype in _FIELDS or dtype == types_pb2.DT_STRING:
        np_dtype, field = _FIELDS.get(dtype, (np.dtype(object), "string_val"))
        if size == 0:
            return np.empty(shape, dtype=np_dtype)
        if proto.tensor_content and dtype != types_pb2.DT_STRING:
            if len(proto.tensor_content) != size * np_dtype.itemsize:
                raise ValueError(f"tensor_content holds {len(proto.tensor_content)} bytes, "
                                 f"shape {list(shape)} of {type_name(dtype)} needs {size * np_dtype.itemsize}")
            return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(shape)
        if not proto.tensor_content:
            return _filled(getattr(proto, field), size, np_dtype).reshape(shape)
    try:
        return tf.make_ndarray(proto)
    except Exception as error:  # noqa: BLE001 - any decoding failure is the client's bad tensor
        raise ValueError(f"cannot decode {type_name(dtype)} tensor of shape {list(shape)}: {error}") from None


def _filled(values, size: int, np_dtype: np.dtype) -> np.ndarray:
    """FromProtoField: the first `size` values; short lists repeat the last; none -> zeros."""
    count = len(values)
    if np_dtype == object:
        array = np.empty(size, dtype=object)
        if count == 0:
            array[:] = b""
        else:
            head = list(values[:size])
            array[:len(head)] = head
            array[len(head):] = head[-1]
        return array
    if count == 0:
        return np.zeros(size, dtype=np_dtype)
    if count >= size:
        return np.asarray(values[:size] if count > size else values, dtype=np_dtype)
    array = np.empty(size, dtype=np_dtype)
    array[:count] = values
    array[count:] = values[-1]
    return array


def from_ndarray(array: np.ndarray, dtype_enum: int | None = None) -> tensor_pb2.TensorProto:
    """TensorProto with typed value fields, as TF-Serving's Predict writes them."""
    array = np.asarray(array)
    if dtype_enum is None:
        dtype_enum = types_pb2.DT_STRING if array.dtype.kind in "OSU" else tf.as_dtype(array.dtype).as_datatype_enum
    proto = tensor_pb2.TensorProto(dtype=dtype_enum)
    proto.tensor_shape.CopyFrom(make_shape(array.shape))
    if dtype_enum in _FIELDS:
        np_dtype, field = _FIELDS[dtype_enum]
        getattr(proto, field).extend(array.astype(np_dtype, copy=False).ravel().tolist())
    elif dtype_enum == types_pb2.DT_STRING:
        proto.string_val.extend(_as_bytes(v) for v in array.ravel().tolist())
    else:
        proto = tf.make_tensor_proto(array, dtype=tf.as_dtype(dtype_enum))
    return proto


def make_shape(shape) -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in shape])


def _as_bytes(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")
