"""Rating latency and throughput of the model server over gRPC Predict, with and without batching.

Why: the serving targets on the reference 2-core host are a 1-client 1-pair p50 of 1.5 ms
and at most 1 ms of server CPU per 1-pair request, and with --enable_batching, 1-pair
requests from 16 clients at >= 3x the 860 req/s measured without it (plus the older ones:
1-pair p50 <= 3 ms, p99 <= 10 ms, >= 1,000 pairs/s when clients batch). Requests rate pairs
the model knows (ids drawn from the served version's catalogue), as a rating request for a
MovieLens user and movie does; ids outside it take the model's tower path instead. This measures exactly that path -- a client sending PredictRequests
(user_id, movie_id -> rating on `serving_default`) to a server in another process over
127.0.0.1 -- for 1-pair and 100-pair requests at 1, 4, 16 and 64 concurrent clients, each cell
bounded in time and request count, once per server mode:

  * `plain`: python -m serving.model_server, no batching;
  * `batching`: the same with --enable_batching and TF-Serving's default parameters;
  * `batching_tuned`: --enable_batching with --batching-parameters FILE (default
    serving/batching_parameters.txt, tuned for many 1-pair clients on a small host);
  * `noop`: benchmarks.noop_grpc_server, the same gRPC stack answering a fixed response with
    no model: the floor that gRPC itself, the client and the host put under every number.

Each cell also reports the server's CPU milliseconds per request (from /proc: user + system
time of the server process over the cell), which shows what batching saves on the server even
where the clients, which share the host's 2 cores, bound the throughput.

With the plain server, `profile` (benchmarks.server_profile) samples the server process with
py-spy under a 1-client load and splits a request's time into layers: the graph, TF's Python
call path, the server's code, gRPC; plus CPU per request by thread kind. The JSON records the
load average before and after: a run that starts above 1 is flagged (`quiet_host: false`)
and is not a result to compare.

`--target HOST:PORT` measures a running server instead (e.g. tensorflow_model_server, for
comparison). Client threads share one process, like a real Python caller; on 2 cores client
and server compete for the same CPUs, so the numbers are a floor, not a ceiling. All modes run
in one invocation: compare them as ratios (the host's speed drifts between runs).

    python -m benchmarks.serving --model-base-path artifacts/serving/movielens
        # writes benchmarks/results/serving.json and prints a table
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from benchmarks.host import load_average
from common.ports import free_ports
from data.features import MOVIE_ID, USER_ID
from model.signature_names import SIGNATURE_DEFAULT

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "serving.json"
REPO = Path(__file__).resolve().parents[1]
ML_1M = {"users": 6040, "movies": 3952}
#: 1_client_p50_ms: the 1-client 1-pair p50 of the mode that meets it best; batched_16_clients:
#: 1-pair requests/s from 16 clients with --enable_batching (the better batching mode), 3x the
#: 860 measured without it.
TARGETS = {"p50_ms_1_pair": 3.0, "p99_ms_1_pair": 10.0, "pairs_per_s_batched": 1000.0,
           "1_client_p50_ms": 1.5, "batched_16_clients_req_per_s": 3 * 860.0, "server_cpu_ms_1_pair": 1.0}
MODES = ("plain", "batching", "batching_tuned", "noop")
TUNED_BATCHING = Path(__file__).resolve().parents[1] / "serving" / "batching_parameters.txt"




def _launch(module_args: Sequence[str], log_path: Path, port: int, ready: Callable[[object], bool], what: str,
            timeout: float) -> tuple[subprocess.Popen, str]:
    """``python -m MODULE_ARGS`` as a separate process (log to ``log_path``), returned once
    ``ready(channel)`` is true for its gRPC port; RuntimeError if it exits or times out first."""
    import grpc

    env = dict(os.environ, PYTHONPATH=str(REPO))  # the servers quiet TF themselves (common.logs)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", *module_args], cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    target = f"127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited ({process.returncode}); log: {log_path}")
            try:
                if ready(channel):
                    return process, target
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s; log: {log_path}")


def start_server(model_base_path: Path, model_name: str, log_path: Path,
                 extra_flags: Sequence[str] = ()) -> tuple[subprocess.Popen, str]:
    """The Python model server as a separate process, once a version of the model is AVAILABLE."""
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_name

    def available(channel) -> bool:
        states = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=1)
        return any(s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE for s in states.model_version_status)

    port = free_ports(1)[0]
    return _launch(["serving.model_server", f"--port={port}", "--rest_api_port=0", f"--model_name={model_name}",
                    f"--model_base_path={model_base_path}", *extra_flags], log_path, port, available,
                   "model server", 180)


def start_noop_server(log_path: Path) -> tuple[subprocess.Popen, str]:
    """benchmarks.noop_grpc_server as a separate process, once it answers."""
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    def answers(channel) -> bool:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(predict_pb2.PredictRequest(), timeout=1)
        return True

    port = free_ports(1)[0]
    return _launch(["benchmarks.noop_grpc_server", f"--port={port}"], log_path, port, answers, "no-op server", 120)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc), None if unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def catalogue_ids(model_base_path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(user ids, movie ids) the latest version's catalogue holds, or None without one."""
    from data.catalogue import model_catalogue_dir, read_catalogue
    from index.embed import resolve_model_dir

    try:
        version_dir, _ = resolve_model_dir(model_base_path)
        catalogue = read_catalogue(model_catalogue_dir(version_dir))
    except (OSError, ValueError):  # no version, no catalogue in it
        return None
    return np.asarray(sorted(catalogue.users), np.int64), np.asarray(sorted(catalogue.movies), np.int64)


