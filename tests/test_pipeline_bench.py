"""benchmarks.pipeline_bench: its peak-memory probe (RSS is charged to the component that
LocalDagRunner last logged as running, as the 25M run's per-component peaks rely on) and the
generated data it writes from a child process, byte for byte what `movielens-tfx run` writes."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from benchmarks.pipeline_bench import PeakMemory


def test_peak_memory_is_charged_to_the_running_component():
    absl = logging.getLogger("absl")
    absl.setLevel(logging.INFO)
    with PeakMemory(interval=0.02) as memory:
        absl.info("Component %s is running.", "Small")
        time.sleep(0.2)
        absl.info("Component %s is running.", "Big")
        block = np.ones(400_000_000 // 8)  # 400 MB, touched
        time.sleep(0.3)
        del block
        absl.info("Component %s is running.", "AfterBig")
        time.sleep(0.2)
    peaks = memory.peak_bytes
    assert {"Small", "Big", "AfterBig"} <= set(peaks)
    assert peaks["Big"] - peaks["Small"] > 300_000_000
    assert peaks["AfterBig"] < peaks["Big"] - 300_000_000
    assert memory not in absl.handlers  # detached on exit
    assert memory.peak_gb()["Big"] == round(peaks["Big"] / 1e9, 2)


def _run(dataset: str, ratings: int, evaluator: float, transform: float) -> dict:
    return {"dataset": dataset, "ratings": ratings, "seconds_data_half": transform,
            "seconds_total": transform + evaluator,
            "seconds_per_component": {"Transform": transform, "Evaluator": evaluator}}


def test_growth_takes_each_sizes_median_so_one_fast_small_run_does_not_decide_it():
    """--repeats: the smaller sizes alternate N times and each component's slope uses the median
    seconds per size (a 5M Evaluator of 27 s among 44 s ones once made the growth 1.35)."""
    from benchmarks.pipeline_bench import _growth, growth_sequence

    assert growth_sequence(["ml-1m", "5m", "25m"], 3) == ["ml-1m", "5m"] * 3 + ["25m"]
    assert growth_sequence(["ml-1m", "5m", "25m"], 1) == ["ml-1m", "5m", "25m"]
    small = [_run("s", 1_000_000, e, 60.0) for e in (9.0, 8.0, 10.0)]
    middle = [_run("m", 5_000_000, e, 280.0) for e in (27.0, 44.0, 45.0)]
    large = [_run("l", 25_000_000, 150.0, 1300.0)]
    runs = [small[0], middle[0], small[1], middle[1], small[2], middle[2], *large]
    growth = _growth(runs)
    # Evaluator: medians 9, 44, 150 -> (150 - 44) / 20 over (44 - 9) / 4
    assert growth["Evaluator"]["seconds_per_million_low"] == 8.75
    assert growth["Evaluator"]["seconds_per_million_high"] == 5.3
    assert growth["Evaluator"]["marginal_growth"] == round(5.3 / 8.75, 2)
    assert growth["Evaluator"]["meets_target"] is True
    # with the fast 5M run alone the same numbers fail the target
    alone = _growth([small[0], middle[0], *large])
    assert alone["Evaluator"]["meets_target"] is False
    assert growth["Transform"]["marginal_growth"] == round((1300 - 280) / 20 / ((280 - 60) / 4), 2)


def test_data_generated_apart_is_the_data_run_would_generate(tmp_path):
    from benchmarks.pipeline_bench import generate_apart
    from pipeline.run import resolve_data
    from settings.paths import ArtifactPaths

    apart = Path(generate_apart("tiny", 7, ArtifactPaths(str(tmp_path / "apart"))))
    in_process = Path(resolve_data("synthetic", ArtifactPaths(str(tmp_path / "run")), size="tiny", seed=7))
    assert apart.name == in_process.name == "synthetic-tiny-seed7"
    names = sorted(p.name for p in in_process.iterdir())
    assert names == sorted(p.name for p in apart.iterdir()) and "clusters.json" in names
    for name in names:
        assert (apart / name).read_bytes() == (in_process / name).read_bytes(), name
    assert generate_apart("tiny", 7, ArtifactPaths(str(tmp_path / "apart"))) == str(apart)  # reused, not redone
