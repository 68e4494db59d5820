"""Load the latest pushed SavedModel under the TensorFlow of the serving image and use it.

    python tools/serving_runtime_check.py --model-base-path artifacts/serving/movielens \
        --expect-tf 2.19.1 [--samples samples.json]

Why this exists: the pipeline saves the model with the project's TensorFlow (2.21), while
production serves it with the `tensorflow/serving` image the manifests pin (2.19.1), whose
runtime is an older TensorFlow. A SavedModel that uses an op, attribute or proto field the
older runtime lacks loads fine here and fails only there, at the first push. This script
runs in a side virtualenv holding `tensorflow-cpu` of the image's version (made by
`commands.check_serving_runtime`, `make check-serving-runtime`) and does what the server does:

  1. picks the latest version folder under --model-base-path (numeric name, saved_model.pb),
     as TF-Serving's default version policy does;
  2. `tf.saved_model.load`s it and calls every signature with a small batch built from the
     signature's own input specs: values from --samples (the driver writes them from the
     feature table and the model's catalogue: ids that exist, real user/movie features),
     else the warm-up requests' tensors of the same name; every output must be finite and
     carry the batch dimension;
  3. loads it again the way TF-Serving does (a graph-mode session bundle with the `serve`
     tag and its SignatureDefs) and replays every record of
     assets.extra/tf_serving_warmup_requests through the request's signature (predict_log:
     its input tensors; regress_log: its serialized examples through a signature whose
     method is tensorflow/serving/regress), plus one Regress request per regress signature
     built from the sample examples, since TF-Serving's Regress API accepts only those;
     and feeds every signature a batch of 0 rows, which must answer with 0 rows.

Where it lives, and what it imports: tools/, outside the project's packages and their floors
(pyproject.toml [tool.importlinter]), because it must run under a TensorFlow the project does
not install. It imports only the standard library, tensorflow (and the numpy it brings) and
`tensorflow_serving.apis` (installed with --no-deps: its pb2 modules only, so no second full
`tensorflow` is pulled in). It names no feature or signature (but TF-Serving's default, serving_default): those come from the SavedModel
and from --samples, so the feature table stays the one place they are spelled.

Prints one line per signature and per warm-up record, then a summary; exits 1 naming every
failure, 2 when there is no model to check.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402  (after the log level: TensorFlow reads it at import)
import tensorflow as tf  # noqa: E402

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
SERVE_TAG = "serve"
PREDICT_METHOD = "tensorflow/serving/predict"
REGRESS_METHOD = "tensorflow/serving/regress"
CLASSIFY_METHOD = "tensorflow/serving/classify"
#: TF-Serving's Regress API: the one input and the output of a regress signature.
REGRESS_INPUTS, REGRESS_OUTPUTS = "inputs", "outputs"
#: The signature TF-Serving runs when a request names none.
DEFAULT_SIGNATURE = "serving_default"
INIT_OP_KEY = "__saved_model_init_op"  # a SignatureDef TF2 writes for its init op, not callable
DEFAULT_BATCH = 3


@dataclass
class Result:
    """One check: what was run, and the problem (None when it passed)."""

    what: str
    detail: str
    problem: str | None = None
    hints: tuple[str, ...] = ()

    def line(self) -> str:
        return f"[{'ok' if self.problem is None else 'FAIL'}] {self.what}: {self.problem or self.detail}"


# --- the model on disk ----------------------------------------------------------------------
def latest_version_dir(base: str) -> tuple[int, str] | None:
    """(version, folder) of the highest numeric version with a saved_model.pb, as TF-Serving's
    latest-1 policy picks it; None when there is none."""
    try:
        names = os.listdir(base)
    except OSError:
        return None
    versions = [(int(name), os.path.join(base, name)) for name in names
                if name.isdigit() and any(os.path.isfile(os.path.join(base, name, f"saved_model.{ext}"))
                                          for ext in ("pb", "pbtxt"))]
    return max(versions) if versions else None


def read_warmup(version_dir: str) -> list:
    """The warm-up PredictionLogs (empty without a file: TF-Serving then warms nothing)."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(version_dir, WARMUP_FILE)
    if not os.path.isfile(path):
        return []
    return [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(path)]


def warmup_values(logs: Iterable) -> dict[str, list]:
    """Input name -> the distinct values the warm-up requests send for it, in order seen."""
    values: dict[str, list] = {}
    for log in logs:
        if log.WhichOneof("log_type") != "predict_log":
            continue
        for name, proto in log.predict_log.request.inputs.items():
            seen = values.setdefault(name, [])
            for value in tf.make_ndarray(proto).reshape(-1).tolist():
                if value not in seen:
                    seen.append(value)
    return values


