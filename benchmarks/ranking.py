"""Top-N ranking quality of the similarity index: HR@10, NDCG@10 and Recall@50.

Why this benchmark: RMSE (benchmarks.baselines) says how well ratings are predicted, not
whether the index puts the right movies at the top, which is what /recommendations serves.
Here every user's held-out test movies rated >= 4 are the relevant items; the user's
recommendations are the index's answer (``Similarity.recommend``, the exact code the service
runs) over the *full* catalogue with the user's training movies excluded. A most-popular
ranking (training rating counts, training movies excluded too) is the floor to beat.

The model is pluggable: a ``ModelSource`` is any function from the training data to
``index.embed.Embeddings`` (user and movie matrices). Built in:

* ``mf`` / ``mf-bias``: ``benchmarks.baselines.MatrixFactorization`` fitted on the training
  split, a stand-in until the two-tower model is plugged in. ``mf-bias`` appends the item
  bias as one more dimension (user side 1.0), so the inner product equals the MF's predicted
  rating up to the user's constant terms: the standard MIPS trick to rank with biases.
* ``puresvd``: truncated SVD of the zero-filled rating matrix, a classic top-N baseline.
* ``saved-model``: the pushed two-tower SavedModel (``--model-dir``). For a fair number it
  must have been trained on this benchmark's training split (same ``random_split`` seed).

Split: ``benchmarks.baselines.random_split`` over all ratings (seeded), the same split the
rating baselines use.

    python -m benchmarks.ranking --data ../shared/data/ml-100k
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from benchmarks.baselines import MatrixFactorization, RatingData, random_split
from components.movielens_files import MovieLensData, Ratings, load_movielens
from index import ann, metadata
from index.builder import Gate, build_index_version
from index.embed import Embeddings
from index.similarity import Similarity

#: Training data (users, movies, training ratings only) -> embeddings of every user and movie.
ModelSource = Callable[[MovieLensData], Embeddings]

RELEVANT_RATING = 4.0
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "ranking.json"
DEFINITIONS = {
    "relevant": "test-split movies the user rated >= 4",
    "candidates": "every movie of the catalogue except the user's training-split movies",
    "HR@10": "share of users with at least one relevant movie in their top 10",
    "NDCG@10": "binary-relevance DCG@10 / ideal DCG@10 (ideal: min(|relevant|, 10) hits first)",
    "Recall@50": "|top 50 & relevant| / |relevant|, averaged over users",
    "users": "users with at least one relevant test movie",
}


# --- model sources -----------------------------------------------------------------------
def mf_source(item_bias: bool = False, **mf_kwargs) -> ModelSource:
    """Biased MF fitted on the training ratings; users/movies without ratings get zero vectors."""

    def source(train: MovieLensData) -> Embeddings:
        r = train.ratings
        model = MatrixFactorization(**mf_kwargs).fit(RatingData(r.user_id, r.movie_id, r.rating))
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
    """PureSVD (Cremonesi et al. 2010): truncated SVD of the zero-filled training rating matrix.

    Not a rating predictor but a known strong top-N ranker; here as a sanity check that the
    index + metric path can beat the popularity floor with plain inner products.
    """

    def source(train: MovieLensData) -> Embeddings:
        import scipy.sparse as sp
        from scipy.sparse.linalg import svds

        user_ids = np.array(sorted(train.users), np.int64)
        movie_ids = np.array(sorted(train.movies), np.int64)
        r = train.ratings
        matrix = sp.csr_matrix((r.rating.astype(np.float64), (np.searchsorted(user_ids, r.user_id),
                                np.searchsorted(movie_ids, r.movie_id))),
                               shape=(len(user_ids), len(movie_ids)))
        u, s, vt = svds(matrix, k=min(rank, min(matrix.shape) - 1), random_state=0)
        return Embeddings(user_ids, u * s, movie_ids, vt.T)

    return source


def two_tower_source(movie_bias: bool = False, **hparams) -> ModelSource:
    """The pipeline's two-tower model trained on the training ratings (benchmarks.two_tower).

    Without movie_bias the vectors are the towers' outputs, exactly what the export job
    indexes and /recommendations ranks by (the retrieval score). With movie_bias, the movie
    vector gets the movie bias appended and the user vector a 1: the inner product is then
    the model's predicted rating minus terms constant per user (ranking by predicted rating).
    """

    def source(train: MovieLensData) -> Embeddings:
        from benchmarks.two_tower import fit_model
        from components.model import HParams

        result = fit_model(train, np.arange(len(train.ratings)), HParams.from_dict(hparams), verbose=0)
        model = result.model
        user_ids = np.array(sorted(result.user_index), np.int64)
        movie_ids = np.array(sorted(result.movie_index), np.int64)
        p = model.user_tower(result.user_table, training=False).numpy()
        q = model.movie_tower(result.movie_table, training=False).numpy()
        if movie_bias:
            from components import features as f

            b = model.movie_bias(result.movie_table[f.MOVIE_ID_XF]).numpy()
            p = np.hstack([p, np.ones((len(p), 1), np.float32)])
            q = np.hstack([q, b])
        return Embeddings(user_ids, p, movie_ids, q)

    return source


def saved_model_source(model_dir: Path, batch_size: int = 1024) -> ModelSource:
    """The pushed two-tower model's embedding signatures over every user and movie."""

    def source(train: MovieLensData) -> Embeddings:
        from index.embed import saved_model_embeddings

        return saved_model_embeddings(Path(model_dir), sorted(train.users), sorted(train.movies),
                                      batch_size, progress=False)

    return source