def make_requests(model_name: str, pairs: int, count: int, seed: int,
                  ids: tuple[np.ndarray, np.ndarray] | None = None) -> list:
    """`count` different PredictRequests of `pairs` random (user, movie) pairs each: drawn
    from `ids` (users, movies) when given, else from ML-1M's id ranges."""
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    from serving.tensors import make_shape

    rng = np.random.default_rng(seed)
    requests = []
    for _ in range(count):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = SIGNATURE_DEFAULT
        for position, (alias, high) in enumerate(((USER_ID, ML_1M["users"]), (MOVIE_ID, ML_1M["movies"]))):
            chosen = (rng.choice(ids[position], size=pairs) if ids is not None
                      else rng.integers(1, high + 1, size=pairs, dtype=np.int64)).astype(np.int64)
            tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, tensor_content=chosen.tobytes())
            tensor.tensor_shape.CopyFrom(make_shape(chosen.shape))
            request.inputs[alias].CopyFrom(tensor)
        requests.append(request)
    return requests


def run_cell(target: str, requests: list, pairs: int, concurrency: int, seconds: float,
             max_requests: int, warmup: int, server_pid: int | None = None) -> dict:
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
    cpu_before = cpu_seconds(server_pid)
    began = time.perf_counter()
    deadline_box[0] = began + seconds
    start_barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    cpu_after = cpu_seconds(server_pid)
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
        "server_cpu_ms_per_request": (round((cpu_after - cpu_before) * 1e3 / done, 3)
                                      if done and cpu_before is not None and cpu_after is not None else None),
    }


