"""data.catalogue: the users/movies artifact round-trips on local disk and through
tf.io.gfile's in-memory filesystem (the stand-in for gs://), and counts what was written."""
from __future__ import annotations

import uuid

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from components.example_gen import record_to_example
from data import catalogue as cat, synthetic_data
from data.movielens_files import Movie, User, load_movielens

USERS = {1: User(1, "F", 1, 10, "48067"), 2: User(2, "M", 56, 16, "70072"), 7: User(7, "M", 25, 15, "55117")}
MOVIES = {1: Movie(1, "Toy Story", 1995, ("Animation", "Children's", "Comedy")),
          73: Movie(73, "Misérables, Les", 1995, ("Drama", "Musical")),
          5: Movie(5, "No Genre", 0, ())}
SPLITS = {"train": (np.array([1, 1, 2, 1]), np.array([1, 73, 1, 1]), np.array([5.0, 2.0, 4.0, 4.0], np.float32)),
          "eval": (np.array([7]), np.array([5]), np.array([3.0], np.float32)),
          "test": (np.array([2]), np.array([73]), np.array([1.0], np.float32))}


def _built() -> cat.Catalogue:
    return cat.build_catalogue(USERS, MOVIES, SPLITS, source="/data/x")


def test_build_counts_train_ratings_and_seen_pairs_of_every_split():
    c = _built()
    assert c.user_train_ratings == {1: 3, 2: 1, 7: 0}
    assert c.movie_train_ratings == {1: 3, 5: 0, 73: 1}
    assert sorted(zip(c.seen_user_ids.tolist(), c.seen_movie_ids.tolist())) == [(1, 1), (1, 73), (2, 1), (2, 73), (7, 5)]
    assert c.split_examples == {"train": 4, "eval": 1, "test": 1}
    assert c.most_rated_movie() == 1 and c.most_active_user() == 1


def test_seen_pairs_keep_their_train_rating_mean_and_nan_outside_train():
    c = _built()
    by_pair = dict(zip(zip(c.seen_user_ids.tolist(), c.seen_movie_ids.tolist()), c.seen_train_ratings.tolist()))
    assert by_pair[(1, 1)] == 4.5 and by_pair[(1, 73)] == 2.0 and by_pair[(2, 1)] == 4.0  # (1, 1) twice: mean
    assert np.isnan(by_pair[(2, 73)]) and np.isnan(by_pair[(7, 5)])  # test / eval only
    without = cat.build_catalogue(USERS, MOVIES, {name: s[:2] for name, s in SPLITS.items()})
    assert without.seen_train_ratings is None  # pairs without ratings: nothing made up


def test_a_catalogue_written_before_ratings_were_kept_still_reads(tmp_path):
    uri = str(tmp_path / "old")
    old = _built()
    old.seen_train_ratings = None
    cat.write_catalogue(uri, old)
    assert cat.TRAIN_RATING not in pq.read_table(f"{uri}/{cat.SEEN_FILE}").column_names
    back = cat.read_catalogue(uri)
    assert back.seen_train_ratings is None and back.users == old.users


def test_the_rating_scale_is_the_train_split_s_and_round_trips(tmp_path):
    """What the model trained on this catalogue's Split-train clips its ratings to."""
    c = _built()
    assert c.rating_scale == (2.0, 5.0)  # train ratings only (test holds a 1.0)
    half = cat.build_catalogue(USERS, MOVIES, {"train": (np.array([1, 2]), np.array([1, 73]),
                                                         np.array([0.5, 4.5], np.float32))})
    assert half.rating_scale == (0.5, 4.5)
    assert cat.build_catalogue(USERS, MOVIES, {name: s[:2] for name, s in SPLITS.items()}).rating_scale is None
    uri = str(tmp_path / "c")
    cat.write_catalogue(uri, half)
    assert cat.read_catalogue(uri).rating_scale == (0.5, 4.5)
    half.rating_scale = None  # a catalogue written before the scale was recorded
    cat.write_catalogue(uri, half)
    assert cat.read_catalogue(uri).rating_scale is None


def _assert_same(a: cat.Catalogue, b: cat.Catalogue) -> None:
    assert a.users == b.users and a.movies == b.movies
    assert a.user_train_ratings == b.user_train_ratings and a.movie_train_ratings == b.movie_train_ratings
    np.testing.assert_array_equal(a.seen_user_ids, b.seen_user_ids)
    np.testing.assert_array_equal(a.seen_movie_ids, b.seen_movie_ids)
    np.testing.assert_array_equal(a.seen_train_ratings, b.seen_train_ratings)  # NaN == NaN here
    assert a.split_examples == b.split_examples and a.source == b.source