# --- inputs ---------------------------------------------------------------------------------
class Samples:
    """Sample values per input name (--samples), backed by the warm-up requests' values."""

    def __init__(self, payload: Mapping[str, Any], warm: Mapping[str, list], batch: int) -> None:
        self.rows: list[dict[str, Any]] = list(payload.get("rows", []))
        self.example_inputs: set[str] = set(payload.get("example_inputs", []))
        self.examples = [example_bytes(spec) for spec in payload.get("examples", [])]
        self.warm = warm
        self.batch = len(self.rows) or batch
        #: signature -> {"inputs": {name: values}, "rows": {output: rows}}: the signatures whose
        #: inputs are not one value per batch row (a history signature: one user, n movies)
        self.calls: dict[str, dict[str, Any]] = dict(payload.get("calls", {}))

    def column(self, name: str) -> list:
        if self.rows and all(name in row for row in self.rows):
            return [row[name] for row in self.rows]
        if self.warm.get(name):
            known = self.warm[name]
            return [known[i % len(known)] for i in range(self.batch)]
        raise KeyError(f"no sample value for input {name!r} (neither in --samples nor in the warm-up requests)")

    def tensor(self, name: str, spec: tf.TensorSpec) -> tf.Tensor:
        if name in self.example_inputs:
            if not self.examples:
                raise KeyError(f"input {name!r} takes serialized tf.Examples but --samples has none")
            values: list = self.examples
        else:
            values = self.column(name)
        if spec.dtype == tf.string:
            values = [v if isinstance(v, bytes) else str(v).encode() for v in values]
        return tf.constant(values, dtype=spec.dtype)


def example_bytes(features: Mapping[str, Mapping[str, list]]) -> bytes:
    """A serialized tf.Example from {name: {"int64"|"float"|"bytes": [values]}}."""
    example = tf.train.Example()
    for name, typed in features.items():
        (kind, values), = typed.items()
        feature = example.features.feature[name]
        if kind == "int64":
            feature.int64_list.value.extend(int(v) for v in values)
        elif kind == "float":
            feature.float_list.value.extend(float(v) for v in values)
        elif kind == "bytes":
            feature.bytes_list.value.extend(v.encode() if isinstance(v, str) else v for v in values)
        else:
            raise ValueError(f"feature {name!r}: unknown kind {kind!r} (int64, float or bytes)")
    return example.SerializeToString()


def check_outputs(outputs: Mapping[str, Any], batch: int) -> str | None:
    """None when every output is numeric and finite with `batch` rows; else what is wrong."""
    problems = []
    for name, value in outputs.items():
        array = np.asarray(value)
        if array.ndim == 0 or array.shape[0] != batch:
            problems.append(f"{name} has shape {list(array.shape)}, not a batch of {batch}")
        elif array.dtype.kind in "fc" and not np.isfinite(array).all():
            problems.append(f"{name} has non-finite values")
        elif array.dtype.kind not in "fciub":
            problems.append(f"{name} has dtype {array.dtype}, not a number")
    return "; ".join(problems) or None


def check_output_rows(outputs: Mapping[str, Any], rows: Mapping[str, int]) -> str | None:
    """check_outputs with each output's own number of rows (and exactly the outputs named)."""
    if set(outputs) != set(rows):
        return f"outputs {sorted(outputs)}, expected {sorted(rows)}"
    return "; ".join(problem for name, value in outputs.items()
                     if (problem := check_outputs({name: value}, rows[name]))) or None


def _shapes(outputs: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}{list(np.asarray(v).shape)}" for name, v in sorted(outputs.items()))


#: Known failure texts -> what they mean for TF-Serving (appended to the failure line).
HINTS = {
    "Could not find variable": "the SavedModel's restore op does not restore a variable its signatures "
                               "read; TF-Serving's loader (a session bundle) fails the same way (seen with "
                               "Keras 3 models saved through a tf.Module: track the layers' backing "
                               "tf.Variables, `[v.value for v in model.variables]`, on the module)",
    "Op type not registered": "the model uses an op this TensorFlow does not have: save it with ops "
                              "the serving image's TensorFlow knows, or move the image forward",
}


def describe(error: BaseException) -> tuple[str, tuple[str, ...]]:
    """One line (the error type and its first informative line: TF errors start with noise),
    and the HINTS that apply."""
    text = getattr(error, "message", None) or str(error)
    skip = ("Graph execution error", "Detected at node", "File ", "[[", "0 successful", "0 derived")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(skip)]
    first = (lines or [text.strip()])[0].split(" Debug info:")[0]
    summary = f"{type(error).__name__}: {first[:300]}"
    return summary, tuple(hint for needle, hint in HINTS.items() if needle in text)


