"""tf.Transform `preprocessing_fn`: raw MovieLens features -> model inputs.

Vocabularies are computed on the train split only (Transform's splits_config), so user and
movie ids (and genres) first seen in eval/test or at serving time fall into the OOV bucket and
get a defined answer instead of an error. The genre vocabulary too comes from the data, not
from a fixed list: ML-1M's 18 genres and the ml-latest format's 19 (with "IMAX", "Children")
each get a slot, and the multi-hot's width (vocabulary + OOV) is fixed per trained model.

Missing demographics (the ml-latest format has none) arrive as the feature table's defaults
and land in an "unknown" bucket: gender "" -> 2, age 0 -> len(AGE_CODES), occupation -1 -> its
own occupation vocabulary entry. Every transformation here also runs inside the served
SavedModel (the Transform graph is attached to it), so clients send raw values.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from data import features as f

# A title's release year, e.g. "Toy Story (1995)": stripped, the year is its own feature.
_YEAR_SUFFIX = r"\s*\(\d{4}\)\s*$"
# Anything that is not a letter, a digit or an apostrophe separates words.
_WORD_SEPARATORS = r"[^\pL\pN']+"


# The raw inputs as the curated schema declares them (scalars as [1]-shaped fixed-length
# features, genres as a variable-length list), for analysing preprocessing_fn outside TFX
# (tests, the accuracy benchmark). Derived from the feature table.
RAW_INPUT_SPEC = f.parse_spec()


def _dense(x: tf.Tensor | tf.SparseTensor, default) -> tf.Tensor:
    """A [batch, 1] or sparse scalar feature as a [batch] tensor."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(tf.sparse.reset_shape(x, [x.dense_shape[0], 1]), default_value=default)
    return tf.reshape(x, [-1])


def _vocab_index(values: tf.Tensor, vocab_name: str) -> tf.Tensor:
    """Vocabulary index (train split) with one OOV bucket for unseen values."""
    return tft.compute_and_apply_vocabulary(
        values, num_oov_buckets=f.OOV_BUCKETS, vocab_filename=vocab_name)


def title_tokens(titles: tf.Tensor) -> tf.RaggedTensor:
    """Lower-cased words of each title, year removed, punctuation as separator."""
    text = tf.strings.lower(titles, encoding="utf-8")
    text = tf.strings.regex_replace(text, _YEAR_SUFFIX, "")
    text = tf.strings.regex_replace(text, _WORD_SEPARATORS, " ")
    return tf.strings.split(tf.strings.strip(text))


def genres_multi_hot(genres: tf.SparseTensor) -> tf.Tensor:
    """A float multi-hot over the train split's genre vocabulary (f.GENRE_VOCAB) plus one OOV
    slot that every genre unseen in training shares; no genres -> all zeros.

    Its width is the vocabulary's size + 1: unknown while the Transform is traced for
    analysis, a constant in the final graph, so the transformed examples and the model's input
    have a fixed width per trained model (model.Vocab.genres reads it back).
    """
    ids = tft.compute_and_apply_vocabulary(genres, num_oov_buckets=f.OOV_BUCKETS, vocab_filename=f.GENRE_VOCAB)
    width = tf.cast(tft.experimental.get_vocabulary_size_by_name(f.GENRE_VOCAB) + f.OOV_BUCKETS, tf.int32)
    hot = tf.one_hot(ids.values, width, dtype=tf.float32)  # one row per (movie, genre)
    rows = tf.cast(ids.dense_shape[0], tf.int32)
    return tf.minimum(tf.math.unsorted_segment_sum(hot, ids.indices[:, 0], rows), 1.0)


def _raw(inputs: dict, key: str) -> tf.Tensor:
    """A raw scalar feature as a [batch] tensor, missing values as the table's default."""
    return _dense(inputs[key], f.raw_feature(key).default)


def preprocessing_fn(inputs: dict) -> dict:
    """TFT entry point (Transform's `preprocessing_fn`)."""
    user_id = _raw(inputs, f.USER_ID)
    movie_id = _raw(inputs, f.MOVIE_ID)
    gender = _raw(inputs, f.GENDER)
    age = _raw(inputs, f.AGE)
    occupation = _raw(inputs, f.OCCUPATION)
    title = _raw(inputs, f.TITLE)

    outputs = {
        f.USER_ID_XF: _vocab_index(tf.strings.as_string(user_id), f.USER_ID_VOCAB),
        f.MOVIE_ID_XF: _vocab_index(tf.strings.as_string(movie_id), f.MOVIE_ID_VOCAB),
        f.OCCUPATION_XF: _vocab_index(tf.strings.as_string(occupation), f.OCCUPATION_VOCAB),
        f.GENDER_XF: tf.where(gender == "M", tf.constant(0, tf.int64),
                              tf.where(gender == "F", tf.constant(1, tf.int64),
                                       tf.constant(2, tf.int64))),
        f.GENRES_XF: genres_multi_hot(inputs[f.GENRES]),
    }
    age_hits = tf.equal(tf.expand_dims(age, -1), tf.constant(f.AGE_CODES, tf.int64))
    outputs[f.AGE_XF] = tf.where(tf.reduce_any(age_hits, axis=1),
                                 tf.argmax(tf.cast(age_hits, tf.int64), axis=1),
                                 tf.constant(len(f.AGE_CODES), tf.int64))

    tokens = title_tokens(title)
    # +1 so that id 0 is padding; the OOV bucket becomes vocab_size + 1.
    word_ids = _vocab_index(tokens, f.TITLE_VOCAB) + 1
    outputs[f.TITLE_IDS_XF] = word_ids.to_tensor(default_value=0, shape=[None, f.TITLE_LENGTH])

    if f.LABEL_KEY in inputs:  # absent at serving time
        outputs[f.LABEL_XF] = tf.cast(_raw(inputs, f.LABEL_KEY), tf.float32)
    return outputs
