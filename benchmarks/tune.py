"""Validation RMSE per epoch and training examples/s of the two-tower model under
hyperparameter variants, on the train part of the accuracy benchmark's random split.

For choosing defaults without touching the test split: each variant is fitted as in
`benchmarks.accuracy` (same split, same 5% validation slice of the train part, early stopping
off) and its per-epoch validation RMSE and examples/s are printed and written as JSON.

    python -m benchmarks.tune --data ../shared/data/ml-1m \\
        --ratings ../shared/data/ml-1m/ratings-no-timestamps.csv --epochs 8 \\
        '{"history_dim": 32}' '{"history_dim": 64}'

`--peer` also fits the accuracy benchmark's peer, the Bayesian FM (myfm, rank 32), on the same
fitted rows and scores it on the same validation slice: the model's validation RMSE is then
read against the number it must beat, not against the peer's own (differently cut) slice.

`--gibbs-towers '{}'` also fits the peer's sampler over the two towers' own inputs
(model.gibbs_towers: ids and histories as the peer reads them, plus demographics, genres and
title words) on the same rows, and scores it on the same slice; its settings (`rank`, `n_iter`,
`grouped`, `without`: transformed features left out, `samples`: numbers of posterior samples
to also score as served towers) are chosen there too. With
`--blend-check` its ratings are kept and blended with the variants'.

`--refit-check` runs the accuracy benchmark's protocol one level down, on rows the variants
were never validated on: a held-out slice is cut from the train part with another seed, and
each variant is fitted on the rest as `benchmarks.accuracy` fits it (early stopping on a slice
of the rest, then the final refit on all of it); both fits are scored on the held-out slice
(with `--peer`, so is the peer, fitted on the same rest). It tells whether the refit gains
what the peer's gains, and whether the usual validation slice flatters the tuned model.

`--average-seeds 0,1,2` fits each variant once per model seed (the initial weights and the
batch order; the validation slice stays the run's `--seed`) on the same rows, each with early
stopping as `benchmarks.accuracy` fits it, and scores every fit and the average of the first
k fits' predictions on the validation slice: what averaging models trained apart buys.

`--blend-check DIR` asks which models average well together, without refitting any: each
variant is fitted once on the refit check's rows (early stopping on the usual slice of them)
and its ratings of the refit check's held-out slice are kept in DIR as NumPy files, named by
a key over the data, the fitting code, the split and the variant's full settings (a variant
already there is read, not fitted again). Every file in DIR of the same data and split is then scored alone,
and so is the mean of each pair (with the correlation of the pair's errors) and of all of them:
whether members that differ in their settings share fewer errors than members that differ only
in their seed.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from baselines.data import random_split, rating_data
from benchmarks.accuracy import DATASET_HPARAMS, DATASETS
from benchmarks.host import HostLoad
from benchmarks.two_tower import fit_model, fit_predict, predict_clipped, prepare, validation_cut
from common.metrics import rmse
from data import features as f
from data.movielens_files import load_movielens
from model.model import HParams
from pipeline.code_fingerprint import source_fingerprint

#: Keras' progress for every fit: a line per epoch (on stderr, as main redirects it).
FIT_VERBOSE = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", metavar="JSON", help='hyperparameter overrides, e.g. \'{"history_dim": 32}\'')
    parser.add_argument("--data", required=True, help="MovieLens folder (users/movies/ratings files)")
    parser.add_argument("--ratings", help="ratings CSV instead of the folder's ratings file")
    parser.add_argument("--dataset", choices=DATASETS,
                        help="start from benchmarks.accuracy's settings for this data set (as its rows do)")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    parser.add_argument("--peer", action="store_true",
                        help="also score the Bayesian FM peer (myfm, rank 32) on the same validation slice")
    parser.add_argument("--gibbs-towers", action="append", metavar="JSON", type=_gibbs_settings,
                        help="also score the towers' inputs fitted by the peer's Gibbs sampler (model.gibbs_towers) "
                             "on the rows the peer is fitted and scored on, with these settings, e.g. '{}' or "
                             "'{\"grouped\": false, \"without\": [\"title_ids_xf\"]}' (repeatable; with "
                             "--blend-check its ratings are kept and blended like a variant's)")
    parser.add_argument("--refit-check", action="store_true",
                        help="fit each variant as benchmarks.accuracy does on the train part minus a fresh held-out "
                             "slice, and score its validation fit and its refit on that slice")
    parser.add_argument("--average-seeds", type=_seeds, metavar="S,S,...",
                        help="fit each variant once per model seed and score the average of their predictions")
    parser.add_argument("--blend-check", type=Path, metavar="DIR",
                        help="fit each variant once, keep its ratings of the refit check's held-out slice in DIR, "
                             "and score every kept model, each pair and all of them averaged")
    args = parser.parse_args(argv)
    if sum(map(bool, (args.average_seeds, args.refit_check, args.blend_check))) > 1:
        parser.error("--average-seeds, --refit-check and --blend-check are separate checks: give one")
    if not args.variants and not args.peer and not args.gibbs_towers:
        parser.error("give at least one variant (or --peer, --gibbs-towers)")
    try:
        variants = [json.loads(v) for v in args.variants]
        # early stopping off (every epoch's RMSE is the result), except in --refit-check,
        # --average-seeds and --blend-check, which fit as benchmarks.accuracy does
        base = {"seed": args.seed, **DATASET_HPARAMS.get(args.dataset, {}), "epochs": args.epochs,
                **({} if args.refit_check or args.average_seeds or args.blend_check else {"patience": args.epochs})}
        hparams = [HParams.from_dict({**base, **v}) for v in variants]
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        parser.error(f"bad variant: {error}")
    host = HostLoad(name="tune")
    data = load_movielens(args.data, ratings_csv=args.ratings)
    train_idx, _ = random_split(len(data.ratings.rating), args.test_fraction, args.seed)
    results: list[dict] = []

    def write() -> None:  # after every fit, so that a stopped run keeps what it finished
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"data": args.data, "dataset": args.dataset,
                                            "test_fraction": args.test_fraction, "seed": args.seed,
                                            "epochs": args.epochs, "variants_asked": len(variants),
                                            **({"peer": peer} if peer else {}),
                                            **({"gibbs_towers": gibbs} if gibbs else {}),
                                            "results": results, **host.record()}, indent=1) + "\n")

    fresh = args.refit_check or args.blend_check
    fit_idx, held_idx = validation_cut(train_idx, args.seed + REFIT_CHECK_SEED if fresh else args.seed)
    peer = _peer_score(data, fit_idx, held_idx, args.seed) if args.peer else None
    blends = (BlendCheck(args.blend_check, {"data": _data_digest(data), "code": source_fingerprint(),
                                            "test_fraction": args.test_fraction, "seed": args.seed},
                         data, fit_idx, held_idx) if args.blend_check else None)
    gibbs = []
    for settings in args.gibbs_towers or []:
        gibbs.append(_gibbs_towers_score(data, fit_idx, held_idx, args.seed, settings, blends))
        write()
    write()
    for number, (variant, hp) in enumerate(zip(variants, hparams), 1):
        print(f"variant {number}/{len(variants)}: {json.dumps(variant)}", file=sys.stderr, flush=True)
        # each fit's epoch lines (FIT_VERBOSE) go to stderr, so stdout carries only the results' JSON lines
        with contextlib.redirect_stdout(sys.stderr):
            if blends:
                scores = blends.score(hp)
            elif args.refit_check:
                scores = _refit_check(data, fit_idx, held_idx, hp)
            elif args.average_seeds:
                scores = _seed_average(data, train_idx, hp, args.average_seeds)
            else:
                scores = _validation_curve(data, train_idx, hp)
        results.append({"variant": variant, **scores})
        print(json.dumps(results[-1]), flush=True)
        write()
    if blends:
        results.append({"blends": blends.blends()})
        print(json.dumps(results[-1]), flush=True)
        write()
    return 0


def _validation_curve(data, train_idx: np.ndarray, hp: HParams) -> dict:
    """One variant fitted on train_idx minus its validation slice: every epoch's validation RMSE."""
    history = fit_model(data, train_idx, hp, verbose=FIT_VERBOSE).history
    val = history["val_rmse"]
    best = min(range(len(val)), key=val.__getitem__)
    return {"best_val_rmse": round(val[best], 4), "best_epoch": best + 1, "val_rmse": [round(x, 4) for x in val],
            "examples_per_second": [round(x) for x in history["examples_per_second"]],
            "examples_per_second_median": round(statistics.median_high(history["examples_per_second"]))}


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 0,1,2") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: each seed once")
    return seeds


