"""The whole local pipeline on tiny generated data: shapes, cache, blessing and pushing.

One run ends in a blessed, pushed model; a second identical run is served from cache; a
third with a deliberately worse training config is neither blessed nor pushed.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from data import features as f, synthetic_data
from data.movielens_files import ML_1M_GENRES
from pipeline import configs
from pipeline.run import run_pipeline
from settings.hparams import HParams
from settings.paths import ArtifactPaths

# The pushed model is an ensemble of two trained apart (HParams.ensemble_size, ensemble_apart:
# two models fitted one after another by the Trainer, then assembled): its towers' vectors are
# the members' 16 side by side, its biases their means, and `make check-serving-runtime` serves
# it under TF-Serving's TF.
GOOD = {"epochs": 8, "batch_size": 256, "embedding_dim": 16, "ensemble_size": 2, "ensemble_apart": True,
        "lstm_units": 32}
# ... with its Gibbs towers (HParams.gibbs_samples, on by default), which the worse model has not:
# they alone would rate nearly as well as the good model does.
WORSE = {"epochs": 1, "batch_size": 4096, "learning_rate": 1e-5, "embedding_dim": 32, "lstm_units": 32,
         "gibbs_samples": 0}
#: The pushed towers' size: the two members' 16 and the Gibbs towers' samples (the defaults).
SERVED_DIM = 2 * 16 + HParams().gibbs_samples * HParams().gibbs_rank
ROOT = Path(__file__).resolve().parents[1]
#: Where the blessed model stays after the tier (gitignored): `make check-serving-runtime`,
#: which .ci/run runs after `make test`, loads it under the TF-Serving image's TensorFlow.
LEFT_MODEL = ROOT / "artifacts" / "e2e" / "serving" / "movielens"
pytestmark = pytest.mark.e2e


def _config(root: Path, data: Path, hparams: dict) -> configs.PipelineConfig:
    return configs.PipelineConfig(data_dir=str(data), paths=ArtifactPaths(root / "artifacts"),
                                  hparams=dict(hparams), rmse_threshold=1.1)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = root / "data"
    synthetic_data.generate(data, **synthetic_data.size_kwargs("tiny"), seed=7)
    first = run_pipeline(_config(root, data, GOOD))
    second = run_pipeline(_config(root, data, GOOD))
    versions_after_good = sorted(os.listdir(root / "artifacts" / "serving" / "movielens"))
    third = run_pipeline(_config(root, data, WORSE))
    _leave_pushed_model(root / "artifacts" / "serving" / "movielens")
    return root, first, second, third, versions_after_good


def _leave_pushed_model(base: Path) -> None:
    """A copy of the pushed base path at LEFT_MODEL (a few MB; replaces the previous run's)."""
    shutil.rmtree(LEFT_MODEL, ignore_errors=True)
    LEFT_MODEL.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(base, LEFT_MODEL)


def _blessed(result) -> bool:
    return os.path.exists(os.path.join(result.uri("Evaluator", "blessing"), "BLESSED"))


def test_transformed_examples_have_the_model_input_shapes(runs):
    _, first, *_ = runs
    uri = first.uri("Transform", "transformed_examples")
    files = glob.glob(os.path.join(uri, "Split-train", "*.gz"))
    assert files and glob.glob(os.path.join(uri, "Split-eval", "*.gz")) and glob.glob(os.path.join(uri, "Split-test", "*.gz"))
    record = next(iter(tf.data.TFRecordDataset(files, compression_type="GZIP")))
    example = tf.train.Example.FromString(record.numpy()).features.feature
    transform = tft.TFTransformOutput(first.uri("Transform", "transform_graph"))
    genre_vocab = transform.vocabulary_size_by_name(f.GENRE_VOCAB)
    assert 1 <= genre_vocab <= len(ML_1M_GENRES)  # the genres the generated train split holds
    assert len(example[f.GENRES_XF].float_list.value) == genre_vocab + f.OOV_BUCKETS
    assert len(example[f.TITLE_IDS_XF].int64_list.value) == f.TITLE_LENGTH
    for key in (f.USER_ID_XF, f.MOVIE_ID_XF, f.GENDER_XF, f.AGE_XF, f.OCCUPATION_XF):
        assert len(example[key].int64_list.value) == 1
    assert 1.0 <= example[f.LABEL_XF].float_list.value[0] <= 5.0


def test_second_identical_run_is_served_from_cache(runs):
    _, first, second, *_ = runs
    assert not any(cached for _, _, cached in first.components)
    cached = {name: was_cached for name, _, was_cached in second.components}
    for name in ("MovieLensExampleGen", "StatisticsGen", "Transform", "Trainer"):
        assert cached[name], f"{name} was not cached on the second run"


def test_good_model_is_blessed_and_pushed_with_report(runs):
    root, first, second, _, versions = runs
    assert _blessed(first)
    assert len(versions) == 1, f"an identical re-run must not push a duplicate version: {versions}"
    version_dir = root / "artifacts" / "serving" / "movielens" / versions[0]
    assert (version_dir / "saved_model.pb").exists()
    assert (version_dir / "assets.extra" / "evaluation" / "report.md").read_text().count("| gender=") == 2
    assert (version_dir / "assets.extra" / "evaluation" / "training_curve.png").exists()


def test_worse_model_is_neither_blessed_nor_pushed(runs):
    root, _, _, third, versions = runs
    assert not _blessed(third)
    assert sorted(os.listdir(root / "artifacts" / "serving" / "movielens")) == versions


def test_every_signature_answers_raw_values_including_unseen_ids(runs):
    root, *_, versions = runs
    model = tf.saved_model.load(str(root / "artifacts" / "serving" / "movielens" / versions[0]))
    ids = lambda *v: tf.constant(v, tf.int64)  # noqa: E731
    ratings = model.signatures["serving_default"](user_id=ids(1, 2, 10_000), movie_id=ids(1, 3, 10_000))["rating"].numpy()
    assert ratings.shape == (3,) and np.all((ratings >= 1) & (ratings <= 5))
    unseen = model.signatures["rate_with_features"](
        user_id=ids(99_999), movie_id=ids(99_999), gender=tf.constant(["F"]), age=ids(35), occupation=ids(7),
        zip=tf.constant(["02139"]), title=tf.constant(["A Brand New Film (2031)"]), genres=tf.constant(["Comedy|Drama"]))
    assert 1 <= float(unseen["rating"][0]) <= 5
    user = model.signatures["user_embedding"](user_id=ids(1, 99_999))["embedding"].numpy()
    movie = model.signatures["movie_embedding"](movie_id=ids(1, 99_999))["embedding"].numpy()
    assert user.shape == (2, SERVED_DIM) and movie.shape == (2, SERVED_DIM)
    assert np.all(np.isfinite(user)) and np.all(np.isfinite(movie))
    by_features = model.signatures["movie_embedding_with_features"](
        movie_id=ids(99_999), title=tf.constant(["Unknown"]), genres=tf.constant([""]))["embedding"]
    assert by_features.shape == (1, SERVED_DIM)
    user_features = model.signatures["user_embedding_with_features"](
        user_id=ids(99_999), gender=tf.constant(["M"]), age=ids(18), occupation=ids(4), zip=tf.constant(["10001"]))
    assert user_features["embedding"].shape == (1, SERVED_DIM)
    example = tf.train.Example()
    example.features.feature[f.USER_ID].int64_list.value.append(1)
    example.features.feature[f.MOVIE_ID].int64_list.value.append(1)
    for key in (f.GENDER, f.ZIP, f.TITLE):
        example.features.feature[key].bytes_list.value.append(b"M" if key == f.GENDER else b"x")
    for key in (f.AGE, f.OCCUPATION, f.YEAR, f.TIMESTAMP):
        example.features.feature[key].int64_list.value.append(25 if key == f.AGE else 0)
    example.features.feature[f.GENRES].bytes_list.value.append(b"Drama")
    out = model.signatures["serving_tf_example"](examples=tf.constant([example.SerializeToString()]))["outputs"]
    assert 1 <= float(out[0]) <= 5


def test_retrieval_and_bias_signatures_score_as_documented(runs):
    """query . candidate is the retrieval score; <u, m> + biases, clipped, is served_default's rating."""
    root, *_, versions = runs
    model = tf.saved_model.load(str(root / "artifacts" / "serving" / "movielens" / versions[0]))
    users, movies = tf.constant([1, 2, 3, 99_999], tf.int64), tf.constant([1, 3, 5, 99_999], tf.int64)
    query = model.signatures["user_query_embedding"](user_id=users)["embedding"].numpy()
    candidate = model.signatures["movie_candidate_embedding"](movie_id=movies)["embedding"].numpy()
    rank = GOOD.get("retrieval_dim", 128)
    assert query.shape == (4, rank + 1) and candidate.shape == (4, rank + 1)
    np.testing.assert_allclose(query[:, -1], 1.0)  # the slot that carries the candidate's bias
    one_movie = model.signatures["movie_query_embedding"](movie_id=movies)["embedding"].numpy()
    assert one_movie.shape == (4, rank + 1) and np.isfinite(one_movie).all()
    assert np.isfinite(query).all() and np.isfinite(candidate).all()
    assert not np.allclose(query[0], query[1])  # queries read each user's own history
    user = model.signatures["user_embedding"](user_id=users)
    movie = model.signatures["movie_embedding"](movie_id=movies)
    decomposed = np.clip(np.sum(user["embedding"].numpy() * movie["embedding"].numpy(), 1)
                         + user["bias"].numpy() + movie["bias"].numpy(), 1, 5)
    served = model.signatures["serving_default"](user_id=users, movie_id=movies)["rating"].numpy()
    np.testing.assert_allclose(decomposed, served, rtol=1e-4, atol=1e-4)


def test_known_ids_are_answered_from_precomputed_outputs_equal_to_the_towers(runs):
    """An id-only batch of known ids gathers the outputs precomputed at export; the same ids
    next to an unseen one take the tower path for the whole batch: both must agree."""
    root, *_, versions = runs
    model = tf.saved_model.load(str(root / "artifacts" / "serving" / "movielens" / versions[0]))
    ids = lambda *v: tf.constant(v, tf.int64)  # noqa: E731
    users, movies, unseen = (1, 2, 3, 4), (1, 3, 5, 7), (99_999,)
    checks = [("serving_default", {"user_id": users, "movie_id": movies}),
              ("user_embedding", {"user_id": users}), ("movie_embedding", {"movie_id": movies}),
              ("user_query_embedding", {"user_id": users}), ("movie_candidate_embedding", {"movie_id": movies}),
              ("movie_query_embedding", {"movie_id": movies})]
    for name, inputs in checks:
        known = model.signatures[name](**{k: ids(*v) for k, v in inputs.items()})
        towers = model.signatures[name](**{k: ids(*v, *unseen) for k, v in inputs.items()})
        for output, value in known.items():
            np.testing.assert_allclose(value.numpy(), towers[output].numpy()[:len(users)], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{name}/{output}")


def test_every_signature_answers_an_empty_batch_with_zero_rows(runs):
    root, *_, versions = runs
    model = tf.saved_model.load(str(root / "artifacts" / "serving" / "movielens" / versions[0]))
    assert len(model.signatures) == 12
    for name, function in model.signatures.items():
        specs = function.structured_input_signature[1]
        outputs = function(**{key: tf.zeros([0], spec.dtype) for key, spec in specs.items()})
        assert outputs and all(value.shape[0] == 0 for value in outputs.values()), name


def test_tf_serving_session_bundle_load_restores_every_variable(runs):
    """TF-Serving loads a SavedModel as a graph-mode session bundle and restores the variables
    of the saved object graph; the Keras 3 model's variables must be among them (else: "Could
    not find variable ..." at the first request, which fails TF-Serving's warm-up)."""
    root, *_, versions = runs
    path = str(root / "artifacts" / "serving" / "movielens" / versions[0])
    users, movies = [1, 2, 99_999], [1, 3, 99_999]
    eager = tf.saved_model.load(path).signatures["serving_default"](
        user_id=tf.constant(users, tf.int64), movie_id=tf.constant(movies, tf.int64))["rating"].numpy()
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        signature = meta_graph.signature_def["serving_default"]
        rating = session.run(signature.outputs["rating"].name, {signature.inputs["user_id"].name: users,
                                                                signature.inputs["movie_id"].name: movies})
    np.testing.assert_allclose(rating, eager, rtol=1e-5)


def test_pushed_model_carries_the_rerank_weight_chosen_on_eval(runs):
    import json

    from model.two_stage import RERANK_WEIGHTS

    root, *_, versions = runs
    path = root / "artifacts" / "serving" / "movielens" / versions[0] / "assets.extra" / "two_stage.json"
    chosen = json.loads(path.read_text())
    scores = chosen["eval_ndcg_at_10_by_weight"]
    assert chosen["rerank_weight"] in RERANK_WEIGHTS and chosen["candidates"] == 200
    assert sorted(map(float, scores)) == sorted(RERANK_WEIGHTS) and chosen["eval_users"] > 0
    assert scores[str(float(chosen["rerank_weight"]))] == max(scores.values())
    assert chosen["retrieval"]["method"].startswith("closed_form")


@pytest.mark.slow  # a pipeline started as a subprocess (its own TF import): CI's slow tier
def test_malformed_input_stops_the_run_with_file_line_and_field(tmp_path):
    data = tmp_path / "bad"
    synthetic_data.generate(data, **synthetic_data.size_kwargs("tiny"), seed=1)
    lines = (data / "ratings.dat").read_text(encoding="latin-1").splitlines()
    user, movie, _, stamp = lines[2].split("::")
    lines[2] = f"{user}::{movie}::9::{stamp}"
    (data / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    proc = subprocess.run([sys.executable, "-m", "commands.run", "--data", str(data), "--stop-after", "example_gen",
                           "--artifacts", str(tmp_path / "artifacts")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{data / 'ratings.dat'}:3: field 'rating'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_explain_prints_rating_and_five_similar_users_and_movies(runs):
    import io

    from commands.explain import explain

    root, *_, versions = runs
    out = io.StringIO()
    # No data folder: the users and movies come from the catalogue the pushed model carries.
    rating = explain(root / "artifacts" / "serving" / "movielens" / versions[0], None, 1, 1, out=out)
    text = out.getvalue()
    assert 1.0 <= rating <= 5.0 and f"predicted rating {rating:.2f}" in text
    users = text.split("Users most similar")[1].split("Movies most similar")[0]
    movies = text.split("Movies most similar")[1]
    assert users.count("  user ") == 5 and "user 1 " not in users
    assert len([line for line in movies.splitlines() if line.startswith("   ")]) == 5


def test_pushed_model_carries_tf_serving_warmup_requests(runs):
    from tensorflow_serving.apis import prediction_log_pb2

    root, *_, versions = runs
    path = root / "artifacts" / "serving" / "movielens" / versions[0] / "assets.extra" / "tf_serving_warmup_requests"
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    signatures = [log.predict_log.request.model_spec.signature_name for log in logs]
    assert signatures.count("serving_default") == 2 and "user_embedding" in signatures
    assert "user_query_embedding" in signatures and "movie_candidate_embedding" in signatures
    sizes = sorted(len(tf.make_ndarray(log.predict_log.request.inputs["user_id"])) for log in logs
                   if log.predict_log.request.model_spec.signature_name == "serving_default")
    assert sizes == [1, 100]


def test_regress_signature_is_served_through_tf_serving_regress_api(runs):
    """The pushed model through the compatible server's Regress (method name regress)."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc, regression_pb2

    from serving.options import ServerOptions
    from serving.server import ModelServer

    root, *_ = runs
    import portpicker

    port = portpicker.pick_unused_port()
    server = ModelServer(ServerOptions(port=port, rest_api_port=0, model_name="movielens",
                                       model_base_path=str(root / "artifacts" / "serving" / "movielens")))
    server.start()
    try:
        request = regression_pb2.RegressionRequest()
        request.model_spec.name = "movielens"
        request.model_spec.signature_name = "regress"
        example = request.input.example_list.examples.add()
        for key, value in ((f.USER_ID, 1), (f.MOVIE_ID, 1), (f.AGE, 25), (f.OCCUPATION, 2), (f.YEAR, 0), (f.TIMESTAMP, 0)):
            example.features.feature[key].int64_list.value.append(value)
        for key, value in ((f.GENDER, b"F"), (f.ZIP, b"12345"), (f.TITLE, b"x"), (f.GENRES, b"Drama")):
            example.features.feature[key].bytes_list.value.append(value)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            import time
            deadline = time.monotonic() + 60
            while True:
                try:
                    response = stub.Regress(request, timeout=10)
                    break
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        assert len(response.result.regressions) == 1
        assert 1.0 <= response.result.regressions[0].value <= 5.0
    finally:
        server.stop(grace=1)


def test_pushed_model_carries_the_catalogue_of_the_data_it_was_trained_on(runs):
    """assets.extra/catalogue: the users/movies tables, the rated pairs of every split and the
    training-rating counts of exactly what landed in ExampleGen's Split-train."""
    from data.catalogue import model_catalogue_dir, read_catalogue, read_split_pairs, read_split_ratings
    from data.movielens_files import load_movielens

    root, first, *_, versions = runs
    pushed = read_catalogue(model_catalogue_dir(root / "artifacts" / "serving" / "movielens" / versions[0]))
    data = load_movielens(root / "data")
    assert pushed.users == data.users and pushed.movies == data.movies
    assert pushed.source == data.source
    examples = first.uri("MovieLensExampleGen", "examples")
    train_users, train_movies = read_split_pairs(examples, "train")
    assert sum(pushed.user_train_ratings.values()) == len(train_users) == pushed.split_examples["train"]
    for user in (1, 2, 3):
        assert pushed.user_train_ratings[user] == int(np.sum(train_users == user))
    counts = np.bincount(train_movies)
    assert pushed.most_rated_movie() == int(np.argmax(counts))
    assert sum(pushed.split_examples.values()) == len(data.ratings)
    assert set(zip(pushed.seen_user_ids.tolist(), pushed.seen_movie_ids.tolist())) == set(
        zip(data.ratings.user_id.tolist(), data.ratings.movie_id.tolist()))
    # each seen pair's Split-train rating (the browse page's top-rated movies), NaN outside it
    users, movies, ratings = read_split_ratings(examples, "train")
    train = {}
    for u, m, r in zip(users.tolist(), movies.tolist(), ratings.tolist()):
        train.setdefault((u, m), []).append(r)
    kept = {(u, m): r for u, m, r in zip(pushed.seen_user_ids.tolist(), pushed.seen_movie_ids.tolist(),
                                         pushed.seen_train_ratings.tolist()) if not np.isnan(r)}
    assert kept == pytest.approx({pair: float(np.mean(r)) for pair, r in train.items()})
    # the very artifact ExampleGen wrote, in lineage
    artifact = read_catalogue(first.uri("MovieLensExampleGen", "catalogue"))
    assert artifact.users == pushed.users and artifact.movie_train_ratings == pushed.movie_train_ratings


def test_trainer_reads_the_catalogue_through_ml_metadata_lineage(runs):
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    root, first, *_ = runs
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(ArtifactPaths(root / "artifacts").metadata_path)
    store = mlmd.MetadataStore(config)
    catalogue_uri = first.uri("MovieLensExampleGen", "catalogue")
    [artifact] = [a for a in store.get_artifacts_by_uri(catalogue_uri)]
    assert store.get_artifact_types_by_id([artifact.type_id])[0].name == "movielens.Catalogue"
    events = store.get_events_by_artifact_ids([artifact.id])
    inputs = [e for e in events if e.type == metadata_store_pb2.Event.INPUT]
    trainer_contexts = {c.name.split(".", 1)[-1] for e in inputs for c in store.get_contexts_by_execution(e.execution_id)}
    assert "Trainer" in trainer_contexts
    assert any(e.path.steps[0].key == "catalogue" for e in inputs)


def test_export_index_without_data_indexes_the_pushed_models_catalogue(runs, tmp_path):
    import json

    from index_testkit import UNTIMED_EXPORT

    from data.catalogue import model_catalogue_dir, read_catalogue
    from index import layout
    from index.export import main as export_main
    from index.similarity import Similarity

    root, *_, versions = runs
    base = root / "artifacts" / "serving" / "movielens"
    index_dir = tmp_path / "index"
    assert export_main(["--model-base-path", str(base), "--index-dir", str(index_dir), "--no-progress",
                        *UNTIMED_EXPORT]) == 0
    catalogue = read_catalogue(model_catalogue_dir(base / versions[0]))
    manifest = json.loads((index_dir / versions[0] / layout.MANIFEST).read_text())
    assert manifest["catalogue"] == model_catalogue_dir(base / versions[0])
    assert manifest["counts"] == {"users": len(catalogue.users), "movies": len(catalogue.movies),
                                  "seen_pairs": len(catalogue.seen_user_ids)}
    sim = Similarity.load(index_dir / versions[0])
    movie = catalogue.most_rated_movie()
    assert sim.movie(movie)["title"] == catalogue.movies[movie].title
    assert len(sim.similar_movies(movie, 5)) == 5


@pytest.fixture(scope="module")
def visitor_service(runs, tmp_path_factory):
    """The similarity service over the pushed model's index (export-index, the model's catalogue)."""
    from fastapi.testclient import TestClient
    from index_testkit import UNTIMED_EXPORT

    from index.export import main as export_main
    from index.service import create_app

    root, *_ = runs
    index_dir = tmp_path_factory.mktemp("visitor") / "index"
    assert export_main(["--model-base-path", str(root / "artifacts" / "serving" / "movielens"),
                        "--index-dir", str(index_dir), "--no-progress", *UNTIMED_EXPORT]) == 0
    app = create_app(index_dir, poll_interval_s=0)
    with TestClient(app) as client:
        yield client, app.state.live.current


def _history_body(s, user: int, **extra) -> dict:
    ids, ratings = s.training_history(user)
    return {"ratings": [{"movie_id": int(m), "rating": float(r)} for m, r in zip(ids, ratings)], **extra}


def test_a_visitors_recommendations_are_explained_by_contributions_that_sum_to_the_score(visitor_service):
    client, s = visitor_service
    ids, ratings = s.training_history(int(s.user_ids[3]))
    body = {"ratings": [{"movie_id": int(m), "rating": float(r)} for m, r in zip(ids[:12], ratings[:12])],
            "k": 10, "because": 500}
    response = client.post("/recommendations", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["stages"] == "retrieval+rerank" and out["stages_note"] is None and out["history_count"] == 12
    assert len(out["results"]) == 10 and not set(out["ids"]) & set(ids[:12].tolist())
    for hit in out["results"]:
        assert len(hit["because"]) == 12  # every rated movie, largest contribution first
        contributions = [b["contribution"] for b in hit["because"]]
        assert contributions == sorted(contributions, reverse=True)
        assert sum(contributions) + hit["retrieval_bias"] == pytest.approx(hit["retrieval_score"], abs=1e-5)
        assert hit["score"] == pytest.approx(hit["retrieval_score"] + out["rerank_weight"] * hit["predicted_rating"],
                                             abs=1e-5)
    top = client.post("/recommendations", json={**body, "because": 3}).json()["results"][0]["because"]
    assert [b["movie_id"] for b in top] == [b["movie_id"] for b in out["results"][0]["because"][:3]]
    assert all(b["title"] == s.movie(b["movie_id"])["title"] for b in top)


def test_a_training_users_history_reproduces_their_list(visitor_service):
    """With the user's own training ratings: the same retrieval scores as their indexed query;
    sent as that user (their id and features read too), the very same list as
    /users/{id}/recommendations; and /users/{id}/recommendations' `because` sums to the score."""
    client, s = visitor_service
    for user in (int(u) for u in s.user_ids[:5]):
        theirs = client.get(f"/users/{user}/recommendations", params={"k": 10, "because": 500}).json()
        assert theirs["because_note"] is None
        for hit in theirs["results"]:
            total = sum(b["contribution"] for b in hit["because"]) + hit["retrieval_bias"]
            assert total == pytest.approx(hit["retrieval_score"], abs=1e-5)
        as_user = client.post("/recommendations", json=_history_body(s, user, k=10, user_id=user)).json()
        assert as_user["ids"] == theirs["ids"]
        np.testing.assert_allclose(as_user["scores"], theirs["scores"], atol=1e-5)
        # a visitor with the same ratings: the same query (retrieval scores), not the user's id
        stage_one = client.get(f"/users/{user}/recommendations", params={"k": 10, "rerank_weight": 0}).json()
        visitor = client.post("/recommendations", json=_history_body(s, user, k=10 + len(s.seen(user)),
                                                                        rerank_weight=0)).json()
        seen = set(s.seen(user).tolist())
        assert [m for m in visitor["ids"] if m not in seen][:10] == stage_one["ids"]
        by_id = dict(zip(visitor["ids"], (r["retrieval_score"] for r in visitor["results"])))
        np.testing.assert_allclose([by_id[m] for m in stage_one["ids"]], stage_one["retrieval_scores"], atol=1e-5)


def test_visitor_requests_outside_the_limits_get_422_with_the_reason(visitor_service):
    client, s = visitor_service
    movie = int(s.movie_ids[0])
    lowest, highest = s.rating_scale
    cases = {
        "rate at least one movie": {"ratings": []},
        "at most 500 ratings": {"ratings": [{"movie_id": int(m), "rating": highest}
                                            for m in np.resize(s.movie_ids, 501)]},
        f"movie {movie} is rated more than once": {"ratings": [{"movie_id": movie, "rating": highest}] * 2},
        "not in index version": {"ratings": [{"movie_id": 10 ** 9, "rating": highest}]},
        "outside the rating scale": {"ratings": [{"movie_id": movie, "rating": highest + 1}]},
        "user 999999999 is not in index version": {"ratings": [{"movie_id": movie, "rating": lowest}],
                                                   "user_id": 999999999},
    }
    for reason, body in cases.items():
        response = client.post("/recommendations", json=body)
        assert response.status_code == 422 and reason in response.json()["detail"], (reason, response.text)
    assert client.post("/recommendations", json={"ratings": [{"movie_id": movie, "rating": 4}], "k": 0}
                       ).status_code == 422
    too_big = b'{"ratings": [' + b" " * (300 * 1024) + b"]}"
    response = client.post("/recommendations", content=too_big, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_the_serving_runtime_check_calls_the_history_signature_with_its_own_shapes(runs, tmp_path):
    """tools/serving_runtime_check.py (what `make check-serving-runtime` runs under the serving
    image's TensorFlow) with the samples commands.runtime_samples writes: the history signature
    is called as one visitor with a history of the sample movies, and every check passes."""
    from commands.runtime_samples import write_samples

    root, *_, versions = runs
    base = root / "artifacts" / "serving" / "movielens"
    samples = write_samples(base / versions[0], tmp_path / "samples.json")
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "serving_runtime_check.py"), "--model-base-path",
                           str(base), "--samples", str(samples)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if "signature user_embedding_with_history" in x)
    assert line.startswith("[ok]") and "query_terms[3, " in line and "embedding[1, " in line, line