def _attempt(what: str, run: Callable[[], Result]) -> Result:
    try:
        return run()
    except Exception as error:  # a failure of one check must not hide the others
        return Result(what, "", *describe(error))


# --- 2. every signature through tf.saved_model.load -----------------------------------------
def call_signatures(model: Any, samples: Samples) -> list[Result]:
    results = []
    for name in sorted(model.signatures):
        function = model.signatures[name]

        def run(name: str = name, function: Any = function) -> Result:
            _, specs = function.structured_input_signature
            call = samples.calls.get(name)
            if call is not None:
                inputs = {key: tf.constant(call["inputs"][key], dtype=spec.dtype) for key, spec in specs.items()}
                outputs = {key: value.numpy() for key, value in function(**inputs).items()}
                return Result(f"signature {name}", f"{len(inputs)} inputs -> {_shapes(outputs)}",
                              check_output_rows(outputs, call["rows"]))
            inputs = {key: samples.tensor(key, spec) for key, spec in specs.items()}
            batch = int(next(iter(inputs.values())).shape[0]) if inputs else 0
            outputs = {key: value.numpy() for key, value in function(**inputs).items()}
            return Result(f"signature {name}", f"{len(inputs)} inputs, batch {batch} -> {_shapes(outputs)}",
                          check_outputs(outputs, batch))

        results.append(_attempt(f"signature {name}", run))
    return results