def _seed_average(data, train_idx: np.ndarray, hp: HParams, seeds: list[int]) -> dict:
    """One variant fitted once per model seed on the same rows (early stopping, best weights
    kept); each fit's validation RMSE and that of the mean of the first k fits' predictions."""
    prepared = prepare(data, train_idx, hp)
    truth = prepared.labels[prepared.validation_idx]
    scale = f.rating_scale(data.ratings.rating[train_idx])
    predictions, each, averaged, seconds = [], [], [], []
    for seed in seeds:
        start = time.perf_counter()
        result = fit_model(data, train_idx, dataclasses.replace(hp, seed=seed), prepared=prepared, verbose=FIT_VERBOSE)
        predictions.append(predict_clipped(result, prepared.validation_idx, scale))
        each.append(round(rmse(predictions[-1], truth), 5))
        averaged.append(round(rmse(np.mean(predictions, axis=0), truth), 5))
        seconds.append(round(time.perf_counter() - start))
    return {"seeds": seeds, "val_rmse_each": each, "val_rmse_average_of_first_k": averaged, "seconds_each": seconds}


#: --refit-check cuts its held-out slice with the split's seed plus this (a slice other than
#: the one the variants are validated on).
REFIT_CHECK_SEED = 1000


def _refit_check(data, fit_idx: np.ndarray, held_idx: np.ndarray, hp: HParams) -> dict:
    """One variant fitted on fit_idx as benchmarks.accuracy fits it, both fits scored on held_idx."""
    result = fit_predict(data, fit_idx, held_idx, hp, refit=True, keep_validation_fit=True, verbose=FIT_VERBOSE)
    truth = data.ratings.rating[held_idx]
    val = result.history["val_rmse"]
    return {"best_val_rmse": round(min(val), 4), "best_epoch": result.history["best_epoch"] + 1,
            "val_rmse": [round(x, 4) for x in val],
            "held_out_rmse_validation_fit": round(rmse(result.validation_fit_predictions, truth), 4),
            "held_out_rmse_refit": round(rmse(result.predictions, truth), 4),
            "final_fit_epochs": len(result.final_history["loss"]), "held_out_rows": len(held_idx),
            **(_refit_members(result, held_idx, truth, f.rating_scale(data.ratings.rating[fit_idx]))
               if result.member_models else {})}


