"""Whole-pipeline wall clock per component, on the real ML-1M files and at growing sizes.

    python -m benchmarks.pipeline_bench --data ../shared/data/ml-1m \\
        --ratings ../shared/data/ml-1m/ratings-no-timestamps.csv        # the real ML-1M files
    python -m benchmarks.pipeline_bench --growth ml-1m,5m,25m --repeats 3   # generated, cost growth
    python -m benchmarks.pipeline_bench --size demo                      # one generated size

Each pipeline runs from scratch (LocalDagRunner, DirectRunner, caching off) in a temporary
artifacts folder, with the defaults `movielens-tfx run` uses.

* On real files (`--data`), the same run also times TFX's stock CsvExampleGen on the same
  ratings CSV (the peer, `benchmarks.peer_example_gen`), so the project's ExampleGen is shown
  as a ratio to it, measured minutes apart on the same host. Writes
  benchmarks/results/pipeline_<dataset>.json.
* `--growth` runs the given generated sizes one after the other in one process (this host's
  speed drifts, so the sizes are compared within one run) with a fixed epoch budget, so the
  Trainer's cost per rating is compared at equal epochs. Writes
  benchmarks/results/pipeline_growth.json with each component's marginal growth: the seconds
  per extra million ratings between the two larger sizes over the same between the two
  smaller ones (1.0: linear beyond the fixed overheads; the target is at most 1.1).
  `--repeats N` runs the two smaller sizes N times each, alternating, and takes each
  component's median seconds per size: their slope rests on differences of a few seconds
  (the Evaluator's 1M-to-5M is ~20 s), which the host's minute-to-minute speed moves by half
  in a single run.
* `--size` writes benchmarks/results/pipeline_synthetic-<size>.json; once the model is pushed,
  the same run builds the index (`movielens-tfx export-index`) and asks the similarity
  service for /users/{id}/recommendations and /movies/{id}/similar (`--size 25m`: ML-25M's
  shape and format, the end-to-end check of the scale targets).

Every run records each component's seconds and peak RSS (this process and its children,
sampled every 0.2 s), the Trainer's retrieval fit and whether it streamed its input, and the
1-minute load average before and after (`quiet_host`: the run started at load <= 1).

Every timing is wall clock on the machine in the JSON; compare timings as ratios measured in
one run (the README's tables say so).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

from benchmarks import growth_runs
from benchmarks.host import QUIET_LOAD, HostLoad, load_average
from pipeline import configs
from pipeline.run import run_pipeline, synthetic_folder
from settings.hparams import HParams
from settings.paths import DEFAULT_SEED, ArtifactPaths

DATA_HALF = ("ImportSchemaGen", "MovieLensExampleGen", "StatisticsGen", "ExampleValidator",
             "DataAnomaliesGate", "Transform")
RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
# The growth runs' fixed budget: every size trains exactly one epoch (no early stop) and fits
# the same retrieval towers, iALS, whose cost is linear in the ratings. (`auto` would take the
# closed form up to the 5m size's 12,485 movies, a cost cubic in movies, and iALS at 25m, so
# the Trainer's growth would compare two different fits.)
GROWTH_HPARAMS = ("epochs=1", "patience=1", "retrieval_fit=ials")
# Most marginal growth per component: linear beyond fixed overheads for the data components
# and the Evaluator; the Trainer's batches hold more distinct titles and users as data grows.
GROWTH_TARGETS = {"MovieLensExampleGen": 1.1, "StatisticsGen": 1.1, "Transform": 1.1, "Evaluator": 1.1,
                  "Trainer": 1.5}


def _machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def _repo_relative(path: str | None) -> str | None:
    """A data path as the README may name it: relative to the repository root."""
    if path is None:
        return None
    return os.path.relpath(os.path.abspath(path), REPO)


def _history(result) -> dict:
    """The Trainer's history.json (model.trainer writes it through tf.io.gfile), or {}."""
    from common import fileio
    from model.trainer import HISTORY_FILE

    try:
        return json.loads(fileio.read_text(fileio.join(result.uri("Trainer", "model_run"), HISTORY_FILE)))
    except (KeyError, FileNotFoundError):
        return {}


