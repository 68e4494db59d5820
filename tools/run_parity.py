"""Two pipeline runs' outputs side by side: the same tf.Examples, and the same signature outputs?

    python tools/run_parity.py BASE_ARTIFACTS NEW_ARTIFACTS [--atol 1e-5]

Why: a change that should not change behaviour (moving modules, splitting one) must leave
what the pipeline writes as it was. Run the same command (e.g. `movielens-tfx demo
--artifacts DIR`) from the old and the new code, then compare:

* ExampleGen's and Transform's examples, split by split: the same records in the same order
  (compared as decoded protos, so only content counts);
* every signature of the latest pushed model, called on the first 256 test examples (ids,
  raw features, serialized tf.Examples): outputs equal within ``--atol``.

Prints one line per check and exits 1 when any differs.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from typing import Sequence

import numpy as np
import tensorflow as tf

SPLITS = ("Split-train", "Split-eval", "Split-test")
COMPONENTS = {"MovieLensExampleGen": "examples", "Transform": "transformed_examples"}
N_EXAMPLES = 256


def _latest_output(artifacts: str, component: str, output: str) -> str:
    runs = glob.glob(os.path.join(artifacts, "pipelines", "movielens", component, output, "*"))
    if not runs:
        raise SystemExit(f"{artifacts}: no {component} output {output!r}")
    return max(runs, key=lambda path: int(os.path.basename(path)))


def _records(folder: str) -> list[bytes]:
    files = sorted(glob.glob(os.path.join(folder, "*")))
    return [bytes(r.numpy()) for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _same_examples(base: list[bytes], new: list[bytes]) -> bool:
    if len(base) != len(new):
        return False
    for a, b in zip(base, new):
        if a != b and tf.train.Example.FromString(a) != tf.train.Example.FromString(b):
            return False
    return True


def _latest_model(artifacts: str) -> str:
    base = os.path.join(artifacts, "serving", "movielens")
    versions = [name for name in os.listdir(base) if name.isdigit()]
    return os.path.join(base, max(versions, key=int))


def _value(feature: tf.train.Feature, dtype: tf.DType):
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    if dtype == tf.string:
        return "|".join(v.decode() if isinstance(v, bytes) else str(v) for v in values)
    return values[0] if values else 0


def _inputs(signature, examples: list[bytes]) -> dict[str, tf.Tensor]:
    parsed = [tf.train.Example.FromString(e).features.feature for e in examples]
    out = {}
    for name, spec in signature.structured_input_signature[1].items():
        if spec.dtype == tf.string and name in ("examples", "inputs"):
            out[name] = tf.constant(examples)
        else:
            out[name] = tf.constant([_value(p[name], spec.dtype) for p in parsed], spec.dtype)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="artifacts folder of the run before the change")
    parser.add_argument("new", help="artifacts folder of the run after it")
    parser.add_argument("--atol", type=float, default=1e-5, help="largest absolute difference of a signature output")
    args = parser.parse_args(argv)
    same = True
    for component, output in COMPONENTS.items():
        folders = [_latest_output(root, component, output) for root in (args.base, args.new)]
        for split in SPLITS:
            base, new = (_records(os.path.join(folder, split)) for folder in folders)
            ok = _same_examples(base, new)
            same &= ok
            print(f"{'same' if ok else 'DIFFERENT'}: {component} {split} ({len(base):,} vs {len(new):,} records)")
    examples = _records(os.path.join(_latest_output(args.base, "MovieLensExampleGen", "examples"), "Split-test"))
    examples = examples[:N_EXAMPLES]
    models = [tf.saved_model.load(_latest_model(root)) for root in (args.base, args.new)]
    for name in sorted(models[0].signatures):
        if name not in models[1].signatures:
            print(f"DIFFERENT: signature {name} is missing from the new model")
            same = False
            continue
        outputs = [model.signatures[name](**_inputs(model.signatures[name], examples)) for model in models]
        worst = max(float(np.max(np.abs(outputs[0][key].numpy() - outputs[1][key].numpy())))
                    for key in outputs[0])
        ok = outputs[0].keys() == outputs[1].keys() and worst <= args.atol
        same &= ok
        print(f"{'same' if ok else 'DIFFERENT'}: signature {name} (largest difference {worst:.2e})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
