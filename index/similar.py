"""`similar`: print similar movies, or a user's look-alikes and recommendations.

    python -m index.similar --movie 1401 -k 5
    python -m index.similar --user 5900 -k 5

Reads the published index folder directly (no server), so it works in a notebook-free shell
right after ``export-index``. Exit status 2 with a message for unknown ids or no index.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Mapping, Sequence, TextIO

from common import fileio
from common.logs import terminal
from data.features import GENRES, LIST_SEPARATOR
from index import layout
from index.embed import RATING_SPACE
from index.metadata import movie_label, user_label
from index.similarity import BY_EMBEDDING, BY_POSTERS, Neighbour, Similarity, UnknownIdError


def _movie_line(movie: Mapping[str, Any]) -> str:
    genres = LIST_SEPARATOR.join(movie.get(GENRES) or []) or "(no genres)"
    return f"{movie_label(movie)}  [{genres}]"


def _table(title: str, neighbours: list[Neighbour], describe, out: TextIO) -> None:
    print(title, file=out)
    if not neighbours:
        print("  (none)", file=out)
    for rank, n in enumerate(neighbours, 1):
        scores = ""  # the two stages' own scores, when the version has them
        if n.predicted_rating is not None:
            scores += f"  retrieval {n.retrieval_score:7.3f}  predicted rating {n.predicted_rating:4.2f}"
        elif n.retrieval_score is not None and n.retrieval_score != n.score:
            scores += f"  retrieval {n.retrieval_score:7.3f}"
        print(f"  {rank:>3}. {n.score:8.4f}{scores}  #{n.id:<6} {describe(n.info)}", file=out)


def print_movie(similarity: Similarity, movie_id: int, k: int, by: str, out: TextIO) -> None:
    movie = similarity.movie(movie_id)
    print(f"Movie {movie_id}: {_movie_line(movie)}", file=out)
    what = ("cosine of poster CNN features" if by == BY_POSTERS else
            "retrieval score of a one-movie history" if similarity.similar_metric == "retrieval_score"
            else "cosine of the rating towers' embeddings")
    _table(f"\n{k} most similar movies ({what}):",
           similarity.similar_movies(movie_id, k, by=by), _movie_line, out)


def print_user(similarity: Similarity, user_id: int, k: int, exclude_seen: bool,
               out: TextIO) -> None:
    user = similarity.user(user_id)
    seen = similarity.seen(user_id)
    print(f"User {user_id}: {user_label(user)}  ({len(seen)} rated movies)", file=out)
    if similarity.has_seen_ratings:
        print(f"\nTop-rated training movies ({similarity.rated_count(user_id)} with a training rating):", file=out)
        for rated in similarity.top_rated(user_id, k):
            print(f"  {rated.rating:4.1f}  #{rated.id:<6} {_movie_line(rated.info)}", file=out)
    space = similarity.manifest.get("similar_space", RATING_SPACE)
    _table(f"\n{k} most similar users (cosine, {space} space):", similarity.similar_users(user_id, k),
           user_label, out)
    note = "rated movies excluded" if exclude_seen else "rated movies included"
    how = {"retrieval+rerank": f"two-stage: top {similarity.default_candidates} by retrieval score, re-ranked "
                               f"by retrieval score + {similarity.default_rerank_weight:g} x predicted rating",
           "retrieval": "retrieval score", "inner_product+rerank": "inner product, re-ranked by rating"
           }.get(similarity.stages, "inner product")
    _table(f"\nTop {k} recommended movies ({how}; {note}):",
           similarity.recommend(user_id, k, exclude_seen=exclude_seen), _movie_line, out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--movie", type=int, help="movie id")
    what.add_argument("--user", type=int, help="user id")
    parser.add_argument("-k", type=int, default=10, help="results per list (default: 10)")
    parser.add_argument("--by", choices=(BY_EMBEDDING, BY_POSTERS), default=BY_EMBEDDING,
                        help="similar movies by model embedding or by poster")
    parser.add_argument("--include-seen", action="store_true",
                        help="do not exclude the user's rated movies from recommendations")
    parser.add_argument("--index-dir", type=fileio.to_path, default=None,
                        help="index folder (default: <artifacts>/index)")
    parser.add_argument("--artifacts", type=fileio.to_path, default=None)
    parser.add_argument("--version", default=None, help="index version (default: LATEST)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movielens-tfx similar",
                                     description="Print similar movies, or similar users and "
                                                 "recommendations, from the index folder.")
    add_arguments(parser)
    return parser


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if not 1 <= args.k <= 1000:
        print("error: -k must be between 1 and 1000", file=terminal())
        return 2
    index_dir = args.index_dir or layout.default_index_dir(args.artifacts)
    try:
        similarity = Similarity.load(layout.version_dir(index_dir, args.version))
        if args.movie is not None:
            print_movie(similarity, args.movie, args.k, args.by, out)
        else:
            print_user(similarity, args.user, args.k, not args.include_seen, out)
    except (UnknownIdError, layout.IndexNotFoundError) as error:
        print(f"error: {error}", file=terminal())
        return 2
    print(f"\n(index version {similarity.version}, model version {similarity.model_version}, "
          f"{similarity.manifest.get('index_type')} index)", file=out)
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    return run(build_parser().parse_args(argv), out)


if __name__ == "__main__":
    sys.exit(main())
