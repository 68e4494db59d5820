"""FAISS at catalogue scale: 100k, 1M and 10M items at D=64 and 1M at D=200, in one run.

Why: the index is otherwise measured at ML-1M's 3.9k movies. A platform team with millions
of items needs to know which index to build, what it costs and what recall it keeps. Every
row is built the way ``export-index`` builds it (``index.ann.build_index``: trained on a
sample, knobs tuned to the recall target on half of the sample queries, recall@10 reported on
the other half against exact search), written with ``faiss.write_index`` (bytes per vector
are the file's size over n: codes, ids, coarse quantizer and any refinement data), then read
back memory-mapped (``ann.read_index``, as the service loads it) and timed there.

The sets are generated (``data.synthetic_embeddings.ClusteredSet``: clustered like tower
outputs; queries are fresh draws from the mixture). Timings are on whatever this host is at
the moment (its speed varies about 2x minute to minute): compare rows of one run as ratios.

Candidates per set: exact search (the latency and recall reference), what ``--index-type
auto`` picks (``ann.preset``) and the compressed alternative. HNSW is not built at 10M: at
(4·D + 8·M) = 512 bytes per vector it misses the 128-byte target by 4x before any timing.

The service's HTTP p50 is measured at 1M on a complete index version (``build_index_version``
with the auto preset, 1M movies and 10k users) served by ``python -m index.service``.

    python -m benchmarks.index_scale                      # writes results/index_scale.json
    python -m benchmarks.index_scale --sets 100k:64 --no-http --out /tmp/s.json   # quick look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import faiss
import numpy as np

from benchmarks.host import HostLoad
from benchmarks.index_bench import ServiceProcess, over_http, percentiles
from data.synthetic_embeddings import ClusteredSet
from index import ann, layout, metadata
from index.builder import Gate, build_index_version
from index.embed import Embeddings
from index.similarity import Similarity

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "index_scale.json"
DEFAULT_SETS = ("100k:64", "1M:64", "10M:64", "1M:200")
K = 10
TARGETS_AT_10M = {"recall_at_10": 0.95, "p50_ms": 5.0, "bytes_per_vector": 128}
SIZE_SUFFIX = {"k": 1_000, "M": 1_000_000}


def parse_set(text: str) -> tuple[str, int, int]:
    """"10M:64" -> ("10M D=64", 10_000_000, 64)."""
    match = re.fullmatch(r"(\d+)([kM]?):(\d+)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"a set is SIZE:DIM such as 1M:64 or 100k:200, got {text!r}")
    n = int(match.group(1)) * SIZE_SUFFIX.get(match.group(2), 1)
    return f"{match.group(1)}{match.group(2)} D={match.group(3)}", n, int(match.group(3))


def compressed(n: int, d: int) -> str:
    """The IVF + compressed-codes index the presets use from 2M vectors, at this size."""
    return ann.preset(max(n, ann.HNSW_UP_TO), d).replace(
        f"IVF{ann.preset_nlist(max(n, ann.HNSW_UP_TO))}_", f"IVF{ann.preset_nlist(n)}_")


def candidates(n: int, d: int) -> list[str]:
    """Exact search, the preset and (below 2M) the compressed index the presets use above;
    up to 1M at D=64 also that IVF partitioned FAISS's default way (spherical k-means), to
    show what ``ann._l2_partitioned`` gains at the same index and recall target."""
    chosen = ann.preset(n, d)
    out = ["Flat", chosen]
    out.append(compressed(n, d))  # the same as the preset from 2M: training is the long part
    if d == 64 and n <= 1_000_000:
        out.append(f"{compressed(n, d)}:{ann.PARTITION_SPHERICAL}")
    return list(dict.fromkeys(out))


def parse_candidate(text: str) -> tuple[str, str]:
    """"IVF4096,SQ8:spherical" -> ("IVF4096,SQ8", "spherical"); no suffix: the L2 partition."""
    factory, _, suffix = text.rpartition(":")
    if factory and suffix in ann.PARTITIONS:
        return factory, suffix
    return text, ann.PARTITION_L2


def family(factory: str) -> str:
    """A factory string with its sizes taken out, to follow one kind across set sizes."""
    return re.sub(r"IVF\d+", "IVF", factory)


def rss_gb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 2 ** 20, 3)
    return 0.0


def peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3)


def time_queries(index: faiss.Index, knobs: dict[str, int], queries: np.ndarray,
                 budget_s: float) -> dict[str, Any]:
    """Single-query latency (one query per call, as the service asks) over at most
    ``budget_s`` seconds, then the same queries as one batch (throughput)."""
    params = ann.search_parameters(index, knobs, K)
    # a query on both cores, as the service loaded IVFs when these rows were measured (it now
    # searches one query per thread: benchmarks/index_busy_neighbour.py says why)
    ann.parallel_over_lists(index, on=True)
    for q in queries[:10]:  # warm-up: page in the mapped file, fill caches
        index.search(q[None], K, params=params)
    times: list[float] = []
    started = time.perf_counter()
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], K, params=params)
        times.append((time.perf_counter() - t) * 1000.0)
        if time.perf_counter() - started > budget_s and len(times) >= 20:
            break
    batch = queries[:max(len(times), 100)]
    ann.parallel_over_lists(index, on=False)  # a batch: FAISS's default, one thread per query
    t = time.perf_counter()
    index.search(batch, K, params=params)
    return {"single_query_ms": percentiles(times), "single_queries": len(times),
            "batched_qps": round(len(batch) / (time.perf_counter() - t), 1), "batch": len(batch)}


def bench_factory(candidate: str, vectors: np.ndarray, queries: np.ndarray, latency_queries: np.ndarray,
                  exact: ann.ExactTopK, args: argparse.Namespace, workdir: Path,
                  log: Callable[[str], None]) -> dict[str, Any]:
    n, d = vectors.shape
    factory, partition = parse_candidate(candidate)
    config = ann.AnnConfig(factory=factory, target_recall=args.target_recall,
                           recall_queries=len(queries), seed=args.seed, partition=partition)
    started = time.perf_counter()
    built = ann.build_index(vectors, config, queries, log=log, exact=exact)
    tuned_seconds = time.perf_counter() - started
    tuned_on = len(ann.tuning_halves(exact)[0].queries)  # how many queries each tuning trial timed
    path = workdir / "index.faiss"
    faiss.write_index(built.index, str(path))
    size = path.stat().st_size
    row: dict[str, Any] = {
        "factory": factory, "preset": factory == ann.preset(n, d) and partition == ann.PARTITION_L2,
        "family": family(candidate),
        "build_seconds": round(built.build_seconds, 2), "train_seconds": round(built.train_seconds, 2),
        "build_and_tune_seconds": round(tuned_seconds, 2),
        "file_bytes": size, "bytes_per_vector": round(size / n, 2),
        "recall_at_10": round(built.recall_at_10, 4), "search": built.params.get("search", {}),
        **({"partition": partition} if "partition" in built.params else {}),
        "tuning_trials": len(built.tuning),
        # the ladder the tuner climbed: recall on the tuning half, the goal it had to reach and
        # batched milliseconds per query (both cores): the recall/speed trade-off per knob
        "tuning": [{**{k: v for k, v in t.items() if k != "seconds"},
                    "batched_ms_per_query": round(1000.0 * t["seconds"] / tuned_on, 4)}
                   for t in built.tuning],
    }
    del built
    t = time.perf_counter()
    index, flags = ann.read_index(path, mmap=True)
    row["load_seconds_mmap"] = round(time.perf_counter() - t, 3)
    row["mmap_flags"] = flags
    row["rss_gb_after_mmap_load"] = rss_gb()
    row.update(time_queries(index, row["search"], latency_queries, args.latency_budget))
    del index
    path.unlink()
    log(f"{candidate}: recall@10 {row['recall_at_10']}, {row['bytes_per_vector']} B/vector, "
        f"p50 {row['single_query_ms']['p50']} ms, {row['batched_qps']} q/s batched, "
        f"build {row['build_seconds']} s")
    return row


def bench_set(name: str, n: int, d: int, args: argparse.Namespace, workdir: Path,
              log: Callable[[str], None]) -> dict[str, Any]:
    t = time.perf_counter()
    data = ClusteredSet(n, d, seed=args.seed)
    vectors = data.database()
    drawn = data.queries(args.recall_queries + args.latency_queries)
    queries, latency_queries = drawn[:args.recall_queries], drawn[args.recall_queries:]
    # build_index samples its queries in this order: one exact pass serves every candidate
    sample = queries[np.random.default_rng(args.seed).permutation(len(queries))]
    generate_seconds = time.perf_counter() - t
    t = time.perf_counter()
    exact = ann.ExactTopK.compute(vectors, sample)
    exact_seconds = time.perf_counter() - t
    result: dict[str, Any] = {"name": name, "n": n, "d": d, "clusters": data.n_clusters,
                              "generate_seconds": round(generate_seconds, 2),
                              "database_gb": round(vectors.nbytes / 2 ** 30, 3),
                              "exact_top10_seconds": round(exact_seconds, 1), "rows": []}
    for factory in (args.factories or candidates(n, d)):
        log(f"[{name}] {factory}")
        result["rows"].append(bench_factory(factory, vectors, queries, latency_queries, exact, args,
                                            workdir, lambda m: log(f"[{name}] {m}")))
    result["peak_rss_gb_so_far"] = peak_rss_gb()
    return result


def bench_service(n_movies: int, args: argparse.Namespace, workdir: Path,
                  log: Callable[[str], None]) -> dict[str, Any]:
    """A complete version at ``n_movies`` (auto preset), served over HTTP on 127.0.0.1."""
    n_users, d = 10_000, 64
    movies = ClusteredSet(n_movies, d, seed=args.seed).database()
    users = ClusteredSet(n_users, d, seed=args.seed + 1).database()
    rng = np.random.default_rng(args.seed)
    user_ids, movie_ids = np.arange(1, n_users + 1), np.arange(1, n_movies + 1)
    embeddings = Embeddings(user_ids, users, movie_ids, movies,
                            user_bias=rng.normal(3.6, 0.3, n_users).astype(np.float32),
                            movie_bias=rng.normal(0.0, 0.4, n_movies).astype(np.float32))
    seen = metadata.seen_csr(user_ids, movie_ids, np.repeat(user_ids, 20),
                             rng.choice(movie_ids, 20 * n_users))
    index_dir = workdir / "service"
    started = time.perf_counter()
    result = build_index_version(
        index_dir, "1", embeddings, [metadata.placeholder_user(u) for u in user_ids.tolist()],
        [metadata.placeholder_movie(m) for m in movie_ids.tolist()], seen,
        ann.AnnConfig(index_type="auto", target_recall=args.target_recall),
        Gate(min_recall=args.target_recall, max_latency_ms=1e9), log=lambda m: log(f"[service] {m}"))
    out: dict[str, Any] = {
        "movies": n_movies, "users": n_users, "d": d, "gate_passed": result.passed,
        "build_seconds": round(time.perf_counter() - started, 1),
        "factories": {k: e["params"].get("factory") for k, e in result.manifest["indexes"].items()},
        "recall_at_10": {k: round(e["recall_at_10"], 4) for k, e in result.manifest["indexes"].items()},
    }
    if not result.passed:
        out["gate_reasons"] = result.reasons
        return out
    t = time.perf_counter()
    similarity = Similarity.load(result.folder)
    out["load_seconds"] = round(time.perf_counter() - t, 2)
    out["mapped_files"] = dict(similarity.mmap)
    with ServiceProcess(index_dir) as service:
        out["http_ms"] = over_http(service.url, similarity, args.http_requests, K, 4, args.seed)
    log(f"[service] HTTP p50 similar movies {out['http_ms']['similar_movies']['p50']} ms")
    return out


def growth(sets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per 10x more items at D=64: how each kind of index's costs grew."""
    rows = []
    by_size = sorted((s for s in sets if s["d"] == 64), key=lambda s: s["n"])
    for small, large in zip(by_size, by_size[1:]):
        for row in large["rows"]:
            before = next((r for r in small["rows"] if r["family"] == row["family"]), None)
            if before is None:
                continue

            def ratio(key: str, sub: str | None = None) -> float:
                a = before[key][sub] if sub else before[key]
                b = row[key][sub] if sub else row[key]
                return round(b / a, 2) if a else None
            rows.append({"family": row["family"], "from": small["name"], "to": large["name"],
                         "items_x": round(large["n"] / small["n"], 1),
                         "build_x": ratio("build_seconds"), "p50_x": ratio("single_query_ms", "p50"),
                         "qps_x": ratio("batched_qps"), "bytes_per_vector_x": ratio("bytes_per_vector"),
                         "recall_from": before["recall_at_10"], "recall_to": row["recall_at_10"]})
    return rows


