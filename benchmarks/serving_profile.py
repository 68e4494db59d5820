"""Where a 1-pair rating request's time goes, in process: the graph, the server's code, gRPC.

Why: the serving latency target (1-client 1-pair p50 <= 1 ms over gRPC) needs to know which
layer costs what. This loads the latest pushed version the way the model server does
(`serving.servable.Servable`) and times, in one process and one run (so the rows compare as
ratios even on a host whose speed drifts):

  * an empty `tf.function` call: TensorFlow's floor per call;
  * each id-only signature with one known id (pair), answered from the tower outputs the
    export precomputed (model/signatures.py), and with one unseen id, which takes the
    tower path (the Transform graph, the title LSTM): what precomputing saves -- each called
    the way the server calls it (serving.signature_call's flat call where it applies), plus
    serving_default through TensorFlow's structured call: what the flat call saves;
  * `Servable.run` (numpy in, numpy out) and `serving.inference.predict` (PredictRequest proto
    in, PredictResponse out: validation, request caps, tensor conversion) on serving_default:
    what the server adds before gRPC.

The gRPC round trip itself is `python -m benchmarks.serving` (1 client, 1 pair).

    python -m benchmarks.serving_profile --model-base-path artifacts/serving/movielens
        # writes benchmarks/results/serving_profile.json and prints a table
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from benchmarks.host import load_average
from benchmarks.serving import repo_relative
from data.features import MOVIE_ID, USER_ID
from model.signature_names import (
    SIGNATURE_DEFAULT,
    SIGNATURE_MOVIE_CANDIDATE,
    SIGNATURE_MOVIE_EMBEDDING,
    SIGNATURE_MOVIE_QUERY,
    SIGNATURE_USER_EMBEDDING,
    SIGNATURE_USER_QUERY,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "serving_profile.json"
#: Added to the largest catalogue id: an id no catalogue holds (the tower path's OOV answer).
UNSEEN_OFFSET = 1_000_000


def time_calls(call: Callable[[], object], calls: int, warmup: int) -> dict:
    """p50/p90/mean milliseconds of ``calls`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    seconds = np.empty(calls)
    for i in range(calls):
        begin = time.perf_counter()
        call()
        seconds[i] = time.perf_counter() - begin
    ms = seconds * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p90_ms": round(float(np.percentile(ms, 90)), 4),
            "mean_ms": round(float(ms.mean()), 4), "calls": calls}


def profile(version_dir: Path, calls: int, warmup: int) -> list[dict]:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from data.catalogue import model_catalogue_dir, read_catalogue
    from serving import inference
    from serving.servable import Servable
    from serving.tensors import from_ndarray

    catalogue = read_catalogue(model_catalogue_dir(version_dir))
    user, movie = min(catalogue.users), min(catalogue.movies)
    unseen_user, unseen_movie = max(catalogue.users) + UNSEEN_OFFSET, max(catalogue.movies) + UNSEEN_OFFSET
    servable = Servable.load("movielens", int(version_dir.name), version_dir)
    functions = {name: s.function for name, s in servable.signatures.items() if s.function is not None}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
    def empty(x):
        return x

    def ids(value: int):
        return tf.constant([value], tf.int64)

    rows: list[dict] = [{"what": "empty tf.function (TensorFlow's per-call floor)",
                         **time_calls(lambda: empty(ids(1)), calls, warmup)}]
    pairs = [(SIGNATURE_DEFAULT, {USER_ID: user, MOVIE_ID: movie}, {USER_ID: unseen_user, MOVIE_ID: unseen_movie})]
    singles = [(SIGNATURE_USER_EMBEDDING, USER_ID, user, unseen_user),
               (SIGNATURE_MOVIE_EMBEDDING, MOVIE_ID, movie, unseen_movie),
               (SIGNATURE_USER_QUERY, USER_ID, user, unseen_user),
               (SIGNATURE_MOVIE_CANDIDATE, MOVIE_ID, movie, unseen_movie),
               (SIGNATURE_MOVIE_QUERY, MOVIE_ID, movie, unseen_movie)]
    for name, key, known, unseen in singles:
        pairs.append((name, {key: known}, {key: unseen}))
    for name, known, unseen in pairs:
        if name not in functions:
            continue
        function = functions[name]
        for label, inputs in (("known id (precomputed)", known), ("unseen id (tower path)", unseen)):
            feeds = {key: ids(value) for key, value in inputs.items()}
            rows.append({"what": f"{name}, 1 {label}", "signature": name,
                         **time_calls(lambda f=function, x=feeds: f(**x), calls, warmup)})
    structured = getattr(functions.get(SIGNATURE_DEFAULT), "function", None)  # under serving.signature_call
    if structured is not None:
        feeds = {key: ids(value) for key, value in pairs[0][1].items()}
        rows.append({"what": f"{SIGNATURE_DEFAULT}, 1 known id, TensorFlow's structured call (what the flat call skips)",
                     "signature": SIGNATURE_DEFAULT, **time_calls(lambda: structured(**feeds), calls, warmup)})
    signature = servable.signatures[SIGNATURE_DEFAULT]
    arrays = {USER_ID: np.array([user], np.int64), MOVIE_ID: np.array([movie], np.int64)}
    rows.append({"what": "Servable.run(serving_default), 1 known pair (numpy in and out)", "signature": SIGNATURE_DEFAULT,
                 **time_calls(lambda: servable.run(signature, arrays), calls, warmup)})
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "movielens"
    for key, value in arrays.items():
        request.inputs[key].CopyFrom(from_ndarray(value, signature.inputs[key].dtype))
    rows.append({"what": "inference.predict(serving_default), 1 known pair (PredictRequest in, response out)",
                 "signature": SIGNATURE_DEFAULT,
                 **time_calls(lambda: inference.predict(servable, request), calls, warmup)})
    return rows


def format_table(report: dict) -> str:
    lines = [f"{'p50 ms':>8} {'p90 ms':>8}  what"]
    lines += [f"{r['p50_ms']:>8.3f} {r['p90_ms']:>8.3f}  {r['what']}" for r in report["results"]]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base-path", type=Path, default=Path("artifacts/serving/movielens"),
                        help="TF-Serving model base path; its latest version is profiled (default %(default)s)")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per row (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls first (default %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from common.logs import quiet_libraries
    from index.embed import model_versions

    quiet_libraries()
    versions = model_versions(args.model_base_path)
    if not versions:
        print(f"error: no model version (numeric folder with saved_model.pb) in {args.model_base_path}: run the "
              f"pipeline first (make demo), or pass --model-base-path", file=sys.stderr)
        return 2
    version_dir = args.model_base_path / str(versions[-1])
    print(f"[serving profile] {version_dir}: {args.calls} calls per row ...", file=sys.stderr)
    load_at_start = load_average()
    results = profile(version_dir, args.calls, args.warmup)
    report = {
        "model_base_path": repo_relative(args.model_base_path), "version": versions[-1],
        "host": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "note": "one process, one run: compare rows as ratios (the host's speed drifts between runs)",
        "load_average_1_5_15": {"start": load_at_start, "end": load_average()},
        "quiet_host": load_at_start[0] <= 1,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(format_table(report))
    print(f"wrote {repo_relative(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