def format_table(report: dict) -> str:
    lines = [f"{'mode':>8} {'pairs/req':>9} {'clients':>7} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} "
             f"{'pairs/s':>9} {'srv cpu ms':>10} {'errors':>6}"]
    for r in report["results"]:
        cpu = r.get("server_cpu_ms_per_request")
        lines.append(f"{r['mode']:>8} {r['pairs_per_request']:>9} {r['concurrency']:>7} {r['requests']:>8} "
                     f"{r['p50_ms']:>8} {r['p99_ms']:>8} {r['requests_per_s']:>8} {r['pairs_per_s']:>9} "
                     f"{'' if cpu is None else cpu:>10} {r['errors']:>6}")
    profile = report.get("profile") or {}
    if profile.get("request_layers"):
        lines.append("plain server, 1 client, a request's worker time: " + ", ".join(
            f"{layer} {share:.0%}" for layer, share in profile["request_layers"].items()))
    if profile.get("cpu_ms_per_request_by_thread"):
        lines.append("server CPU ms per request by thread: " + ", ".join(
            f"{kind} {ms}" for kind, ms in profile["cpu_ms_per_request_by_thread"].items()))
    if profile.get("error"):
        lines.append(f"profile: {profile['error']}")
    checks = report["targets_met"]
    lines.append("targets: " + ", ".join(f"{name} {'not measured' if ok is None else 'met' if ok else 'MISSED'}"
                                         for name, ok in checks.items()))
    return "\n".join(lines)


def targets_met(results: list[dict]) -> dict[str, bool | None]:
    """Each target: met, missed, or None when this run measured no cell it applies to."""
    served = [r for r in results if r["mode"] != "noop"]
    ones = [r for r in served if r["pairs_per_request"] == 1 and r["concurrency"] == 1 and r["p50_ms"] is not None]
    best = min(ones, key=lambda r: r["p50_ms"], default=None)
    batched = [r["pairs_per_s"] for r in served if r["pairs_per_request"] > 1]
    sixteen = max((r for r in results if r["mode"].startswith("batching") and r["pairs_per_request"] == 1
                   and r["concurrency"] == 16), key=lambda r: r["requests_per_s"], default=None)
    cpu = min((r["server_cpu_ms_per_request"] for r in ones if r["server_cpu_ms_per_request"] is not None),
              default=None)
    return {
        "p50_ms_1_pair": None if best is None else best["p50_ms"] <= TARGETS["p50_ms_1_pair"],
        "p99_ms_1_pair": None if best is None else best["p99_ms"] <= TARGETS["p99_ms_1_pair"],
        "pairs_per_s_batched": None if not batched else max(batched) >= TARGETS["pairs_per_s_batched"],
        "1_client_p50_ms": None if best is None else best["p50_ms"] <= TARGETS["1_client_p50_ms"],
        "batched_16_clients_req_per_s": (None if sixteen is None
                                         else sixteen["requests_per_s"] >= TARGETS["batched_16_clients_req_per_s"]),
        "server_cpu_ms_1_pair": None if cpu is None else cpu <= TARGETS["server_cpu_ms_1_pair"],
    }