def _refit_members(result, held_idx: np.ndarray, truth: np.ndarray, scale: tuple[float, float]) -> dict:
    """Models trained apart: each refitted member's held-out RMSE and that of the mean of the
    first k members' ratings (clipped after the mean, as the assembled model serves it), so
    that one run shows what each added member buys."""
    inputs = result.inputs(held_idx)
    raw = [m.predict(inputs, batch_size=16384, verbose=0).reshape(-1) for m in result.member_models]
    return {"held_out_rmse_refit_each": [round(rmse(np.clip(r, *scale), truth), 5) for r in raw],
            "held_out_rmse_refit_first_k": [round(rmse(np.clip(np.mean(raw[:k], axis=0), *scale), truth), 5)
                                            for k in range(1, len(raw) + 1)],
            "final_member_epochs": [len(h["loss"]) for h in result.final_history["members"]]}


def _data_digest(data) -> str:
    """A digest of the loaded data set's content: every rating (user, movie, value, in order)
    and every user's and movie's fields, which the model reads."""
    digest = hashlib.sha256()
    for column in (data.ratings.user_id, data.ratings.movie_id, data.ratings.rating):
        digest.update(np.ascontiguousarray(column).tobytes())
    for table in (data.users, data.movies):
        digest.update(repr(sorted(table.items())).encode())
    return digest.hexdigest()[:20]


