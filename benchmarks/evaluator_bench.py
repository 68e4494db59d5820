"""The TFX Evaluator on a finished run's artifacts: seconds and metrics, before vs after.

    python -m benchmarks.evaluator_bench --artifacts artifacts --dataset ml-1m

Runs TFX's Evaluator executor (the code the pipeline's Evaluator runs) on the latest
Trainer model and ExampleGen's Split-test under <artifacts>/pipelines/movielens, once per
variant, interleaved (before, after, before, ... with --repeats), in this one process:

  before              `pipeline.pipeline.eval_config` on TFX's stock executor with the Beam
                      arguments the pipeline gave it before the vectorised executor
                      (STOCK_BEAM_ARGS: in_memory, one worker, so one file per output)
  keras-metrics       the same metrics by tf_keras.metrics (one batched TF combiner)
  multi-processing-2  the DirectRunner with 2 worker processes
  vectorised          components.evaluator.Executor (what the pipeline now runs): the same
                      eval_config, computed with tf.data + NumPy, written as TFMA's files

Writes benchmarks/results/evaluator.json: seconds per variant, the settings, the example
count, and every variant's metric values per slice (they must agree) and blessing. The host
is shared and its speed varies: compare variants only as ratios within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from benchmarks.host import HostLoad

RESULTS = Path(__file__).resolve().parent / "results"


def _latest(folder: str) -> str:
    """The newest artifact of one component output: <folder>/<execution id>."""
    ids = [name for name in os.listdir(folder) if name.isdigit()]
    if not ids:
        raise SystemExit(f"no artifact under {folder}: run the pipeline first")
    return os.path.join(folder, max(ids, key=int))


def _count_examples(split_uri: str) -> int:
    import tensorflow as tf

    files = tf.io.gfile.glob(os.path.join(split_uri, "*"))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def _limited_split(split_uri: str, limit: int, out_dir: str) -> str:
    """The first `limit` records of a split, as a one-file split (for quick profiling)."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(split_uri, "*")))
    target = os.path.join(out_dir, "Split-test")
    os.makedirs(target, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(os.path.join(target, "data.gz"), options) as writer:
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit):
            writer.write(record.numpy())
    return out_dir


def _keras_metrics(eval_config):
    """The same metrics (names, thresholds) computed by tf_keras.metrics: TFMA then feeds all
    three through one batched TF combiner instead of one Python combiner each."""
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            if metric.class_name in ("MeanSquaredError", "MeanAbsoluteError", "RootMeanSquaredError"):
                metric.module = "tf_keras.metrics"
    return eval_config


#: The stock Evaluator's Beam arguments in the pipeline before the vectorised executor (and
#: what results/evaluator.json ran): one worker writes one file per output, as ours does.
STOCK_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


