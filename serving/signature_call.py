"""Calling a loaded TF2 signature without TensorFlow's per-call Python binding.

Why: `loaded.signatures[name](**feeds)` binds the keyword arguments against the function's
FunctionType, re-reads the handle of every captured variable (the MovieLens export captures
25-75 of them per signature) and repacks the outputs -- about 0.25 ms of Python per call on
this host, where the graph of a known-id rating runs in about 0.35 ms. None of that changes
between calls of a loaded signature: the inputs of a signature are keyword tensors whose flat
order is their sorted names (tf.nest's order for a dict), and its captures are the same
variable handles for as long as the version is loaded. `FlatCall` works that out once, at
load, and then hands the graph function its flat inputs directly (AtomicFunction's
`call_preflattened`, what `_call_flat` ends in).

It only takes signatures it can prove it reads right: a TF2 signature (saved by
`tf.saved_model.save`) whose graph inputs are named after its sorted keyword arguments and
number exactly those plus the captures. Anything else (a TF1 SavedModel's WrappedFunction,
whose graph inputs carry the tensor names, not the aliases; another TF version's internals)
gets the plain call, so a model is always served, at worst at the plain call's speed.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

Call = Callable[..., Mapping[str, Any]]


class FlatCall:
    """`call(**feeds)` with the same results as the signature's own call, faster."""

    def __init__(self, function: Any, names: list[str], captures: list[Any], atomic: Any):
        self.function = function
        self._names = names
        self._captures = captures
        self._atomic = atomic

    def __call__(self, **feeds: Any) -> Mapping[str, Any]:
        if len(feeds) != len(self._names):  # what the structured call would refuse
            return self.function(**feeds)
        return self._atomic.call_preflattened([feeds[name] for name in self._names] + self._captures)


def signature_call(function: Any) -> Call:
    """A FlatCall for a TF2 signature it can read, else the signature itself."""
    try:
        from tensorflow.python.saved_model.load import _WrapperFunction
        if not isinstance(function, _WrapperFunction):
            return function
        args, kwargs = function.structured_input_signature
        atomic = function._inference_function  # noqa: SLF001 - see the module docstring
        captures = list(function.captured_inputs)
        names = sorted(kwargs)
        graph_inputs = [tensor.name.split(":")[0] for tensor in atomic.graph.inputs]
        if args or not isinstance(function.structured_outputs, dict) or not hasattr(atomic, "call_preflattened") \
                or len(graph_inputs) != len(names) + len(captures) or graph_inputs[:len(names)] != names:
            return function
    except Exception as error:  # noqa: BLE001 - any surprise: the plain call serves the model
        log.info("signature served through TensorFlow's structured call (%s: %s)", type(error).__name__, error)
        return function
    return FlatCall(function, names, captures, atomic)