def test_round_trip_on_a_local_folder(tmp_path):
    uri = str(tmp_path / "catalogue")
    cat.write_catalogue(uri, _built())
    assert sorted(p.name for p in (tmp_path / "catalogue").iterdir()) == sorted(cat.FILES)
    back = cat.read_catalogue(uri)
    _assert_same(back, _built())
    assert back.movies[73].title == "Misérables, Les" and back.movies[5].genres == ()
    copy = cat.copy_catalogue(uri, str(tmp_path / "model" / cat.ASSET_DIR))
    _assert_same(cat.read_catalogue(copy), _built())


def test_round_trip_on_tf_in_memory_filesystem():
    uri = f"ram://catalogue-{uuid.uuid4().hex}/nested/catalogue"
    cat.write_catalogue(uri, _built())
    assert tf.io.gfile.exists(f"{uri}/{cat.USERS_FILE}")
    _assert_same(cat.read_catalogue(uri), _built())
    copy = cat.copy_catalogue(uri, f"ram://copy-{uuid.uuid4().hex}/{cat.ASSET_DIR}")
    _assert_same(cat.read_catalogue(copy), _built())


def test_missing_catalogue_is_a_clear_error(tmp_path):
    with pytest.raises(cat.CatalogueNotFoundError, match=str(tmp_path)):
        cat.read_catalogue(str(tmp_path))
    assert not cat.has_catalogue(str(tmp_path))


def test_split_pairs_are_read_from_written_gzipped_tfrecords(tmp_path):
    folder = tmp_path / "data"
    synthetic_data.generate(folder, **synthetic_data.size_kwargs("tiny"), seed=3)
    data = load_movielens(folder)
    split_dir = tmp_path / "examples" / "Split-train"
    split_dir.mkdir(parents=True)
    records = list(data.records(0, 50))
    with tf.io.TFRecordWriter(str(split_dir / "data-00000.gz"), options="GZIP") as writer:
        for record in records:
            writer.write(record_to_example(record).SerializeToString())
    users, movies = cat.read_split_pairs(str(tmp_path / "examples"), "train")
    assert users.tolist() == data.ratings.user_id[:50].tolist()
    assert movies.tolist() == data.ratings.movie_id[:50].tolist()
    ratings = cat.read_split_ratings(str(tmp_path / "examples"), "train")[2]
    assert ratings.tolist() == data.ratings.rating[:50].tolist()
    assert cat.read_split_pairs(str(tmp_path / "examples"), "eval")[0].size == 0


@pytest.mark.parametrize("scale", [1, 10 ** 7, 2 ** 40])  # small ids, sparse ids, ids past the key width
def test_seen_pairs_and_counts_equal_the_sorting_reference(scale):
    from data.catalogue import _counts, _seen_pairs
    from data.rating_pairs import mean_rating_per_pair

    rng = np.random.default_rng(3)
    users, movies = rng.integers(1, 50, 3_000) * scale, rng.integers(1, 80, 3_000) * scale
    ratings = rng.integers(1, 11, 3_000).astype(np.float32) / 2
    ratings[::17] = np.nan  # a rating-less row counts as seen but adds no rating
    split = rng.integers(0, 3, 3_000)
    splits = {name: (users[split == i], movies[split == i], ratings[split == i])
              for i, name in enumerate(("eval", "train", "test"))}  # train not first
    expected = np.unique(np.stack([users, movies], axis=1), axis=0)
    pairs, means = _seen_pairs(splits)
    np.testing.assert_array_equal(pairs, expected)
    train = splits["train"]
    np.testing.assert_array_equal(means, mean_rating_per_pair(expected[:, 0], expected[:, 1], *train))
    assert np.isnan(means).any() and not np.isnan(means).all()
    assert _seen_pairs({name: s[:2] for name, s in splits.items()})[1] is None  # no ratings: none made up
    values, counts = np.unique(users, return_counts=True)
    assert _counts(users) == dict(zip(values.tolist(), counts.tolist()))
    empty = {"train": (users[:0], movies[:0], ratings[:0])}
    assert _seen_pairs(empty)[0].shape == (0, 2) and _counts(users[:0]) == {}
