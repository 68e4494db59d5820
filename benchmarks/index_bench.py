"""Index build time, query latency (in-process and over HTTP), throughput and recall@10.

Why: the service promises p50 <= 2 ms for k=10 over HTTP and the export gate promises
recall@10 >= 0.95 for approximate indexes; this measures both at the ML-1M catalogue size
(3,883 movies, 6,040 users) for every index type, with the same builder, loader and service
the project ships. Vectors are random (timing does not depend on what they mean; Gaussian
vectors are also the hardest case for approximate search). Each version carries a retrieval
space (R = 129, the model's 128 + the bias slot) and rating terms, so "recommendations" is the
service's two-stage path: FAISS top 200 by retrieval score, re-ranked by predicted rating. Everything runs on 127.0.0.1
with a bounded number of requests.

    python -m benchmarks.index_bench                # writes benchmarks/results/index.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from benchmarks.host import HostLoad
from common.ports import free_ports
from index import ann, metadata
from index.builder import Gate, build_index_version
from index.embed import Embeddings
from index.similarity import Similarity

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "index.json"
ML_1M = {"users": 6040, "movies": 3883}
QUERY_KINDS = ("similar_movies", "similar_users", "recommendations")
RETRIEVAL_DIM = 129


def random_embeddings(n_users: int, n_movies: int, dim: int, kind: str, seed: int) -> Embeddings:
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        users, movies = rng.normal(size=(n_users, dim)), rng.normal(size=(n_movies, dim))
    else:  # clustered: 50 random centres + noise, closer to trained embeddings
        centres = rng.normal(size=(50, dim))
        users = centres[rng.integers(0, 50, n_users)] + 0.7 * rng.normal(size=(n_users, dim))
        movies = centres[rng.integers(0, 50, n_movies)] + 0.7 * rng.normal(size=(n_movies, dim))
    retrieval_dim = RETRIEVAL_DIM
    return Embeddings(np.arange(1, n_users + 1), users, np.arange(1, n_movies + 1), movies,
                      user_bias=rng.normal(3.6, 0.3, n_users), movie_bias=rng.normal(0.0, 0.4, n_movies),
                      query_vectors=rng.normal(size=(n_users, retrieval_dim)),
                      candidate_vectors=rng.normal(size=(n_movies, retrieval_dim)))


def percentiles(ms: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / mean of millisecond timings, rounded for the results JSON."""
    return {"p50": round(float(np.percentile(ms, 50)), 4),
            "p99": round(float(np.percentile(ms, 99)), 4), "mean": round(float(np.mean(ms)), 4)}


def _timed(call: Callable[[int], object], n: int, warmup: int = 20) -> tuple[list[float], float]:
    for i in range(warmup):
        call(i)
    times = []
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - t) * 1000.0)
    return times, n / (time.perf_counter() - start)


def in_process(similarity: Similarity, n: int, k: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    users = rng.choice(similarity.user_ids, n + 20).tolist()
    movies = rng.choice(similarity.movie_ids, n + 20).tolist()
    calls = {"similar_movies": lambda i: similarity.similar_movies(movies[i], k),
             "similar_users": lambda i: similarity.similar_users(users[i], k),
             "recommendations": lambda i: similarity.recommend(users[i], k)}
    out = {}
    for kind, call in calls.items():
        times, qps = _timed(call, n)
        out[kind] = {**percentiles(times), "qps_1_thread": round(qps, 1)}
    return out




class ServiceProcess:
    """`python -m index.service` on 127.0.0.1 in a child process (its own CPU and GIL)."""

    def __init__(self, index_dir: Path) -> None:
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.index_dir = index_dir
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "ServiceProcess":
        import httpx

        root = Path(__file__).resolve().parents[1]
        env = {**os.environ,
               "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "index.service", "--index-dir", str(self.index_dir),
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.__exit__()
                raise RuntimeError(f"similarity service did not start: {err[-2000:]}")
            time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def over_http(url: str, similarity: Similarity, n: int, k: int, concurrency: int,
              seed: int) -> dict:
    import httpx

    rng = np.random.default_rng(seed)
    users = rng.choice(similarity.user_ids, n + 20).tolist()
    movies = rng.choice(similarity.movie_ids, n + 20).tolist()
    paths = {"similar_movies": lambda i: f"/movies/{movies[i]}/similar?k={k}",
             "similar_users": lambda i: f"/users/{users[i]}/similar?k={k}",
             "recommendations": lambda i: f"/users/{users[i]}/recommendations?k={k}"}
    out: dict = {}
    with httpx.Client(base_url=url, timeout=10) as http:
        for kind, path in paths.items():
            def call(i: int) -> None:
                http.get(path(i)).raise_for_status()
            times, qps = _timed(call, n)
            out[kind] = {**percentiles(times), "qps_1_client": round(qps, 1)}

    # concurrent clients (bounded: n requests in all), one connection each
    def client(worker: int) -> int:
        with httpx.Client(base_url=url, timeout=10) as http:
            for i in range(worker, n, concurrency):
                http.get(paths["similar_movies"](i)).raise_for_status()
        return 1

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))
    out[f"qps_{concurrency}_clients_similar_movies"] = round(n / (time.perf_counter() - start), 1)
    return out


