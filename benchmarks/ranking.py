"""Top-N ranking quality of the recommendations: HR@10, NDCG@10 and Recall@50, plus a check
of the similar-movies lists.

Why this benchmark: RMSE (benchmarks.accuracy) says how well ratings are predicted, not whether
/recommendations puts the right movies first. Every user's held-out test movies rated >= 4 are
the relevant items; a user's recommendations are ranked over the *full* catalogue with the
user's training movies excluded. Rows:

* ``EASE``: Steck's closed-form item-item model (baselines.ease), the bar to reach; its
  lambda is chosen on a validation split cut from the training data, never on test.
* ``PureSVD``: truncated SVD of the zero-filled rating matrix; its rank chosen on the same
  validation split.
* ``most popular``: training rating counts, the floor.
* the two-tower model (benchmarks.two_tower, the pipeline's model fitted on the training
  split), ranked through the index exactly as the service does (``index.similarity``):
  - ``retrieval index``: stage one alone, FAISS inner product of the retrieval towers;
  - ``two-stage``: FAISS top-N by retrieval score, re-ranked by retrieval score
    + w * predicted rating; N is ``--candidates``, w is chosen on the model's own
    early-stopping slice of the training data (never fitted on, never test);
  - ``rating towers``: the rating towers' inner product, what the index ranked by before.
  The two-tower rows also carry the model's test RMSE, so one run shows the rating target too.

Similar movies: for each movie's top-10 list (EASE's item-item weights, genre-only Jaccard,
cosine in either of the two-tower model's spaces), how often the movie's training likers like
the listed movies in the test split (baselines.similar_quality).

Split: ``baselines.data.random_split`` over all ratings (seeded), the same split as the
rating benchmark (benchmarks.accuracy), so the two-tower fit of one matches the other's.

    python -m benchmarks.ranking --data ../shared/data/ml-100k
    python -m benchmarks.ranking --data ../shared/data/ml-1m --ratings ../shared/data/ml-1m/ratings-no-timestamps.csv
    python -m benchmarks.ranking --data ../shared/data/ml-latest-small   # half stars, no demographics

``--protocol new-users`` holds out whole users instead of ratings and folds each one's history
into models fitted without them, the two-tower rows through the code of POST /recommendations
(benchmarks.ranking_new_users; results/ranking_new_users_<dataset>.json).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from baselines import ease, similar_quality as sq
from baselines.data import rating_data, split, take
from baselines.factorization import MatrixFactorization
from baselines.pure_svd import rating_matrix_svd
from baselines.ranking import most_popular, ranking_metrics, relevant_test_items
from benchmarks import ranking_new_users as new_users
from benchmarks.host import HostLoad
from benchmarks.ranking_index import dataset_name, indexed, rank_through, two_tower_embeddings
from data.features import rating_scale
from data.movielens_files import MovieLensData, Ratings, load_movielens
from index import ann
from index.embed import Embeddings
from model.two_stage import DEFAULT_CANDIDATES, RERANK_WEIGHTS
from settings.hparams import RETRIEVAL_FITS

#: Training data (users, movies, training ratings only) -> embeddings of every user and movie.
ModelSource = Callable[[MovieLensData], Embeddings]

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
VALIDATION_FRACTION, VALIDATION_SEED = 0.1, 1
#: the two-tower rows' retrieval fits (model.retrieval_towers.choose_retrieval_fit): the closed form,
#: and iALS, which scales past the catalogues whose movies x movies matrices fit in memory
DEFAULT_RETRIEVAL_FITS = ("closed_form", "ials")
PURESVD_RANKS = (10, 25, 50, 100, 200)
PROTOCOLS = ("ratings", "new-users")
DEFINITIONS = {
    "relevant": "test-split movies the user rated >= 4",
    "candidates": "every movie of the catalogue except the user's training-split movies",
    "HR@10": "share of users with at least one relevant movie in their top 10",
    "NDCG@10": "binary-relevance DCG@10 / ideal DCG@10 (ideal: min(|relevant|, 10) hits first)",
    "Recall@50": "|top 50 & relevant| / |relevant|, averaged over users",
    "users": "users with at least one relevant test movie",
    "validation": "knobs (EASE lambda, PureSVD rank, the two-stage weight) are chosen on data cut "
                  "from the training split; the test split is only scored",
    "co_like@10": "for a movie's top-10 similar movies: the share of the movie's training likers "
                  "(rating >= 4) who like each listed movie in the test split, averaged",
    "hit@10": "share of (training liker, movie) pairs where the liker likes at least one of the "
              "movie's top-10 similar movies in the test split",
    "lift@10": "observed co-likes of the listed movies / those expected at everybody's like rate",
    "similar users": "a user's 10 most similar users vote with their training likes (the user's "
                     "training movies excluded); NDCG@10 / HR@10 of that list against the test likes",
}


# --- ranking a model source through the index -------------------------------------------------
def evaluate_source(name: str, source: ModelSource, train: MovieLensData,
                    relevant: Mapping[int, set[int]], index_type: str = "flat",
                    workdir: Path | None = None) -> dict:
    """Embed with ``source``, build the index like the export job, rank through it, score."""
    started = time.perf_counter()
    embeddings = source(train)
    fit_s = time.perf_counter() - started
    with indexed(embeddings, train, index_type, workdir) as (similarity, manifest):
        ranked, ms = rank_through(similarity, list(relevant))
    return {"model": name, **ranking_metrics(ranked, relevant),
            "dimension": embeddings.dimension, "index_type": index_type,
            "index_recall_at_10": manifest["recall_at_10"], "fit_seconds": round(fit_s, 2),
            "index_build_seconds": manifest["build_seconds"], "query_ms_per_user": round(ms, 4)}


# --- validation: knobs are chosen on data cut from the training split ----------------------
def validation_split(train: MovieLensData) -> tuple[MovieLensData, dict[int, set[int]]]:
    """(the training data minus a validation cut, the cut's relevant movies per user)."""
    fit, held_out = split(train, VALIDATION_FRACTION, VALIDATION_SEED)
    return fit, relevant_test_items(held_out)


def choose(name: str, grid: Sequence, score: Callable[[object], float]) -> tuple[object, list[dict]]:
    """The grid value with the best validation NDCG@10, and every value's score."""
    scores = [{name: value, "validation_NDCG@10": round(float(score(value)), 5)} for value in grid]
    best = max(scores, key=lambda row: row["validation_NDCG@10"])
    return best[name], scores


# --- model sources -------------------------------------------------------------------------
def mf_source(item_bias: bool = False, **mf_kwargs) -> ModelSource:
    """Biased MF fitted on the training ratings; users/movies without ratings get zero vectors."""

    def source(train: MovieLensData) -> Embeddings:
        model = MatrixFactorization(**mf_kwargs).fit(rating_data(train.ratings))
        user_ids = np.array(sorted(train.users), np.int64)
        movie_ids = np.array(sorted(train.movies), np.int64)
        u = model.users.encode(user_ids)
        i = model.items.encode(movie_ids)
        p = np.where((u >= 0)[:, None], model.p[np.maximum(u, 0)], 0.0)
        q = np.where((i >= 0)[:, None], model.q[np.maximum(i, 0)], 0.0)
        if item_bias:
            b = np.where(i >= 0, model.bi[np.maximum(i, 0)], 0.0)
            p = np.hstack([p, np.ones((len(p), 1))])
            q = np.hstack([q, b[:, None]])
        return Embeddings(user_ids, p, movie_ids, q)

    return source


def pure_svd_source(rank: int = 50) -> ModelSource:
    """PureSVD (Cremonesi et al. 2010): truncated SVD of the zero-filled training rating matrix."""

    def source(train: MovieLensData) -> Embeddings:
        user_ids, movie_ids, u, s, vt = rating_matrix_svd(train, rank)
        return Embeddings(user_ids, u * s, movie_ids, vt.T)

    return source


def puresvd_row(train: MovieLensData, relevant: Mapping[int, set[int]], index_type: str) -> dict:
    fit, relevant_val = validation_split(train)

    def score(rank: int) -> float:
        return evaluate_source("", pure_svd_source(rank), fit, relevant_val, index_type)["NDCG@10"]

    started = time.perf_counter()
    rank, scores = choose("rank", PURESVD_RANKS, score)
    tuning_s = time.perf_counter() - started
    row = evaluate_source(f"PureSVD (rank {rank}, chosen on validation)", pure_svd_source(rank), train,
                          relevant, index_type)
    return {**row, "params": {"rank": rank}, "validation": scores, "tuning_seconds": round(tuning_s, 2)}


def ease_row(train: MovieLensData, relevant: Mapping[int, set[int]]) -> tuple[dict, object]:
    """EASE's row (lambda chosen on validation) and its item-item weights for similar movies."""
    started = time.perf_counter()
    lam, scores = ease.choose_lambda(train, ease.EASE_LAMBDAS, VALIDATION_FRACTION, VALIDATION_SEED)
    tuning_s = time.perf_counter() - started
    started = time.perf_counter()
    weights = ease.fit_ease(ease.interaction_matrix(train), lam)
    fit_s = time.perf_counter() - started
    start = time.perf_counter()
    ranked = ease.ease_rankings(train, list(relevant), lam, n=50, weights=weights)
    ms = 1000 * (time.perf_counter() - start) / max(len(ranked), 1)
    row = {"model": f"EASE (lambda {lam:g}, chosen on validation)", **ranking_metrics(ranked, relevant),
           "fit_seconds": round(fit_s, 2), "tuning_seconds": round(tuning_s, 2),
           "query_ms_per_user": round(ms, 4), "params": {"lambda": lam}, "validation": scores}
    return row, weights


def two_tower_rows(train: MovieLensData, test: Ratings, relevant: Mapping[int, set[int]],
                   hparams: dict, candidates: int, index_type: str,
                   rating_towers_row: bool = True) -> tuple[list[dict], Embeddings]:
    """The pipeline's model fitted once on the training split, ranked three ways (the rating
    towers' way only with ``rating_towers_row``: it does not depend on the retrieval fit)."""
    from common.metrics import mae, rmse
    from benchmarks.two_tower import fit_model
    from model.model import HParams

    hp = HParams.from_dict(hparams)
    started = time.perf_counter()
    result = fit_model(train, np.arange(len(train.ratings)), hp, verbose=2)
    fit_s = time.perf_counter() - started
    embeddings = two_tower_embeddings(result)
    rating = predicted_ratings(embeddings, test.user_id, test.movie_id, rating_scale(train.ratings.rating))
    retrieval = result.history.get("retrieval", {})
    common = {"retrieval_fit": retrieval.get("method", "none"), "retrieval": retrieval,
              "fit_seconds": round(fit_s, 2), "epochs_run": len(result.history.get("loss", [])),
              "test_rmse": rmse(rating, test.rating), "test_mae": mae(rating, test.rating),
              "hparams": hp.to_dict()}
    rows = []
    if embeddings.query_vectors is not None:
        # the rerank weight, on the model's early-stopping slice: rated there, never fitted on
        fit_part = dataclasses.replace(train, ratings=take(train.ratings, result.fit_idx))
        relevant_val = relevant_test_items(take(train.ratings, result.validation_idx))
        with indexed(embeddings, fit_part, index_type) as (similarity, _):
            weight, scores = choose("rerank_weight", RERANK_WEIGHTS, lambda w: ranking_metrics(
                rank_through(similarity, list(relevant_val), candidates=candidates, rerank_weight=w)[0],
                relevant_val)["NDCG@10"])
        with indexed(embeddings, train, index_type) as (similarity, manifest):
            stage_one, ms_one = rank_through(similarity, list(relevant), candidates=candidates, rerank_weight=0.0)
            two_stage, ms_two = rank_through(similarity, list(relevant), candidates=candidates,
                                             rerank_weight=weight)
        fit_name = common["retrieval_fit"]
        rows.append({"model": f"two-tower retrieval index (stage one, {fit_name})",
                     **ranking_metrics(stage_one, relevant),
                     **common, "query_ms_per_user": round(ms_one, 4),
                     "dimension": int(embeddings.query_vectors.shape[1])})
        rows.append({"model": f"two-tower two-stage ({fit_name}; top {candidates}, re-ranked, weight {weight:g})",
                     **ranking_metrics(two_stage, relevant), **common, "query_ms_per_user": round(ms_two, 4),
                     "params": {"candidates": candidates, "rerank_weight": weight}, "validation": scores})
    if not rating_towers_row:
        return rows, embeddings
    rating_space = Embeddings(embeddings.user_ids, embeddings.user_vectors, embeddings.movie_ids,
                              embeddings.movie_vectors)
    with indexed(rating_space, train, index_type) as (similarity, _):
        by_rating_towers, ms = rank_through(similarity, list(relevant))
    rows.append({"model": "two-tower rating towers (inner product)", **ranking_metrics(by_rating_towers, relevant),
                 **common, "query_ms_per_user": round(ms, 4), "dimension": embeddings.dimension})
    return rows, embeddings


def predicted_ratings(embeddings: Embeddings, user_ids: np.ndarray, movie_ids: np.ndarray,
                      scale: tuple[float, float]) -> np.ndarray:
    """clip(<u, m> + user bias + movie bias) to ``scale`` (the training ratings' range): the
    served rating (no MLP head)."""
    u = np.searchsorted(embeddings.user_ids, user_ids)
    m = np.searchsorted(embeddings.movie_ids, movie_ids)
    dot = np.einsum("ij,ij->i", embeddings.user_vectors[u], embeddings.movie_vectors[m])
    return np.clip(dot + embeddings.user_bias[u] + embeddings.movie_bias[m], *scale)


# --- similar movies --------------------------------------------------------------------------
def similar_movie_rows(train: MovieLensData, test: Ratings, ease_weights: object | None,
                       embeddings: Embeddings | None) -> list[dict]:
    """co_like@10 / hit@10 of each similar-movies source (baselines.similar_quality)."""
    movie_ids = np.array(sorted(train.movies), np.int64)
    popularity = np.bincount(np.searchsorted(movie_ids, train.ratings.movie_id), minlength=len(movie_ids))
    sources: dict[str, Callable[[], Mapping[int, Sequence[int]]]] = {
        "genre-only (Jaccard, ties by popularity)":
            lambda: sq.genre_similar_movies(train.movies, dict(zip(movie_ids.tolist(), popularity.tolist()))),
    }
    if ease_weights is not None:
            sources["EASE item-item weights"] = lambda: ease.ease_similar_movies(ease_weights, movie_ids)
    if embeddings is not None:
        sources["two-tower rating space (cosine)"] = lambda: sq.cosine_similar_movies(
            embeddings.movie_ids, embeddings.movie_vectors)
        if embeddings.movie_query_vectors is not None:
            sources["two-tower retrieval space (one-movie query)"] = lambda: sq.inner_product_similar_movies(
                embeddings.movie_ids, embeddings.movie_query_vectors, embeddings.candidate_vectors)
    rows = []
    for name, neighbours in sources.items():
        rows.append({"source": name, **sq.similar_movies_quality(neighbours(), train.ratings, test)})
    return rows


def similar_user_rows(train: MovieLensData, test: Ratings, embeddings: Embeddings | None) -> list[dict]:
    """User-kNN quality of each space's similar-users lists (baselines.similar_quality)."""
    if embeddings is None:
        return []
    spaces = {"two-tower rating space (cosine)": embeddings.user_vectors}
    if embeddings.query_vectors is not None:
        spaces["two-tower retrieval space (cosine of queries)"] = embeddings.query_vectors
    return [{"source": name, **sq.similar_users_quality(
                sq.cosine_similar_movies(embeddings.user_ids, vectors), train.ratings, test)}
            for name, vectors in spaces.items()]


# --- the run ---------------------------------------------------------------------------------
def run(data_dir: Path, models: Sequence[str], hparams: dict, test_fraction: float = 0.2, seed: int = 0,
        index_type: str = "flat", ratings_csv: Path | None = None,
        candidates: int = DEFAULT_CANDIDATES, retrieval_fits: Sequence[str] = DEFAULT_RETRIEVAL_FITS) -> dict:
    data = load_movielens(data_dir, ratings_csv=ratings_csv)
    train, test = split(data, test_fraction, seed)
    relevant = relevant_test_items(test)
    rows: list[dict] = []
    ease_weights = embeddings = None
    if "ease" in models:
        row, ease_weights = ease_row(train, relevant)
        rows.append(row)
    if "two-tower" in models:  # one fit per retrieval fit; the first one's embeddings rank similar items
        for number, fit_name in enumerate(retrieval_fits):
            tower_rows, fitted = two_tower_rows(train, test, relevant, {**hparams, "retrieval_fit": fit_name},
                                                candidates, index_type, rating_towers_row=number == 0)
            rows += tower_rows
            embeddings = fitted if embeddings is None else embeddings
    if "puresvd" in models:
        rows.append(puresvd_row(train, relevant, index_type))
    for name in models:
        if name in ("mf", "mf-bias"):
            rows.append(evaluate_source(f"MF (dot{' + item bias' if name == 'mf-bias' else ' product'})",
                                        mf_source(item_bias=name == "mf-bias"), train, relevant, index_type))
    start = time.perf_counter()
    popular = most_popular(train, list(relevant))
    rows.append({"model": "most popular", **ranking_metrics(popular, relevant),
                 "fit_seconds": round(time.perf_counter() - start, 2)})
    return {"dataset": dataset_name(data_dir), "format": data.fmt,
            "ratings_source": Path(ratings_csv).name if ratings_csv else None,
            "catalogue": {"users": len(data.users), "movies": len(data.movies),
                          "ratings": len(data.ratings)},
            "split": {"method": "baselines.data.random_split", "test_fraction": test_fraction,
                      "seed": seed, "train_ratings": len(train.ratings),
                      "test_ratings": len(test), "relevant_test_pairs":
                          int(sum(len(v) for v in relevant.values()))},
            "definitions": DEFINITIONS, "results": rows,
            "similar_movies": similar_movie_rows(train, test, ease_weights, embeddings),
            "similar_users": similar_user_rows(train, test, embeddings)}


def format_table(report: dict) -> str:
    lines = [f"{'model':<58}{'HR@10':>8}{'NDCG@10':>9}{'Recall@50':>11}{'fit s':>9}"]
    for r in report["results"]:
        lines.append(f"{r['model']:<58}{r['HR@10']:>8.4f}{r['NDCG@10']:>9.4f}"
                     f"{r['Recall@50']:>11.4f}{r['fit_seconds']:>9.1f}")
    lines.append("")
    lines.append(f"{'similar movies':<58}{'co_like@10':>11}{'hit@10':>8}")
    for r in report["similar_movies"]:
        lines.append(f"{r['source']:<58}{r['co_like@10']:>11.4f}{r['hit@10']:>8.4f}")
    if report.get("similar_users"):
        lines.append(f"{'similar users (their likes, as recommendations)':<58}{'NDCG@10':>11}{'HR@10':>8}")
        for r in report["similar_users"]:
            lines.append(f"{r['source']:<58}{r['NDCG@10']:>11.4f}{r['HR@10']:>8.4f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ranking", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", choices=PROTOCOLS, default="ratings",
                        help="ratings: hold out ratings of known users (default); new-users: hold out whole "
                             "users and fold their histories in (benchmarks.ranking_new_users)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="MovieLens folder (default: ../shared/data/ml-100k)")
    parser.add_argument("--ratings", type=Path, default=None, help="ratings CSV instead")
    parser.add_argument("--models", nargs="+", default=["ease", "two-tower", "puresvd"],
                        choices=("ease", "two-tower", "puresvd", "mf", "mf-bias"),
                        help="most popular is always added (default: ease two-tower puresvd)")
    parser.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE",
                        help="two-tower hyperparameter override (settings.hparams.HParams)")
    parser.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES,
                        help=f"two-stage: FAISS candidates re-ranked per user (default: {DEFAULT_CANDIDATES})")
    parser.add_argument("--retrieval-fit", action="append", default=None, choices=RETRIEVAL_FITS,
                        help="two-tower: fit the retrieval towers this way (repeat for several rows; "
                             f"default: {' '.join(DEFAULT_RETRIEVAL_FITS)}; auto picks by memory)")
    parser.add_argument("--test-fraction", type=float, default=0.2,
                        help="ratings protocol: the test share of the ratings")
    parser.add_argument("--held-out-users", type=float, default=0.1,
                        help="new-users protocol: the share of users held out (and of training users "
                             "held out for validation)")
    parser.add_argument("--history-fraction", type=float, default=0.8,
                        help="new-users protocol: the share of a held-out user's ratings folded in")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index-type", choices=ann.INDEX_TYPES, default="flat")
    parser.add_argument("--out", type=Path, default=None,
                        help="result JSON (default: benchmarks/results/ranking_<dataset>.json, "
                             "ranking_new_users_<dataset>.json for --protocol new-users)")
    args = parser.parse_args(argv)
    if not args.data.exists():
        parser.error(f"{args.data} does not exist (the real MovieLens files are not shipped; "
                     f"pass --data)")
    if args.candidates < 1:
        parser.error("--candidates must be >= 1")
    from benchmarks.accuracy import DATASET_HPARAMS
    from common.errors import UserError
    from settings.hparams import HParams

    try:  # the accuracy benchmark's per-dataset settings (by folder name), then --hparam
        hparams = {"seed": args.seed, **DATASET_HPARAMS.get(dataset_name(args.data), {}),
                   **HParams.parse(args.hparam)}
    except UserError as error:
        parser.error(str(error))
    if args.protocol == "new-users":
        return new_users_main(args, parser, hparams)
    host = HostLoad(name="ranking")
    report = run(args.data, args.models, hparams, args.test_fraction, args.seed, args.index_type,
                 args.ratings, args.candidates, args.retrieval_fit or DEFAULT_RETRIEVAL_FITS)
    report.update(host.record())
    out = args.out or RESULTS / f"ranking_{report['dataset']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"{report['dataset']}: {report['split']['test_ratings']:,} test ratings, "
          f"{report['split']['relevant_test_pairs']:,} relevant (>= 4) pairs; seed {args.seed}")
    print(format_table(report))
    print(f"wrote {out}")
    return 0


