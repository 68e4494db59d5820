"""Which DirectRunner mode runs the data half fastest: seconds per component, per mode.

    python -m benchmarks.beam_modes --data ../shared/data/ml-1m \\
        --ratings ../shared/data/ml-1m/ratings-no-timestamps.csv

Runs the data half (MovieLensExampleGen -> ... -> Transform, caching off, a fresh artifacts
folder each time) once per Beam mode and round, modes interleaved within each round, plus
TFX's stock CsvExampleGen on the same ratings CSV in the same mode (benchmarks.peer_example_gen)
as a same-moment yardstick, and writes benchmarks/results/beam_modes.json. The host's speed
varies, so compare the modes as ratios within one file, not across runs. The JSON also
records the StatisticsGen and Transform settings the runs used (the pipeline's defaults).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from benchmarks.host import HostLoad
from benchmarks.peer_example_gen import run_csv_example_gen
from pipeline import configs
from pipeline.run import run_pipeline
from settings.paths import ArtifactPaths

RESULTS = Path(__file__).resolve().parent / "results"
MODES = {
    "in_memory": ["--direct_running_mode=in_memory", "--direct_num_workers=1", configs.DIRECT_RUNNER_NO_STAGING],
    "multi_threading": ["--direct_running_mode=multi_threading", "--direct_num_workers=2",
                        configs.DIRECT_RUNNER_NO_STAGING],
    "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=2",
                         configs.DIRECT_RUNNER_NO_STAGING],
}
#: What pipeline/pipeline.py configures: recorded with the measurement.
SETTINGS = {
    "StatisticsGen": {"stats_options": "pipeline.configs.stats_options(): tfdv defaults (no sample_rate: every "
                                       "example; num_top_values=20, num_rank_histogram_buckets=1000, "
                                       "desired_batch_size auto) with sketch-based top-k and unique counts"},
    "Transform": {"force_tf_compat_v1": False, "analyzer_cache": "TFX default (enabled; --no-cache run: cold)",
                  "desired_batch_size": "auto (tfx_bsl batching)", "analyze": ["train"],
                  "transform": ["train", "eval", "test"]},
}


def run_data_half(data: str, ratings: str | None, beam_args: list[str], work_dir: str) -> dict[str, float]:
    """Seconds per data-half component of one cold run."""
    config = configs.PipelineConfig(data_dir=data, ratings_csv=ratings, paths=ArtifactPaths(work_dir),
                                    enable_cache=False, stop_after="transform", beam_args=list(beam_args))
    result = run_pipeline(config)
    return {name: round(seconds, 2) for name, seconds, _ in result.components}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.beam_modes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a MovieLens folder (ML-1M layout or ML-100K)")
    parser.add_argument("--ratings", default=None, help="a ratings CSV read instead of the folder's")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-peer", action="store_true", help="skip the CsvExampleGen yardstick")
    parser.add_argument("--out", type=Path, default=RESULTS / "beam_modes.json")
    args = parser.parse_args(argv)

    host = HostLoad(name="beam_modes")
    runs = []
    for round_ in range(args.rounds):
        for mode in args.modes:
            with tempfile.TemporaryDirectory(prefix=f"beam-modes-{mode}-") as tmp:
                start = time.perf_counter()
                seconds = run_data_half(args.data, args.ratings, MODES[mode], tmp)
                total = time.perf_counter() - start
                peer = None
                if not args.no_peer and args.ratings:
                    peer = round(run_csv_example_gen(args.ratings, tmp, MODES[mode]), 2)
            run = {"round": round_, "mode": mode, "beam_args": MODES[mode], "seconds_per_component": seconds,
                   "data_half_seconds": round(total, 2), "peer_csv_example_gen_seconds": peer}
            runs.append(run)
            print(json.dumps(run), flush=True)
    best = {}
    for run in runs:
        best.setdefault(run["mode"], []).append(run["data_half_seconds"])
    fastest = min(best, key=lambda mode: min(best[mode]))
    result = {
        "data": os.path.basename(args.data.rstrip("/")), "ratings": args.ratings and os.path.basename(args.ratings),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "note": "one host whose speed varies minute to minute: compare modes as ratios within this file",
        "settings": SETTINGS, "runs": runs, "fastest": fastest,
        "ratio_to_fastest": {mode: round(min(s) / min(best[fastest]), 2) for mode, s in best.items()},
        **host.record(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"fastest: {fastest}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
