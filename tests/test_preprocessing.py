"""preprocessing_fn on a handful of rows with known outputs (tf.Transform, in-process Beam)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from data import features as f
from model import preprocessing

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


def _analyse(rows: list[dict], temp) -> tuple[list[dict], object]:
    """(transformed rows, transform_fn output dir) after analysing ``rows``."""
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    with tft_beam.Context(temp_dir=str(temp), force_tf_compat_v1=False):
        (transformed_rows, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing.preprocessing_fn)
        out = temp / "transform_fn"
        _ = transform_fn | tft_beam.WriteTransformFn(str(out))
    return transformed_rows, out


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """(transformed rows, transform_fn output dir) after analysing ROWS."""
    return _analyse(ROWS, tmp_path_factory.mktemp("tft"))


#: ml-latest-like rows: its own genre names (IMAX, Children), a movie without genres, and users
#: without demographics (the feature table's defaults).
ML_LATEST_ROWS = [
    _row(1, 10, "", 0, -1, "", "Toy Story (1995)", ["Adventure", "Children", "IMAX"], 4.5),
    _row(2, 20, "", 0, -1, "", "Hyena Road", [], 0.5),
    _row(2, 10, "", 0, -1, "", "Toy Story (1995)", ["Adventure", "Children", "IMAX"], 3.5),
    _row(3, 30, "M", 25, 4, "48067", "Heat (1995)", ["Action", "Crime"], 5.0),
]


@pytest.fixture(scope="module")
def ml_latest(tmp_path_factory):
    return _analyse(ML_LATEST_ROWS, tmp_path_factory.mktemp("tft-ml-latest"))


def _vocabulary(out, name: str) -> list[str]:
    import tensorflow_transform as tft

    return [value.decode() for value in tft.TFTransformOutput(str(out)).vocabulary_by_name(name)]


def _genre_slots(out) -> dict[str, int]:
    """Genre name -> its multi-hot slot: the vocabulary file's line order."""
    return {name: slot for slot, name in enumerate(_vocabulary(out, f.GENRE_VOCAB))}


def test_genres_are_a_multi_hot_over_the_data_s_own_vocabulary(transformed):
    rows, out = transformed
    slots = _genre_slots(out)
    assert set(slots) == {"Comedy", "Drama", "Western", "Action"}  # only what the data holds
    hot = [np.flatnonzero(r[f.GENRES_XF]).tolist() for r in rows]
    assert hot == [sorted([slots["Comedy"], slots["Drama"]]), [], sorted([slots["Action"], slots["Western"]])]
    assert all(len(r[f.GENRES_XF]) == len(slots) + f.OOV_BUCKETS for r in rows)  # + the OOV slot


def test_a_genre_ml1m_lacks_gets_its_own_slot(ml_latest):
    rows, out = ml_latest
    slots = _genre_slots(out)
    assert set(slots) == {"Adventure", "Children", "IMAX", "Action", "Crime"}
    width = len(slots) + f.OOV_BUCKETS
    assert all(r[f.GENRES_XF].shape == (width,) for r in rows)
    assert np.flatnonzero(rows[0][f.GENRES_XF]).tolist() == sorted(slots[g] for g in ("Adventure", "Children", "IMAX"))
    assert not rows[1][f.GENRES_XF].any()  # "(no genres listed)": no slot at all, not the OOV one
    assert [r[f.LABEL_XF] for r in rows] == [4.5, 0.5, 3.5, 5.0]  # half stars kept


def test_missing_demographics_land_in_the_unknown_buckets(ml_latest):
    rows, out = ml_latest
    occupations = _vocabulary(out, f.OCCUPATION_VOCAB)
    unknown, known = rows[0], rows[3]
    assert unknown[f.GENDER_XF] == 2 and known[f.GENDER_XF] == 0
    assert unknown[f.AGE_XF] == len(f.AGE_CODES) and known[f.AGE_XF] == f.AGE_CODES.index(25)
    assert occupations[unknown[f.OCCUPATION_XF]] == str(f.raw_feature(f.OCCUPATION).default)
    assert occupations[known[f.OCCUPATION_XF]] == "4"


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
    genres = output.vocabulary_size_by_name(f.GENRE_VOCAB)
    assert np.flatnonzero(result[f.GENRES_XF][0]).tolist() == [genres]  # unseen genre: the OOV slot
