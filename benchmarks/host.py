"""The host a benchmark ran on: its load, which every timing JSON records before and after the run
(a run that starts at a 1-minute load above 1 is not a quiet host and its timings are no result)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

#: A run that starts above this 1-minute load average shares the host: its timings are no result.
QUIET_LOAD = 1.0


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages, rounded to 0.01."""
    return [round(x, 2) for x in os.getloadavg()]


@dataclass
class HostLoad:
    """The load when a benchmark started; ``record()`` adds the load at its end.

    Made at the start of the run (``HostLoad()``), it warns on stderr when the host is busy,
    so whoever runs it knows at once that its timings will not count."""

    start: list[float] = field(default_factory=load_average)
    name: str = "benchmark"

    def __post_init__(self) -> None:
        if not self.quiet:
            print(f"[{self.name}] warning: 1-minute load average {self.start[0]} at the start (> {QUIET_LOAD}): "
                  "not a quiet host, so its timings are not a result", file=sys.stderr)

    @property
    def quiet(self) -> bool:
        return self.start[0] <= QUIET_LOAD

    def record(self) -> dict:
        """The JSON fields every timing result carries (as benchmarks.pipeline_bench writes them)."""
        return {"load_average_1_5_15_at_start": self.start, "load_average_1_5_15_at_end": load_average(),
                "quiet_host": self.quiet}
