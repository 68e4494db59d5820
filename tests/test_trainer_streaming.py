"""The Trainer's input: held in memory while it fits the budget, streamed from the transformed
TFRecords with tf.data when it does not, with the same ids, labels and training movies either way."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from data import features as f
from model import trainer  # by module: TFX reloads it in place when a pipeline runs first
from model.model import MODEL_INPUTS, HParams, RatingHistory, Vocab, build_model
from model.two_stage import training_movies

VOCAB = Vocab(users=40, movies=25, occupations=22, title_words=30, genres=6)


class _TransformOutput:
    """The one method of tft.TFTransformOutput that trainer.load_transformed reads."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec

    def transformed_feature_spec(self) -> dict:
        return self.spec


def _spec() -> dict:
    spec = {k: tf.io.FixedLenFeature([], tf.int64) for k in MODEL_INPUTS}
    spec[f.GENRES_XF] = tf.io.FixedLenFeature([VOCAB.genres], tf.float32)
    spec[f.TITLE_IDS_XF] = tf.io.FixedLenFeature([f.TITLE_LENGTH], tf.int64)
    spec[f.LABEL_XF] = tf.io.FixedLenFeature([], tf.float32)
    return spec


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[list[str], dict[str, np.ndarray]]:
    """Two GZIP TFRecord shards of 3,000 transformed examples whose rating follows the user and movie."""
    rng = np.random.default_rng(0)
    n = 3000
    users, movies = rng.integers(0, VOCAB.users, n), rng.integers(0, VOCAB.movies, n)
    movie_genres = (rng.random((VOCAB.movies, VOCAB.genres)) < 0.3).astype(np.float32)
    movie_titles = rng.integers(1, VOCAB.title_words, (VOCAB.movies, f.TITLE_LENGTH))
    columns = {f.USER_ID_XF: users, f.MOVIE_ID_XF: movies, f.GENDER_XF: users % 3, f.AGE_XF: users % 8,
               f.OCCUPATION_XF: users % 22, f.GENRES_XF: movie_genres[movies], f.TITLE_IDS_XF: movie_titles[movies],
               f.LABEL_XF: np.clip(np.round(3 + (users % 5 - 2) * 0.5 + (movies % 3 - 1)), 1, 5).astype(np.float32)}
    return _write(tmp_path_factory.mktemp("transformed"), columns, np.array_split(np.arange(n), 2)), columns


def _write(folder, columns: dict[str, np.ndarray], shards: list[np.ndarray]) -> list[str]:
    """GZIP TFRecord files of tf.Examples, one per entry of ``shards`` (the rows of ``columns`` it holds, in order)."""
    files = []
    for shard, rows in enumerate(shards):
        path = str(folder / f"train-{shard}.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for i in rows:
                feature = {}
                for key, value in columns.items():
                    values = np.atleast_1d(value[i])
                    feature[key] = (tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))
                                    if values.dtype.kind == "f" else
                                    tf.train.Feature(int64_list=tf.train.Int64List(value=values.tolist())))
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
        files.append(path)
    return files