# --- 3. TF-Serving's own path: a session bundle and its SignatureDefs ------------------------
class SessionBundle:
    """The SavedModel as TF-Serving's SavedModelBundle holds it: a graph, a session, the
    MetaGraphDef of the serve tag; signatures run by their SignatureDef tensor names."""

    def __init__(self, version_dir: str) -> None:
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            self.meta = tf.compat.v1.saved_model.load(self.session, [SERVE_TAG], version_dir)

    def signature(self, name: str):
        if name not in self.meta.signature_def:
            raise KeyError(f"no signature {name!r} in the SavedModel (has {sorted(self.meta.signature_def)})")
        return self.meta.signature_def[name]

    def run(self, name: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        signature = self.signature(name)
        missing = set(signature.inputs) - set(feeds)
        unknown = set(feeds) - set(signature.inputs)
        if missing or unknown:
            raise ValueError(f"signature {name!r}: inputs missing {sorted(missing)}, unknown {sorted(unknown)}")
        feed = {signature.inputs[key].name: value for key, value in feeds.items()}
        fetch = {key: info.name for key, info in signature.outputs.items()}
        return self.session.run(fetch, feed_dict=feed)

    def regress(self, name: str, examples: Sequence[bytes]) -> dict[str, np.ndarray]:
        """What TF-Serving's Regress API does: one string input `inputs`, output `outputs`."""
        signature = self.signature(name)
        if signature.method_name != REGRESS_METHOD:
            raise ValueError(f"signature {name!r} has method {signature.method_name!r}; "
                             f"TF-Serving's Regress API needs {REGRESS_METHOD!r}")
        if list(signature.inputs) != [REGRESS_INPUTS] or REGRESS_OUTPUTS not in signature.outputs:
            raise ValueError(f"signature {name!r}: Regress needs input {REGRESS_INPUTS!r} and output "
                             f"{REGRESS_OUTPUTS!r}, has {sorted(signature.inputs)} -> {sorted(signature.outputs)}")
        return self.run(name, {REGRESS_INPUTS: np.array(list(examples), dtype=object)})

    def method_names(self) -> dict[str, str]:
        return {key: s.method_name for key, s in self.meta.signature_def.items() if key != INIT_OP_KEY}


def _serialized(example_list) -> list[bytes]:
    return [example.SerializeToString() for example in example_list.examples]


def replay_record(bundle: SessionBundle, index: int, log) -> Result:
    kind = log.WhichOneof("log_type")
    what = f"warm-up record {index} ({kind}"

    def run() -> Result:
        if kind == "predict_log":
            request = log.predict_log.request
            name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            feeds = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            batch = len(next(iter(feeds.values()))) if feeds else 0
            outputs = bundle.run(name, feeds)
            if request.output_filter:
                outputs = {key: outputs[key] for key in request.output_filter}
        elif kind == "regress_log":
            request = log.regress_log.request
            name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            which = request.input.WhichOneof("kind")
            if which != "example_list":
                raise ValueError(f"regress input {which!r}: only example_list is replayed here")
            examples = _serialized(request.input.example_list)
            batch = len(examples)
            outputs = bundle.regress(name, examples)
        else:
            raise ValueError(f"log type {kind!r} is not replayed by this check")
        return Result(f"{what} -> {name})", f"batch {batch} -> {_shapes(outputs)}", check_outputs(outputs, batch))

    return _attempt(f"{what})", run)


def session_checks(version_dir: str, logs: Sequence, samples: Samples) -> list[Result]:
    try:
        bundle = SessionBundle(version_dir)
    except Exception as error:
        return [Result("session bundle (serve tag)", "", *describe(error))]
    methods = bundle.method_names()
    results = [Result("session bundle (serve tag)", f"{len(methods)} SignatureDefs",
                      "; ".join(f"signature {key!r} has unknown method {method!r}" for key, method in
                                methods.items() if method not in (PREDICT_METHOD, REGRESS_METHOD, CLASSIFY_METHOD))
                      or None)]
    results += [replay_record(bundle, i, log) for i, log in enumerate(logs)]
    for name in sorted(key for key, method in methods.items() if method == REGRESS_METHOD):
        def run(name: str = name) -> Result:
            outputs = bundle.regress(name, samples.examples)
            batch = len(samples.examples)
            return Result(f"Regress API -> {name}", f"batch {batch} -> {_shapes(outputs)}", check_outputs(outputs, batch))
        results.append(_attempt(f"Regress API -> {name}", run))
    results.append(_attempt("empty batch (session bundle)", lambda: empty_batches(bundle)))
    bundle.session.close()
    return results


def empty_batches(bundle: SessionBundle) -> Result:
    """Every SignatureDef fed a batch of 0 rows (each input [0] of its dtype) must answer with
    outputs of 0 rows, as a client of the real server sees it: an op that fails on no rows is
    an error there (TF-Serving runs the graph as it is)."""
    problems, names = [], sorted(key for key in bundle.meta.signature_def if key != INIT_OP_KEY)
    for name in names:
        signature = bundle.signature(name)
        feeds = {key: np.zeros([0], dtype=object if info.dtype == tf.string.as_datatype_enum
                               else tf.as_dtype(info.dtype).as_numpy_dtype)
                 for key, info in signature.inputs.items()}
        try:
            problem = check_outputs(bundle.run(name, feeds), 0)
        except Exception as error:  # one signature's failure must not hide the others'
            problem = describe(error)[0]
        if problem:
            problems.append(f"{name}: {problem}")
    return Result("empty batch (session bundle)", f"{len(names)} signatures -> 0 rows", "; ".join(problems) or None)


# --- main -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base-path", required=True, help="folder of numeric version folders")
    parser.add_argument("--expect-tf", default=None, help="fail unless tensorflow is this version")
    parser.add_argument("--samples", default=None, help="JSON: rows (input values), examples, example_inputs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"[runtime] tensorflow {tf.__version__} ({sys.executable})")
    if args.expect_tf and tf.__version__ != args.expect_tf:
        print(f"[FAIL] this runtime has tensorflow {tf.__version__}, the serving image's is {args.expect_tf}")
        return 1
    found = latest_version_dir(args.model_base_path)
    if found is None:
        print(f"[FAIL] no version folder with saved_model.pb under {args.model_base_path}")
        return 2
    version, version_dir = found
    print(f"[model] version {version}: {version_dir}")
    logs = read_warmup(version_dir)
    payload = {}
    if args.samples:
        with open(args.samples, encoding="utf-8") as handle:
            payload = json.load(handle)
    samples = Samples(payload, warmup_values(logs), DEFAULT_BATCH)

    results: list[Result] = []
    try:
        model = tf.saved_model.load(version_dir)
    except Exception as error:
        results.append(Result("tf.saved_model.load", "", *describe(error)))
    else:
        results.append(Result("tf.saved_model.load", f"{len(model.signatures)} signatures"))
        results += call_signatures(model, samples)
    if not logs:
        results.append(Result("warm-up requests", "", f"no {WARMUP_FILE} in version {version}"))
    results += session_checks(version_dir, logs, samples)

    for result in results:
        print(result.line())
    failed = [r for r in results if r.problem is not None]
    print(f"[summary] tensorflow {tf.__version__}, model version {version}: {len(results) - len(failed)} "
          f"of {len(results)} checks passed ({len(logs)} warm-up records)")
    if failed:
        for hint in dict.fromkeys(hint for r in failed for hint in r.hints):
            print(f"[hint] {hint}")
        print("[summary] FAILED: " + "; ".join(r.what for r in failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