def _test_metrics(result) -> dict:
    from components.report import slice_metrics

    try:
        overall = dict(slice_metrics(result.uri("Evaluator", "evaluation")))["overall"]
    except (KeyError, FileNotFoundError):
        return {}
    blessed = os.path.exists(os.path.join(result.uri("Evaluator", "blessing"), "BLESSED"))
    return {"test_rmse": round(overall["root_mean_squared_error"], 4),
            "test_mae": round(overall["mean_absolute_error"], 4), "blessed": blessed}


class PeakMemory(logging.Handler):
    """Peak resident memory per component: a thread samples the RSS of this process and its
    children (Beam workers, if any) every ``interval`` seconds and charges it to the component
    that LocalDagRunner last logged as running (its "Component %s is running." record)."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(logging.INFO)
        self.interval, self.current = interval, "(before the first component)"
        self.peak_bytes: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith("Component %s is running.") and record.args:
            self.current = str(record.args[0])

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            name = self.current  # before the reading: a sample never counts toward a later component
            rss = me.memory_info().rss
            for child in me.children(recursive=True):
                try:
                    rss += child.memory_info().rss
                except psutil.Error:  # ended between the listing and the read
                    pass
            self.peak_bytes[name] = max(rss, self.peak_bytes.get(name, 0))
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        logging.getLogger("absl").addHandler(self)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        logging.getLogger("absl").removeHandler(self)

    def peak_gb(self) -> dict[str, float]:
        return {name: round(value / 1e9, 2) for name, value in self.peak_bytes.items()}


def run_once(data_dir: str, *, ratings_csv: str | None, hparams: dict, stop_after: str, tmp: str) -> dict:
    """One pipeline run from scratch: seconds and peak RSS per component, total, training and
    test figures."""
    paths = ArtifactPaths(tmp)
    config = configs.PipelineConfig(data_dir=str(data_dir), ratings_csv=ratings_csv, paths=paths,
                                    enable_cache=False, stop_after=stop_after, hparams=hparams)
    start = time.perf_counter()
    with PeakMemory() as memory:
        result = run_pipeline(config)
    total = time.perf_counter() - start
    components = {name: round(seconds, 2) for name, seconds, _ in result.components}
    history = _history(result)
    rates = history.get("examples_per_second") or []
    return {
        "beam_args": list(config.beam_args),
        "seconds_per_component": components,
        "seconds_data_half": round(sum(v for k, v in components.items() if k in DATA_HALF), 2),
        "seconds_total": round(total, 2),
        "peak_rss_gb_per_component": memory.peak_gb(),
        "peak_rss_gb": max(memory.peak_gb().values(), default=None),
        "train_examples": history.get("train_examples"),
        "epochs_run": len(history.get("loss", [])),
        "train_examples_per_second_median": round(statistics.median_high(rates)) if rates else None,
        "train_examples_per_second_per_epoch": [round(r) for r in rates],
        # examples/s times the training steps; these are whole epochs, validation included
        "seconds_per_epoch": [round(s, 1) for s in history.get("seconds_per_epoch") or []],
        "best_eval_rmse": round(min(history["val_rmse"]), 4) if history.get("val_rmse") else None,
        # run_fn's phases: load, retrieval (closed form or iALS), fit, rerank weight, export
        "trainer_seconds_by_phase": history.get("seconds"),
        "retrieval_fit": {k: v for k, v in (history.get("retrieval") or {}).items() if k != "eval_ndcg_at_10"},
        "training_data": history.get("training_data"),
        **_test_metrics(result),
        "hparams": history.get("hparams"),
    }


def _print_table(title: str, run: dict) -> None:
    print(f"\n{title}\n| component | seconds |\n|---|---|")
    for name, seconds in run["seconds_per_component"].items():
        print(f"| {name} | {seconds:.1f} |")
    print(f"| **total** | {run['seconds_total']:.1f} |")
    if run.get("train_examples_per_second_median"):
        print(f"training examples/s (median epoch): {run['train_examples_per_second_median']}")


def bench_real(args, hparams: dict) -> dict:
    from benchmarks.peer_example_gen import run_csv_example_gen

    name = args.dataset or Path(args.data).name
    host = HostLoad(name="pipeline_bench")
    with tempfile.TemporaryDirectory(prefix="movielens-bench-") as tmp:
        run = run_once(args.data, ratings_csv=args.ratings, hparams=hparams, stop_after=args.stop_after, tmp=tmp)
    run.update(host.record())  # the pipeline's host, before the peer's run
    _print_table(f"{name}, project pipeline", run)
    peer = None
    if args.ratings and not args.no_peer:
        with tempfile.TemporaryDirectory(prefix="movielens-peer-") as tmp:
            seconds = run_csv_example_gen(args.ratings, tmp, run["beam_args"])
        ours = run["seconds_per_component"].get("MovieLensExampleGen")
        peer = {"component": "tfx.components.CsvExampleGen (stock), the ratings CSV alone",
                "seconds": round(seconds, 2), "project_example_gen_seconds": ours,
                "project_over_peer": round(ours / seconds, 3) if ours else None}
        print(f"\npeer: stock CsvExampleGen {seconds:.1f} s on the ratings CSV; project ExampleGen {ours:.1f} s "
              f"(ratings joined with users and movies): ratio {peer['project_over_peer']}")
    return {"dataset": name, "data": _repo_relative(args.data), "ratings_csv": _repo_relative(args.ratings),
            "machine": _machine(), **run, "peer": peer}


def _seconds(run: dict, name: str) -> float:
    return growth_runs.seconds(run, name) or 0.0


def growth_sequence(sizes: Sequence[str], repeats: int) -> list[str]:
    """The order the growth runs go in: the two smaller sizes alternating ``repeats`` times (so
    the host's drift reaches both alike), then the largest once."""
    return [*sizes[:2] * repeats, sizes[2]]


def _median_run(group: list[dict]) -> dict:
    """One size's runs as one: each component's (and each total's) median seconds."""
    return {"ratings": group[0]["ratings"],
            "seconds_data_half": statistics.median(_seconds(r, "data half") for r in group),
            "seconds_total": statistics.median(_seconds(r, "total") for r in group),
            "seconds_per_component": {name: statistics.median(_seconds(r, name) for r in group)
                                      for name in group[0]["seconds_per_component"]}}


def _growth(runs: list[dict]) -> dict:
    """Each component's marginal growth between the sizes (see the module docstring), from
    the median seconds of each size's runs."""
    out = {}
    by_size = growth_runs.by_size(runs)
    if len(by_size) < 3:
        return out
    a, b, c = (_median_run(group) for group in list(by_size.values())[:3])
    names = [*a["seconds_per_component"], "data half", "total"]
    for name in names:
        low = (_seconds(b, name) - _seconds(a, name)) / ((b["ratings"] - a["ratings"]) / 1e6)
        high = (_seconds(c, name) - _seconds(b, name)) / ((c["ratings"] - b["ratings"]) / 1e6)
        growth = round(high / low, 2) if low > 0.5 else None
        target = GROWTH_TARGETS.get(name)
        out[name] = {"seconds_per_million_low": round(low, 2), "seconds_per_million_high": round(high, 2),
                     "marginal_growth": growth, "target": target,
                     "meets_target": None if target is None or growth is None else growth <= target,
                     "raw_ratio_per_1x": round((_seconds(c, name) / max(_seconds(b, name), 1e-9))
                                               / (c["ratings"] / b["ratings"]), 2)}
    return out


def index_and_serve(tmp: str, queries: int = 200) -> dict:
    """After a pushed model: the export-index job on it (seconds and peak RSS while it ran),
    then the similarity service
    (in process, through FastAPI's TestClient) answering /users/{id}/recommendations and
    /movies/{id}/similar for ``queries`` ids each: statuses and latency percentiles."""
    import numpy as np
    from fastapi.testclient import TestClient

    from index import export
    from index.service import create_app

    paths = ArtifactPaths(tmp)
    start = time.perf_counter()
    with PeakMemory() as memory:
        code = export.main(["--model-base-path", paths.model_base_path, "--index-dir", paths.index_dir,
                            "--no-progress"])
    out: dict = {"export_index_seconds": round(time.perf_counter() - start, 2), "export_index_exit_code": code,
                 "export_index_peak_rss_gb": max(memory.peak_gb().values(), default=None)}
    manifest = next(Path(paths.index_dir).glob("*/manifest.json"), None)
    if manifest is not None:
        built = json.loads(manifest.read_text())
        out["index_build"] = {"counts": built.get("counts"), "latency_ms": built.get("latency_ms"),
                              "build_seconds": {name: entry.get("build_seconds")
                                                for name, entry in built.get("indexes", {}).items()}}
    app = create_app(paths.index_dir)
    with TestClient(app) as client:
        out["served_index_folder"] = client.get("/version").json().get("folder")
        rng = np.random.default_rng(0)
        for route, key in (("/users/{}/recommendations", "users"), ("/movies/{}/similar", "movies")):
            ids = rng.choice(np.asarray(_served_ids(client, key)), size=queries)
            timings, statuses = [], {}
            for id_ in ids.tolist():
                started = time.perf_counter()
                response = client.get(route.format(id_), params={"k": 10})
                timings.append((time.perf_counter() - started) * 1e3)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            out[route.format("{id}")] = {"queries": queries, "status_counts": statuses,
                                         "p50_ms": round(float(np.percentile(timings, 50)), 2),
                                         "p99_ms": round(float(np.percentile(timings, 99)), 2)}
    return out


def _served_ids(client, key: str) -> list[int]:
    """The user or movie ids of the served index version (its metadata)."""
    from index.similarity import Similarity

    similarity: Similarity | None = client.app.state.live.current
    if similarity is None:
        raise RuntimeError("the similarity service has no index loaded")
    return [int(x) for x in (similarity.user_ids if key == "users" else similarity.movie_ids)]


def generate_apart(size: str, seed: int, paths: ArtifactPaths) -> str:
    """The generated data set of ``size``, written by a child process (``python -m
    data.synthetic_data``) where `movielens-tfx run` would write it, and flushed to disk.

    Why apart: generated in the benchmark's own process, the 25M-rating generator's 660 MB of
    dirty pages were still being written back, and its freed arrays still held by the
    allocator, while the next ExampleGen ran; ExampleGen took ~240 s there against ~205 s
    when the same files were generated beforehand, which is no property of ExampleGen."""
    import subprocess

    folder = synthetic_folder(paths, size, seed, lambda tmp: subprocess.run(
        [sys.executable, "-m", "data.synthetic_data", "--size", size, "--seed", str(seed), "--out", str(tmp)],
        check=True, stdout=subprocess.DEVNULL))
    os.sync()
    return str(folder)


def bench_synthetic(sizes: list[str], hparams: dict, stop_after: str, seed: int,
                    serve: Sequence[str] = ()) -> list[dict]:
    """One run per generated size; the sizes in ``serve`` also build the index and query the
    service (index_and_serve)."""
    from data.synthetic_data import SIZES

    runs = []
    for size in sizes:
        n_users, n_movies, n_ratings = SIZES[size]
        with tempfile.TemporaryDirectory(prefix="movielens-bench-") as tmp:
            load_at_start = load_average()
            start = time.perf_counter()
            data_dir = generate_apart(size, seed, ArtifactPaths(tmp))
            generate = time.perf_counter() - start
            run = run_once(data_dir, ratings_csv=None, hparams=hparams, stop_after=stop_after, tmp=tmp)
            if size in serve and stop_after == "pusher" and run.get("blessed"):
                run.update(index_and_serve(tmp))
            elif size in serve:
                run["index"] = "not built: the Evaluator did not bless the model, so nothing was pushed"
        run = {"dataset": f"synthetic-{size}", "ratings": n_ratings, "users": n_users, "movies": n_movies,
               "generate_seconds": round(generate, 2), **run,
               "load_average_1_5_15_at_start": load_at_start, "load_average_1_5_15_at_end": load_average(),
               "quiet_host": load_at_start[0] <= QUIET_LOAD}
        _print_table(f"synthetic-{size} ({n_ratings:,} ratings)", run)
        runs.append(run)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    from data.synthetic_data import SIZES

    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline_bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--data", help="a folder of real MovieLens files (e.g. ../shared/data/ml-1m)")
    what.add_argument("--growth", metavar="SIZE,SIZE,SIZE",
                      help=f"generated sizes, smallest first (of {', '.join(SIZES)}), e.g. 100k,ml-1m,5m")
    what.add_argument("--size", choices=sorted(SIZES), help="one generated size")
    parser.add_argument("--ratings", help="with --data: a user,movie,rating[,timestamp] CSV in place of the "
                                          "folder's ratings file; the peer CsvExampleGen runs on it")
    parser.add_argument("--dataset", help="with --data: the dataset's name in the results (default: the folder's)")
    parser.add_argument("--no-peer", action="store_true", help="with --data: skip the stock CsvExampleGen")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed")
    parser.add_argument("--stop-after", default="pusher", choices=configs.STAGES)
    parser.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE",
                        help=f"Trainer hyperparameter (with --growth, default {' '.join(GROWTH_HPARAMS)})")
    parser.add_argument("--repeats", type=int, default=1, metavar="N",
                        help="with --growth: run the two smaller sizes N times each and use each component's "
                             "median (default 1)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats wants a count of at least 1; got {args.repeats}")
    args.out_dir.mkdir(parents=True, exist_ok=True)

    if args.data:
        result = bench_real(args, HParams.parse(args.hparam))
        path = args.out_dir / f"pipeline_{result['dataset']}.json"
    elif args.growth:
        sizes = [s.strip() for s in args.growth.split(",") if s.strip()]
        unknown = [s for s in sizes if s not in SIZES]
        if unknown or len(sizes) != 3:
            parser.error(f"--growth wants three sizes of {sorted(SIZES)}, smallest first; got {args.growth!r}")
        pairs = [*GROWTH_HPARAMS, *args.hparam]
        # the largest size is also the end-to-end run of that size: index and service included
        runs = bench_synthetic(growth_sequence(sizes, args.repeats), HParams.parse(pairs), args.stop_after,
                               args.seed, serve=sizes[-1:])
        # The sizes run back to back, so each later size starts at the load the previous one
        # left: whether the host was quiet is judged where the whole run starts.
        result = {"dataset": "synthetic", "sizes": sizes, "repeats_of_the_smaller_sizes": args.repeats,
                  "hparams_given": pairs, "machine": _machine(),
                  "quiet_host": runs[0]["quiet_host"],
                  "load_average_1_5_15_at_start": runs[0]["load_average_1_5_15_at_start"],
                  "runs": runs, "growth": _growth(runs)}
        path = args.out_dir / "pipeline_growth.json"
        largest = args.out_dir / f"pipeline_synthetic-{sizes[-1]}.json"
        largest.write_text(json.dumps({**runs[-1], "hparams_given": pairs, "machine": _machine(),
                                       "measured_in": _repo_relative(str(path)),
                                       "growth_run_quiet_host": result["quiet_host"]}, indent=1) + "\n")
        print(f"wrote {_repo_relative(str(largest))}")
        print("\n| component | s per 1M ratings (small) | s per 1M ratings (large) | marginal growth |")
        for name, g in result["growth"].items():
            print(f"| {name} | {g['seconds_per_million_low']} | {g['seconds_per_million_high']} | {g['marginal_growth']} |")
    else:
        runs = bench_synthetic([args.size], HParams.parse(args.hparam), args.stop_after, args.seed,
                               serve=[args.size])
        result = {**runs[0], "machine": _machine()}
        path = args.out_dir / f"pipeline_synthetic-{args.size}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {_repo_relative(str(path))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
