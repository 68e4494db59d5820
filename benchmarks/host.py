"""The host a benchmark ran on: its load, which every timing JSON records before and after the run
(a run that starts at a 1-minute load above 1 is not a quiet host and its timings are no result)."""
from __future__ import annotations

import os


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages, rounded to 0.01."""
    return [round(x, 2) for x in os.getloadavg()]
