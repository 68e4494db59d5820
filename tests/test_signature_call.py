"""serving.signature_call: the flat call answers exactly as TensorFlow's structured call, and
signatures it cannot read (a TF1 SavedModel's) keep the structured call."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import serving_testlib as lib
from serving.servable import Servable
from serving.signature_call import FlatCall, signature_call

HALF_PLUS_TWO = lib.TFSERVING_TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"


@pytest.fixture(scope="module")
def rater(tmp_path_factory) -> Path:
    return lib.save_rater(tmp_path_factory.mktemp("rater") / "export", 3.0)


def test_flat_call_matches_the_structured_call_for_every_signature(rater):
    loaded = tf.saved_model.load(str(rater))
    ids = tf.constant([1, 7, 12], tf.int64)
    example = tf.train.Example(features=tf.train.Features(feature={
        "user_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[4])),
        "movie_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[9]))})).SerializeToString()
    feeds = {"serving_default": {"user_id": ids, "movie_id": ids + 1},
             "serving_tf_example": {"examples": tf.constant([example])},
             "user_embedding": {"user_id": ids}, "movie_embedding": {"movie_id": ids},
             "first_row_scaled": {"user_id": ids}, "batch_seen": {"user_id": ids}}
    for name, inputs in feeds.items():
        function = loaded.signatures[name]
        flat = signature_call(function)
        assert isinstance(flat, FlatCall), name
        expected, got = function(**inputs), flat(**inputs)
        assert sorted(got) == sorted(expected), name
        for alias in expected:
            np.testing.assert_array_equal(got[alias].numpy(), expected[alias].numpy())


def test_servable_answers_through_the_flat_call(rater):
    servable = Servable.load("rater", 1, rater)
    try:
        signature = servable.signature("serving_default")
        assert isinstance(signature.function, FlatCall)
        users, movies = np.array([3, 4], np.int64), np.array([5, 6], np.int64)
        out = servable.run(signature, {"user_id": users, "movie_id": movies})
        np.testing.assert_allclose(out["rating"], lib.expected_rating(users, movies, 3.0))
    finally:
        servable.unload()


def test_a_tf1_saved_model_keeps_the_structured_call():
    if not HALF_PLUS_TWO.is_dir():
        pytest.skip(f"TF-Serving test models not available: {HALF_PLUS_TWO} does not exist")
    loaded = tf.saved_model.load(str(HALF_PLUS_TWO))
    function = loaded.signatures["serving_default"]
    assert signature_call(function) is function
    servable = Servable.load("half_plus_two", 123, HALF_PLUS_TWO)
    try:
        out = servable.run(servable.signature("serving_default"), {"x": np.array([[1.0], [4.0]], np.float32)})
        np.testing.assert_allclose(out["y"], [[2.5], [4.0]])
    finally:
        servable.unload()
