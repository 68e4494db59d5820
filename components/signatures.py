"""The exported SavedModel: raw values in, ratings and tower embeddings out.

A tf.Module holds the tf.Transform layer (tf-keras), the Keras 3 two-tower model and lookup
tables of every known user's and movie's raw features (baked in at training time from the
users/movies files), and exposes these signatures:

  serving_default                 user_id, movie_id -> rating           (ids only)
  rate_with_features              all raw features  -> rating           (unseen users/movies)
  user_embedding                  user_id  -> embedding [D], bias (user bias + global mean)
  movie_embedding                 movie_id -> embedding [D], bias (movie bias)
  user_embedding_with_features    raw user features  -> embedding, bias
  movie_embedding_with_features   raw movie features -> embedding, bias
                                  rating = clip(<user, movie> + user bias + movie bias, 1, 5)
                                  when the model has no MLP head (HParams.head_units 0)
  user_query_embedding            user_id  -> embedding [R + 1], the retrieval query
  movie_candidate_embedding       movie_id -> embedding [R + 1], the retrieval candidate;
                                  <query, candidate> is the retrieval score (RetrievalTowers)
  movie_query_embedding           movie_id -> embedding [R + 1], the query of a one-movie
                                  history: <it, candidate> ranks the retrieval space's similar movies
  serving_tf_example              serialized tf.Examples (`examples`) -> outputs; TFMA uses it
  regress                         the same with TF-Serving's Regress names (`inputs` ->
                                  `outputs`) and method_name tensorflow/serving/regress, which
                                  TF-Serving's Regress API requires (set after saving: TF2's
                                  saver writes every signature as a predict signature)

Unknown ids get empty/zero raw features, which the Transform maps to OOV buckets: a defined
answer, never an error. Genres travel as one '|'-joined string, as in movies.dat.
"""
from __future__ import annotations

import os
from typing import Mapping

import tensorflow as tf

from components import features as f
from components.model import TwoTowerModel, clip_rating
from components.movielens_files import Movie, User

SIGNATURE_DEFAULT = "serving_default"
SIGNATURE_RATE_WITH_FEATURES = "rate_with_features"
SIGNATURE_USER_EMBEDDING = "user_embedding"
SIGNATURE_MOVIE_EMBEDDING = "movie_embedding"
SIGNATURE_USER_EMBEDDING_FEATURES = "user_embedding_with_features"
SIGNATURE_MOVIE_EMBEDDING_FEATURES = "movie_embedding_with_features"
SIGNATURE_USER_QUERY = "user_query_embedding"
SIGNATURE_MOVIE_CANDIDATE = "movie_candidate_embedding"
SIGNATURE_MOVIE_QUERY = "movie_query_embedding"
SIGNATURE_TF_EXAMPLE = "serving_tf_example"
SIGNATURE_REGRESS = "regress"
REGRESS_INPUT = "inputs"
REGRESS_METHOD = "tensorflow/serving/regress"
RATING_OUTPUT = "rating"
EMBEDDING_OUTPUT = "embedding"
BIAS_OUTPUT = "bias"
EXAMPLES_INPUT = "examples"
REGRESS_OUTPUT = "outputs"

_IDS = tf.TensorSpec([None], tf.int64)
_STRINGS = tf.TensorSpec([None], tf.string)
USER_FEATURE_SPECS = {f.USER_ID: _IDS, f.GENDER: _STRINGS, f.AGE: _IDS, f.OCCUPATION: _IDS, f.ZIP: _STRINGS}
MOVIE_FEATURE_SPECS = {f.MOVIE_ID: _IDS, f.TITLE: _STRINGS, f.GENRES: _STRINGS}


def _table(keys, values, key_dtype, value_dtype, default) -> tf.lookup.StaticHashTable:
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys, key_dtype), tf.constant(values, value_dtype)),
        default_value=tf.constant(default, value_dtype))