def repo_relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return path.name  # never a machine's absolute path in a results file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base-path", type=Path, default=Path("artifacts/serving/movielens"),
                        help="TF-Serving model base path to serve (default %(default)s)")
    parser.add_argument("--model-name", default="movielens")
    parser.add_argument("--target", help="benchmark a running server at HOST:PORT instead of starting one")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement cell (default %(default)s)")
    parser.add_argument("--max-requests", type=int, default=5000, help="per cell, all clients (default %(default)s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--pairs", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="server modes to measure, in one run (default: all); the no-op server gets 1-pair "
                             "cells only")
    parser.add_argument("--batching-parameters", type=Path, default=TUNED_BATCHING,
                        help="BatchingParameters text proto of the batching_tuned mode "
                             "(default serving/batching_parameters.txt)")
    parser.add_argument("--profile-seconds", type=float, default=8.0,
                        help="py-spy the plain server this long under 1 client (benchmarks.server_profile); "
                             "0 skips it (default %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser


def _measure(target: str, model_name: str, pairs_list: Sequence[int], args: argparse.Namespace, mode: str,
             server_pid: int | None, ids: tuple[np.ndarray, np.ndarray] | None) -> list[dict]:
    results = []
    for pairs in pairs_list:
        requests = make_requests(model_name, pairs, 32, seed=pairs, ids=ids)
        for concurrency in args.concurrency:
            print(f"[serving bench] {mode}: {pairs} pair(s) per request, {concurrency} client(s) ...", file=sys.stderr)
            cell = run_cell(target, requests, pairs, concurrency, args.seconds, args.max_requests, warmup=20,
                            server_pid=server_pid)
            results.append({"mode": mode, **cell})
    return results


def _profile(target: str, model_name: str, pid: int, ids, seconds: float) -> dict:
    """benchmarks.server_profile on the server at `target` (pid) with 1-pair requests."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from benchmarks.server_profile import profile_server

    requests = make_requests(model_name, 1, 32, seed=1, ids=ids)
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return profile_server(pid, lambda i: stub.Predict(requests[i % len(requests)], timeout=30), seconds)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    results: list[dict] = []
    load_at_start = load_average()
    if load_at_start[0] > 1:
        print(f"[serving bench] warning: load average {load_at_start[0]} at the start: not a quiet host, "
              f"this run is not a result to compare", file=sys.stderr)
    ids = None if args.target else catalogue_ids(args.model_base_path)
    profile: dict | None = None
    if args.target:
        results = _measure(args.target, args.model_name, args.pairs, args, "target", None, ids)
    else:
        if not args.model_base_path.is_dir():
            print(f"error: {args.model_base_path} does not exist (run the pipeline first, or pass "
                  f"--model-base-path)", file=sys.stderr)
            return 2
        if "batching_tuned" in args.modes and not args.batching_parameters.is_file():
            print(f"error: --batching-parameters {args.batching_parameters} does not exist", file=sys.stderr)
            return 2
        for mode in args.modes:
            print(f"[serving bench] starting the {mode} server ...", file=sys.stderr)
            if mode == "noop":
                process, target = start_noop_server(log_dir / "noop.log")
            else:
                flags = {"plain": [], "batching": ["--enable_batching"],
                         "batching_tuned": ["--enable_batching",
                                            f"--batching_parameters_file={args.batching_parameters.resolve()}"]}[mode]
                process, target = start_server(args.model_base_path.resolve(), args.model_name,
                                               log_dir / f"{mode}.log", flags)
            try:
                results += _measure(target, args.model_name, [1] if mode == "noop" else args.pairs, args, mode,
                                    process.pid, ids)
                if mode == "plain" and args.profile_seconds > 0:
                    print("[serving bench] profiling the plain server (py-spy, 1 client) ...", file=sys.stderr)
                    profile = _profile(target, args.model_name, process.pid, ids, args.profile_seconds)
            finally:
                process.terminate()
                process.wait(60)
    report = {
        "server": args.target or "python -m serving.model_server (separate process)",
        "model_base_path": None if args.target else repo_relative(args.model_base_path),
        "batching_parameters": repo_relative(args.batching_parameters) if "batching_tuned" in args.modes else None,
        "modes": {"plain": "no batching", "batching": "--enable_batching (TF-Serving's default parameters)",
                  "batching_tuned": f"--enable_batching --batching_parameters_file={repo_relative(args.batching_parameters)}",
                  "noop": "benchmarks.noop_grpc_server: gRPC with no model (the floor)", "target": args.target},
        "host": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "note": "all modes measured in one run; compare as ratios (the host's speed drifts between runs)",
        "seconds_per_cell": args.seconds,
        "ids": (f"known: drawn from the served version's catalogue ({len(ids[0])} users, {len(ids[1])} movies)"
                if ids is not None else "ML-1M id ranges (no catalogue in the model version)"),
        "load_average_1_5_15": {"start": load_at_start, "end": load_average()},
        "quiet_host": load_at_start[0] <= 1,
        "results": results,
        "profile": profile,
        "targets": TARGETS,
        "targets_met": targets_met(results),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(format_table(report))
    print(f"wrote {repo_relative(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
