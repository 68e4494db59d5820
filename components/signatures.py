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

Every per-feature detail comes from the feature table (components.features): which raw
features each tower's signatures take (`in_signatures` rows), their dtypes, the per-id lookup
tables baked in for the id-only signatures, and the default a missing or unknown value gets
(which the Transform maps to OOV buckets: a defined answer, never an error). List features
(genres) travel as one LIST_SEPARATOR ('|')-joined string, as in movies.dat. Signature and
tensor names are declared in components.signature_names.
"""
from __future__ import annotations

import os
from typing import Mapping

import tensorflow as tf

from components import features as f
from components.model import TwoTowerModel, clip_rating
from components.movielens_files import Movie, User
from components.signature_names import (BIAS_OUTPUT, EMBEDDING_OUTPUT, EXAMPLES_INPUT, RATING_OUTPUT,
                                        REGRESS_INPUT, REGRESS_METHOD, REGRESS_OUTPUT, SIGNATURE_DEFAULT,
                                        SIGNATURE_MOVIE_CANDIDATE, SIGNATURE_MOVIE_EMBEDDING,
                                        SIGNATURE_MOVIE_EMBEDDING_FEATURES, SIGNATURE_MOVIE_QUERY,
                                        SIGNATURE_RATE_WITH_FEATURES, SIGNATURE_REGRESS, SIGNATURE_TF_EXAMPLE,
                                        SIGNATURE_USER_EMBEDDING, SIGNATURE_USER_EMBEDDING_FEATURES,
                                        SIGNATURE_USER_QUERY)

# Named: a signature's input names are its specs' names, so they follow the feature table.
_USER_IDS = tf.TensorSpec([None], tf.int64, name=f.USER_ID)
_MOVIE_IDS = tf.TensorSpec([None], tf.int64, name=f.MOVIE_ID)
#: The raw-feature signatures' inputs per tower, from the feature table (list features, e.g.
#: genres, as one LIST_SEPARATOR-joined string).
USER_FEATURE_SPECS = f.signature_specs("user")
MOVIE_FEATURE_SPECS = f.signature_specs("movie")
_TOWER_SPECS = {"user": USER_FEATURE_SPECS, "movie": MOVIE_FEATURE_SPECS}
_TOWER_IDS = {"user": f.USER_ID, "movie": f.MOVIE_ID}


def _table(keys, values, key_dtype, value_dtype, default) -> tf.lookup.StaticHashTable:
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(keys, key_dtype), tf.constant(values, value_dtype)),
        default_value=tf.constant(default, value_dtype))


def _lookup_tables(entities: Mapping[int, User | Movie], tower: str) -> dict[str, tf.lookup.StaticHashTable]:
    """id -> value tables of a tower's signature features (the id itself aside), from the
    User/Movie attribute of each feature's name; unknown ids get the feature's default."""
    ids = sorted(entities)
    tables = {}
    for row in f.RAW_FEATURES:
        if row.tower != tower or not row.in_signatures or row.name == _TOWER_IDS[tower]:
            continue
        values = [getattr(entities[i], row.name) for i in ids]
        if row.is_list:
            values = [f.LIST_SEPARATOR.join(map(str, value)) for value in values]
        tables[row.name] = _table(ids, values, tf.int64, tf.as_dtype(row.signature_dtype), row.signature_default)
    return tables


def _raw_column(row: f.RawFeature, values: tf.Tensor | None, batch: tf.Tensor) -> tf.Tensor | tf.SparseTensor:
    """One raw feature as the Transform reads it ([batch, 1], lists sparse); missing values
    get the row's default."""
    if row.is_list:
        text = tf.fill([batch], row.signature_default) if values is None else values
        tokens = tf.strings.split(text, sep=f.LIST_SEPARATOR)
        tokens = tf.ragged.boolean_mask(tokens, tf.strings.length(tokens) > 0)
        if row.dtype != "string":
            tokens = tf.ragged.map_flat_values(tf.strings.to_number, tokens, out_type=tf.as_dtype(row.dtype))
        return tokens.to_sparse()
    dtype = tf.as_dtype(row.dtype)
    value = tf.fill([batch], tf.constant(row.default, dtype)) if values is None else values
    return tf.reshape(tf.cast(value, dtype), [-1, 1])


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
        # id -> raw feature lookups for the id-only signatures (tracked by the module, saved)
        self.user_tables = _lookup_tables(users, "user")
        self.movie_tables = _lookup_tables(movies, "movie")

    # --- raw feature assembly -----------------------------------------------------------
    def _raw(self, user: Mapping[str, tf.Tensor] | None, movie: Mapping[str, tf.Tensor] | None,
             batch: tf.Tensor) -> dict:
        """The Transform's raw input dict; the missing side gets the table's defaults."""
        given = {"user": user or {}, "movie": movie or {}}
        return {row.name: _raw_column(row, given.get(row.tower, {}).get(row.name) if row.in_signatures else None,
                                      batch)
                for row in f.RAW_FEATURES if row.tower != "label"}

    def _known_user(self, user_id: tf.Tensor) -> dict:
        return {f.USER_ID: user_id, **{name: table.lookup(user_id) for name, table in self.user_tables.items()}}

    def _known_movie(self, movie_id: tf.Tensor) -> dict:
        return {f.MOVIE_ID: movie_id, **{name: table.lookup(movie_id) for name, table in self.movie_tables.items()}}

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
    # The id-only signatures call the raw-feature ones (whose concrete functions they reuse)
    # and `regress` calls serving_tf_example: the towers are traced once per path, not once
    # per signature, which is most of the export's time.
    @tf.function(input_signature=[_USER_IDS, _MOVIE_IDS])
    def serve_ids(self, user_id, movie_id):
        return self.serve_features(self._known_user(user_id), self._known_movie(movie_id))

    @tf.function(input_signature=[USER_FEATURE_SPECS, MOVIE_FEATURE_SPECS])
    def serve_features(self, user, movie):
        return self._rate(user, movie)

    @tf.function(input_signature=[_USER_IDS])
    def serve_user_embedding(self, user_id):
        return self.serve_user_embedding_features(self._known_user(user_id))

    @tf.function(input_signature=[_MOVIE_IDS])
    def serve_movie_embedding(self, movie_id):
        return self.serve_movie_embedding_features(self._known_movie(movie_id))

    @tf.function(input_signature=[_USER_IDS])
    def serve_user_query(self, user_id):
        return self._user_query(user_id)

    @tf.function(input_signature=[_MOVIE_IDS])
    def serve_movie_candidate(self, movie_id):
        return self._movie_candidate(movie_id)

    @tf.function(input_signature=[_MOVIE_IDS])
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
        return self.serve_tf_examples(inputs)

    def signatures(self) -> dict:
        """Name -> concrete function, for tf.saved_model.save."""
        # Signatures take flat named tensors; these wrappers regroup them per tower.
        rate_features = _flat_signature(self.serve_features, ("user", "movie"))
        user_features = _flat_signature(self.serve_user_embedding_features, ("user",))
        movie_features = _flat_signature(self.serve_movie_embedding_features, ("movie",))
        retrieval = {} if self.model.retrieval is None else {
            SIGNATURE_USER_QUERY: self.serve_user_query.get_concrete_function(),
            SIGNATURE_MOVIE_CANDIDATE: self.serve_movie_candidate.get_concrete_function(),
            SIGNATURE_MOVIE_QUERY: self.serve_movie_query.get_concrete_function(),
        }
        return {
            **retrieval,
            SIGNATURE_DEFAULT: self.serve_ids.get_concrete_function(),
            SIGNATURE_RATE_WITH_FEATURES: rate_features,
            SIGNATURE_USER_EMBEDDING: self.serve_user_embedding.get_concrete_function(),
            SIGNATURE_MOVIE_EMBEDDING: self.serve_movie_embedding.get_concrete_function(),
            SIGNATURE_USER_EMBEDDING_FEATURES: user_features,
            SIGNATURE_MOVIE_EMBEDDING_FEATURES: movie_features,
            SIGNATURE_TF_EXAMPLE: self.serve_tf_examples.get_concrete_function(),
            SIGNATURE_REGRESS: self.serve_regress.get_concrete_function(),
        }


