"""One loaded model version: the SavedModel, its SignatureDefs, and who is using it.

Why the SignatureDefs come from saved_model.pb and not from the loaded object: TF-Serving
validates requests against the MetaGraphDef's SignatureDef (method name, input/output keys,
dtypes) and returns that map from GetModelMetadata; `tf.saved_model.load` keeps
only callables and drops method names. TF1 SavedModels (reference variables, like
half_plus_two) load through the same call, with warnings.

With --enable_batching a version holds a serving.batching.Batcher: `run` then merges
concurrent requests to a signature into one call of it (TF-Serving wraps the session the same
way), whichever API the request came through; the batch threads end when the version unloads.
Before a request joins a batch its inputs are checked against the SignatureDef (rank and the
known inner dimensions): one that cannot match is refused alone with INVALID_ARGUMENT. In
TF-Serving it would join the batch and fail every request in it with FAILED_PRECONDITION
(the concatenation fails), so one bad client could fail its batch-mates.

Why the in-flight counter: a version that is being replaced must not be unloaded under a
running request. Requests `try_acquire()` it; the manager `retire()`s it (no new requests) and
waits until the count drops to zero before dropping the last reference.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from model.signature_names import SIGNATURE_DEFAULT
from serving import errors
from serving.batching import Batcher
from serving.batching_parameters import BatchingParameters
from serving.in_flight import InFlight
from serving.signature_call import signature_call

log = logging.getLogger(__name__)

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
DEFAULT_SIGNATURE = SIGNATURE_DEFAULT
DEFAULT_TAGS = ("serve",)


@dataclass(frozen=True)
class TensorSpecInfo:
    """What a signature input or output accepts: alias, dtype enum, (partial) shape."""

    alias: str
    dtype: int
    shape: tf.TensorShape


@dataclass(frozen=True)
class Signature:
    """A SignatureDef plus the callable that runs it."""

    name: str
    method_name: str
    definition: meta_graph_pb2.SignatureDef
    inputs: Mapping[str, TensorSpecInfo]
    outputs: Mapping[str, TensorSpecInfo]
    function: Callable[..., Mapping[str, tf.Tensor]] | None


def read_meta_graph(export_dir: Path, tags: tuple[str, ...] = DEFAULT_TAGS) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraphDef tagged exactly `tags` from saved_model.pb (or .pbtxt)."""
    saved_model = saved_model_pb2.SavedModel()
    binary = export_dir / "saved_model.pb"
    text = export_dir / "saved_model.pbtxt"
    if binary.is_file():
        saved_model.ParseFromString(binary.read_bytes())
    elif text.is_file():
        text_format.Parse(text.read_text(), saved_model)
    else:
        raise FileNotFoundError(f"SavedModel file does not exist at: {export_dir}/{{saved_model.pbtxt|saved_model.pb}}")
    wanted = set(tags)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == wanted:
            return meta_graph
    found = [sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise ValueError(f"MetaGraphDef associated with tags {sorted(wanted)} could not be found in SavedModel "
                     f"at {export_dir}; available tag sets: {found}")


def _spec(alias: str, info: meta_graph_pb2.TensorInfo) -> TensorSpecInfo:
    return TensorSpecInfo(alias, int(info.dtype), tf.TensorShape(info.tensor_shape))


class Servable:
    """A loaded version of a model. Immutable after construction except the usage counter."""

    def __init__(self, name: str, version: int, path: Path, meta_graph: meta_graph_pb2.MetaGraphDef,
                 loaded: object, batching: BatchingParameters | None = None):
        self.name = name
        self.version = version
        self.path = path
        self.meta_graph = meta_graph
        self._loaded = loaded  # keeps variables and tables alive while the version is served
        functions = getattr(loaded, "signatures", {})
        signatures = {}
        for key, definition in meta_graph.signature_def.items():
            signatures[key] = Signature(
                name=key, method_name=definition.method_name, definition=definition,
                inputs={alias: _spec(alias, info) for alias, info in definition.inputs.items()},
                outputs={alias: _spec(alias, info) for alias, info in definition.outputs.items()},
                function=signature_call(functions[key]) if key in functions else None)
        self.signatures: Mapping[str, Signature] = signatures
        self._usage = InFlight()
        self._batcher = None if batching is None else Batcher(batching, f"{name}-{version}")

    @classmethod
    def load(cls, name: str, version: int, path: Path, tags: tuple[str, ...] = DEFAULT_TAGS,
             batching: BatchingParameters | None = None) -> "Servable":
        meta_graph = read_meta_graph(path, tags)
        loaded = tf.saved_model.load(str(path), tags=list(tags))
        return cls(name, version, path, meta_graph, loaded, batching)

    # --- usage tracking -------------------------------------------------------------
    def try_acquire(self) -> bool:
        """Counts one more request in flight; False once the version is retired."""
        return self._usage.try_enter()

    def release(self) -> None:
        self._usage.leave()

    def retire(self) -> None:
        """No new requests from now on; running ones finish."""
        self._usage.close()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Blocks until no request uses this version; True if it became idle in time."""
        return self._usage.wait_idle(timeout)

    @property
    def in_flight(self) -> int:
        return self._usage.count

    def unload(self) -> None:
        """Ends the batch threads and drops the model; the memory goes with the last reference."""
        if self._batcher is not None:
            self._batcher.stop()
        self._loaded = None
        self.signatures = {}

    # --- running --------------------------------------------------------------------
    def signature(self, name: str) -> Signature | None:
        return self.signatures.get(name or DEFAULT_SIGNATURE)

    def run(self, signature: Signature, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs `signature` on already validated inputs (batched with other requests under
        --enable_batching); every output as numpy."""
        if self._batcher is None:
            return self.run_unbatched(signature, inputs)
        check_batchable(signature, inputs)
        return self._batcher.run(signature.name, inputs, lambda merged: self.run_unbatched(signature, merged))

    def run_unbatched(self, signature: Signature, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call of the signature's function on exactly these inputs."""
        if signature.function is None:
            raise errors.failed_precondition(
                f"Serving signature key \"{signature.name}\" has no callable function in the loaded SavedModel.")
        feeds = {}
        for alias, value in inputs.items():
            spec = signature.inputs[alias]
            feeds[alias] = tf.constant(value, dtype=tf.as_dtype(spec.dtype))
        try:
            outputs = signature.function(**feeds)
        except tf.errors.OpError as error:
            if _is_empty_batch(inputs):
                return _empty_outputs(signature)
            raise errors.from_tf_error(error) from None
        except UnicodeDecodeError as error:
            # TF could not turn the op's message into a str: it quotes the client's bytes (a
            # garbage serialized tf.Example: "Could not parse example input, value: '\xff...'").
            raise errors.invalid_argument(errors.undecodable_tf_message(error.object)) from None
        except (TypeError, ValueError) as error:
            raise errors.invalid_argument(str(error)) from None
        return {alias: tensor.numpy() for alias, tensor in outputs.items()}


def check_batchable(signature: Signature, inputs: Mapping[str, np.ndarray]) -> None:
    """INVALID_ARGUMENT for an input whose rank, or a known dimension after the 0th (batch)
    one, differs from its SignatureDef's: such a request could not be concatenated with
    well-formed ones, so it must not share their batch."""
    for alias, value in sorted(inputs.items()):
        spec = signature.inputs[alias].shape
        if spec.rank is None:
            continue
        shape = np.shape(value)
        expected = spec.as_list()
        mismatch = len(shape) != len(expected) or any(
            want is not None and want != got for want, got in zip(expected[1:], shape[1:]))
        if mismatch:
            raise errors.invalid_argument(
                f"input tensor {alias} has shape {list(shape)}, which does not match the signature's "
                f"{['?' if d is None else d for d in expected]} for {signature.name}; with --enable_batching only "
                f"requests that match their signature share a batch")


def _is_empty_batch(inputs: Mapping[str, np.ndarray]) -> bool:
    return bool(inputs) and all(np.ndim(v) >= 1 and np.shape(v)[0] == 0 for v in inputs.values())


def _empty_outputs(signature: Signature) -> dict[str, np.ndarray]:
    """A batch of 0 that the graph itself cannot run (a MatMul over no rows, an op that
    wants one element) gets outputs of 0 rows: the SignatureDef's shape with the batch
    dimension 0 (unknown inner dimensions 0 too), never an internal error."""
    outputs = {}
    for alias, spec in signature.outputs.items():
        dims = spec.shape.as_list() if spec.shape.rank is not None else [None]
        shape = [0] + [d if d is not None else 0 for d in dims[1:]]
        dtype = np.dtype(object) if spec.dtype == tf.string.as_datatype_enum else tf.as_dtype(spec.dtype).as_numpy_dtype
        outputs[alias] = np.empty(shape, dtype=dtype)
    return outputs
