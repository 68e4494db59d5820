"""Single-query latency of an IVF index, one thread vs all cores, on an idle and a busy host.

Why: a fresh-clone CI run failed while another job used both cores. The export gate timed
single queries on a 120-vector IVF index at p50 23 ms (limit 5 ms), because each query
scanned its inverted lists on every core (``ann.parallel_over_lists``: OpenMP,
``parallel_mode`` 1). An OpenMP region waits for its slowest thread, and on a host whose
cores are all taken each thread waits for a time slice, so one busy neighbour turns a
sub-millisecond query into tens of milliseconds. This measures how far each choice moves:

* ``all_cores``: ``parallel_over_lists(on=True)`` with FAISS's OpenMP at every core;
* ``one_thread``: ``parallel_over_lists(on=False)`` (FAISS's default ``parallel_mode`` 0,
  which parallelises over the queries of a batch, so a single query runs on the calling
  thread and opens no OpenMP region);

each on the host as it is ("idle": nothing started by this run) and beside a busy neighbour:
one CPU-bound process per core (a spinning pure-Python loop). The two modes take turns in
short blocks of the same queries within each phase, so a drift in the host's speed hits both
alike. "Idle" means no neighbour started by this run; what else the host ran shows in the
load averages the JSON records before, between and after the phases. The index
is the service's IVF preset family (``IVF<nlist>_HNSW32,SQ8``, as ``ann.preset`` builds
from 2M items, nlist scaled to the set: ``benchmarks.index_scale.compressed``) over generated
clustered vectors (``data.synthetic_embeddings``), knobs tuned by ``ann.build_index`` as
``export-index`` tunes them, searched one query per call through ``ann.search`` as
``index.similarity`` searches.

    python -m benchmarks.index_busy_neighbour      # writes benchmarks/results/index_busy_neighbour.json
    python -m benchmarks.index_busy_neighbour --n 50000 --budget 2 --out /tmp/b.json   # quick look
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import faiss
import numpy as np

from benchmarks.host import load_average
from benchmarks.index_bench import percentiles
from benchmarks.index_scale import compressed
from data.synthetic_embeddings import ClusteredSet
from index import ann, layout

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "index_busy_neighbour.json"
K = 10
ALL_CORES, ONE_THREAD = "all_cores", "one_thread"
MODES = (ALL_CORES, ONE_THREAD)
IDLE, BUSY = "idle", "busy"
#: queries per block: the two modes take turns block by block
BLOCK = 50
#: seconds the neighbour runs before timing starts (the scheduler spreads it over the cores)
RAMP_S = 1.0


def spin(stop: Any) -> None:
    """A CPU-bound neighbour: count until told to stop (checked every ~10 ms of counting)."""
    count = 0
    while not stop.is_set():
        for _ in range(200_000):
            count += 1


class BusyNeighbour:
    """``processes`` spinning processes for the duration of a ``with`` block."""

    def __init__(self, processes: int) -> None:
        # fork: the children only count in Python, never touch FAISS or OpenMP, so copying
        # this process (its OpenMP pool stays behind) is safe and starts them at once
        self._context = multiprocessing.get_context("fork")
        self._stop = self._context.Event()
        self._procs = [self._context.Process(target=spin, args=(self._stop,), daemon=True)
                       for _ in range(processes)]

    def __enter__(self) -> "BusyNeighbour":
        for proc in self._procs:
            proc.start()
        time.sleep(RAMP_S)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()


def set_mode(index: faiss.Index, mode: str, cores: int) -> None:
    """Search ``index`` one query on all cores (over its lists) or on the calling thread."""
    faiss.omp_set_num_threads(cores)
    ann.parallel_over_lists(index, on=mode == ALL_CORES)


def time_modes(index: faiss.Index, params: dict[str, Any], queries: np.ndarray, cores: int,
               budget_s: float) -> dict[str, list[float]]:
    """Milliseconds per single query for each mode: the modes take turns, BLOCK queries each,
    for ``budget_s`` seconds (at least two turns each), so both get the same queries under
    the same conditions however slow one of them turns out."""
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    started, cursor = time.perf_counter(), 0
    while time.perf_counter() - started < budget_s or len(times[MODES[0]]) < 2 * BLOCK:
        for mode in MODES:
            set_mode(index, mode, cores)
            for i in range(cursor, cursor + BLOCK):
                query = queries[i % len(queries)][None]
                t = time.perf_counter()
                ann.search(index, params, query, K)
                times[mode].append((time.perf_counter() - t) * 1000.0)
        cursor += BLOCK
    return times


def build(n: int, d: int, seed: int, log: Callable[[str], None]) -> tuple[ann.BuiltIndex, np.ndarray, str]:
    """The tuned IVF index over a generated set, fresh query vectors, and its factory string."""
    data = ClusteredSet(n, d, seed=seed)
    vectors = data.database()
    queries = data.queries(2000)
    factory = compressed(n, d)
    log(f"building {factory} over {n:,} x {d} (tuned to recall@10 0.95)")
    built = ann.build_index(vectors, ann.AnnConfig(factory=factory, seed=seed), queries[:1000])
    return built, queries[1000:], factory


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios within this run, and the mode whose single queries held up beside the neighbour
    (lowest busy p99; the idle cost of that choice is the idle p50 ratio)."""
    p = {(r["host"], r["threads"]): r["single_query_ms"] for r in rows}
    held = min(MODES, key=lambda mode: p[(BUSY, mode)]["p99"])
    return {
        "busy_over_idle_p50": {m: round(p[(BUSY, m)]["p50"] / p[(IDLE, m)]["p50"], 2) for m in MODES},
        "all_cores_over_one_thread_p50": {h: round(p[(h, ALL_CORES)]["p50"] / p[(h, ONE_THREAD)]["p50"], 2)
                                          for h in (IDLE, BUSY)},
        "held_under_load": held,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.index_busy_neighbour",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000, help="vectors (default: 200,000)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--budget", type=float, default=12.0,
                        help="seconds of single queries per host state, both modes (default: 12)")
    parser.add_argument("--neighbours", type=int, default=os.cpu_count() or 1,
                        help="spinning processes in the busy phase (default: one per core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[busy-neighbour {time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    cores = os.cpu_count() or 1
    load_at_start = load_average()
    built, queries, factory = build(args.n, args.dim, args.seed, log)
    log(f"recall@10 {built.recall_at_10:.3f} with {built.params['search']}")
    rows: list[dict[str, Any]] = []
    loads: dict[str, list[float]] = {"start": load_at_start, "after_build": load_average()}
    for host in (IDLE, BUSY):
        if host == BUSY:
            with BusyNeighbour(args.neighbours):
                loads["busy_phase_start"] = load_average()
                times = time_modes(built.index, built.params, queries, cores, args.budget)
                loads["busy_phase_end"] = load_average()
        else:
            times = time_modes(built.index, built.params, queries, cores, args.budget)
            loads["after_idle_phase"] = load_average()
        for mode in MODES:
            rows.append({"host": host, "threads": mode, "queries": len(times[mode]),
                         "single_query_ms": percentiles(times[mode])})
            log(f"{host:4s} {mode:10s} p50 {rows[-1]['single_query_ms']['p50']:.3f} ms, "
                f"p99 {rows[-1]['single_query_ms']['p99']:.3f} ms over {len(times[mode])} queries")
    loads["end"] = load_average()
    report = {
        "benchmark": "index_busy_neighbour",
        "command": " ".join(["python -m benchmarks.index_busy_neighbour", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpus": cores, "faiss": faiss.__version__, "python": platform.python_version(),
                    "platform": platform.platform(), "load_average_1_5_15": loads},
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "data": f"generated: data.synthetic_embeddings.ClusteredSet({args.n}, {args.dim}, seed={args.seed})",
        "index": {"factory": factory, "n": args.n, "d": args.dim, "search": built.params["search"],
                  "recall_at_10": round(built.recall_at_10, 4), "build_seconds": round(built.build_seconds, 1)},
        "neighbour": {"processes": args.neighbours, "what": "a spinning pure-Python loop per process"},
        "k": K, "block": BLOCK, "budget_seconds": args.budget,
        "modes": {ALL_CORES: f"parallel_over_lists(on=True), OpenMP threads = {cores}",
                  ONE_THREAD: "parallel_over_lists(on=False): FAISS's parallel_mode 0, one query on the calling thread"},
        "note": "one run on a shared host: compare the rows of this run as ratios",
        "results": rows,
        **summarise(rows),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    layout.write_json_atomic(args.out, report)
    log(f"wrote {args.out.name}: held under load: {report['held_under_load']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
