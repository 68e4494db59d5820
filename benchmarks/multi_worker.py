"""The Trainer across workers against one process, on the same cores, in one run.

    python -m benchmarks.multi_worker --data ../shared/data/ml-1m \\
        --ratings ../shared/data/ml-1m/ratings-no-timestamps.csv

Runs the pipeline on the real files once with the Trainer in one process (all the machine's
cores: 2 here), then again from the same pipeline root with the Trainer as 2 local workers
pinned to 1 core each (MultiWorkerMirroredStrategy over loopback; `--cpus-per-worker`). The
data half is computed once and served from cache to the second run, so the two differ in
the Trainer alone, which reruns (its custom_config differs). Writes
benchmarks/results/multi_worker.json: per setting the Trainer's seconds, the fit's median
examples/s, the best eval RMSE and the test RMSE (TFMA), and their ratios.
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


def _trainer_figures(result) -> dict:
    from common import fileio
    from components.report import slice_metrics
    from model.trainer import HISTORY_FILE

    history = json.loads(fileio.read_text(fileio.join(result.uri("Trainer", "model_run"), HISTORY_FILE)))
    overall = dict(slice_metrics(result.uri("Evaluator", "evaluation")))["overall"]
    rates = history.get("examples_per_second") or []
    seconds = {name: round(s, 2) for name, s, _ in result.components}
    return {"trainer_seconds": seconds.get("Trainer"),
            "fit_seconds": (history.get("seconds") or {}).get("fit"),
            "epochs_run": len(history.get("loss", [])),
            "train_examples_per_second_median": round(statistics.median_high(rates)) if rates else None,
            "train_examples_per_second_per_epoch": [round(r) for r in rates],
            "best_eval_rmse": round(min(history["val_rmse"]), 4) if history.get("val_rmse") else None,
            "test_rmse": round(overall["root_mean_squared_error"], 4),
            "workers": history.get("workers")}


def run(data: str, ratings: str | None, hparams: Sequence[str], workers: int, cpus_per_worker: int) -> dict:
    from pipeline import configs
    from pipeline.run import run_pipeline
    from settings.hparams import HParams
    from settings.paths import ArtifactPaths

    runs = {}
    with tempfile.TemporaryDirectory(prefix="movielens-multi-worker-") as tmp:
        for name, n in (("one_process", 1), ("workers", workers)):
            config = configs.PipelineConfig(data_dir=data, ratings_csv=ratings, paths=ArtifactPaths(tmp),
                                            hparams=HParams.parse(list(hparams)),
                                            trainer_workers=n, trainer_cpus_per_worker=cpus_per_worker if n > 1 else None)
            print(f"[multi-worker] {name}: {n} process(es)" + (f" x {cpus_per_worker} core(s)" if n > 1 else
                                                                  f" on {os.cpu_count()} cores"), file=sys.stderr)
            runs[name] = {"processes": n, "cores_each": cpus_per_worker if n > 1 else os.cpu_count(),
                          **_trainer_figures(run_pipeline(config))}
    one, many = runs["one_process"], runs["workers"]
    return {"runs": runs,
            "examples_per_second_ratio": round(many["train_examples_per_second_median"]
                                               / one["train_examples_per_second_median"], 3),
            "test_rmse_difference": round(many["test_rmse"] - one["test_rmse"], 4)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multi_worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a folder of MovieLens files (e.g. ../shared/data/ml-1m)")
    parser.add_argument("--ratings", help="a user,movie,rating CSV in place of the folder's ratings file")
    parser.add_argument("--dataset", help="the data set's name in the results (default: the folder's)")
    parser.add_argument("--workers", type=int, default=2, help="local workers (default: %(default)s)")
    parser.add_argument("--cpus-per-worker", type=int, default=1, help="cores each worker is pinned to (default: %(default)s)")
    parser.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE",
                        help="a Trainer hyperparameter for both runs (default: the pipeline's)")
    parser.add_argument("--out", type=Path, default=RESULTS / "multi_worker.json")
    args = parser.parse_args(argv)
    if args.workers * args.cpus_per_worker > (os.cpu_count() or 1):
        parser.error(f"{args.workers} workers x {args.cpus_per_worker} cores do not fit {os.cpu_count()} cores")
    host = HostLoad(name="multi_worker")
    started = time.perf_counter()
    result = run(args.data, args.ratings, args.hparam, args.workers, args.cpus_per_worker)
    report = {"dataset": args.dataset or Path(args.data).name, "hparams_given": args.hparam,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              **result, "seconds": round(time.perf_counter() - started, 1), **host.record()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    one, many = result["runs"]["one_process"], result["runs"]["workers"]
    print(f"| Trainer | processes x cores | examples/s (median epoch) | test RMSE |\n|---|---|---|---|\n"
          f"| one process | 1 x {one['cores_each']} | {one['train_examples_per_second_median']} | {one['test_rmse']} |\n"
          f"| workers | {many['processes']} x {many['cores_each']} | {many['train_examples_per_second_median']} | "
          f"{many['test_rmse']} |")
    print(f"wrote {os.path.relpath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
