"""Seconds per phase of a long job, lap by lap: the Trainer's history.json "seconds" and
ExampleGen's step profile (benchmarks.example_gen_steps) both time their phases this way."""
from __future__ import annotations

import time


class PhaseClock:
    """``lap(phase)`` records, under ``phase`` in ``seconds``, the seconds since the previous
    lap (the first: since the clock was made), rounded to 0.01."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase], self._last = round(now - self._last, 2), now
