"""Training speed (examples/s) and validation RMSE of the two-tower model under variants.

    python -m benchmarks.train_speed --dataset ml-1m --data ../shared/data/ml-1m \\
        --ratings ../shared/data/ml-1m/ratings-no-timestamps.csv \\
        --out benchmarks/results/train_speed.json \\
        '{"batch_size": 4096, "learning_rate": 0.01, "ema_momentum": 0.995}' '{}'

Two phases on the train part of the accuracy benchmark's random split (the same 5% validation
slice cut off it; the test split is never read):

1. speed: every variant's model trains on the same fixed batches (train_on_batch, no input
   pipeline), the variants interleaved round by round in one process after a warm-up round
   (median and best round kept), so that their examples/s compare as ratios even on a host
   whose speed varies from minute to minute (absolute numbers do not carry across runs);
2. fit (variants listed by --fit, default all): `benchmarks.two_tower.fit_model`, the accuracy
   benchmark's fit, with each variant's own epochs and early stopping; per-epoch validation
   RMSE, epochs run and the fit's examples/s (timed over the training steps).

A variant is a JSON object of HParams overrides on top of the defaults (`{}`: the defaults).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from baselines.data import random_split
from benchmarks.host import HostLoad
from benchmarks.two_tower import PreparedFit, fit_model, prepare
from data.movielens_files import load_movielens
from model.model import TARGET_IN_HISTORY, HParams, build_model


def step_seconds(prepared: PreparedFit, hparams: list[HParams], rounds: int, examples: int,
                 seed: int) -> list[list[float]]:
    """Seconds per training step of each variant (per round), on the same fixed examples."""
    import tensorflow as tf

    rows = np.random.default_rng(seed).permutation(prepared.fit_idx)[:examples]
    columns = prepared.inputs(rows)
    labels = prepared.labels[rows].astype(np.float32)

    def batches(size: int) -> list:
        out = []
        for start in range(0, len(rows) - size + 1, size):
            x = {k: tf.constant(v[start:start + size]) for k, v in columns.items()}
            x[TARGET_IN_HISTORY] = tf.constant(labels[start:start + size])
            out.append((x, tf.constant(labels[start:start + size])))
        return out

    models, data = [], []
    for hp in hparams:
        if hp.batch_size > examples:
            raise ValueError(f"--speed-examples {examples} is below batch_size {hp.batch_size}")
        model = build_model(prepared.vocab, hp, global_mean=prepared.global_mean, history=prepared.history)
        data.append(batches(hp.batch_size))
        model.train_on_batch(*data[-1][0])  # trace and warm up
        models.append(model)
    seconds: list[list[float]] = [[] for _ in hparams]
    for round_ in range(rounds + 1):  # round 0 warms up (its first steps are slow) and is not kept
        for i, (model, variant_batches) in enumerate(zip(models, data)):
            start = time.perf_counter()
            for x, y in variant_batches:
                model.train_on_batch(x, y)
            if round_:
                seconds[i].append((time.perf_counter() - start) / len(variant_batches))
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", metavar="JSON", help="HParams overrides, e.g. '{\"batch_size\": 8192}'")
    parser.add_argument("--dataset", required=True, help="dataset name recorded in the JSON (e.g. ml-1m)")
    parser.add_argument("--data", required=True, help="MovieLens folder (users/movies/ratings files)")
    parser.add_argument("--ratings", help="ratings CSV instead of the folder's ratings file")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds")
    parser.add_argument("--speed-examples", type=int, default=65536, help="training examples per speed round")
    parser.add_argument("--fit", help="comma-separated indices of the variants to fit (default all; '' none)")
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    args = parser.parse_args(argv)
    try:
        variants = [json.loads(v) for v in args.variants]
        hparams = [HParams.from_dict({"seed": args.seed, **v}) for v in variants]
        to_fit = (range(len(variants)) if args.fit is None
                  else [int(i) for i in args.fit.split(",") if i.strip()])
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        parser.error(f"bad variant: {error}")
    host = HostLoad(name="train_speed")
    data = load_movielens(args.data, ratings_csv=args.ratings)
    train_idx, _ = random_split(len(data.ratings.rating), args.test_fraction, args.seed)
    prepared = prepare(data, train_idx, hparams[0])
    seconds = step_seconds(prepared, hparams, args.rounds, args.speed_examples, args.seed)
    results = []
    for variant, hp, times in zip(variants, hparams, seconds):
        results.append({"variant": variant, "batch_size": hp.batch_size,
                        "step_ms_by_round": [round(t * 1000, 1) for t in times],
                        "examples_per_second": round(hp.batch_size / statistics.median(times)),
                        "examples_per_second_best_round": round(hp.batch_size / min(times))})
    for row in results:
        for key in ("examples_per_second", "examples_per_second_best_round"):
            row[key.replace("examples_per_second", "speed_ratio_to_first")] = round(row[key] / results[0][key], 3)
        print(json.dumps(row), flush=True)

    def write() -> None:  # after the speed phase and after each fit, so an interrupted run keeps its results
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({
                "dataset": args.dataset, "test_fraction": args.test_fraction, "seed": args.seed,
                "validation": "5% of the train part (benchmarks.two_tower.prepare)",
                "speed": f"{args.rounds} interleaved rounds (after a warm-up round) of {args.speed_examples} examples "
                         "per variant, one process; median and best round; compare within this file only "
                         "(the host's speed varies)",
                "defaults": HParams().to_dict(), "results": results, **host.record()}, indent=1) + "\n")

    write()
    for i in to_fit:
        start = time.perf_counter()
        history = fit_model(data, train_idx, hparams[i], prepared=prepared, verbose=0).history
        rates = history["examples_per_second"]
        results[i]["fit"] = {
            "seconds": round(time.perf_counter() - start, 1), "epochs_run": len(history["val_rmse"]),
            "best_epoch": history["best_epoch"] + 1, "best_val_rmse": round(min(history["val_rmse"]), 4),
            "val_rmse": [round(x, 4) for x in history["val_rmse"]],
            "examples_per_second": [round(x) for x in rates],
            "examples_per_second_median": round(statistics.median_high(rates)),
            "seconds_per_epoch": [round(x, 1) for x in history["seconds_per_epoch"]]}
        print(json.dumps({"variant": variants[i], **results[i]["fit"]}), flush=True)
        write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
