"""preprocessing_fn on a handful of rows with known outputs (tf.Transform, in-process Beam)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components import features as f
from components import preprocessing

RAW_SPEC = preprocessing.RAW_INPUT_SPEC


def _row(user, movie, gender, age, occupation, zip_code, title, genres, rating):
    return {f.USER_ID: [user], f.MOVIE_ID: [movie], f.GENDER: [gender.encode()], f.AGE: [age],
            f.OCCUPATION: [occupation], f.ZIP: [zip_code.encode()], f.TITLE: [title.encode("utf-8")],
            f.GENRES: [g.encode() for g in genres], f.RATING: [rating], f.TIMESTAMP: [0], f.YEAR: [0]}


ROWS = [
    _row(1, 10, "M", 25, 4, "48067", "American President, The (1995)", ["Comedy", "Drama"], 4.0),
    _row(2, 20, "F", 56, 0, "98107-2117", "Ça ira, the American", [], 2.0),
    _row(1, 20, "M", 25, 4, "48067",
         "One Two Three Four Five Six Seven Eight Nine Ten Eleven Twelve Thirteen Fourteen Fifteen Sixteen Seventeen",
         ["Western", "Action"], 5.0),
]


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """(transformed rows, transform_fn output dir) after analysing ROWS."""
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    temp = tmp_path_factory.mktemp("tft")
    with tft_beam.Context(temp_dir=str(temp), force_tf_compat_v1=False):
        (rows, _), transform_fn = (ROWS, metadata) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing.preprocessing_fn)
        out = temp / "transform_fn"
        _ = transform_fn | tft_beam.WriteTransformFn(str(out))
    return rows, out


def test_genres_are_an_18_way_multi_hot(transformed):
    rows, _ = transformed
    hot = [np.flatnonzero(r[f.GENRES_XF]).tolist() for r in rows]
    names = f.GENRE_NAMES
    assert hot == [[names.index("Comedy"), names.index("Drama")], [],
                   [names.index("Action"), names.index("Western")]]
    assert all(len(r[f.GENRES_XF]) == 18 for r in rows)


def test_title_ids_strip_year_lowercase_and_pad(transformed):
    rows, _ = transformed
    # Vocabulary by frequency: "the" and "american" occur twice; 0 is padding, ids start at 1.
    first, second, long = (r[f.TITLE_IDS_XF].tolist() for r in rows)
    assert len(first) == len(second) == len(long) == f.TITLE_LENGTH
    assert first[3:] == [0] * 12 and 0 not in first[:3]    # "american president the"
    assert second[4:] == [0] * 11 and 0 not in second[:4]  # "ça ira the american"
    assert first[2] == second[2]            # "the" gets one id in both titles
    assert first[0] == second[3]            # "american" too
    assert 0 not in long  # 17 words truncated to 15
    assert len(set(long)) == 15


def test_small_ints_and_vocab_indices(transformed):
    rows, _ = transformed
    assert [r[f.GENDER_XF] for r in rows] == [0, 1, 0]
    assert [r[f.AGE_XF] for r in rows] == [f.AGE_CODES.index(25), f.AGE_CODES.index(56), f.AGE_CODES.index(25)]
    assert rows[0][f.USER_ID_XF] == rows[2][f.USER_ID_XF] != rows[1][f.USER_ID_XF]
    assert rows[1][f.MOVIE_ID_XF] == rows[2][f.MOVIE_ID_XF] != rows[0][f.MOVIE_ID_XF]
    assert [r[f.LABEL_XF] for r in rows] == [4.0, 2.0, 5.0]


def test_unseen_values_go_to_the_oov_bucket(transformed):
    import tensorflow_transform as tft

    _, out = transformed
    output = tft.TFTransformOutput(str(out))
    raw = {f.USER_ID: tf.constant([[999]], tf.int64), f.MOVIE_ID: tf.constant([[10]], tf.int64),
           f.GENDER: tf.constant([["X"]]), f.AGE: tf.constant([[7]], tf.int64),
           f.OCCUPATION: tf.constant([[20]], tf.int64), f.ZIP: tf.constant([["00000"]]),
           f.TITLE: tf.constant([["zzz American"]]), f.RATING: tf.constant([[3.0]]),
           f.GENRES: tf.sparse.from_dense(tf.constant([["Horror"]]))}
    result = {k: v.numpy() for k, v in output.transform_raw_features(raw).items()}
    users = output.vocabulary_size_by_name(f.USER_ID_VOCAB)
    words = output.vocabulary_size_by_name(f.TITLE_VOCAB)
    assert result[f.USER_ID_XF][0] == users            # first OOV bucket right after the vocabulary
    assert result[f.MOVIE_ID_XF][0] < output.vocabulary_size_by_name(f.MOVIE_ID_VOCAB)
    assert result[f.GENDER_XF][0] == 2 and result[f.AGE_XF][0] == len(f.AGE_CODES)
    assert result[f.OCCUPATION_XF][0] == output.vocabulary_size_by_name(f.OCCUPATION_VOCAB)
    assert result[f.TITLE_IDS_XF][0][0] == words + 1  # unseen word: OOV id (0 is padding)
    assert 1 <= result[f.TITLE_IDS_XF][0][1] <= words
    assert np.flatnonzero(result[f.GENRES_XF][0]).tolist() == [f.GENRE_NAMES.index("Horror")]
