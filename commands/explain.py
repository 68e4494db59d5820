"""Seed parity: one user/movie pair explained by the pushed model: its rating and the users and movies nearest it.

    movielens-tfx explain --user 1 --movie 1193 [--data DIR] [--model-base-path DIR]

Loads the latest pushed SavedModel (or --version), prints the predicted rating for the
pair (the `serving_default` signature), then the 5 users most similar to the user and the
5 movies most similar to the movie by cosine over the tower embeddings, with demographics,
titles and genres. Everything is computed from the SavedModel and the catalogue it carries
(assets.extra/catalogue: the users and movies it was trained with; --data reads a MovieLens
folder instead); no index and no pickle are involved (the index job answers the same
questions at scale).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from data.features import GENRES, LIST_SEPARATOR, MOVIE_ID, USER_ID
from index.embed import SavedModelTowers, resolve_model_dir
from index.metadata import movie_label, movie_record, user_label, user_record
from model.signature_names import RATING_OUTPUT, SIGNATURE_DEFAULT
from settings import paths


def _cosine_neighbours(vectors: np.ndarray, row: int, k: int) -> list[tuple[int, float]]:
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scores = unit @ unit[row]
    scores[row] = -np.inf
    top = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
    return sorted(((int(i), float(scores[i])) for i in top), key=lambda x: -x[1])


def explain(model_dir: Path, data_dir: str | None, user_id: int, movie_id: int, k: int = 5, out=sys.stdout) -> float:
    """Prints the explanation; returns the predicted rating. ``data_dir`` None: the users and
    movies come from the model's own catalogue."""
    import tensorflow as tf

    if data_dir is None:
        from data.catalogue import model_catalogue_dir, read_catalogue

        where = model_catalogue_dir(model_dir)
        data = read_catalogue(where)
    else:
        from data.movielens_files import load_movielens

        where, data = data_dir, load_movielens(data_dir)
    for name, wanted, known in (("user", user_id, data.users), ("movie", movie_id, data.movies)):
        if wanted not in known:
            raise KeyError(f"{name} {wanted} is not in {where}")
    towers = SavedModelTowers(model_dir)
    rate = towers.signatures[SIGNATURE_DEFAULT]
    rating = float(rate(**{USER_ID: tf.constant([user_id], tf.int64),
                           MOVIE_ID: tf.constant([movie_id], tf.int64)})[RATING_OUTPUT][0])
    user_ids, movie_ids = np.array(sorted(data.users)), np.array(sorted(data.movies))
    users = towers.user_vectors(user_ids, progress=False)
    movies = towers.movie_vectors(movie_ids, progress=False)
    user_info, movie_info = user_record(data.users[user_id]), movie_record(data.movies[movie_id])
    print(f"Model {model_dir}", file=out)
    print(f"User {user_id} ({user_label(user_info)}) x movie {movie_id} {movie_label(movie_info)} "
          f"[{LIST_SEPARATOR.join(movie_info[GENRES])}]: predicted rating {rating:.2f}\n", file=out)
    print(f"Users most similar to user {user_id}:", file=out)
    for row, score in _cosine_neighbours(users, int(np.searchsorted(user_ids, user_id)), k):
        other = user_ids[row]
        print(f"  {score:6.3f}  user {other:<6} {user_label(user_record(data.users[int(other)]))}", file=out)
    print(f"\nMovies most similar to {movie_label(movie_info)}:", file=out)
    for row, score in _cosine_neighbours(movies, int(np.searchsorted(movie_ids, movie_id)), k):
        info = movie_record(data.movies[int(movie_ids[row])])
        print(f"  {score:6.3f}  {movie_label(info)} [{LIST_SEPARATOR.join(info[GENRES])}]", file=out)
    return rating


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", type=int, required=True, help="user id")
    parser.add_argument("--movie", type=int, required=True, help="movie id")
    parser.add_argument("-k", type=int, default=5, help="neighbours to show (default: %(default)s)")
    parser.add_argument("--artifacts", type=Path, default=paths.DEFAULT_ARTIFACTS)
    parser.add_argument("--model-base-path", type=Path, help="default: <artifacts>/serving/movielens")
    parser.add_argument("--version", type=int, help="model version (default: the latest)")
    parser.add_argument("--data", help="override: a MovieLens folder to take users and movies from "
                                       "(default: the catalogue the model version carries)")


def run(args: argparse.Namespace) -> int:
    artifact_paths = paths.ArtifactPaths(args.artifacts)
    base = args.model_base_path or artifact_paths.model_base_path
    if not 1 <= args.k <= 100:
        print("error: -k must be within 1..100", file=sys.stderr)
        return 2
    try:
        model_dir, _ = resolve_model_dir(Path(base), args.version)
        explain(model_dir, args.data, args.user, args.movie, args.k)
    except (KeyError, FileNotFoundError, ValueError) as error:
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="movielens-tfx explain", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