class ServingModule(tf.Module):
    """What `tf.saved_model.save` writes for TF-Serving, TFMA and the index job."""

    def __init__(self, model: TwoTowerModel, tf_transform_output, users: Mapping[int, User],
                 movies: Mapping[int, Movie]):
        super().__init__(name="movielens")
        self.model = model
        self.tft_layer = tf_transform_output.transform_features_layer()
        spec = dict(tf_transform_output.raw_feature_spec())
        spec.pop(f.LABEL_KEY, None)
        self._example_spec = spec
        user_ids = sorted(users)
        movie_ids = sorted(movies)
        self.user_gender = _table(user_ids, [users[u].gender for u in user_ids], tf.int64, tf.string, "")
        self.user_age = _table(user_ids, [users[u].age for u in user_ids], tf.int64, tf.int64, 0)
        self.user_occupation = _table(user_ids, [users[u].occupation for u in user_ids], tf.int64, tf.int64, -1)
        self.user_zip = _table(user_ids, [users[u].zip for u in user_ids], tf.int64, tf.string, "")
        self.movie_title = _table(movie_ids, [movies[m].title for m in movie_ids], tf.int64, tf.string, "")
        self.movie_genres = _table(movie_ids, ["|".join(movies[m].genres) for m in movie_ids],
                                   tf.int64, tf.string, "")

    # --- raw feature assembly -----------------------------------------------------------
    def _raw(self, user: Mapping[str, tf.Tensor] | None, movie: Mapping[str, tf.Tensor] | None,
             batch: tf.Tensor) -> dict:
        """The Transform's raw input dict; the missing side gets neutral defaults."""
        def column(values, default, dtype):
            value = tf.fill([batch], tf.constant(default, dtype)) if values is None else values
            return tf.reshape(tf.cast(value, dtype), [-1, 1])

        user = user or {}
        movie = movie or {}
        genres_text = movie.get(f.GENRES, tf.fill([batch], ""))
        tokens = tf.strings.split(genres_text, sep="|")
        tokens = tf.ragged.boolean_mask(tokens, tf.strings.length(tokens) > 0)
        return {
            f.USER_ID: column(user.get(f.USER_ID), 0, tf.int64),
            f.GENDER: column(user.get(f.GENDER), "", tf.string),
            f.AGE: column(user.get(f.AGE), 0, tf.int64),
            f.OCCUPATION: column(user.get(f.OCCUPATION), -1, tf.int64),
            f.ZIP: column(user.get(f.ZIP), "", tf.string),
            f.MOVIE_ID: column(movie.get(f.MOVIE_ID), 0, tf.int64),
            f.TITLE: column(movie.get(f.TITLE), "", tf.string),
            f.YEAR: column(None, 0, tf.int64),
            f.TIMESTAMP: column(None, 0, tf.int64),
            f.GENRES: tokens.to_sparse(),
        }

    def _known_user(self, user_id: tf.Tensor) -> dict:
        return {f.USER_ID: user_id, f.GENDER: self.user_gender.lookup(user_id),
                f.AGE: self.user_age.lookup(user_id), f.OCCUPATION: self.user_occupation.lookup(user_id),
                f.ZIP: self.user_zip.lookup(user_id)}

    def _known_movie(self, movie_id: tf.Tensor) -> dict:
        return {f.MOVIE_ID: movie_id, f.TITLE: self.movie_title.lookup(movie_id),
                f.GENRES: self.movie_genres.lookup(movie_id)}

    def _transform(self, raw: dict) -> dict:
        return self.tft_layer(raw)

    def _rate(self, user: dict, movie: dict) -> dict:
        batch = tf.shape(user[f.USER_ID])[0]
        transformed = self._transform(self._raw(user, movie, batch))
        return {RATING_OUTPUT: clip_rating(self.model(transformed, training=False))}

    def _user_vector(self, user: dict) -> dict:
        transformed = self._transform(self._raw(user, None, tf.shape(user[f.USER_ID])[0]))
        bias = tf.squeeze(self.model.user_bias(transformed[f.USER_ID_XF]), -1) + self.model.global_mean
        return {EMBEDDING_OUTPUT: self.model.user_tower(transformed, training=False), BIAS_OUTPUT: bias}

    def _movie_vector(self, movie: dict) -> dict:
        transformed = self._transform(self._raw(None, movie, tf.shape(movie[f.MOVIE_ID])[0]))
        bias = tf.squeeze(self.model.movie_bias(transformed[f.MOVIE_ID_XF]), -1)
        return {EMBEDDING_OUTPUT: self.model.movie_tower(transformed, training=False), BIAS_OUTPUT: bias}

    def _user_query(self, user_id: tf.Tensor) -> dict:
        transformed = self._transform(self._raw({f.USER_ID: user_id}, None, tf.shape(user_id)[0]))
        return {EMBEDDING_OUTPUT: self.model.retrieval.served_query(transformed[f.USER_ID_XF])}

    def _movie_candidate(self, movie_id: tf.Tensor) -> dict:
        transformed = self._transform(self._raw(None, {f.MOVIE_ID: movie_id}, tf.shape(movie_id)[0]))
        return {EMBEDDING_OUTPUT: self.model.retrieval.served_candidate(transformed[f.MOVIE_ID_XF])}

    def _movie_query(self, movie_id: tf.Tensor) -> dict:
        transformed = self._transform(self._raw(None, {f.MOVIE_ID: movie_id}, tf.shape(movie_id)[0]))
        return {EMBEDDING_OUTPUT: self.model.retrieval.served_movie_query(transformed[f.MOVIE_ID_XF])}

    # --- signatures -------------------------------------------------------------------
    @tf.function(input_signature=[_IDS, _IDS])
    def serve_ids(self, user_id, movie_id):
        return self._rate(self._known_user(user_id), self._known_movie(movie_id))

    @tf.function(input_signature=[USER_FEATURE_SPECS, MOVIE_FEATURE_SPECS])
    def serve_features(self, user, movie):
        return self._rate(user, movie)

    @tf.function(input_signature=[_IDS])
    def serve_user_embedding(self, user_id):
        return self._user_vector(self._known_user(user_id))

    @tf.function(input_signature=[_IDS])
    def serve_movie_embedding(self, movie_id):
        return self._movie_vector(self._known_movie(movie_id))

    @tf.function(input_signature=[_IDS])
    def serve_user_query(self, user_id):
        return self._user_query(user_id)

    @tf.function(input_signature=[_IDS])
    def serve_movie_candidate(self, movie_id):
        return self._movie_candidate(movie_id)

    @tf.function(input_signature=[_IDS])
    def serve_movie_query(self, movie_id):
        return self._movie_query(movie_id)

    @tf.function(input_signature=[USER_FEATURE_SPECS])
    def serve_user_embedding_features(self, user):
        return self._user_vector(user)

    @tf.function(input_signature=[MOVIE_FEATURE_SPECS])
    def serve_movie_embedding_features(self, movie):
        return self._movie_vector(movie)

    def _rate_examples(self, serialized):
        raw = tf.io.parse_example(serialized, self._example_spec)
        return {REGRESS_OUTPUT: clip_rating(self.model(self._transform(raw), training=False))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve_tf_examples(self, examples):
        return self._rate_examples(examples)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=REGRESS_INPUT)])
    def serve_regress(self, inputs):
        return self._rate_examples(inputs)

    def signatures(self) -> dict:
        """Name -> concrete function, for tf.saved_model.save."""
        # Signatures take flat named tensors; these wrappers regroup them per tower.
        rate_features = tf.function(
            lambda user_id, movie_id, gender, age, occupation, zip, title, genres: self.serve_features(
                {f.USER_ID: user_id, f.GENDER: gender, f.AGE: age, f.OCCUPATION: occupation, f.ZIP: zip},
                {f.MOVIE_ID: movie_id, f.TITLE: title, f.GENRES: genres}),
            input_signature=[_IDS, _IDS, _STRINGS, _IDS, _IDS, _STRINGS, _STRINGS, _STRINGS])
        user_features = tf.function(
            lambda user_id, gender, age, occupation, zip: self.serve_user_embedding_features(
                {f.USER_ID: user_id, f.GENDER: gender, f.AGE: age, f.OCCUPATION: occupation, f.ZIP: zip}),
            input_signature=[_IDS, _STRINGS, _IDS, _IDS, _STRINGS])
        movie_features = tf.function(
            lambda movie_id, title, genres: self.serve_movie_embedding_features(
                {f.MOVIE_ID: movie_id, f.TITLE: title, f.GENRES: genres}),
            input_signature=[_IDS, _STRINGS, _STRINGS])
        retrieval = {} if self.model.retrieval is None else {
            SIGNATURE_USER_QUERY: self.serve_user_query.get_concrete_function(),
            SIGNATURE_MOVIE_CANDIDATE: self.serve_movie_candidate.get_concrete_function(),
            SIGNATURE_MOVIE_QUERY: self.serve_movie_query.get_concrete_function(),
        }
        return {
            **retrieval,
            SIGNATURE_DEFAULT: self.serve_ids.get_concrete_function(),
            SIGNATURE_RATE_WITH_FEATURES: rate_features.get_concrete_function(),
            SIGNATURE_USER_EMBEDDING: self.serve_user_embedding.get_concrete_function(),
            SIGNATURE_MOVIE_EMBEDDING: self.serve_movie_embedding.get_concrete_function(),
            SIGNATURE_USER_EMBEDDING_FEATURES: user_features.get_concrete_function(),
            SIGNATURE_MOVIE_EMBEDDING_FEATURES: movie_features.get_concrete_function(),
            SIGNATURE_TF_EXAMPLE: self.serve_tf_examples.get_concrete_function(),
            SIGNATURE_REGRESS: self.serve_regress.get_concrete_function(),
        }


WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def write_warmup_requests(export_dir: str, user_ids: list[int], movie_ids: list[int],
                          retrieval: bool = False) -> str:
    """TF-Serving's warm-up file: PredictionLogs replayed before a version goes AVAILABLE.

    One request per signature that clients call by id (1 and 100 pairs for ratings), so the
    first real request of each kind finds its graph already traced.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    def request(signature: str, **inputs: list[int]) -> prediction_log_pb2.PredictionLog:
        predict = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=signature))
        for key, values in inputs.items():
            predict.inputs[key].CopyFrom(tf.make_tensor_proto(values, dtype=tf.int64))
        return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=predict))

    users = (user_ids * 100)[:100]
    movies = (movie_ids * 100)[:100]
    logs = [request(SIGNATURE_DEFAULT, user_id=users[:1], movie_id=movies[:1]),
            request(SIGNATURE_DEFAULT, user_id=users, movie_id=movies),
            request(SIGNATURE_USER_EMBEDDING, user_id=users[:10]),
            request(SIGNATURE_MOVIE_EMBEDDING, movie_id=movies[:10])]
    if retrieval:
        logs += [request(SIGNATURE_USER_QUERY, user_id=users[:10]),
                 request(SIGNATURE_MOVIE_CANDIDATE, movie_id=movies[:10])]
    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def mark_regress_signature(export_dir: str) -> None:
    """Gives the `regress` SignatureDef TF-Serving's regress method name, in saved_model.pb.

    TF2's loader calls signatures through the object graph and ignores method names, so
    Python clients see no difference; TF-Serving's Regress API accepts only this method name.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as handle:
        saved_model.ParseFromString(handle.read())
    for meta_graph in saved_model.meta_graphs:
        meta_graph.signature_def[SIGNATURE_REGRESS].method_name = REGRESS_METHOD
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(saved_model.SerializeToString())


def export(module: ServingModule, export_dir: str, user_ids: list[int], movie_ids: list[int]) -> None:
    """Writes the SavedModel with every signature and its TF-Serving warm-up requests."""
    tf.saved_model.save(module, export_dir, signatures=module.signatures())
    mark_regress_signature(export_dir)
    write_warmup_requests(export_dir, list(user_ids), list(movie_ids), retrieval=module.model.retrieval is not None)