def targets(sets: list[dict[str, Any]]) -> dict[str, Any] | None:
    at = next((s for s in sets if s["n"] == 10_000_000 and s["d"] == 64), None)
    if at is None:
        return None
    row = next((r for r in at["rows"] if r["preset"]), None)
    if row is None:
        return None
    met = {"recall_at_10": row["recall_at_10"] >= TARGETS_AT_10M["recall_at_10"],
           "p50_ms": row["single_query_ms"]["p50"] <= TARGETS_AT_10M["p50_ms"],
           "bytes_per_vector": row["bytes_per_vector"] <= TARGETS_AT_10M["bytes_per_vector"]}
    return {"factory": row["factory"], "targets": TARGETS_AT_10M, "met": met, "all_met": all(met.values())}


def write(report: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    layout.write_json_atomic(out, report)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", type=parse_set, nargs="+", default=[parse_set(s) for s in DEFAULT_SETS],
                        help="SIZE:DIM sets to build, e.g. 100k:64 1M:200 (default: %(default)s)".replace(
                            "%(default)s", " ".join(DEFAULT_SETS)))
    parser.add_argument("--factories", nargs="+", help="factory strings to build at every set, "
                        "optionally FACTORY:spherical for FAISS's default IVF partition (default: Flat, "
                        "the auto preset and a compressed alternative)")
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--recall-queries", type=int, default=2000,
                        help="sample queries: half tune the knobs, half measure recall@10; the "
                             "tuning margin (ann.tune_goal) shrinks as this grows")
    parser.add_argument("--latency-queries", type=int, default=500)
    parser.add_argument("--latency-budget", type=float, default=10.0,
                        help="seconds of single-query timing per index at most (exact search at 10M)")
    parser.add_argument("--http-movies", type=int, default=1_000_000)
    parser.add_argument("--http-requests", type=int, default=500)
    parser.add_argument("--no-http", action="store_true", help="skip the service over HTTP")
    parser.add_argument("--resume", action="store_true",
                        help="keep the sets --out already holds (same settings) and build only the others")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    host = HostLoad(name="index_scale")
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[index-scale {time.perf_counter() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    report: dict[str, Any] = {
        "benchmark": "index_scale",
        "command": "python -m benchmarks.index_scale " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "faiss": faiss.__version__, "python": platform.python_version(),
                    "omp_threads": faiss.omp_get_max_threads()},
        "data": "generated: data.synthetic_embeddings.ClusteredSet (seeded Gaussian mixture, sqrt(n) "
                "clusters, Zipf popularity, decaying spectrum, log-normal norms)",
        "note": "timings from one run on a shared 2-core host whose speed varies ~2x: compare as ratios",
        "k": K, "target_recall": args.target_recall, "recall_queries": args.recall_queries, "tune_z": ann.TUNE_Z,
        "sets": [],
    }
    done: dict[str, Any] = {}
    if args.resume and args.out.exists():
        previous = json.loads(args.out.read_text())
        if previous.get("recall_queries") == args.recall_queries:
            done = {s["name"]: s for s in previous.get("sets", [])}
            report["resumed_from"] = previous.get("command")
    with tempfile.TemporaryDirectory(prefix="index-scale-") as tmp:
        workdir = Path(tmp)
        for name, n, d in args.sets:
            if name in done:
                log(f"[{name}] kept from {args.out.name}")
                report["sets"].append(done[name])
                continue
            report["sets"].append(bench_set(name, n, d, args, workdir, log))
            report["growth"], report["targets_at_10M"] = growth(report["sets"]), targets(report["sets"])
            report["total_seconds"] = round(time.perf_counter() - started, 1)
            report.update(host.record())
            write(report, args.out)  # after every set: a cut-short run keeps what it measured
        if not args.no_http:
            report["service_http"] = bench_service(args.http_movies, args, workdir, log)
    report["peak_rss_gb"] = peak_rss_gb()
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    report.update(host.record())
    write(report, args.out)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