# --- metrics -----------------------------------------------------------------------------
def ranking_metrics(ranked: Mapping[int, Sequence[int]],
                    relevant: Mapping[int, set[int]]) -> dict[str, float]:
    """HR@10, NDCG@10, Recall@50 averaged over the users of ``relevant``."""
    discounts = 1.0 / np.log2(np.arange(2, 12))
    hr, ndcg, recall = [], [], []
    for user, items in relevant.items():
        top = list(ranked.get(user, ()))
        hits10 = np.array([m in items for m in top[:10]], float)
        hr.append(float(hits10.any()))
        ideal = discounts[:min(len(items), 10)].sum()
        ndcg.append(float((hits10 * discounts[:len(hits10)]).sum() / ideal))
        recall.append(len(items.intersection(top[:50])) / len(items))
    return {"HR@10": float(np.mean(hr)), "NDCG@10": float(np.mean(ndcg)),
            "Recall@50": float(np.mean(recall)), "users": len(relevant)}


def relevant_test_items(test: Ratings) -> dict[int, set[int]]:
    keep = test.rating >= RELEVANT_RATING
    out: dict[int, set[int]] = {}
    for u, m in zip(test.user_id[keep].tolist(), test.movie_id[keep].tolist()):
        out.setdefault(u, set()).add(m)
    return out


def most_popular(train: MovieLensData, users: Sequence[int], n: int = 50) -> dict[int, list[int]]:
    """Movies by training rating count, each user's training movies removed."""
    movie_ids = np.array(sorted(train.movies), np.int64)
    counts = np.zeros(len(movie_ids))
    np.add.at(counts, np.searchsorted(movie_ids, train.ratings.movie_id), 1)
    order = movie_ids[np.argsort(-counts, kind="stable")].tolist()
    seen: dict[int, set[int]] = {}
    for u, m in zip(train.ratings.user_id.tolist(), train.ratings.movie_id.tolist()):
        seen.setdefault(u, set()).add(m)
    out = {}
    for user in users:
        s = seen.get(user, set())
        out[user] = [m for m in order[:n + len(s)] if m not in s][:n]
    return out


# --- benchmark ---------------------------------------------------------------------------
def split(data: MovieLensData, test_fraction: float, seed: int) -> tuple[MovieLensData, Ratings]:
    """(training data set, test ratings) by ``random_split`` over all ratings."""
    r = data.ratings
    train_idx, test_idx = random_split(len(r), test_fraction, seed)

    def take(idx: np.ndarray) -> Ratings:
        return Ratings(r.user_id[idx], r.movie_id[idx], r.rating[idx], r.timestamp[idx])

    return dataclasses.replace(data, ratings=take(train_idx)), take(test_idx)


def evaluate_source(name: str, source: ModelSource, train: MovieLensData,
                    relevant: Mapping[int, set[int]], index_type: str = "flat",
                    workdir: Path | None = None) -> dict:
    """Embed with ``source``, build the index like the export job, rank through it, score."""
    started = time.perf_counter()
    embeddings = source(train)
    fit_s = time.perf_counter() - started
    seen = metadata.seen_csr(embeddings.user_ids, embeddings.movie_ids, train.ratings.user_id,
                             train.ratings.movie_id)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        result = build_index_version(
            Path(tmp), "benchmark", embeddings,
            metadata.user_records(embeddings.user_ids.tolist(), train.users),
            metadata.movie_records(embeddings.movie_ids.tolist(), train.movies), seen,
            ann.AnnConfig(index_type=index_type), Gate(min_recall=0.0, max_latency_ms=1e9))
        similarity = Similarity.load(result.folder)
        start = time.perf_counter()
        ranked = {u: [n.id for n in similarity.recommend(u, 50, exclude_seen=True)]
                  for u in relevant if u in train.users}
        query_s = time.perf_counter() - start
    return {"model": name, **ranking_metrics(ranked, relevant),
            "dimension": embeddings.dimension, "index_type": index_type,
            "index_recall_at_10": result.manifest["recall_at_10"],
            "fit_seconds": round(fit_s, 2),
            "index_build_seconds": result.manifest["build_seconds"],
            "query_ms_per_user": round(1000 * query_s / max(len(ranked), 1), 4)}


