"""Whole-pipeline wall clock, per component, and training examples/s on synthetic data.

    python -m benchmarks.pipeline_bench --size ml-1m      # 1,000,209 generated ratings

Runs the local pipeline (LocalDagRunner, DirectRunner) from scratch with caching off in a
temporary artifacts folder and writes:
  benchmarks/results/data_pipeline.json  ExampleGen -> Transform, seconds per component
  benchmarks/results/pipeline.json       every component, the total, training examples/s
and prints a table of both.
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

from pipeline import configs
from pipeline.run import resolve_data, run_pipeline
from settings.hparams import HParams
from settings.paths import DEFAULT_SEED, ArtifactPaths

DATA_HALF = ("ImportSchemaGen", "MovieLensExampleGen", "StatisticsGen", "ExampleValidator",
             "DataAnomaliesGate", "Transform")
RESULTS = Path(__file__).resolve().parent / "results"


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="ml-1m", choices=("tiny", "small", "demo", "ml-1m"))
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--stop-after", default="pusher")
    parser.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="movielens-bench-") as tmp:
        paths = ArtifactPaths(tmp)
        start = time.perf_counter()
        data_dir = resolve_data("synthetic", paths, size=args.size, seed=args.seed)
        generate_seconds = time.perf_counter() - start
        config = configs.PipelineConfig(data_dir=str(data_dir), paths=paths, enable_cache=False,
                                        stop_after=args.stop_after, hparams=HParams.parse(args.hparam))
        start = time.perf_counter()
        result = run_pipeline(config)
        total = time.perf_counter() - start
        history = {}
        try:
            with open(os.path.join(result.uri("Trainer", "model_run"), "history.json")) as handle:
                history = json.load(handle)
        except KeyError:
            pass
    components = {name: round(seconds, 2) for name, seconds, _ in result.components}
    from components.synthetic_data import SIZES

    n_users, n_movies, n_ratings = SIZES[args.size]
    common = {"dataset": f"synthetic-{args.size}", "ratings": n_ratings, "users": n_users, "movies": n_movies,
              "beam_args": list(config.beam_args), "machine": _machine()}
    data_half = {**common, "seconds_per_component": {k: v for k, v in components.items() if k in DATA_HALF},
                 "seconds_total": round(sum(v for k, v in components.items() if k in DATA_HALF), 2),
                 "generate_seconds": round(generate_seconds, 2)}
    rates = history.get("examples_per_second") or []
    whole = {**common, "seconds_per_component": components, "seconds_total": round(total, 2),
             "train_examples": history.get("train_examples"), "epochs_run": len(history.get("loss", [])),
             "train_examples_per_second_median": round(statistics.median_high(rates)) if rates else None,
             "train_examples_per_second_per_epoch": [round(r) for r in rates],
             # examples/s times the training steps; these are whole epochs, validation included
             "seconds_per_epoch": [round(s, 1) for s in history.get("seconds_per_epoch") or []],
             "best_eval_rmse": min(history["val_rmse"]) if history.get("val_rmse") else None,
             "hparams": history.get("hparams")}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "data_pipeline.json").write_text(json.dumps(data_half, indent=1) + "\n")
    if args.stop_after == "pusher":
        (args.out_dir / "pipeline.json").write_text(json.dumps(whole, indent=1) + "\n")
    print("| component | seconds |\n|---|---|")
    for name, seconds in components.items():
        print(f"| {name} | {seconds:.1f} |")
    print(f"| **total** | {total:.1f} |")
    if rates:
        print(f"\ntraining examples/s (median epoch): {whole['train_examples_per_second_median']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