def _flat_signature(method, towers: tuple[str, ...]):
    """A concrete function taking one named [batch] tensor per feature of ``towers`` and
    calling ``method`` with them grouped per tower (one dict each, in ``towers`` order)."""
    specs = {name: tf.TensorSpec(spec.shape, spec.dtype, name=name)
             for tower in towers for name, spec in _TOWER_SPECS[tower].items()}

    def call(**inputs):
        return method(*({name: inputs[name] for name in _TOWER_SPECS[tower]} for tower in towers))

    return tf.function(call).get_concrete_function(**specs)


WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def write_warmup_requests(export_dir: str, user_ids: list[int], movie_ids: list[int],
                          retrieval: bool = False) -> str:
    """TF-Serving's warm-up file: PredictionLogs replayed before a version goes AVAILABLE.

    One request per signature that clients call by id (1 and 100 pairs for ratings), so the
    first real request of each kind finds its graph already traced.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    def request(signature: str, inputs: dict[str, list[int]]) -> prediction_log_pb2.PredictionLog:
        predict = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name=signature))
        for key, values in inputs.items():
            predict.inputs[key].CopyFrom(tf.make_tensor_proto(values, dtype=tf.int64))
        return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=predict))

    users = (user_ids * 100)[:100]
    movies = (movie_ids * 100)[:100]
    logs = [request(SIGNATURE_DEFAULT, {f.USER_ID: users[:1], f.MOVIE_ID: movies[:1]}),
            request(SIGNATURE_DEFAULT, {f.USER_ID: users, f.MOVIE_ID: movies}),
            request(SIGNATURE_USER_EMBEDDING, {f.USER_ID: users[:10]}),
            request(SIGNATURE_MOVIE_EMBEDDING, {f.MOVIE_ID: movies[:10]})]
    if retrieval:
        logs += [request(SIGNATURE_USER_QUERY, {f.USER_ID: users[:10]}),
                 request(SIGNATURE_MOVIE_CANDIDATE, {f.MOVIE_ID: movies[:10]})]
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
