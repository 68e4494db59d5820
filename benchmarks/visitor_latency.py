"""Latency of POST /recommendations over HTTP: a visitor's 20 ratings in, an explained list out.

Why: the page's "For you" view asks it each time the visitor rates a movie, and unlike the
other endpoints it calls the model (index.visitors: the SavedModel's
user_embedding_with_history signature) before FAISS and the re-rank. Target: p50 <= 10 ms at
ML-1M's size.

Setup: the similarity service in its own process on 127.0.0.1 over a published index version
of a pushed model (what ``movielens-tfx run`` and ``export-index`` leave under
``--artifacts``), the model loaded by the first (warm-up) request. Each request is a different
seeded history of ``--history`` movies, drawn with probability proportional to how many users
rated each (visitors rate the movies they know), rated 1..5 uniformly, ``k`` 10 with the default
``because`` (3). Requests are sent one at a time; the client's wall time and the service's own
time (``Server-Timing``) are both reported. Timings are of one run on a shared machine.

    movielens-tfx run --data ../shared/data/ml-1m --ratings ../shared/data/ml-1m/ratings-no-timestamps.csv
    movielens-tfx export-index
    python -m benchmarks.visitor_latency --artifacts artifacts   # writes results/visitor_latency.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.browse_page import TIMING, latency_stats
from benchmarks.host import HostLoad
from benchmarks.index_bench import ServiceProcess
from data import features as f
from index import layout
from index.similarity import Similarity

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "visitor_latency.json"
TARGET_P50_MS = 10.0
QUANTILES = (50, 90, 99, 100)


def histories(s: Similarity, n: int, length: int, seed: int) -> list[list[dict[str, float]]]:
    """``n`` seeded histories of ``length`` distinct movies (drawn by popularity), rated 1..5."""
    rng = np.random.default_rng(seed)
    popularity = s.rated_by_rows().astype(np.float64) + 1.0
    lowest, highest = s.rating_scale
    out = []
    for _ in range(n):
        rows = rng.choice(len(popularity), size=length, replace=False, p=popularity / popularity.sum())
        ratings = rng.integers(int(np.ceil(lowest)), int(highest) + 1, size=length)
        out.append([{f.MOVIE_ID: int(s.movie_ids[r]), f.RATING: float(x)} for r, x in zip(rows, ratings)])
    return out


def measure(url: str, bodies: list[list[dict[str, float]]], warmup: int, k: int) -> dict[str, Any]:
    import httpx

    wall, server, stages = [], [], set()
    with httpx.Client(base_url=url, timeout=120) as client:
        for i, body in enumerate(bodies):
            started = time.perf_counter()
            answer = client.post("/recommendations", json={"ratings": body, "k": k})
            elapsed = (time.perf_counter() - started) * 1000.0
            answer.raise_for_status()
            if i < warmup:  # the first one loads the model
                continue
            wall.append(elapsed)
            server.append(float(TIMING.fullmatch(answer.headers["server-timing"]).group(1)))
            stages.add(answer.json()["stages"])
    return {"requests": len(wall), "client_wall_ms": latency_stats(wall, QUANTILES),
            "server_ms": latency_stats(server, QUANTILES),
            "stages": sorted(stages)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.visitor_latency",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                        help="the artifacts root whose index/ is served (default: %(default)s)")
    parser.add_argument("--index-dir", type=Path, default=None, help="the index folder instead of <artifacts>/index")
    parser.add_argument("--dataset", default="ml-1m", help="the data's name in the results (default: %(default)s)")
    parser.add_argument("--history", type=int, default=20, help="ratings per request (default: 20)")
    parser.add_argument("--requests", type=int, default=500, help="timed requests (default: 500)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed first requests (default: 20)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    index_dir = args.index_dir or layout.default_index_dir(args.artifacts)
    try:
        version = layout.latest_version_dir(index_dir)
    except FileNotFoundError as error:
        parser.error(f"no published index in {index_dir} ({error}); run `movielens-tfx export-index` first")
    host = HostLoad(name="visitor_latency")
    s = Similarity.load(version, verify=False)
    bodies = histories(s, args.warmup + args.requests, args.history, args.seed)
    with ServiceProcess(Path(index_dir)) as service:
        result = measure(service.url, bodies, args.warmup, args.k)
    report = {"dataset": args.dataset, "index_version": s.version,
              "catalogue": {"users": s.n_users, "movies": s.n_movies},
              "recommendation_stages": s.stages, "default_candidates": s.default_candidates,
              "history_ratings": args.history, "k": args.k, "because": 3, "seed": args.seed,
              "target_p50_ms": TARGET_P50_MS, **result,
              "within_target": result["client_wall_ms"]["p50"] <= TARGET_P50_MS, **host.record()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: report[k] for k in ("dataset", "requests", "client_wall_ms", "server_ms", "stages",
                                             "within_target")}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
