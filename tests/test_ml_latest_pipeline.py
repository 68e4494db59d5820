"""The whole path on the real ml-latest-small: pipeline through Pusher, index, service answers.

Slow tier (a real-data pipeline run: about two minutes on 2 cores with one epoch and the
softmax retrieval fit; the closed form over its 8,000-odd training movies alone takes
minutes more). What it checks is the wiring of the format, not accuracy: half-star labels,
the data's own genre vocabulary, users without demographics, the 0.5..5 scale the model and
the index clip to.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

with warnings.catch_warnings():  # starlette's notice that it prefers httpx2 for TestClient
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from data import features as f
from data.catalogue import model_catalogue_dir, read_catalogue
from data.movielens_files import find_data_dir, load_movielens
from pipeline import configs
from pipeline.run import run_pipeline
from settings.paths import ArtifactPaths

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HPARAMS = {"epochs": 1, "retrieval_fit": "softmax"}


@pytest.fixture(scope="module")
def pushed(shared_data, tmp_path_factory):
    """(pipeline result, pushed model folder, artifacts root) of one run on ml-latest-small."""
    data = shared_data / "ml-latest-small"
    if not (data / "ratings.csv").is_file():
        pytest.skip(f"ml-latest-small not found at {data}")
    root = tmp_path_factory.mktemp("ml-latest") / "artifacts"
    config = configs.PipelineConfig(data_dir=str(find_data_dir(data)), paths=ArtifactPaths(root),
                                    hparams=dict(HPARAMS), rmse_threshold=1.5)
    result = run_pipeline(config)
    base = root / "serving" / "movielens"
    versions = sorted(os.listdir(base))
    assert len(versions) == 1, "the model was not blessed and pushed"
    return result, base / versions[0], root


def test_the_transform_learns_the_data_s_genres(pushed):
    result, *_ = pushed
    output = tft.TFTransformOutput(result.uri("Transform", "transform_graph"))
    genres = {g.decode() for g in output.vocabulary_by_name(f.GENRE_VOCAB)}
    assert len(genres) == 19 and {"IMAX", "Children"} <= genres and "(no genres listed)" not in genres
    spec = output.transformed_feature_spec()[f.GENRES_XF]
    assert spec.shape == [len(genres) + f.OOV_BUCKETS]


def test_the_model_serves_the_half_star_scale(pushed, shared_data):
    _, model_dir, _ = pushed
    catalogue = read_catalogue(model_catalogue_dir(model_dir))
    assert catalogue.rating_scale == f.HALF_STAR_SCALE
    assert catalogue.users[1] == load_movielens(shared_data / "ml-latest-small").users[1]
    model = tf.saved_model.load(str(model_dir))
    ids = lambda *v: tf.constant(v, tf.int64)  # noqa: E731
    rating = model.signatures["serving_default"](user_id=ids(1, 414, 99_999), movie_id=ids(1, 1291, 1))["rating"]
    assert np.all((rating.numpy() >= 0.5) & (rating.numpy() <= 5.0))
    unseen = model.signatures["rate_with_features"](
        user_id=ids(99_999), movie_id=ids(99_999), gender=tf.constant([""]), age=ids(0), occupation=ids(-1),
        zip=tf.constant([""]), title=tf.constant(["A New Film (2031)"]), genres=tf.constant(["IMAX|Space Opera"]))
    assert 0.5 <= float(unseen["rating"][0]) <= 5.0


def test_export_index_and_the_service_answer(pushed):
    from index import export, service

    _, _, root = pushed
    assert export.main(["--artifacts", str(root), "--no-progress"]) == 0
    with TestClient(service.create_app(Path(root) / "index", poll_interval_s=0)) as client:
        version = client.get("/version").json()
        recs = client.get("/users/1/recommendations", params={"k": 5}).json()
        similar = client.get("/movies/1/similar", params={"k": 5}).json()
        profile = client.get("/users/3", params={"top": 20}).json()  # user 3 rates in half stars
    assert version["data_source"] == "ml-latest-small" and version["rating_scale"] == [0.5, 5.0]
    assert len(recs["ids"]) == 5 and all(0.5 <= r <= 5.0 for r in recs["predicted_ratings"])
    assert recs["query"]["gender"] == "" and recs["query"]["age_group"] == "unknown"
    assert len(similar["results"]) == 5
    assert {r["rating"] for r in profile["top_rated"]} & {0.5, 1.5, 2.5, 3.5, 4.5}  # half stars reach the page
