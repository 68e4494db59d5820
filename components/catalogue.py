"""The catalogue: the users and movies a model was trained with, as a typed TFX artifact.

Why it exists: the serving lookup tables (Trainer), the index metadata and "seen" map
(export-index), `explain` and the demo all need the users/movies tables of the data the
model was trained on. Re-reading the raw MovieLens folder at each of those steps let an
index be built from other data than its model; so ExampleGen, the one step that parses the
raw files, writes them once as this artifact, in ML-Metadata lineage, and the Trainer copies
it into the SavedModel (``assets.extra/catalogue/``), where everything downstream reads it.

Layout of a catalogue folder (Parquet, read and written through ``tf.io.gfile`` so that
``gs://`` and ``ram://`` work; never pickle):

  users.parquet   user_id, gender, age, occupation, zip, train_ratings
  movies.parquet  movie_id, title, year, genres (list of names), train_ratings
  seen.parquet    user_id, movie_id: every distinct rated pair, all splits (the index's
                  exclude-seen map, as export-index built it from the ratings before)
  catalogue.json  format version, source folder, examples per split

``train_ratings`` counts the examples that landed in ExampleGen's Split-train, counted from
the written TFRecords, not re-derived from the hash split.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf
from tfx.types.artifact import Artifact

from components import features as f
from components.movielens_files import Movie, User

USERS_FILE = "users.parquet"
MOVIES_FILE = "movies.parquet"
SEEN_FILE = "seen.parquet"
INFO_FILE = "catalogue.json"
FILES = (USERS_FILE, MOVIES_FILE, SEEN_FILE, INFO_FILE)
FORMAT_VERSION = 1
#: Where the Trainer puts the catalogue inside the SavedModel folder (the Pusher copies it).
ASSET_DIR = os.path.join("assets.extra", "catalogue")
TRAIN_SPLIT = "train"


class MovieLensCatalogue(Artifact):
    """ExampleGen's users/movies tables and train-split rating counts (a folder, see above).

    The type name has the `namespace.Name` shape that the Kubeflow V2 compiler requires of a
    custom artifact type (it becomes the KFP schema title).
    """

    TYPE_NAME = "movielens.Catalogue"


class CatalogueNotFoundError(FileNotFoundError):
    """No catalogue where one was expected (e.g. a model pushed before catalogues existed)."""


@dataclass
class Catalogue:
    """One catalogue in memory. ``users`` / ``movies`` have the loader's types, so whatever
    took ``MovieLensData.users`` / ``.movies`` takes these unchanged."""

    users: dict[int, User]
    movies: dict[int, Movie]
    user_train_ratings: dict[int, int]
    movie_train_ratings: dict[int, int]
    seen_user_ids: np.ndarray
    seen_movie_ids: np.ndarray
    split_examples: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def most_rated_movie(self) -> int:
        """The movie with the most training ratings (lowest id on ties)."""
        return min(self.movie_train_ratings, key=lambda m: (-self.movie_train_ratings[m], m))

    def most_active_user(self) -> int:
        """The user with the most training ratings (lowest id on ties)."""
        return min(self.user_train_ratings, key=lambda u: (-self.user_train_ratings[u], u))


def _counts(ids: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(np.asarray(ids, np.int64), return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def build_catalogue(users: Mapping[int, User], movies: Mapping[int, Movie],
                    split_pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], source: str = "") -> Catalogue:
    """A catalogue from the parsed tables and the (user ids, movie ids) of each written split."""
    train_users, train_movies = split_pairs.get(TRAIN_SPLIT, (np.empty(0, np.int64), np.empty(0, np.int64)))
    user_counts, movie_counts = _counts(train_users), _counts(train_movies)
    all_users = np.concatenate([np.asarray(u, np.int64) for u, _ in split_pairs.values()] or [np.empty(0, np.int64)])
    all_movies = np.concatenate([np.asarray(m, np.int64) for _, m in split_pairs.values()] or [np.empty(0, np.int64)])
    pairs = np.unique(np.stack([all_users, all_movies], axis=1), axis=0) if len(all_users) else np.empty((0, 2), np.int64)
    return Catalogue(
        users=dict(sorted(users.items())), movies=dict(sorted(movies.items())),
        user_train_ratings={u: user_counts.get(u, 0) for u in sorted(users)},
        movie_train_ratings={m: movie_counts.get(m, 0) for m in sorted(movies)},
        seen_user_ids=pairs[:, 0].copy(), seen_movie_ids=pairs[:, 1].copy(),
        split_examples={name: int(len(u)) for name, (u, _) in split_pairs.items()}, source=source)


def read_split_pairs(examples_uri: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(user ids, movie ids) of every tf.Example in ``<examples_uri>/Split-<split>/`` (gzipped
    TFRecords, as ExampleGen writes them): what actually landed in that split."""
    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    spec = {f.USER_ID: tf.io.FixedLenFeature([], tf.int64), f.MOVIE_ID: tf.io.FixedLenFeature([], tf.int64)}
    users, movies = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    if files:
        dataset = (tf.data.TFRecordDataset(files, compression_type="GZIP").batch(65536)
                   .map(lambda x: tf.io.parse_example(x, spec)))
        for batch in dataset.as_numpy_iterator():
            users.append(batch[f.USER_ID])
            movies.append(batch[f.MOVIE_ID])
    return np.concatenate(users), np.concatenate(movies)


