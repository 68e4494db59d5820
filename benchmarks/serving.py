"""Rating latency and throughput of the model server over gRPC Predict.

Why: the serving targets on the reference 2-core host are 1-pair p50 <= 3 ms and
p99 <= 10 ms, and >= 1,000 pairs/s when clients batch. This measures exactly that path --
a client sending PredictRequests (user_id, movie_id -> rating on `serving_default`) to a
server in another process over 127.0.0.1 -- for 1-pair and 100-pair requests at 1, 4 and 16
concurrent clients, each cell bounded in time and request count.

By default it starts `python -m serving.model_server` on free loopback ports for the model
base path and stops it afterwards; `--target HOST:PORT` measures a running server instead
(e.g. tensorflow_model_server, for comparison). Client threads share one process, like a
real Python caller; on 2 cores client and server compete for the same CPUs, so the numbers
are a floor, not a ceiling.

    python -m benchmarks.serving --model-base-path artifacts/serving/movielens
        # writes benchmarks/results/serving.json and prints a table
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from components.features import MOVIE_ID, USER_ID
from components.signature_names import SIGNATURE_DEFAULT

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "serving.json"
REPO = Path(__file__).resolve().parents[1]
ML_1M = {"users": 6040, "movies": 3952}
TARGETS = {"p50_ms_1_pair": 3.0, "p99_ms_1_pair": 10.0, "pairs_per_s_batched": 1000.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_base_path: Path, model_name: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    """The Python model server as a separate process, ready to serve."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))  # the server quiets TF itself (settings.logs)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "serving.model_server", f"--port={port}",
                                    "--rest_api_port=0", f"--model_name={model_name}",
                                    f"--model_base_path={model_base_path}"],
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    target = f"127.0.0.1:{port}"
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_name
    deadline = time.monotonic() + 180
    with grpc.insecure_channel(target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"model server exited ({process.returncode}); log: {log_path}")
            try:
                states = stub.GetModelStatus(request, timeout=1).model_version_status
                if any(s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE for s in states):
                    return process, target
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"model server not ready after 180 s; log: {log_path}")


def make_requests(model_name: str, pairs: int, count: int, seed: int) -> list:
    """`count` different PredictRequests of `pairs` random (user, movie) pairs each."""
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    from serving.tensors import make_shape

    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(count):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = SIGNATURE_DEFAULT
        for alias, high in ((USER_ID, ML_1M["users"]), (MOVIE_ID, ML_1M["movies"])):
            ids = rng.integers(1, high + 1, size=pairs, dtype=np.int64)
            tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, tensor_content=ids.tobytes())
            tensor.tensor_shape.CopyFrom(make_shape(ids.shape))
            request.inputs[alias].CopyFrom(tensor)
        requests.append(request)
    return requests


def run_cell(target: str, requests: list, pairs: int, concurrency: int, seconds: float,
             max_requests: int, warmup: int) -> dict:
    """`concurrency` client threads (one channel each) sending for `seconds` at most."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channels = [grpc.insecure_channel(target) for _ in range(concurrency)]
    stubs = [prediction_service_pb2_grpc.PredictionServiceStub(c) for c in channels]
    for stub in stubs:
        for i in range(warmup):
            stub.Predict(requests[i % len(requests)], timeout=30)
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start_barrier = threading.Barrier(concurrency + 1)
    per_client = max(1, max_requests // concurrency)

    def client(index: int, deadline_box: list) -> None:
        stub, own = stubs[index], latencies[index]
        start_barrier.wait()
        deadline = deadline_box[0]
        for i in range(per_client):
            if time.perf_counter() >= deadline:
                break
            request = requests[(index * 7 + i) % len(requests)]
            begin = time.perf_counter()
            try:
                stub.Predict(request, timeout=30)
            except grpc.RpcError:
                errors[index] += 1
                continue
            own.append(time.perf_counter() - begin)

    deadline_box = [0.0]
    threads = [threading.Thread(target=client, args=(i, deadline_box)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline_box[0] = began + seconds
    start_barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    for channel in channels:
        channel.close()
    all_ms = np.array([x for own in latencies for x in own]) * 1e3
    done = len(all_ms)
    return {
        "pairs_per_request": pairs, "concurrency": concurrency, "requests": done, "errors": sum(errors),
        "seconds": round(elapsed, 3),
        "p50_ms": round(float(np.percentile(all_ms, 50)), 3) if done else None,
        "p99_ms": round(float(np.percentile(all_ms, 99)), 3) if done else None,
        "mean_ms": round(float(all_ms.mean()), 3) if done else None,
        "requests_per_s": round(done / elapsed, 1),
        "pairs_per_s": round(done * pairs / elapsed, 1),
    }


def format_table(report: dict) -> str:
    lines = [f"{'pairs/req':>9} {'clients':>7} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} "
             f"{'pairs/s':>9} {'errors':>6}"]
    for r in report["results"]:
        lines.append(f"{r['pairs_per_request']:>9} {r['concurrency']:>7} {r['requests']:>8} {r['p50_ms']:>8} "
                     f"{r['p99_ms']:>8} {r['requests_per_s']:>8} {r['pairs_per_s']:>9} {r['errors']:>6}")
    checks = report["targets_met"]
    lines.append("targets: " + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in checks.items()))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base-path", type=Path, default=Path("artifacts/serving/movielens"),
                        help="TF-Serving model base path to serve (default %(default)s)")
    parser.add_argument("--model-name", default="movielens")
    parser.add_argument("--target", help="benchmark a running server at HOST:PORT instead of starting one")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement cell (default %(default)s)")
    parser.add_argument("--max-requests", type=int, default=5000, help="per cell, all clients (default %(default)s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--pairs", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    process = None
    log_dir = tempfile.mkdtemp(prefix="serving-bench-")
    try:
        if args.target:
            target = args.target
        else:
            if not args.model_base_path.is_dir():
                print(f"error: {args.model_base_path} does not exist (run the pipeline first, or pass "
                      f"--model-base-path)", file=sys.stderr)
                return 2
            print(f"[serving bench] starting the model server for {args.model_base_path} ...", file=sys.stderr)
            process, target = start_server(args.model_base_path.resolve(), args.model_name,
                                           Path(log_dir) / "server.log")
        results = []
        for pairs in args.pairs:
            requests = make_requests(args.model_name, pairs, 32, seed=pairs)
            for concurrency in args.concurrency:
                print(f"[serving bench] {pairs} pair(s) per request, {concurrency} client(s) ...", file=sys.stderr)
                results.append(run_cell(target, requests, pairs, concurrency, args.seconds, args.max_requests,
                                        warmup=20))
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
    one = next((r for r in results if r["pairs_per_request"] == 1 and r["concurrency"] == 1), None)
    batched = max((r["pairs_per_s"] for r in results if r["pairs_per_request"] > 1), default=0.0)
    report = {
        "server": args.target or "python -m serving.model_server (separate process)",
        "model_base_path": None if args.target else str(args.model_base_path),
        "host": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "seconds_per_cell": args.seconds,
        "results": results,
        "targets": TARGETS,
        "targets_met": {
            "p50_ms_1_pair": bool(one and one["p50_ms"] <= TARGETS["p50_ms_1_pair"]),
            "p99_ms_1_pair": bool(one and one["p99_ms"] <= TARGETS["p99_ms_1_pair"]),
            "pairs_per_s_batched": batched >= TARGETS["pairs_per_s_batched"],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(format_table(report))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
