"""Top-N ranking for new users: people the model never saw, described only by a few ratings.

Why a second protocol: benchmarks.ranking holds out *ratings*, so every test user is a user the
model was fitted on. A visitor of POST /recommendations is not: they arrive with a handful of
ratings and no id the model knows. Here whole users are held out, and each one's list comes
from folding their history into a model fitted without them:

* 10 % of the users (seeded) are held out entirely; every model is fitted on the others' ratings.
* Each held-out user's ratings are cut (seeded) into a history (80 %, what the user tells the
  service) and a scored part (20 %); relevant = scored ratings >= 4. Candidates: the whole
  catalogue except the history's movies. NDCG@10, HR@10, Recall@50 (baselines.ranking).

Rows:

* ``two-tower two-stage``: ``index.visitors.recommend_for_history`` -- the code of
  POST /recommendations -- on an index built from the fitted model, the history's vectors from
  the Keras model (benchmarks.two_tower.KerasHistory: TwoTowerModel.history_vectors for the
  unknown user, as the served signature computes them); its rerank weight chosen on the
  validation users.
* ``two-tower retrieval index (stage one)``: the same with rerank weight 0 (the retrieval order).
* ``EASE fold-in``: x·B for the history's binary vector x; lambda chosen on validation.
* ``PureSVD fold-in``: x·V·Vᵀ for the history's rating vector x (V: item factors of the training
  users' rating matrix); rank chosen on validation.
* ``most popular``: training counts, history excluded.

Validation: the same protocol one level down -- 10 % of the *training* users held out (seed + 1),
models fitted on the rest, their histories folded in, their scored parts scored. The test users
are only ever scored.

    python -m benchmarks.ranking --protocol new-users --data ../shared/data/ml-100k
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from baselines import ease
from baselines.data import take
from baselines.pure_svd import rating_matrix_svd
from baselines.ranking import ranking_metrics, relevant_test_items, top_movies
from benchmarks.ranking_index import dataset_name, indexed, two_tower_embeddings
from data.movielens_files import MovieLensData, Ratings, load_movielens
from model.two_stage import DEFAULT_CANDIDATES, RERANK_WEIGHTS

HELD_OUT_USERS = 0.1
HISTORY_FRACTION = 0.8
#: the validation users are drawn with the test seed + this (a different draw, from training users only)
VALIDATION_SEED_OFFSET = 1
TOP_N = 50
#: Keras' fit verbosity (2: a line per epoch; the test sets 0)
VERBOSE = 2
PURESVD_RANKS = (10, 25, 50, 100, 200)
MODELS = ("ease", "two-tower", "puresvd")
DEFINITIONS = {
    "held-out users": "a seeded share of the users, none of whose ratings any model is fitted on",
    "history": "a seeded share of a held-out user's ratings, folded into the model (the visitor's ratings)",
    "relevant": "the held-out user's other (scored) ratings >= 4",
    "candidates": "every movie of the catalogue except the user's history movies",
    "HR@10": "share of users with at least one relevant movie in their top 10",
    "NDCG@10": "binary-relevance DCG@10 / ideal DCG@10 (ideal: min(|relevant|, 10) hits first)",
    "Recall@50": "|top 50 & relevant| / |relevant|, averaged over users",
    "users": "held-out users with at least one relevant scored movie",
    "validation": "knobs (EASE lambda, PureSVD rank, the two-stage weight) are chosen on validation users "
                  "held out of the training users the same way; the test users are only scored",
}


# --- the split ------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewUserSplit:
    """Training users with all their ratings; held-out users' histories and scored ratings."""

    train: MovieLensData   # users: the training users only; movies: the whole catalogue
    history: Ratings       # the held-out users' folded-in ratings
    scored: Ratings        # the held-out users' other ratings
    held_out: np.ndarray   # the held-out user ids, sorted

    @property
    def relevant(self) -> dict[int, set[int]]:
        return relevant_test_items(self.scored)

    def histories(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Each held-out user's history as (movie ids, ratings), what a visitor sends."""
        h = self.history
        order = np.argsort(h.user_id, kind="stable")
        users, starts = np.unique(h.user_id[order], return_index=True)
        bounds = list(starts[1:]) + [len(order)]
        return {int(u): (h.movie_id[order[s:e]], h.rating[order[s:e]])
                for u, s, e in zip(users.tolist(), starts.tolist(), bounds)}

    def describe(self, seed: int, held_out_fraction: float, history_fraction: float) -> dict:
        relevant = self.relevant
        return {"method": "benchmarks.ranking_new_users.new_user_split", "held_out_fraction": held_out_fraction,
                "history_fraction": history_fraction, "seed": seed,
                "train_users": len(self.train.users), "held_out_users": len(self.held_out),
                "train_ratings": len(self.train.ratings), "history_ratings": len(self.history),
                "scored_ratings": len(self.scored), "scored_users": len(relevant),
                "relevant_scored_pairs": int(sum(len(v) for v in relevant.values()))}


def new_user_split(data: MovieLensData, held_out_fraction: float = HELD_OUT_USERS, seed: int = 0,
                   history_fraction: float = HISTORY_FRACTION) -> NewUserSplit:
    """Holds out a seeded ``held_out_fraction`` of the users who rated anything, and cuts each
    one's ratings (seeded) into a history of round(history_fraction * n) ratings -- at least
    one, and at least one left to score when the user has two -- and the rest."""
    if not 0.0 < held_out_fraction < 1.0 or not 0.0 < history_fraction < 1.0:
        raise ValueError("held_out_fraction and history_fraction must be in (0, 1)")
    r = data.ratings
    rng = np.random.default_rng(seed)
    raters = np.unique(r.user_id)
    if len(raters) < 2:
        raise ValueError("need at least two users with ratings to hold one out")
    n_out = min(max(1, int(round(len(raters) * held_out_fraction))), len(raters) - 1)
    held_out = np.sort(rng.permutation(raters)[:n_out])
    out_rows = np.flatnonzero(np.isin(r.user_id, held_out))
    out_rows = out_rows[np.argsort(r.user_id[out_rows], kind="stable")]
    _, starts = np.unique(r.user_id[out_rows], return_index=True)
    history, scored = [], []
    for rows in np.split(out_rows, starts[1:]):
        rows = rng.permutation(rows)
        n = len(rows)
        keep = n if n < 2 else min(max(1, int(round(n * history_fraction))), n - 1)
        history.append(rows[:keep])
        scored.append(rows[keep:])
    held = set(held_out.tolist())
    train = dataclasses.replace(data, users={u: v for u, v in data.users.items() if u not in held},
                                ratings=take(r, np.flatnonzero(~np.isin(r.user_id, held_out))))
    return NewUserSplit(train, take(r, np.sort(np.concatenate(history))), take(r, np.sort(np.concatenate(scored))),
                        held_out)


# --- fold-in rankings over a score matrix ---------------------------------------------------
def catalogue(split: NewUserSplit) -> np.ndarray:
    """The movie ids every ranking ranks, sorted (EASE's and PureSVD's column order)."""
    return np.array(sorted(split.train.movies), np.int64)


def history_matrix(split: NewUserSplit, users: np.ndarray, movie_ids: np.ndarray, binary: bool) -> sp.csr_matrix:
    """[users, movies] of the held-out users' histories: 1 per rated movie, or the rating."""
    h = split.history
    keep = np.isin(h.user_id, users)
    values = np.ones(int(keep.sum()), np.float32) if binary else h.rating[keep].astype(np.float32)
    rows, cols = np.searchsorted(users, h.user_id[keep]), np.searchsorted(movie_ids, h.movie_id[keep])
    return sp.csr_matrix((values, (rows, cols)), shape=(len(users), len(movie_ids)))


def rank_scores(scores: np.ndarray, history: sp.csr_matrix, users: np.ndarray, movie_ids: np.ndarray,
                n: int = TOP_N) -> dict[int, list[int]]:
    """Each user's top n movies by ``scores``, their history movies never among them (fewer
    than n when the catalogue runs out)."""
    top = top_movies(scores, history, n)
    unseen = ~np.take_along_axis(history.toarray() > 0, top, 1)
    return {int(u): movie_ids[picks[keep]].tolist() for u, picks, keep in zip(users.tolist(), top, unseen)}


def scored_users(split: NewUserSplit) -> np.ndarray:
    return np.array(sorted(split.relevant), np.int64)


def ease_fold_in(split: NewUserSplit, weights: np.ndarray, n: int = TOP_N) -> dict[int, list[int]]:
    """EASE for users it was not fitted on: scores x·B, x the history's binary vector."""
    users, movie_ids = scored_users(split), catalogue(split)
    x = history_matrix(split, users, movie_ids, binary=True)
    return rank_scores(np.asarray(x @ weights), x, users, movie_ids, n)


def svd_item_factors(train: MovieLensData, rank: int) -> np.ndarray:
    """V [movies, rank], the item factors of the truncated SVD of the zero-filled training rating
    matrix, columns by decreasing singular value (so V[:, :r] is the rank-r truncation)."""
    _, _, _, s, vt = rating_matrix_svd(train, rank)
    return vt[np.argsort(-s)].T


def puresvd_fold_in(split: NewUserSplit, factors: np.ndarray, n: int = TOP_N) -> dict[int, list[int]]:
    """PureSVD for users it was not fitted on: scores x·V·Vᵀ, x the history's rating vector."""
    users, movie_ids = scored_users(split), catalogue(split)
    x = history_matrix(split, users, movie_ids, binary=False)
    return rank_scores(np.asarray(x @ factors) @ factors.T, x, users, movie_ids, n)


def most_popular_fold_in(split: NewUserSplit, n: int = TOP_N) -> dict[int, list[int]]:
    """Training rating counts, each user's history movies excluded."""
    users, movie_ids = scored_users(split), catalogue(split)
    counts = np.bincount(np.searchsorted(movie_ids, split.train.ratings.movie_id), minlength=len(movie_ids))
    x = history_matrix(split, users, movie_ids, binary=True)
    return rank_scores(np.broadcast_to(counts.astype(np.float32), x.shape), x, users, movie_ids, n)


def choose(name: str, grid: Sequence, score: Callable[[object], Mapping[str, float]]) -> tuple[object, list[dict]]:
    """The grid value with the best validation NDCG@10 (first on a tie), and every value's scores."""
    scores = []
    for value in grid:
        metrics = score(value)
        scores.append({name: value, **{f"validation_{k}": round(float(metrics[k]), 5)
                                       for k in ("NDCG@10", "HR@10", "Recall@50")}})
    best = max(scores, key=lambda row: row["validation_NDCG@10"])
    return best[name], scores


# --- the baselines' rows --------------------------------------------------------------------
#: a row and the rankings it scored (user -> movie ids, best first)
Row = tuple[dict, dict[int, list[int]]]


def ease_row(split: NewUserSplit, validation: NewUserSplit) -> Row:
    """EASE fold-in, lambda chosen on the validation users."""
    started = time.perf_counter()
    matrix = ease.interaction_matrix(validation.train)
    lam, scores = choose("lambda", ease.EASE_LAMBDAS, lambda lam: ranking_metrics(
        ease_fold_in(validation, ease.fit_ease(matrix, lam)), validation.relevant))
    tuning_s = time.perf_counter() - started
    started = time.perf_counter()
    weights = ease.fit_ease(ease.interaction_matrix(split.train), lam)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    ranked = ease_fold_in(split, weights)
    ms = 1000 * (time.perf_counter() - started) / max(len(ranked), 1)
    return {"model": f"EASE fold-in (lambda {lam:g}, chosen on validation users)",
            **ranking_metrics(ranked, split.relevant), "fit_seconds": round(fit_s, 2),
            "tuning_seconds": round(tuning_s, 2), "query_ms_per_user": round(ms, 4),
            "params": {"lambda": lam}, "validation": scores}, ranked


def puresvd_row(split: NewUserSplit, validation: NewUserSplit) -> Row:
    """PureSVD fold-in, rank chosen on the validation users (one SVD at the largest rank,
    truncated per rank: the top r singular vectors are the rank-r SVD's)."""
    started = time.perf_counter()
    factors = svd_item_factors(validation.train, max(PURESVD_RANKS))
    ranks = sorted({min(rank, factors.shape[1]) for rank in PURESVD_RANKS})
    rank, scores = choose("rank", ranks, lambda rank: ranking_metrics(
        puresvd_fold_in(validation, factors[:, :rank]), validation.relevant))
    tuning_s = time.perf_counter() - started
    started = time.perf_counter()
    factors = svd_item_factors(split.train, rank)
    fit_s = time.perf_counter() - started
    ranked = puresvd_fold_in(split, factors)
    return {"model": f"PureSVD fold-in (rank {rank}, chosen on validation users)",
            **ranking_metrics(ranked, split.relevant), "fit_seconds": round(fit_s, 2),
            "tuning_seconds": round(tuning_s, 2), "params": {"rank": rank}, "validation": scores}, ranked


def most_popular_row(split: NewUserSplit) -> Row:
    started = time.perf_counter()
    ranked = most_popular_fold_in(split)
    return {"model": "most popular", **ranking_metrics(ranked, split.relevant),
            "fit_seconds": round(time.perf_counter() - started, 2)}, ranked


# --- the two-tower model, through the service's own code -------------------------------------
class RememberedHistory:
    """A HistoryModel that asks the model once per distinct history: the validation search ranks
    every history once per weight, and the two test rows rank each twice."""

    def __init__(self, model) -> None:
        self.model = model
        self._seen: dict[tuple, object] = {}

    def vectors(self, movie_ids: np.ndarray, ratings: np.ndarray, user_id: int = -1):
        key = (int(user_id), np.asarray(movie_ids, np.int64).tobytes(), np.asarray(ratings, np.float32).tobytes())
        if key not in self._seen:
            self._seen[key] = self.model.vectors(movie_ids, ratings, user_id)
        return self._seen[key]


def rank_visitors(similarity, model, split: NewUserSplit, candidates: int, rerank_weight: float,
                  n: int = TOP_N) -> tuple[dict[int, list[int]], float, set[str]]:
    """Each scored held-out user's top n by index.visitors.recommend_for_history (the code of
    POST /recommendations), the user sent as a visitor; ms per user and the notes it gave."""
    from index.visitors import recommend_for_history

    histories = split.histories()
    ranked, notes = {}, set()
    started = time.perf_counter()
    for user in scored_users(split).tolist():
        movie_ids, ratings = histories[user]
        found, _, note = recommend_for_history(similarity, model, movie_ids, ratings, n, candidates=candidates,
                                               rerank_weight=rerank_weight)
        ranked[user] = [hit.id for hit in found]
        if note:
            notes.add(note)
    return ranked, 1000 * (time.perf_counter() - started) / max(len(ranked), 1), notes


def history_vectors_ms(model: RememberedHistory, split: NewUserSplit) -> float:
    """Asks the model for every scored user's history vectors (remembered for the rankings that
    follow) and returns the ms per user: the model's share of a visitor's request."""
    histories = split.histories()
    users = scored_users(split).tolist()
    started = time.perf_counter()
    for user in users:
        model.vectors(*histories[user])
    return 1000 * (time.perf_counter() - started) / max(len(users), 1)


def fit_two_tower(train: MovieLensData, hparams: dict):
    """The pipeline's preprocessing_fn, model and fit loop on the training users (benchmarks.two_tower)."""
    from benchmarks.two_tower import fit_model
    from model.model import HParams

    return fit_model(train, np.arange(len(train.ratings)), HParams.from_dict(hparams), verbose=VERBOSE)


def choose_rerank_weight(validation: NewUserSplit, hparams: dict, candidates: int,
                         index_type: str) -> tuple[float, list[dict]]:
    """The weight with the best NDCG@10 on the validation users, the model fitted without them."""
    from benchmarks.two_tower import KerasHistory

    result = fit_two_tower(validation.train, hparams)
    model = RememberedHistory(KerasHistory(result))
    with indexed(two_tower_embeddings(result), validation.train, index_type) as (similarity, _):
        return choose("rerank_weight", RERANK_WEIGHTS, lambda w: ranking_metrics(
            rank_visitors(similarity, model, validation, candidates, w)[0], validation.relevant))


def two_tower_rows(split: NewUserSplit, validation: NewUserSplit, hparams: dict, candidates: int,
                   index_type: str, rerank_weight: float | None = None) -> tuple[list[Row], object]:
    """Stage one alone and the two-stage list, both through recommend_for_history, and the fit.
    ``rerank_weight``: None chooses it on the validation users (a second fit, without them);
    a number fixes it (the unit test, which cannot afford two fits)."""
    from benchmarks.two_tower import KerasHistory
    from model.model import HParams

    started = time.perf_counter()
    if rerank_weight is None:
        weight, scores = choose_rerank_weight(validation, hparams, candidates, index_type)
        how = "chosen on validation users"
    else:
        weight, scores, how = float(rerank_weight), [], "fixed"
    tuning_s = time.perf_counter() - started
    started = time.perf_counter()
    result = fit_two_tower(split.train, hparams)
    fit_s = time.perf_counter() - started
    model = RememberedHistory(KerasHistory(result))
    vectors_ms = history_vectors_ms(model, split)  # once per user; both rows' ms are then the index's alone
    with indexed(two_tower_embeddings(result), split.train, index_type) as (similarity, manifest):
        stage_one, ms_one, notes_one = rank_visitors(similarity, model, split, candidates, 0.0)
        two_stage, ms_two, notes_two = rank_visitors(similarity, model, split, candidates, weight)
    retrieval = result.history.get("retrieval", {})
    fit_name = retrieval.get("method", "none")
    common = {"retrieval_fit": fit_name, "retrieval": retrieval, "fit_seconds": round(fit_s, 2),
              "tuning_seconds": round(tuning_s, 2), "epochs_run": len(result.history.get("loss", [])),
              "hparams": HParams.from_dict(hparams).to_dict(), "history_vectors_ms_per_user": round(vectors_ms, 4),
              "index_recall_at_10": manifest.get("recall_at_10")}
    return [
        ({"model": f"two-tower retrieval index (stage one, {fit_name})", **ranking_metrics(stage_one, split.relevant),
          **common, "query_ms_per_user": round(ms_one, 4), "params": {"candidates": candidates, "rerank_weight": 0.0},
          "notes": sorted(notes_one)}, stage_one),
        ({"model": f"two-tower two-stage ({fit_name}; top {candidates}, weight {weight:g} {how})",
          **ranking_metrics(two_stage, split.relevant), **common, "query_ms_per_user": round(ms_two, 4),
          "params": {"candidates": candidates, "rerank_weight": weight, "rerank_weight_from": how},
          "validation": scores, "notes": sorted(notes_two)}, two_stage),
    ], result


# --- the run ---------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """The whole protocol's outcome: the splits, every row, and what each row ranked."""

    split: NewUserSplit
    validation: NewUserSplit
    rows: list[dict] = dataclasses.field(default_factory=list)
    rankings: dict[str, dict[int, list[int]]] = dataclasses.field(default_factory=dict)  # row's model -> lists
    two_tower: list = dataclasses.field(default_factory=list)  # the test-level fits (TwoTowerResult)

    def add(self, row: Row) -> None:
        self.rows.append(row[0])
        self.rankings[row[0]["model"]] = row[1]

    def against_ease(self) -> list[dict]:
        """Each two-tower row's paired NDCG@10 difference to EASE fold-in (none without both)."""
        ease_name = next((name for name in self.rankings if name.startswith("EASE")), None)
        if ease_name is None:
            return []
        return [{"model": name, "against": ease_name,
                 **paired_ndcg(self.rankings[name], self.rankings[ease_name], self.split.relevant)}
                for name in self.rankings if name.startswith("two-tower")]


def paired_ndcg(a: Mapping[int, Sequence[int]], b: Mapping[int, Sequence[int]],
                relevant: Mapping[int, set[int]]) -> dict:
    """Per-user NDCG@10 of ``a`` minus ``b`` (baselines.ranking.ranking_metrics, one user at a
    time): the mean, its standard error and how many users each list serves better, so that a
    gap between two rows can be told from the noise of a few hundred held-out users."""
    def ndcg(ranked: Mapping[int, Sequence[int]], user: int) -> float:
        return ranking_metrics({user: list(ranked.get(user, ()))}, {user: relevant[user]})["NDCG@10"]

    d = np.array([ndcg(a, user) - ndcg(b, user) for user in relevant])
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return {"mean_difference": round(float(d.mean()), 5), "standard_error": round(se, 5), "users": len(d),
            "better": int((d > 0).sum()), "worse": int((d < 0).sum())}


def evaluate(data: MovieLensData, models: Sequence[str], hparams: dict, seed: int = 0,
             held_out_fraction: float = HELD_OUT_USERS, history_fraction: float = HISTORY_FRACTION,
             candidates: int = DEFAULT_CANDIDATES, index_type: str = "flat",
             retrieval_fits: Sequence[str] | None = None, rerank_weight: float | None = None) -> Evaluation:
    """Every row of the protocol for loaded data (the test users, and the validation users one
    level down for the knobs)."""
    split = new_user_split(data, held_out_fraction, seed, history_fraction)
    outcome = Evaluation(split, new_user_split(split.train, held_out_fraction, seed + VALIDATION_SEED_OFFSET,
                                               history_fraction))
    if "two-tower" in models:
        for fit_name in retrieval_fits or [hparams.get("retrieval_fit", "auto")]:
            rows, fitted = two_tower_rows(split, outcome.validation, {**hparams, "retrieval_fit": fit_name},
                                          candidates, index_type, rerank_weight)
            for row in rows:
                outcome.add(row)
            outcome.two_tower.append(fitted)
    if "ease" in models:
        outcome.add(ease_row(split, outcome.validation))
    if "puresvd" in models:
        outcome.add(puresvd_row(split, outcome.validation))
    outcome.add(most_popular_row(split))
    return outcome


def run(data_dir: Path, models: Sequence[str], hparams: dict, seed: int = 0, index_type: str = "flat",
        ratings_csv: Path | None = None, candidates: int = DEFAULT_CANDIDATES,
        retrieval_fits: Sequence[str] | None = None, held_out_fraction: float = HELD_OUT_USERS,
        history_fraction: float = HISTORY_FRACTION) -> dict:
    """The report of benchmarks/results/ranking_new_users_<dataset>.json (host load added by main)."""

    unknown = set(models) - set(MODELS)
    if unknown:
        raise ValueError(f"the new-users protocol has no {sorted(unknown)} rows (it runs {', '.join(MODELS)})")
    data = load_movielens(data_dir, ratings_csv=ratings_csv)
    outcome = evaluate(data, models, hparams, seed, held_out_fraction, history_fraction, candidates, index_type,
                       retrieval_fits)
    return {"dataset": dataset_name(data_dir), "format": data.fmt, "protocol": "new-users",
            "ratings_source": Path(ratings_csv).name if ratings_csv else None,
            "catalogue": {"users": len(data.users), "movies": len(data.movies), "ratings": len(data.ratings)},
            "split": outcome.split.describe(seed, held_out_fraction, history_fraction),
            "validation_split": outcome.validation.describe(seed + VALIDATION_SEED_OFFSET, held_out_fraction,
                                                            history_fraction),
            "definitions": DEFINITIONS, "results": outcome.rows,
            "paired_NDCG@10_against_EASE": outcome.against_ease()}


def format_table(report: dict) -> str:
    lines = [f"{'model':<84}{'NDCG@10':>9}{'HR@10':>8}{'Recall@50':>11}{'fit s':>9}"]
    for r in report["results"]:
        lines.append(f"{r['model']:<84}{r['NDCG@10']:>9.4f}{r['HR@10']:>8.4f}"
                     f"{r['Recall@50']:>11.4f}{r['fit_seconds']:>9.1f}")
    for c in report.get("paired_NDCG@10_against_EASE", []):
        lines.append(f"{c['model']} - EASE fold-in, NDCG@10 per user: {c['mean_difference']:+.4f} "
                     f"± {c['standard_error']:.4f} (SE; better for {c['better']}, worse for {c['worse']} "
                     f"of {c['users']} users)")
    return "\n".join(lines)
