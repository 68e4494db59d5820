"""Classical rating-prediction baselines on one random split, printed as a table.

    python -m benchmarks.baselines --data ../shared/data/ml-100k --test-fraction 0.1 --seed 0
    python -m benchmarks.baselines --data ../shared/data/ml-1m \
        --ratings ../shared/data/ml-1m/ratings-no-timestamps.csv --models Biases ItemItemCF

A command for a person to eyeball the baselines alone (``benchmarks.accuracy`` puts them next
to the two-tower model and writes the JSON the README is built from). The models, the split
and the metrics are the ``baselines`` library's; the ratings are read by the pipeline's own
validated loader (``data.movielens_files``), so a malformed line stops the run with its
``path:line`` instead of being skipped.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from baselines.data import load_rating_data
from baselines.models import ALL_BASELINES, baselines_named
from baselines.scoring import evaluate_baselines

__all__ = ["format_table", "main"]

#: The data sets' own ratings files: naming one as --data means "its folder".
_OWN_RATINGS_FILES = ("u.data", "ratings.dat")


def _data_source(data: Path, ratings: Path | None) -> tuple[Path, Path | None]:
    """(MovieLens folder or .zip, ratings CSV or None) from --data and --ratings.

    Why: the loader needs the data set's folder (users and movies validate every rating), but
    this command used to take a ratings file; ``--data ml-100k/u.data`` still works and means
    the folder, and ``--data folder/ratings.csv`` means that CSV with its folder.
    """
    if not data.is_file() or data.suffix.lower() == ".zip":
        return data, ratings
    if ratings is not None:
        raise ValueError(f"--data {data} is a ratings file already; pass its folder with --ratings")
    return data.parent, None if data.name in _OWN_RATINGS_FILES else data


def format_table(rows: list[dict]) -> str:
    """Rows of ``baselines.scoring`` as a fixed-width table."""
    lines = [f"{'model':<22}{'RMSE':>8}{'MAE':>8}{'seconds':>9}"]
    lines += [
        f"{r['model']:<22}{r['rmse']:>8.4f}{r['mae']:>8.4f}{r['seconds']:>9.1f}" for r in rows
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: evaluate every baseline on one MovieLens data set and print a table."""
    names = [f.name for f in ALL_BASELINES]  # type: ignore[attr-defined]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.baselines",
        description="Classical rating-prediction baselines on a random split.",
    )
    parser.add_argument("--data", required=True, type=Path,
                        help="MovieLens folder or .zip (e.g. ../shared/data/ml-100k)")
    parser.add_argument("--ratings", type=Path, default=None,
                        help="user,movie,rating[,timestamp] CSV read instead of the folder's ratings")
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="*", default=None, metavar="MODEL",
                        help=f"subset of {', '.join(names)} (default: all)")
    args = parser.parse_args(argv)
    if not 0.0 < args.test_fraction < 1.0:
        parser.error(f"--test-fraction must be in (0, 1), got {args.test_fraction}")

    factories = ALL_BASELINES
    if args.models:
        try:
            factories = baselines_named(args.models)
        except KeyError as error:
            parser.error(error.args[0])
    t0 = time.perf_counter()
    try:
        folder, ratings = _data_source(args.data, args.ratings)
        data = load_rating_data(folder, ratings)
    except (OSError, ValueError) as error:  # missing files, MovieLensFormatError
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    load_s = time.perf_counter() - t0
    print(
        f"{args.data}: {len(data):,} ratings, {len(np.unique(data.user)):,} users, "
        f"{len(np.unique(data.item)):,} items (loaded in {load_s:.1f} s); "
        f"test fraction {args.test_fraction}, seed {args.seed}"
    )
    rows = evaluate_baselines(data, args.test_fraction, args.seed, factories)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