def test_the_same_examples_in_another_order_load_and_train_the_same(written, tmp_path):
    """Transform's workers write the examples in an order that changes from run to run: the
    Trainer must see one order, or the same data and seed give another model."""
    files, columns = written
    output = _TransformOutput(_spec())
    shuffled = np.random.default_rng(1).permutation(len(columns[f.LABEL_XF]))
    other = _write(tmp_path, columns, np.array_split(shuffled, 3))
    splits = [trainer.load_transformed(paths, output) for paths in (files, other)]
    np.testing.assert_array_equal(splits[0][1], splits[1][1])
    for key in splits[0][0]:
        np.testing.assert_array_equal(splits[0][0][key], splits[1][0][key])
    hp = HParams(embedding_dim=8, lstm_units=4, history_dim=4, retrieval_dim=0, batch_size=256, epochs=1,
                 patience=1, seed=3)
    losses = []
    for split in splits:
        history = RatingHistory.from_ratings(split[0][f.USER_ID_XF], split[0][f.MOVIE_ID_XF], split[1], VOCAB)
        model = build_model(VOCAB, hp, global_mean=float(split[1].mean()), history=history)
        losses.append(trainer.fit(model, hp, split, None, verbose=0)["loss"][0])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_the_budget_decides_between_arrays_and_streaming(written):
    files, columns = written
    output = _TransformOutput(_spec())
    per_example = trainer.IN_MEMORY_COPIES * trainer.example_bytes(_spec())
    held = trainer.load_transformed(files, output, memory_budget=3000 * per_example)  # just fits
    assert isinstance(held, tuple)
    order = np.lexsort((columns[f.LABEL_XF], columns[f.MOVIE_ID_XF], columns[f.USER_ID_XF]))
    np.testing.assert_array_equal(held[1], columns[f.LABEL_XF][order])
    np.testing.assert_array_equal(held[0][f.TITLE_IDS_XF], columns[f.TITLE_IDS_XF][order])
    streamed = trainer.load_transformed(files, output, memory_budget=3000 * per_example - 1)
    assert isinstance(streamed, trainer.StreamedSplit) and "HParams.train_memory_gb" in streamed.reason
    assert set(streamed.ids) == {f.USER_ID_XF, f.MOVIE_ID_XF}
    ids, labels = trainer.split_ids(streamed)
    np.testing.assert_array_equal(labels, columns[f.LABEL_XF][order])
    np.testing.assert_array_equal(ids[f.MOVIE_ID_XF], columns[f.MOVIE_ID_XF][order])
    movies, rows = trainer.streamed_movies(streamed)
    expected_movies, expected_rows = training_movies(held[0])
    np.testing.assert_array_equal(movies, expected_movies)
    for key in expected_rows:
        np.testing.assert_array_equal(rows[key], expected_rows[key])


@pytest.mark.slow
def test_a_streamed_split_trains_like_the_arrays(written):
    files, columns = written
    output = _TransformOutput(_spec())
    held = trainer.load_transformed(files, output)
    streamed = trainer.load_transformed(files, output, memory_budget=1.0)
    assert isinstance(streamed, trainer.StreamedSplit)
    evaluation = ({k: v[:500] for k, v in held[0].items()}, held[1][:500])
    hp = HParams(embedding_dim=8, lstm_units=4, history_dim=4, retrieval_dim=0, batch_size=256, epochs=3,
                 patience=3, seed=3)
    results = []
    for split in (held, streamed):
        history = RatingHistory.from_ratings(columns[f.USER_ID_XF], columns[f.MOVIE_ID_XF], columns[f.LABEL_XF],
                                             VOCAB)
        model = build_model(VOCAB, hp, global_mean=float(columns[f.LABEL_XF].mean()), history=history)
        results.append(trainer.fit(model, hp, split, evaluation, verbose=0))
    for result in results:
        assert len(result["loss"]) == 3 and result["val_rmse"][-1] < result["val_rmse"][0]
        assert len(result["examples_per_second"]) == 3
    # the same data and model: the streamed fit ends near the in-memory one
    assert results[1]["val_rmse"][-1] == pytest.approx(results[0]["val_rmse"][-1], abs=0.1)


def test_a_streamed_split_gives_the_gibbs_towers_the_same_inputs_as_the_arrays(written):
    """gibbs_rows of a streamed split (one more pass for each user's features) reads what the
    in-memory arrays hold: the same ratings, and per index the same side features."""
    from model.gibbs_towers import side_inputs

    files, _ = written
    output = _TransformOutput(_spec())
    held = trainer.load_transformed(files, output)
    streamed = trainer.load_transformed(files, output, memory_budget=1.0)
    rows = {"held": trainer.gibbs_rows(held, training_movies(held[0])),
            "streamed": trainer.gibbs_rows(streamed, trainer.streamed_movies(streamed))}
    for key in ("users", "movies", "ratings"):
        np.testing.assert_array_equal(getattr(rows["held"], key), getattr(rows["streamed"], key))
    for tower, attribute, n in (("user", "user_rows", VOCAB.users), ("movie", "movie_rows", VOCAB.movies)):
        sides = [side_inputs(tower, *getattr(rows[name], attribute), n) for name in ("held", "streamed")]
        assert sides[0].categorical.keys() == sides[1].categorical.keys() and sides[0].sets.keys() == sides[1].sets.keys()
        for name, (codes, width) in sides[0].categorical.items():
            np.testing.assert_array_equal(codes, sides[1].categorical[name][0])
            assert width == sides[1].categorical[name][1]
        for name, members in sides[0].sets.items():
            assert (members != sides[1].sets[name]).nnz == 0
    assert set(sides[0].sets) >= {f.GENRES_XF}
