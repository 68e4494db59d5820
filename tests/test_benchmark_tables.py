"""docs/benchmarks.md is generated: it must be what benchmarks.tables renders from the committed
results, and name no folder outside the repository."""
from __future__ import annotations

from benchmarks import tables


def test_the_benchmarks_page_is_rendered_from_the_committed_results():
    rendered = tables.page()
    assert tables.PAGE.read_text() == rendered, "run `python -m benchmarks.tables --write` and commit docs/benchmarks.md"
    assert tables.SHARED_DATA not in rendered and "shared host" not in rendered


def test_the_growth_table_shows_each_components_target():
    run = {"seconds_per_component": {"Transform": 10.0, "Trainer": 20.0}, "seconds_data_half": 10.0,
           "seconds_total": 30.0, "dataset": "synthetic-x", "ratings": 1_000_000, "peak_rss_gb": 1.5}
    result = {"sizes": ["a", "b", "c"], "hparams_given": ["epochs=1"], "runs": [run, run, run],
              "growth": {"Transform": {"marginal_growth": 1.05, "target": 1.1, "raw_ratio_per_1x": 1.0},
                         "Trainer": {"marginal_growth": 1.6, "target": 1.5, "raw_ratio_per_1x": 1.2}}}
    lines = tables.growth(result)
    assert "| Transform | 10.0 | 10.0 | 10.0 | 1.05 | ≤ 1.1 | 1.0 |" in lines
    assert "| Trainer | 20.0 | 20.0 | 20.0 | 1.6 | ≤ 1.5 | 1.2 |" in lines