class BlendCheck:
    """--blend-check: held-out ratings of fitted variants kept as NumPy files in ``folder``, and
    the RMSE of each and of their averages. A file's name is a key over the split (``split``:
    the data's content digest, the fingerprint of the model code and all it imports, which
    pipeline.code_fingerprint keeps for the Trainer's cache key, the test fraction, the seed) and
    the variant's full settings, and ``<key>.json`` beside it says what it holds, so a file is
    reused only for the same model on the same rows."""

    def __init__(self, folder: Path, split: dict, data, fit_idx: np.ndarray, held_idx: np.ndarray):
        self.folder, self.split, self.data = folder, split, data
        self.fit_idx, self.held_idx = fit_idx, held_idx
        self.truth = data.ratings.rating[held_idx]
        self._prepared = None
        folder.mkdir(parents=True, exist_ok=True)

    def key(self, hp: HParams) -> str:
        return self.record_key({"hparams": hp.to_dict()})

    def record_key(self, record: dict) -> str:
        """The file name of a model described by ``record`` (a variant: its full settings) on this split."""
        text = json.dumps({"split": self.split, **record}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def kept(self, record: dict) -> tuple[np.ndarray, dict] | None:
        """The kept held-out ratings of the model ``record`` describes and what its ``<key>.json``
        says, or None."""
        path = self.folder / f"{self.record_key(record)}.npy"
        return (np.load(path), json.loads(path.with_suffix(".json").read_text())) if path.exists() else None

    def keep(self, record: dict, predicted: np.ndarray, seconds: float | None, **about) -> str:
        """Keeps a model's held-out ratings (and ``<key>.json``: the split, ``record``, ``about``); its key."""
        key = self.record_key(record)
        np.save(self.folder / f"{key}.npy", np.asarray(predicted, np.float32).reshape(-1))
        (self.folder / f"{key}.json").write_text(json.dumps(
            {"split": self.split, **record, **about, "seconds": seconds}, indent=1) + "\n")
        return key

    def score(self, hp: HParams) -> dict:
        """Fits hp unless its file exists; its held-out RMSE."""
        key = self.key(hp)
        seconds = None
        kept = self.kept({"hparams": hp.to_dict()})
        if kept is not None:
            predicted, about = kept
            best_epoch = about.get("best_epoch")
        else:
            if self._prepared is None:  # the usual cut of the fitted rows: the run's seed, not the model's
                self._prepared = prepare(self.data, self.fit_idx, dataclasses.replace(hp, seed=self.split["seed"]))
            start = time.perf_counter()
            result = fit_model(self.data, self.fit_idx, hp, prepared=self._prepared, verbose=FIT_VERBOSE)
            scale = f.rating_scale(self.data.ratings.rating[self.fit_idx])
            predicted = predict_clipped(result, self.held_idx, scale).astype(np.float32).reshape(-1)
            seconds = round(time.perf_counter() - start)
            best_epoch = result.history.get("best_epoch")
            self.keep({"hparams": hp.to_dict()}, predicted, seconds, best_epoch=best_epoch)
        return {"key": key, "held_out_rmse": round(rmse(predicted, self.truth), 5), "seconds": seconds,
                "held_out_rows": len(self.held_idx),  # best_epoch: 0-based in the history, 1-based here
                "best_epoch": None if best_epoch is None else best_epoch + 1}

    def blends(self) -> dict:
        """Every kept model of this split alone, each pair and all of them: the mean rating's RMSE;
        each pair also with the correlation of the two models' errors (how much of them they share)."""
        kept = {}
        for meta in sorted(self.folder.glob("*.json")):
            record = json.loads(meta.read_text())
            if record.get("split") == self.split and meta.with_suffix(".npy").exists():
                kept[meta.stem] = np.load(meta.with_suffix(".npy"))
        score = lambda keys: round(rmse(np.mean([kept[k] for k in keys], axis=0), self.truth), 5)  # noqa: E731
        errors = lambda key: kept[key] - self.truth  # noqa: E731
        return {"each": {k: score([k]) for k in kept},
                "pairs": sorted(([a, b, score([a, b]), round(float(np.corrcoef(errors(a), errors(b))[0, 1]), 4)]
                                 for a, b in itertools.combinations(kept, 2)), key=lambda row: row[2]),
                "all": score(list(kept)) if kept else None, "models": len(kept)}


def _peer_score(data, fit_idx: np.ndarray, val_idx: np.ndarray, seed: int) -> dict:
    """The myfm peer fitted on the rows the variants are fitted on and scored on the rows they
    are scored on (``benchmarks.two_tower.validation_cut``)."""
    from baselines.bayesian_fm import DEFAULT_RANK, BayesianFM

    ratings = rating_data(data.ratings)
    start = time.perf_counter()
    model = BayesianFM(ranks=(DEFAULT_RANK,), seed=seed).fit(ratings.subset(fit_idx))
    held_out = ratings.subset(val_idx)
    row = {"model": BayesianFM.name, "rank": DEFAULT_RANK,
           "val_rmse": round(rmse(model.predict(held_out.user, held_out.item), held_out.rating), 4),
           "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(row), flush=True)
    return row


#: --gibbs-towers settings: GibbsTowers' arguments; ``without``, transformed features left out;
#: ``samples``, numbers K of posterior samples to also score as served towers (TowerTables)
GIBBS_SETTINGS = ("rank", "n_iter", "grouped", "without", "samples")


def _gibbs_settings(text: str) -> dict:
    settings = json.loads(text)
    if (not isinstance(settings, dict) or set(settings) - set(GIBBS_SETTINGS)
            or not all(isinstance(k, int) and k > 0 for k in settings.get("samples", []))):
        raise argparse.ArgumentTypeError(f"--gibbs-towers takes a JSON object of {', '.join(GIBBS_SETTINGS)}, "
                                         f"got {text!r}")
    return settings


def _gibbs_towers_score(data, fit_idx: np.ndarray, val_idx: np.ndarray, seed: int, settings: dict,
                        blends: "BlendCheck | None" = None) -> dict:
    """model.gibbs_towers with ``settings`` fitted on the rows the peer is fitted on, from the
    same Transform analysis of them as the towers', and scored on the rows the peer is scored
    on; with ``blends``, its ratings are kept there beside the variants' (read back if kept)."""
    from model.gibbs_towers import N_ITER, RANK, GibbsTowers, side_inputs

    settings = {"rank": RANK, "n_iter": N_ITER, "grouped": True, "without": [], "samples": [], **settings}
    row = {"model": "Gibbs towers (model.gibbs_towers)", **settings}
    kept = blends.kept({"gibbs_towers": settings}) if blends else None
    if kept is not None:
        predicted, about = kept
        row["val_rmse_by_samples"] = about.get("val_rmse_by_samples")
    else:
        start = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the results' JSON lines
            p = prepare(data, fit_idx, HParams(seed=seed), validation_fraction=0.0)
        left_out = set(settings["without"])
        tables = {side: {k: v for k, v in table.items() if k not in left_out}
                  for side, table in (("user", p.user_table), ("movie", p.movie_table))}
        model = GibbsTowers(settings["rank"], settings["n_iter"], seed, settings["grouped"]).fit(
            p.user_x[fit_idx], p.movie_x[fit_idx], p.labels[fit_idx], p.vocab.users, p.vocab.movies,
            side_inputs("user", p.user_table[f.USER_ID_XF], tables["user"], p.vocab.users),
            side_inputs("movie", p.movie_table[f.MOVIE_ID_XF], tables["movie"], p.vocab.movies))
        scale = f.rating_scale(p.labels[fit_idx])
        predicted = np.clip(model.predict(p.user_x[val_idx], p.movie_x[val_idx]), *scale)
        row.update(groups=len(model.group_shapes), seconds=round(time.perf_counter() - start, 1))
        row["val_rmse_by_samples"] = {
            str(k): round(rmse(np.clip(model.tower_tables(k).rating(p.user_x[val_idx], p.movie_x[val_idx]), *scale),
                               p.labels[val_idx]), 5) for k in settings["samples"]}
        if blends:
            row["key"] = blends.keep({"gibbs_towers": settings}, predicted, row["seconds"],
                                     val_rmse_by_samples=row["val_rmse_by_samples"])
    row["val_rmse"] = round(rmse(predicted, data.ratings.rating[val_idx]), 5)
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    sys.exit(main())