def _variants():
    """name -> (eval_config, beam args)."""
    from pipeline import configs, pipeline

    def current():
        return pipeline.eval_config(configs.DEFAULT_RMSE_THRESHOLD)

    stock = list(STOCK_BEAM_ARGS)

    return {
        "before": (current(), stock),
        "keras-metrics": (_keras_metrics(current()), stock),
        "multi-processing-2": (current(), ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
        "vectorised": (current(), stock),
    }


def _executor_class(variant: str):
    """The Evaluator executor a variant runs: TFX's stock one, or the pipeline's vectorised one."""
    if variant == "vectorised":
        from components import evaluator

        return evaluator.Executor
    from tfx.components.evaluator import executor as evaluator_executor

    return evaluator_executor.Executor


def run_evaluator(eval_config, beam_args: list[str], examples_uri: str, model_uri: str, out_dir: str,
                  baseline_uri: str | None = None, executor_class=None) -> dict:
    """One TFX Evaluator execution; returns seconds, metrics per slice, the validation and the
    blessing. `executor_class`: TFX's stock Evaluator executor unless given."""
    import tensorflow_model_analysis as tfma
    from google.protobuf import json_format
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as specs
    from tfx.utils import json_utils, proto_utils

    def artifact(kind, uri, **props):
        item = kind()
        item.uri = uri
        for key, value in props.items():
            setattr(item, key, value)
        return item

    examples = artifact(standard_artifacts.Examples, examples_uri,
                        split_names=artifact_utils.encode_split_names(["test"]))
    inputs = {specs.EXAMPLES_KEY: [examples], specs.MODEL_KEY: [artifact(standard_artifacts.Model, model_uri)]}
    if baseline_uri:
        inputs[specs.BASELINE_MODEL_KEY] = [artifact(standard_artifacts.Model, baseline_uri)]
    evaluation_uri = os.path.join(out_dir, "evaluation")
    blessing_uri = os.path.join(out_dir, "blessing")
    os.makedirs(evaluation_uri)
    os.makedirs(blessing_uri)
    outputs = {specs.EVALUATION_KEY: [artifact(standard_artifacts.ModelEvaluation, evaluation_uri)],
               specs.BLESSING_KEY: [artifact(standard_artifacts.ModelBlessing, blessing_uri)]}
    exec_properties = {specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(eval_config),
                       specs.EXAMPLE_SPLITS_KEY: json_utils.dumps(["test"])}
    context = BaseBeamExecutor.Context(beam_pipeline_args=beam_args, tmp_dir=os.path.join(out_dir, "tmp"),
                                       unique_id="bench")
    start = time.perf_counter()
    (executor_class or _executor_class("before"))(context).Do(inputs, outputs, exec_properties)
    seconds = time.perf_counter() - start
    result = tfma.load_eval_result(evaluation_uri)
    metrics = {}
    for model_name in (["candidate", "baseline"] if baseline_uri else [""]):
        result = tfma.load_eval_result(evaluation_uri, model_name=model_name or None)
        for slice_key, by_output in result.slicing_metrics:
            name = "overall" if not slice_key else ",".join(f"{k}={v}" for k, v in slice_key)
            values = by_output[""][""]
            metrics[name + (f"[{model_name}]" if model_name else "")] = {
                key: round(float(value.get("doubleValue", value.get("boundedValue", {}).get("value", 0))), 6)
                for key, value in sorted(values.items()) if isinstance(value, dict)}
    validation = json_format.MessageToDict(tfma.load_validation_result(evaluation_uri))
    return {"seconds": round(seconds, 2), "blessed": os.path.exists(os.path.join(blessing_uri, "BLESSED")),
            "metrics": dict(sorted(metrics.items())), "validation": validation,
            "files": sorted(os.listdir(evaluation_uri))}


def _same_validation(a: dict, b: dict) -> bool:
    """The same ValidationResult, metric values in failures to 1e-5 relative."""
    def values(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from values(value, f"{path}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from values(value, f"{path}[{index}]")
        else:
            yield path, node
    left, right = dict(values(a)), dict(values(b))
    if left.keys() != right.keys():
        return False
    for key, value in left.items():
        other = right[key]
        if isinstance(value, float) or isinstance(other, float):
            if abs(float(value) - float(other)) > 1e-5 * max(1.0, abs(float(value))):
                return False
        elif value != other:
            return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.evaluator_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", required=True, help="the --artifacts root of a finished pipeline run")
    parser.add_argument("--dataset", default="ml-1m", help="the name recorded in the results (never a path)")
    parser.add_argument("--variants", default="before,keras-metrics", help="comma-separated, run interleaved")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--baseline", action="store_true",
                        help="also evaluate the same model as the baseline (as a run after a blessed one does)")
    parser.add_argument("--baseline-model", default=None,
                        help="a Model artifact uri (e.g. a worse run's Trainer/model/<id>) as the baseline")
    parser.add_argument("--limit", type=int, default=0, help="only the first N test examples (profiling)")
    parser.add_argument("--out", type=Path, default=RESULTS / "evaluator.json")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write cProfile stats of each run to PROFILE.<variant>.<n> (slows it down)")
    args = parser.parse_args(argv)

    from settings.paths import ArtifactPaths

    root = ArtifactPaths(args.artifacts).pipeline_root
    model_uri = _latest(os.path.join(root, "Trainer", "model"))
    examples_uri = _latest(os.path.join(root, "MovieLensExampleGen", "examples"))
    variants = _variants()
    host = HostLoad(name="evaluator_bench")
    chosen = [name.strip() for name in args.variants.split(",") if name.strip()]
    runs: dict[str, list[dict]] = {name: [] for name in chosen}
    with tempfile.TemporaryDirectory(prefix="evaluator-bench-") as tmp:
        if args.limit:
            examples_uri = _limited_split(os.path.join(examples_uri, "Split-test"), args.limit,
                                          os.path.join(tmp, "examples"))
        count = _count_examples(os.path.join(examples_uri, "Split-test"))
        for repeat in range(args.repeats):
            for name in chosen:
                eval_config, beam_args = variants[name]
                out = os.path.join(tmp, f"{name}-{repeat}")
                baseline_uri = args.baseline_model or (model_uri if args.baseline else None)
                call = lambda: run_evaluator(eval_config, beam_args, examples_uri, model_uri, out,  # noqa: E731
                                             baseline_uri=baseline_uri, executor_class=_executor_class(name))
                if args.profile:
                    import cProfile

                    profiler = cProfile.Profile()
                    run = profiler.runcall(call)
                    profiler.dump_stats(f"{args.profile}.{name}.{repeat}")
                else:
                    run = call()
                runs[name].append(run)
                print(f"[evaluator-bench] {name} #{repeat + 1}: {run['seconds']} s, "
                      f"blessed={run['blessed']}, overall={run['metrics'].get('overall', run['metrics'].get('overall[candidate]'))}", file=sys.stderr)

    from google.protobuf import json_format

    report = {
        "dataset": args.dataset,
        "split": "test",
        "examples": count,
        "baseline_model": ("another model" if args.baseline_model else
                           "the same model" if args.baseline else None),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "note": "variants interleaved in one process on the same artifacts; the host is shared, "
                "so compare the ratio, not absolute seconds across runs",
        "variants": {},
        **host.record(),
    }
    for name, items in runs.items():
        eval_config, beam_args = variants[name]
        report["variants"][name] = {
            "seconds": [item["seconds"] for item in items],
            "seconds_median": round(statistics.median(item["seconds"] for item in items), 2),
            "beam_args": beam_args,
            "model_specs": [json_format.MessageToDict(spec) for spec in eval_config.model_specs],
            "blessed": [item["blessed"] for item in items],
            "validation_ok": [bool(item["validation"].get("validationOk")) for item in items],
            "files": items[-1]["files"],
            "metrics": items[-1]["metrics"],
            "validation": items[-1]["validation"],
        }
    if "before" in runs:
        before = report["variants"]["before"]
        for name, variant in report["variants"].items():
            if name == "before":
                continue
            variant["speedup_vs_before"] = round(before["seconds_median"] / variant["seconds_median"], 2)
            variant["metrics_agree_with_before"] = (
                variant["metrics"].keys() == before["metrics"].keys() and all(
                    values.keys() == before["metrics"][slice_name].keys() and all(
                        abs(value - before["metrics"][slice_name][key]) <= 1e-5 * max(1.0, abs(value))
                        for key, value in values.items())
                    for slice_name, values in variant["metrics"].items()))
            variant["validation_agrees_with_before"] = _same_validation(variant["validation"], before["validation"])
            variant["files_agree_with_before"] = variant["files"] == before["files"]
    text = json.dumps(report, indent=1)
    print(text)
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