def new_users_main(args: argparse.Namespace, parser: argparse.ArgumentParser, hparams: dict) -> int:
    """``--protocol new-users``: benchmarks.ranking_new_users' run, its JSON and table."""

    models = [m for m in args.models if m in new_users.MODELS]
    if len(models) < len(args.models):
        parser.error(f"--protocol new-users runs only {' '.join(new_users.MODELS)} (and most popular)")
    for name in ("held_out_users", "history_fraction"):
        if not 0.0 < getattr(args, name) < 1.0:
            parser.error(f"--{name.replace('_', '-')} must be in (0, 1)")
    host = HostLoad(name="ranking")
    started = time.perf_counter()
    report = new_users.run(args.data, models, hparams, args.seed, args.index_type, args.ratings, args.candidates,
                           args.retrieval_fit, args.held_out_users, args.history_fraction)
    report["run_seconds"] = round(time.perf_counter() - started, 1)
    report.update(host.record())
    out = args.out or RESULTS / f"ranking_new_users_{report['dataset']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    split = report["split"]
    print(f"{report['dataset']}: {split['held_out_users']:,} held-out users ({split['scored_users']:,} with a "
          f"relevant scored movie), {split['history_ratings']:,} history / {split['scored_ratings']:,} scored "
          f"ratings; seed {args.seed}")
    print(new_users.format_table(report))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
