"""TensorProto <-> numpy conversion on the request path.

Why not just tf.make_tensor_proto: TF-Serving answers Predict with the *typed* value fields
(`float_val`, `int64_val`, ...; Tensor::AsProtoField), and many clients read
`response.outputs["y"].float_val` directly, so the server must fill those fields, not
`tensor_content`. Doing it here with numpy is also several times faster than
tf.make_tensor_proto for the small tensors a rating request carries. Reading accepts both
encodings; anything unusual (half floats, complex, short value lists that TF broadcasts)
falls back to tf.make_ndarray, the reference implementation.
"""
from __future__ import annotations

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


def shape_of(proto: tensor_pb2.TensorProto) -> tuple[int, ...]:
    return tuple(int(d.size) for d in proto.tensor_shape.dim)


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The tensor's values as a numpy array (object array of bytes for strings).

    Raises ValueError for protos whose values do not fit their shape.
    """
    shape = shape_of(proto)
    size = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if any(d < 0 for d in shape):
        raise ValueError(f"tensor shape {list(shape)} has a negative dimension")
    dtype = proto.dtype
    if dtype in _FIELDS:
        np_dtype, field = _FIELDS[dtype]
        if proto.tensor_content:
            if len(proto.tensor_content) != size * np_dtype.itemsize:
                raise ValueError(f"tensor_content holds {len(proto.tensor_content)} bytes, "
                                 f"shape {list(shape)} of {type_name(dtype)} needs {size * np_dtype.itemsize}")
            return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(shape)
        values = getattr(proto, field)
        if len(values) == size:
            return np.asarray(values, dtype=np_dtype).reshape(shape)
    elif dtype == types_pb2.DT_STRING and len(proto.string_val) == size:
        array = np.empty(size, dtype=object)
        array[:] = list(proto.string_val)
        return array.reshape(shape)
    try:
        return tf.make_ndarray(proto)
    except Exception as error:  # noqa: BLE001 - any decoding failure is the client's bad tensor
        raise ValueError(f"cannot decode {type_name(dtype)} tensor of shape {list(shape)}: {error}") from None


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