def run(data_dir: Path, sources: Mapping[str, ModelSource], test_fraction: float = 0.2,
        seed: int = 0, index_type: str = "flat", ratings_csv: Path | None = None) -> dict:
    data = load_movielens(data_dir, ratings_csv=ratings_csv)
    train, test = split(data, test_fraction, seed)
    relevant = relevant_test_items(test)
    rows = [evaluate_source(name, source, train, relevant, index_type)
            for name, source in sources.items()]
    start = time.perf_counter()
    popular = most_popular(train, list(relevant))
    rows.append({"model": "most popular", **ranking_metrics(popular, relevant),
                 "fit_seconds": round(time.perf_counter() - start, 2)})
    return {"dataset": data.source, "format": data.fmt,
            "catalogue": {"users": len(data.users), "movies": len(data.movies),
                          "ratings": len(data.ratings)},
            "split": {"method": "benchmarks.baselines.random_split", "test_fraction": test_fraction,
                      "seed": seed, "train_ratings": len(train.ratings),
                      "test_ratings": len(test), "relevant_test_pairs":
                          int(sum(len(v) for v in relevant.values()))},
            "definitions": DEFINITIONS, "results": rows}


def format_table(report: dict) -> str:
    lines = [f"{'model':<28}{'HR@10':>8}{'NDCG@10':>9}{'Recall@50':>11}{'users':>7}"]
    for r in report["results"]:
        lines.append(f"{r['model']:<28}{r['HR@10']:>8.4f}{r['NDCG@10']:>9.4f}"
                     f"{r['Recall@50']:>11.4f}{r['users']:>7}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ranking", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"MovieLens folder (default: {DEFAULT_DATA})")
    parser.add_argument("--ratings", type=Path, default=None, help="ratings CSV instead")
    parser.add_argument("--models", nargs="+", default=["two-tower", "mf", "mf-bias", "puresvd"],
                        choices=("mf", "mf-bias", "puresvd", "two-tower", "two-tower-bias", "saved-model"),
                        help="two-tower: the pipeline's model fitted on the training split, ranked by "
                             "the towers' inner product as the index serves it; two-tower-bias: by "
                             "predicted rating (inner product + movie bias)")
    parser.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE",
                        help="two-tower hyperparameter override (components.model.HParams)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="SavedModel version folder for --models saved-model")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index-type", choices=ann.INDEX_TYPES, default="flat")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not args.data.exists():
        parser.error(f"{args.data} does not exist (the real MovieLens files are not shipped; "
                     f"pass --data)")
    from pipeline.run import UserError, parse_hparams

    from benchmarks.accuracy import DATASET_HPARAMS

    try:  # the accuracy benchmark's per-dataset settings (by folder name), then --hparam
        hparams = {**DATASET_HPARAMS.get(args.data.name, {}), **parse_hparams(args.hparam)}
    except UserError as error:
        parser.error(str(error))
    sources: dict[str, ModelSource] = {}
    for name in args.models:
        if name == "mf":
            sources["MF (dot product)"] = mf_source()
        elif name == "mf-bias":
            sources["MF (dot + item bias)"] = mf_source(item_bias=True)
        elif name == "two-tower":
            sources["two-tower (inner product)"] = two_tower_source(**hparams)
        elif name == "two-tower-bias":
            sources["two-tower (dot + movie bias)"] = two_tower_source(movie_bias=True, **hparams)
        elif name == "puresvd":
            sources["PureSVD (rank 50)"] = pure_svd_source()
        else:
            if args.model_dir is None:
                parser.error("--models saved-model needs --model-dir")
            sources[f"SavedModel {args.model_dir.name}"] = saved_model_source(args.model_dir)
    report = run(args.data, sources, args.test_fraction, args.seed, args.index_type, args.ratings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"{report['dataset']}: {report['split']['test_ratings']:,} test ratings, "
          f"{report['split']['relevant_test_pairs']:,} relevant (>= 4) pairs; seed {args.seed}")
    print(format_table(report))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
