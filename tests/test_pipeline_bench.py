"""benchmarks.pipeline_bench's peak-memory probe: RSS is charged to the component that
LocalDagRunner last logged as running, as the 25M run's per-component peaks rely on."""
from __future__ import annotations

import logging
import time

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
