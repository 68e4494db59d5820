"""The catalogue: the users and movies a model was trained with, as a typed TFX artifact.

Why it exists: the serving lookup tables (Trainer), the index metadata and "seen" map
(export-index), `explain` and the demo all need the users/movies tables of the data the
model was trained on. Re-reading the raw MovieLens folder at each of those steps let an
index be built from other data than its model; so ExampleGen, the one step that parses the
raw files, writes them once as this artifact, in ML-Metadata lineage, and the Trainer copies
it into the SavedModel (``assets.extra/catalogue/``), where everything downstream reads it.

Layout of a catalogue folder (Parquet, read and written through ``common.fileio`` so
that ``gs://`` and ``ram://`` work; never pickle):

  users.parquet   user_id, gender, age, occupation, zip, train_ratings
  movies.parquet  movie_id, title, year, genres (list of names), train_ratings
  seen.parquet    user_id, movie_id: every distinct rated pair, all splits (the index's
                  exclude-seen map, as export-index built it from the ratings before), and
                  train_rating: the pair's rating in Split-train (its mean if rated there
                  more than once; NaN when the pair is only in other splits), which the
                  browse page's "top-rated training movies" come from. Catalogues written
                  before it have no such column (``seen_train_ratings`` is then None).
  catalogue.json  format version, source folder, examples per split, and rating_scale: the
                  (lowest, highest) Split-train rating, the range the model trained on it
                  clips its served ratings to (1..5 for ML-1M, 0.5..5 for the ml-latest
                  format); absent from catalogues written before it (``rating_scale`` None)

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

from common import fileio
from data import features as f
from data.movielens_files import Movie, User
from data.rating_pairs import mean_rating_per_pair

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
    #: float32, aligned with the seen pairs: the Split-train rating (NaN: not in train); None
    #: for catalogues written before ratings were kept
    seen_train_ratings: np.ndarray | None = None
    split_examples: dict[str, int] = field(default_factory=dict)
    source: str = ""
    #: (lowest, highest) Split-train rating; None when unknown (an older catalogue, or a train
    #: split given without ratings)
    rating_scale: tuple[float, float] | None = None

    def most_rated_movie(self) -> int:
        """The movie with the most training ratings (lowest id on ties)."""
        return min(self.movie_train_ratings, key=lambda m: (-self.movie_train_ratings[m], m))

    def most_active_user(self) -> int:
        """The user with the most training ratings (lowest id on ties)."""
        return min(self.user_train_ratings, key=lambda u: (-self.user_train_ratings[u], u))


def _counts(ids: np.ndarray) -> dict[int, int]:
    """How often each id occurs; ids that are small non-negative numbers (MovieLens ids are)
    are counted in one linear pass, any others by sorting."""
    ids = np.asarray(ids, np.int64)
    if len(ids) and ids.min() >= 0 and ids.max() < 4 * len(ids) + 1024:
        counts = np.bincount(ids)
        present = np.flatnonzero(counts)
        return dict(zip(present.tolist(), counts[present].tolist()))
    values, counts = np.unique(ids, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def _train_ratings(pairs: np.ndarray, train: tuple[np.ndarray, ...]) -> np.ndarray | None:
    """The mean Split-train rating of each seen pair (rows of ``pairs``, sorted), NaN where
    the pair has none; None when the train split came without ratings."""
    if len(train) < 3:
        return None
    return mean_rating_per_pair(pairs[:, 0], pairs[:, 1], *train[:3])


def _seen_pairs(split_pairs: Mapping[str, tuple[np.ndarray, ...]]
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """(the distinct (user, movie) rows of every split, sorted by user, then movie; the mean
    Split-train rating of each row, NaN where it has none, or None when the train split came
    without ratings).

    Each pair is one int64 key (user x (largest movie + 1) + movie), so NumPy sorts plain
    integers once, and that one sort also groups the train ratings by pair: a 2-D np.unique
    sorts rows as opaque bytes, and NumPy's hash unique plus a second sort for the means took
    most of ExampleGen's catalogue time at 25M ratings."""
    train = split_pairs.get(TRAIN_SPLIT, (np.empty(0, np.int64), np.empty(0, np.int64)))
    ordered = [train, *(s for name, s in split_pairs.items() if name != TRAIN_SPLIT)]  # train rows first
    users = np.concatenate([np.asarray(s[0], np.int64) for s in ordered])
    movies = np.concatenate([np.asarray(s[1], np.int64) for s in ordered])
    if not len(users):
        return np.empty((0, 2), np.int64), _train_ratings(np.empty((0, 2), np.int64), train)
    width = int(movies.max()) + 1
    if users.min() < 0 or movies.min() < 0 or int(users.max()) >= (1 << 62) // width:
        pairs = np.unique(np.stack([users, movies], axis=1), axis=0)  # ids too large for one key
        return pairs, _train_ratings(pairs, train)
    keys, inverse = np.unique(users * width + movies, return_inverse=True)
    pairs = np.stack([keys // width, keys % width], axis=1)
    if len(train) < 3:
        return pairs, None
    values = np.asarray(train[2], np.float64)
    keep = ~np.isnan(values)
    rows = inverse[:len(values)][keep]
    counts = np.bincount(rows, minlength=len(keys))
    sums = np.bincount(rows, weights=values[keep], minlength=len(keys))
    means = np.full(len(keys), np.nan, np.float32)
    rated = counts > 0
    means[rated] = sums[rated] / counts[rated]
    return pairs, means


def build_catalogue(users: Mapping[int, User], movies: Mapping[int, Movie],
                    split_pairs: Mapping[str, tuple[np.ndarray, ...]], source: str = "") -> Catalogue:
    """A catalogue from the parsed tables and the (user ids, movie ids[, ratings]) of each
    written split (``read_split_ratings``); the train split's ratings, when given, become
    ``seen_train_ratings``."""
    train = split_pairs.get(TRAIN_SPLIT, (np.empty(0, np.int64), np.empty(0, np.int64)))
    train_users, train_movies = train[0], train[1]
    user_counts, movie_counts = _counts(train_users), _counts(train_movies)
    pairs, seen_train_ratings = _seen_pairs(split_pairs)
    return Catalogue(
        users=dict(sorted(users.items())), movies=dict(sorted(movies.items())),
        user_train_ratings={u: user_counts.get(u, 0) for u in sorted(users)},
        movie_train_ratings={m: movie_counts.get(m, 0) for m in sorted(movies)},
        seen_user_ids=pairs[:, 0].copy(), seen_movie_ids=pairs[:, 1].copy(),
        seen_train_ratings=seen_train_ratings,
        split_examples={name: int(len(s[0])) for name, s in split_pairs.items()}, source=source,
        rating_scale=f.rating_scale(train[2]) if len(train) >= 3 and len(train[2]) else None)


def read_split_ratings(examples_uri: str, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, movie ids, ratings) of every tf.Example in ``<examples_uri>/Split-<split>/``
    (gzipped TFRecords, as ExampleGen writes them): what actually landed in that split."""
    files = fileio.glob(fileio.join(examples_uri, f"Split-{split}", "*"))
    spec = {f.USER_ID: tf.io.FixedLenFeature([], tf.int64), f.MOVIE_ID: tf.io.FixedLenFeature([], tf.int64),
            f.RATING: tf.io.FixedLenFeature([], tf.float32)}
    users, movies, ratings = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty(0, np.float32)]
    if files:
        dataset = (tf.data.TFRecordDataset(files, compression_type="GZIP").batch(65536)
                   .map(lambda x: tf.io.parse_example(x, spec)))
        for batch in dataset.as_numpy_iterator():
            users.append(batch[f.USER_ID])
            movies.append(batch[f.MOVIE_ID])
            ratings.append(batch[f.RATING])
    return np.concatenate(users), np.concatenate(movies), np.concatenate(ratings)


def read_split_pairs(examples_uri: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(user ids, movie ids) of a written split (``read_split_ratings`` without the ratings)."""
    users, movies, _ = read_split_ratings(examples_uri, split)
    return users, movies


# --- files --------------------------------------------------------------------------------
def _write_table(path: str, table: pa.Table) -> None:
    """Parquet into memory, then one fileio write: pyarrow cannot open ram:// or gs:// itself."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    fileio.write_bytes(path, sink.getvalue().to_pybytes())


def _read_table(path: str) -> pa.Table:
    if not fileio.exists(path):
        raise CatalogueNotFoundError(f"catalogue file missing: {path}")
    return pq.read_table(pa.BufferReader(fileio.read_bytes(path)))


_ARROW_TYPES = {"int64": pa.int64(), "float32": pa.float32(), "string": pa.string()}
TRAIN_RATINGS = "train_ratings"
TRAIN_RATING = "train_rating"  # seen.parquet: the pair's Split-train rating


def _arrow_type(feature: f.RawFeature) -> pa.DataType:
    kind = _ARROW_TYPES[feature.dtype]
    return pa.list_(kind) if feature.is_list else kind


def _entity_table(records: Mapping[int, User] | Mapping[int, Movie], names: tuple[str, ...],
                  train_ratings: Mapping[int, int]) -> pa.Table:
    """One row per id, one column per raw feature of the tower (from the feature table: each
    value is the record's attribute of the feature's name), plus the train-split count."""
    ids = sorted(records)
    columns = {}
    for name in names:
        feature = f.raw_feature(name)
        values = [getattr(records[i], name) for i in ids]
        columns[name] = pa.array([list(v) for v in values] if feature.is_list else values, _arrow_type(feature))
    columns[TRAIN_RATINGS] = pa.array([train_ratings.get(i, 0) for i in ids], pa.int64())
    return pa.table(columns)


def _entities(table: pa.Table, record_type: type, names: tuple[str, ...], id_name: str
              ) -> tuple[dict, dict[int, int]]:
    """Inverse of _entity_table: {id: record} and {id: train-split count}."""
    columns = table.to_pydict()
    records = {}
    for row in range(table.num_rows):
        values = {name: columns[name][row] for name in names}
        for name in names:
            if f.raw_feature(name).is_list:
                values[name] = tuple(values[name] or ())
        records[values[id_name]] = record_type(**values)
    return records, dict(zip(columns[id_name], columns[TRAIN_RATINGS]))


def write_catalogue(uri: str, catalogue: Catalogue) -> str:
    """Writes ``catalogue`` into the folder ``uri`` (created if needed); returns ``uri``."""
    fileio.makedirs(uri)
    users, movies = catalogue.users, catalogue.movies
    _write_table(os.path.join(uri, USERS_FILE), _entity_table(users, f.USER_FEATURES, catalogue.user_train_ratings))
    _write_table(os.path.join(uri, MOVIES_FILE), _entity_table(movies, f.MOVIE_FEATURES, catalogue.movie_train_ratings))
    seen = {f.USER_ID: pa.array(np.asarray(catalogue.seen_user_ids, np.int64)),
            f.MOVIE_ID: pa.array(np.asarray(catalogue.seen_movie_ids, np.int64))}
    if catalogue.seen_train_ratings is not None:
        seen[TRAIN_RATING] = pa.array(np.asarray(catalogue.seen_train_ratings, np.float32))
    _write_table(os.path.join(uri, SEEN_FILE), pa.table(seen))
    info = {"format_version": FORMAT_VERSION, "source": catalogue.source,
            "split_examples": catalogue.split_examples,
            "rating_scale": list(catalogue.rating_scale) if catalogue.rating_scale else None,
            "counts": {"users": len(users), "movies": len(movies), "seen_pairs": int(len(catalogue.seen_user_ids))}}
    fileio.write_text(os.path.join(uri, INFO_FILE), json.dumps(info, indent=1, sort_keys=True))
    return uri


def has_catalogue(uri: str) -> bool:
    return fileio.exists(os.path.join(uri, INFO_FILE))


def read_catalogue(uri: str) -> Catalogue:
    """The catalogue in the folder ``uri`` (CatalogueNotFoundError when there is none)."""
    info_path = os.path.join(uri, INFO_FILE)
    if not fileio.exists(info_path):
        raise CatalogueNotFoundError(f"no catalogue in {uri} (expected {INFO_FILE} and the Parquet tables)")
    info = json.loads(fileio.read_text(info_path))
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{info_path}: catalogue format {info.get('format_version')!r}, "
                         f"this code reads {FORMAT_VERSION}")
    users, user_train_ratings = _entities(_read_table(os.path.join(uri, USERS_FILE)), User, f.USER_FEATURES, f.USER_ID)
    movies, movie_train_ratings = _entities(_read_table(os.path.join(uri, MOVIES_FILE)), Movie, f.MOVIE_FEATURES, f.MOVIE_ID)
    seen = _read_table(os.path.join(uri, SEEN_FILE))
    return Catalogue(
        users=users, movies=movies,
        user_train_ratings=user_train_ratings, movie_train_ratings=movie_train_ratings,
        seen_user_ids=seen.column(f.USER_ID).to_numpy().astype(np.int64),
        seen_movie_ids=seen.column(f.MOVIE_ID).to_numpy().astype(np.int64),
        seen_train_ratings=(seen.column(TRAIN_RATING).to_numpy().astype(np.float32)
                            if TRAIN_RATING in seen.column_names else None),
        split_examples={k: int(v) for k, v in info.get("split_examples", {}).items()},
        source=info.get("source", ""),
        rating_scale=tuple(info["rating_scale"]) if info.get("rating_scale") else None)


def copy_catalogue(src_uri: str, dst_uri: str) -> str:
    """Copies a catalogue folder byte for byte (the Trainer: artifact -> SavedModel assets)."""
    if not has_catalogue(src_uri):
        raise CatalogueNotFoundError(f"no catalogue in {src_uri}")
    for name in FILES:
        fileio.copy_file(os.path.join(src_uri, name), os.path.join(dst_uri, name))
    return dst_uri


def model_catalogue_dir(model_dir: str | os.PathLike[str]) -> str:
    """Where a SavedModel version folder carries its catalogue."""
    return os.path.join(str(model_dir), ASSET_DIR)
