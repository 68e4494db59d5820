"""The growth run's records (the "runs" of benchmarks/results/pipeline_growth.json): one run's
seconds of a component or of a total, and the runs grouped by size. `benchmarks.pipeline_bench`
computes the growth from them and `benchmarks.tables` renders them; standard library only, so
the tables read results without the pipeline's imports."""
from __future__ import annotations

from typing import Iterable

#: The totals a run records besides its components, by the name the growth tables give them.
TOTALS = {"data half": "seconds_data_half", "total": "seconds_total"}


def seconds(run: dict, name: str) -> float | None:
    """``run``'s seconds of the component ``name`` or of a TOTALS entry; None where it did not run."""
    key = TOTALS.get(name)
    return run[key] if key else run["seconds_per_component"].get(name)


def by_size(runs: Iterable[dict]) -> dict[str, list[dict]]:
    """Each size's runs (a --repeats run holds several of the smaller sizes), sizes in run order."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run["dataset"], []).append(run)
    return groups