def bench_type(index_type: str, embeddings: Embeddings, args: argparse.Namespace,
               workdir: Path) -> dict:
    index_dir = workdir / index_type
    seen = metadata.seen_csr(embeddings.user_ids, embeddings.movie_ids,
                             np.repeat(embeddings.user_ids, 20),
                             np.random.default_rng(0).choice(embeddings.movie_ids,
                                                             20 * len(embeddings.user_ids)))
    started = time.perf_counter()
    result = build_index_version(
        index_dir, "1", embeddings,
        [metadata.placeholder_user(u) for u in embeddings.user_ids.tolist()],
        [metadata.placeholder_movie(m) for m in embeddings.movie_ids.tolist()], seen,
        ann.AnnConfig(index_type=index_type, target_recall=args.min_recall),
        Gate(min_recall=args.min_recall, max_latency_ms=1e9))
    total_build = time.perf_counter() - started
    m = result.manifest
    row = {
        "index_type": index_type,
        "gate_passed": result.passed,
        "build_seconds_total": round(total_build, 3),
        "faiss_build_seconds": {n: e["build_seconds"] for n, e in m["indexes"].items()},
        "recall_at_10": {n: round(e["recall_at_10"], 4) for n, e in m["indexes"].items()},
        "params": {n: {k: v for k, v in e["params"].items() if k != "index_type"}
                   for n, e in m["indexes"].items()},
    }
    if not result.passed:
        row["gate_reasons"] = result.reasons
        return row
    similarity = Similarity.load(result.folder)
    row["in_process_ms"] = in_process(similarity, args.queries, args.k, args.seed)
    if not args.no_http:
        with ServiceProcess(index_dir) as service:
            row["http_ms"] = over_http(service.url, similarity, args.http_requests, args.k,
                                       args.concurrency, args.seed)
    return row


def format_table(report: dict) -> str:
    lines = [f"{'vectors/type':<20}{'build s':>9}{'recall@10 mc/uc/ip':>21}  {'query':<16}"
             f"{'in-proc p50/p99 ms':>20}{'HTTP p50/p99 ms':>18}{'HTTP qps':>10}"]
    for r in report["results"]:
        recall = "/".join(f"{r['recall_at_10'][n]:.3f}"
                          for n in ("movies_cosine", "users_cosine", "movies_ip"))
        build = f"{r['build_seconds_total']:.2f}"
        name = f"{r['vectors']}/{r['index_type']}"
        if "in_process_ms" not in r:
            lines.append(f"{name:<20}{build:>9}{recall:>21}  gate failed")
            continue
        for i, kind in enumerate(QUERY_KINDS):
            ip = r["in_process_ms"][kind]
            http = r.get("http_ms", {}).get(kind)
            line = (f"{name if i == 0 else '':<20}{build if i == 0 else '':>9}"
                    f"{recall if i == 0 else '':>21}  {kind:<16}"
                    f"{ip['p50']:>11.3f}/{ip['p99']:<8.3f}")
            if http:
                line += f"{http['p50']:>9.3f}/{http['p99']:<8.3f}{http['qps_1_client']:>10.0f}"
            lines.append(line)
        key = f"qps_{report['concurrency']}_clients_similar_movies"
        if "http_ms" in r:
            lines.append(f"{'':<52}HTTP throughput, {report['concurrency']} clients, similar "
                         f"movies: {r['http_ms'][key]:.0f} req/s")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.index_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--types", nargs="+", default=list(ann.INDEX_TYPES),
                        choices=ann.INDEX_TYPES)
    parser.add_argument("--users", type=int, default=ML_1M["users"])
    parser.add_argument("--movies", type=int, default=ML_1M["movies"])
    parser.add_argument("--dim", type=int, default=200, help="the two-tower model's D (200)")
    parser.add_argument("--vectors", nargs="+", choices=("gaussian", "clustered"),
                        default=["gaussian", "clustered"],
                        help="random vector kinds to run (default: both)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=2000, help="in-process queries per kind")
    parser.add_argument("--http-requests", type=int, default=1000, help="HTTP requests per kind")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--min-recall", type=float, default=0.95)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    import faiss

    faiss.omp_set_num_threads(1)  # as the service runs: one thread per query
    host = HostLoad(name="index_bench")
    rows = []
    for kind in args.vectors:
        embeddings = random_embeddings(args.users, args.movies, args.dim, kind, args.seed)
        for index_type in args.types:
            print(f"[index_bench] {kind} vectors, {index_type} ...", file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                row = bench_type(index_type, embeddings, args, Path(tmp))
                rows.append({"vectors": kind, **row})
    report = {"catalogue": {"users": args.users, "movies": args.movies, "dim": args.dim},
              "k": args.k, "in_process_queries_per_kind": args.queries,
              "http_requests_per_kind": args.http_requests, "concurrency": args.concurrency,
              "cpu_count": os.cpu_count(),
              "faiss_threads": 1, "results": rows, **host.record()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(format_table(report))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