# --- files --------------------------------------------------------------------------------
def _write_table(path: str, table: pa.Table) -> None:
    """Parquet into memory, then one gfile write: pyarrow cannot open ram:// or gs:// itself."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(sink.getvalue().to_pybytes())


def _read_table(path: str) -> pa.Table:
    if not tf.io.gfile.exists(path):
        raise CatalogueNotFoundError(f"catalogue file missing: {path}")
    with tf.io.gfile.GFile(path, "rb") as handle:
        return pq.read_table(pa.BufferReader(handle.read()))


def write_catalogue(uri: str, catalogue: Catalogue) -> str:
    """Writes ``catalogue`` into the folder ``uri`` (created if needed); returns ``uri``."""
    tf.io.gfile.makedirs(uri)
    users, movies = catalogue.users, catalogue.movies
    user_ids, movie_ids = sorted(users), sorted(movies)
    _write_table(os.path.join(uri, USERS_FILE), pa.table({
        "user_id": pa.array(user_ids, pa.int64()),
        "gender": pa.array([users[u].gender for u in user_ids], pa.string()),
        "age": pa.array([users[u].age for u in user_ids], pa.int32()),
        "occupation": pa.array([users[u].occupation for u in user_ids], pa.int32()),
        "zip": pa.array([users[u].zip for u in user_ids], pa.string()),
        "train_ratings": pa.array([catalogue.user_train_ratings.get(u, 0) for u in user_ids], pa.int64()),
    }))
    _write_table(os.path.join(uri, MOVIES_FILE), pa.table({
        "movie_id": pa.array(movie_ids, pa.int64()),
        "title": pa.array([movies[m].title for m in movie_ids], pa.string()),
        "year": pa.array([movies[m].year for m in movie_ids], pa.int32()),
        "genres": pa.array([list(movies[m].genres) for m in movie_ids], pa.list_(pa.string())),
        "train_ratings": pa.array([catalogue.movie_train_ratings.get(m, 0) for m in movie_ids], pa.int64()),
    }))
    _write_table(os.path.join(uri, SEEN_FILE), pa.table({
        "user_id": pa.array(np.asarray(catalogue.seen_user_ids, np.int64)),
        "movie_id": pa.array(np.asarray(catalogue.seen_movie_ids, np.int64)),
    }))
    info = {"format_version": FORMAT_VERSION, "source": catalogue.source,
            "split_examples": catalogue.split_examples,
            "counts": {"users": len(users), "movies": len(movies), "seen_pairs": int(len(catalogue.seen_user_ids))}}
    with tf.io.gfile.GFile(os.path.join(uri, INFO_FILE), "w") as handle:
        handle.write(json.dumps(info, indent=1, sort_keys=True))
    return uri


def has_catalogue(uri: str) -> bool:
    return tf.io.gfile.exists(os.path.join(uri, INFO_FILE))


def read_catalogue(uri: str) -> Catalogue:
    """The catalogue in the folder ``uri`` (CatalogueNotFoundError when there is none)."""
    info_path = os.path.join(uri, INFO_FILE)
    if not tf.io.gfile.exists(info_path):
        raise CatalogueNotFoundError(f"no catalogue in {uri} (expected {INFO_FILE} and the Parquet tables)")
    with tf.io.gfile.GFile(info_path, "r") as handle:
        info = json.loads(handle.read())
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{info_path}: catalogue format {info.get('format_version')!r}, "
                         f"this code reads {FORMAT_VERSION}")
    u = _read_table(os.path.join(uri, USERS_FILE)).to_pydict()
    m = _read_table(os.path.join(uri, MOVIES_FILE)).to_pydict()
    seen = _read_table(os.path.join(uri, SEEN_FILE))
    users = {uid: User(uid, gender, age, occ, zip_code)
             for uid, gender, age, occ, zip_code in zip(u["user_id"], u["gender"], u["age"], u["occupation"], u["zip"])}
    movies = {mid: Movie(mid, title, year, tuple(genres or ()))
              for mid, title, year, genres in zip(m["movie_id"], m["title"], m["year"], m["genres"])}
    return Catalogue(
        users=users, movies=movies,
        user_train_ratings=dict(zip(u["user_id"], u["train_ratings"])),
        movie_train_ratings=dict(zip(m["movie_id"], m["train_ratings"])),
        seen_user_ids=seen.column("user_id").to_numpy().astype(np.int64),
        seen_movie_ids=seen.column("movie_id").to_numpy().astype(np.int64),
        split_examples={k: int(v) for k, v in info.get("split_examples", {}).items()},
        source=info.get("source", ""))


def copy_catalogue(src_uri: str, dst_uri: str) -> str:
    """Copies a catalogue folder byte for byte (the Trainer: artifact -> SavedModel assets)."""
    if not has_catalogue(src_uri):
        raise CatalogueNotFoundError(f"no catalogue in {src_uri}")
    tf.io.gfile.makedirs(dst_uri)
    for name in FILES:
        tf.io.gfile.copy(os.path.join(src_uri, name), os.path.join(dst_uri, name), overwrite=True)
    return dst_uri


def model_catalogue_dir(model_dir: str | os.PathLike[str]) -> str:
    """Where a SavedModel version folder carries its catalogue."""
    return os.path.join(str(model_dir), ASSET_DIR)
