"""docs/benchmarks.md is generated: it must be what benchmarks.tables renders from the committed
results, and name no folder outside the repository."""
from __future__ import annotations

from benchmarks import tables


def test_the_benchmarks_page_is_rendered_from_the_committed_results():
    rendered = tables.page()
    assert tables.PAGE.read_text() == rendered, "run `python -m benchmarks.tables --write` and commit docs/benchmarks.md"
    assert tables.SHARED_DATA not in rendered and "shared host" not in rendered


def _run(dataset: str, ratings: int, transform: float, trainer: float) -> dict:
    return {"seconds_per_component": {"Transform": transform, "Trainer": trainer}, "seconds_data_half": transform,
            "seconds_total": transform + trainer, "dataset": dataset, "ratings": ratings, "peak_rss_gb": 1.5}


def test_the_growth_table_shows_each_components_target():
    runs = [_run("synthetic-a", 1_000_000, 10.0, 20.0), _run("synthetic-b", 5_000_000, 10.0, 20.0),
            _run("synthetic-c", 25_000_000, 10.0, 20.0)]
    result = {"sizes": ["a", "b", "c"], "hparams_given": ["epochs=1"], "runs": runs,
              "growth": {"Transform": {"marginal_growth": 1.05, "target": 1.1, "raw_ratio_per_1x": 1.0},
                         "Trainer": {"marginal_growth": 1.6, "target": 1.5, "raw_ratio_per_1x": 1.2}}}
    lines = tables.growth(result)
    assert "| Transform | 10.0 | 10.0 | 10.0 | 1.05 | ≤ 1.1 | 1.0 |" in lines
    assert "| Trainer | 20.0 | 20.0 | 20.0 | 1.6 | ≤ 1.5 | 1.2 |" in lines


def test_the_growth_table_shows_a_repeated_sizes_median_and_its_runs():
    """--repeats: one column per size, the median first and the runs in brackets."""
    runs = [_run("synthetic-a", 1_000_000, 10.0, 20.0), _run("synthetic-b", 5_000_000, 40.0, 80.0),
            _run("synthetic-a", 1_000_000, 12.0, 20.0), _run("synthetic-b", 5_000_000, 30.0, 80.0),
            _run("synthetic-a", 1_000_000, 11.0, 20.0), _run("synthetic-b", 5_000_000, 44.0, 80.0),
            _run("synthetic-c", 25_000_000, 200.0, 400.0)]
    result = {"sizes": ["a", "b", "c"], "hparams_given": ["epochs=1"], "runs": runs, "repeats_of_the_smaller_sizes": 3,
              "growth": {"Transform": {"marginal_growth": 1.0, "target": 1.1, "raw_ratio_per_1x": 1.0}}}
    lines = tables.growth(result)
    assert "--growth a,b,c --repeats 3" in lines[0]
    assert "| Transform | 11.0 [10.0 / 12.0 / 11.0] | 40.0 [40.0 / 30.0 / 44.0] | 200.0 | 1.0 | ≤ 1.1 | 1.0 |" in lines


def test_the_multi_worker_table_puts_the_two_trainers_side_by_side():
    def run(processes: int, cores: int, rate: int, rmse: float) -> dict:
        return {"processes": processes, "cores_each": cores, "train_examples_per_second_median": rate,
                "trainer_seconds": 100.0, "best_eval_rmse": 0.9, "test_rmse": rmse}

    result = {"dataset": "ml-1m", "runs": {"one_process": run(1, 2, 30000, 0.85), "workers": run(2, 1, 21000, 0.852)},
              "examples_per_second_ratio": 0.7, "test_rmse_difference": 0.002}
    lines = tables.multi_worker(result)
    assert "| one process | 1 x 2 | 30,000 | 100.0 | 0.9000 | 0.8500 |" in lines
    assert "| local workers | 2 x 1 | 21,000 | 100.0 | 0.9000 | 0.8520 |" in lines
    assert any("0.70" in line and "+0.0020" in line for line in lines)


def test_an_accuracy_row_names_its_ensemble_and_its_gibbs_towers():
    row = {"dataset": "ml-1m", "split": "80/20", "seed": 0, "model": "two-tower", "rmse": 0.8, "mae": 0.6,
           "seconds": 10.0, "hparams": {"ensemble_size": 2},
           "gibbs": {"validation_fit": {"weight": 0.61, "samples": 32}, "final_fit": {"weight": 0.61, "samples": 32}}}
    assert "| two-tower, ensemble of 2, 32 Gibbs samples at weight 0.61 |" in "\n".join(tables.accuracy([row]))
    plain = {**row, "hparams": {"ensemble_size": 1}, "gibbs": {"validation_fit": None, "final_fit": None}}
    assert "| two-tower | 0.8000 |" in "\n".join(tables.accuracy([plain]))
