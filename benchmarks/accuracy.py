"""Rating-prediction accuracy: the two-tower model next to classical baselines.

    python -m benchmarks.accuracy --dataset ml-100k --data ../shared/data/ml-100k \
        --test-fraction 0.1 --seed 0 --out benchmarks/results/accuracy.json
    python -m benchmarks.accuracy --dataset ml-latest-small --data ../shared/data/ml-latest-small

Every model sees the identical random split (`baselines.data.random_split`). Rows
`{dataset, split, seed, model, rmse, mae, seconds}` (plus `params` and `validation` for a
baseline that chose its knobs on a validation slice of the train part, the myfm peer's rank)
are merged into the JSON file (rows of other dataset/split/seed combinations are kept), and a
table is printed. `--skip-two-tower` writes the baselines' rows only.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from baselines.data import random_split, rating_data
from baselines.scoring import evaluate_baselines
from benchmarks.accuracy_rows import TWO_TOWER
from benchmarks.host import HostLoad
from benchmarks.two_tower import fit_predict
from common.metrics import mae, rmse
from data.movielens_files import load_movielens
from model.model import HParams

# Per-dataset hyperparameters on top of HParams' defaults (--hparam overrides both), chosen on
# ML-100K's 90/10 validation slice: ML-100K has ~90 ratings per user and ~85k training ratings,
# so it takes batches of 1024 (80 steps per epoch instead of 20), a 64-d history and L2 15x the
# defaults (benchmarks/results/tune_l2*_ml-100k.json, tune_history_l2_ml-100k.json); with that
# L2 it keeps the default dropout (tune_dropout*_ml-100k.json). Ensembles and the form options
# are left off (accuracy_ensemble_ml-1m.json, tune_ensemble*_ml-100k.json, tune_linear_ids_ml-100k.json,
# tune_history_form_ml-100k.json).
# The Gibbs towers (model.blended_towers) take one prior group for all their inputs there, as
# ML-100K's validation slice chose (tune_gibbs_towers_ml-100k.json; ML-1M's chose a group each).
_SMALL_DATA_HPARAMS = {"batch_size": 1024, "epochs": 40, "patience": 5, "history_dim": 64,
                       "id_l2": 6e-4, "history_l2": 6e-4, "l2": 1.5e-4, "gibbs_grouped": False}
# ml-latest-small (half stars, no demographics) has ML-100K's size (100,836 ratings, but 610 users
# and 9,742 movies), so it starts from ML-100K's settings; they were not tuned on it.
DATASET_HPARAMS: dict[str, dict] = {
    "ml-100k": _SMALL_DATA_HPARAMS,
    "ml-latest-small": _SMALL_DATA_HPARAMS,
}
#: The data sets rows are recorded for (the name goes into the results JSON).
DATASETS = ("ml-100k", "ml-1m", "ml-latest-small", "synthetic")


def split_name(test_fraction: float) -> str:
    test = round(test_fraction * 100)
    return f"{100 - test}/{test}"


def run(dataset: str, data_path: str, ratings: str | None, test_fraction: float, seed: int,
        hparams: dict, skip_baselines: bool = False, skip_two_tower: bool = False, refit: bool = True) -> list[dict]:
    """The rows of one (dataset, split, seed): every baseline's, then the two-tower model's.

    The two-tower model is fitted as the baselines that choose knobs are: early stopping on a
    validation slice of the train part chooses the epoch count, then ``refit`` fits it again on
    the whole train part (``benchmarks.two_tower.fit_predict``); its ``seconds`` cover both fits.

    ``skip_two_tower`` leaves the model out, e.g. to add a new baseline's rows to the JSON
    without refitting the model (``merge`` keeps its existing rows).
    """
    data = load_movielens(data_path, ratings_csv=ratings)
    r = data.ratings
    common = {"dataset": dataset, "split": split_name(test_fraction), "seed": seed}
    rows = []
    if not skip_baselines:
        for row in evaluate_baselines(rating_data(r), test_fraction, seed):
            rows.append({**common, **row})
            print(f"  {row['model']:<28} RMSE {row['rmse']:.4f}  ({row['seconds']:.1f} s)", file=sys.stderr)
    if skip_two_tower:
        return rows
    train_idx, test_idx = random_split(len(r), test_fraction, seed)
    hp = HParams.from_dict({"seed": seed, **DATASET_HPARAMS.get(dataset, {}), **hparams})
    result = fit_predict(data, train_idx, test_idx, hp, refit=refit)
    truth = r.rating[test_idx]
    rows.append({**common, "model": TWO_TOWER, "rmse": rmse(result.predictions, truth),
                 "mae": mae(result.predictions, truth), "seconds": result.seconds,
                 "hparams": hp.to_dict(), "epochs_run": len(result.history.get("loss", [])),
                 # the validation slice of the train part (early stopping, and where knobs are chosen)
                 "best_validation_rmse": min(result.history.get("val_rmse") or [float("nan")]),
                 "train_examples_per_second": max(result.history.get("examples_per_second") or [0]),
                 # the model that predicted: refitted on the whole train part for the best epoch count
                 # (models trained apart: each member, for the first member's count)
                 "final_fit_epochs": _final_epochs(result.final_history),
                 # the Gibbs towers (HParams.gibbs_samples): the validation fit's (the weight chosen there
                 # and each part's validation RMSE) and the final fit's
                 "gibbs": {"validation_fit": result.history.get("gibbs"),
                           "final_fit": (result.final_history or {}).get("gibbs")}})
    return rows


def _final_epochs(final_history: dict | None) -> int | None:
    if final_history is None:
        return None
    members = final_history.get("members")
    return len((members[0] if members else final_history)["loss"])


def merge(path: Path, rows: list[dict]) -> list[dict]:
    """Replaces rows of the same (dataset, split, seed, model) in the JSON list at path."""
    existing = json.loads(path.read_text()) if path.exists() else []
    keys = {(r["dataset"], r["split"], r["seed"], r["model"]) for r in rows}
    kept = [r for r in existing if (r["dataset"], r["split"], r["seed"], r["model"]) not in keys]
    merged = kept + rows
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=1) + "\n")
    return merged


def table(rows: list[dict]) -> str:
    lines = ["| dataset | split | seed | model | RMSE | MAE | seconds |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["split"], r["seed"], r["rmse"])):
        lines.append(f"| {r['dataset']} | {r['split']} | {r['seed']} | {r['model']} | {r['rmse']:.4f} | "
                     f"{r['mae']:.4f} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--data", required=True, help="MovieLens folder (e.g. ../shared/data/ml-100k)")
    parser.add_argument("--ratings", help="ratings CSV used instead of the folder's ratings file")
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy.json"))
    parser.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--no-refit", dest="refit", action="store_false",
                        help="predict with the model early-stopped on the validation slice (fitted on the rest of "
                             "the train part) instead of refitting it on the whole train part")
    parser.add_argument("--skip-two-tower", action="store_true",
                        help="baseline rows only (the JSON keeps the model's existing rows)")
    args = parser.parse_args(argv)
    if args.skip_baselines and args.skip_two_tower:
        parser.error("--skip-baselines and --skip-two-tower leave nothing to run")
    from common.errors import UserError
    from settings.hparams import HParams

    try:
        hparams = HParams.parse(args.hparam)
    except UserError as error:
        parser.error(str(error))
    host = HostLoad(name="accuracy")
    rows = run(args.dataset, args.data, args.ratings, args.test_fraction, args.seed, hparams, args.skip_baselines,
               args.skip_two_tower, args.refit)
    record = host.record()  # the rows of one run share its host
    rows = [{**row, **record} for row in rows]
    merge(args.out, rows)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
