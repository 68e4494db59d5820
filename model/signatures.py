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
                                  rating = clip(<user, movie> + user bias + movie bias) to the
                                  training ratings' range (ServingModule.rating_scale) when the
                                  model has no MLP head (HParams.head_units 0)
  user_query_embedding            user_id  -> embedding [R + 1], the retrieval query
  movie_candidate_embedding       movie_id -> embedding [R + 1], the retrieval candidate;
                                  <query, candidate> is the retrieval score (RetrievalTowers)
  movie_query_embedding           movie_id -> embedding [R + 1], the query of a one-movie
                                  history: <it, candidate> ranks the retrieval space's similar movies
  user_embedding_with_history     user_id [1], history_movie_id [n], history_rating [n] -> the
                                  rating towers' embedding [1, D] and bias [1] of a user whose
                                  history is the one given (an unknown user_id: a visitor, who
                                  gets the unknown user's id and feature buckets), its retrieval
                                  query [1, R + 1], each entry's term of it (query_terms [n, R + 1]:
                                  <term, candidate> is the entry's share of the retrieval score)
                                  and reads_history [1] (0: the user tower reads no history);
                                  only with retrieval towers (TwoTowerModel.history_vectors)
  serving_tf_example              serialized tf.Examples (`examples`) -> outputs; TFMA uses it
  regress                         the same with TF-Serving's Regress names (`inputs` ->
                                  `outputs`) and method_name tensorflow/serving/regress, which
                                  TF-Serving's Regress API requires (set after saving: TF2's
                                  saver writes every signature as a predict signature)

Known ids are answered from tower outputs precomputed at export: every catalogue user's and
movie's embedding, bias and retrieval vectors are computed once (by the same functions the
raw-feature signatures run) and saved as variables with an id -> row table, so an id-only
request is a few gathers instead of the Transform graph and the title LSTM (the serving
profile, benchmarks/serving_profile.py, measures both). A batch holding any unseen id takes
the tower path, whose answer for unknown ids is the OOV bucket's, as before. Every signature
answers an empty batch itself with outputs of 0 rows (the towers are not run for it).

Why the module tracks the Keras 3 model's backing tf.Variables (`model_variables`): TF-Serving
loads a SavedModel as a session bundle and restores exactly the variables of the saved object
graph; Keras 3 variables reach that graph only through their layers' own tracking, which the
restore op does not cover, and TF-Serving then fails the warm-up with "Could not find variable"
(`make check-serving-runtime` replays the warm-up that way under the serving image's TF).

Every per-feature detail comes from the feature table (data.features): which raw
features each tower's signatures take (`in_signatures` rows), their dtypes, the per-id lookup
tables baked in for the id-only signatures, and the default a missing or unknown value gets
(which the Transform maps to OOV buckets: a defined answer, never an error). List features
(genres) travel as one LIST_SEPARATOR ('|')-joined string, as in movies.dat. Signature and
tensor names are declared in model.signature_names.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import tensorflow as tf

from data import features as f
from data.movielens_files import Movie, User
from model.model import TwoTowerModel, clip_rating
from model.signature_names import (
    BIAS_OUTPUT,
    EMBEDDING_OUTPUT,
    EXAMPLES_INPUT,
    HISTORY_MOVIES_INPUT,
    HISTORY_RATINGS_INPUT,
    QUERY_OUTPUT,
    QUERY_TERMS_OUTPUT,
    RATING_OUTPUT,
    READS_HISTORY_OUTPUT,
    REGRESS_INPUT,
    REGRESS_METHOD,
    REGRESS_OUTPUT,
    SIGNATURE_DEFAULT,
    SIGNATURE_MOVIE_CANDIDATE,
    SIGNATURE_MOVIE_EMBEDDING,
    SIGNATURE_MOVIE_EMBEDDING_FEATURES,
    SIGNATURE_MOVIE_QUERY,
    SIGNATURE_RATE_WITH_FEATURES,
    SIGNATURE_REGRESS,
    SIGNATURE_TF_EXAMPLE,
    SIGNATURE_USER_EMBEDDING,
    SIGNATURE_USER_EMBEDDING_FEATURES,
    SIGNATURE_USER_HISTORY,
    SIGNATURE_USER_QUERY,
)

# Named: a signature's input names are its specs' names, so they follow the feature table.
_USER_IDS = tf.TensorSpec([None], tf.int64, name=f.USER_ID)
_MOVIE_IDS = tf.TensorSpec([None], tf.int64, name=f.MOVIE_ID)
_HISTORY_MOVIES = tf.TensorSpec([None], tf.int64, name=HISTORY_MOVIES_INPUT)
_HISTORY_RATINGS = tf.TensorSpec([None], tf.float32, name=HISTORY_RATINGS_INPUT)
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


#: Keys of the precomputed retrieval vectors (served under EMBEDDING_OUTPUT) and of the
#: user bias without the global mean (what TwoTowerModel.score adds).
_QUERY, _CANDIDATE, _RAW_BIAS = "query", "candidate", "raw_bias"
#: Ids per tower call while precomputing (bounds the export's memory, not its result).
_PRECOMPUTE_BATCH = 4096


def _row_table(ids: list[int]) -> tf.lookup.StaticHashTable:
    """id -> row of the precomputed outputs; -1 for an id the catalogue does not hold."""
    return _table(ids or [-1], list(range(len(ids))) or [-1], tf.int64, tf.int64, -1)


def _all_known(*rows: tf.Tensor) -> tf.Tensor:
    """True when every row index is found (also for an empty batch: it then gathers nothing)."""
    return tf.reduce_all([tf.reduce_all(r >= 0) for r in rows])


def _unless_empty(batch_input: tf.Tensor, compute, empty) -> dict:
    """``compute()``, or ``empty()`` (outputs of 0 rows) for a batch of 0: the towers and the
    Transform are never run on no rows, where some of their ops fail."""
    return tf.cond(tf.shape(batch_input)[0] > 0, compute, empty)


class KnownVectors(tf.Module):
    """Tower outputs per catalogue row (name -> [rows, ...] variable), saved with the model."""

    def __init__(self, arrays: Mapping[str, np.ndarray], name: str):
        super().__init__(name=name)
        self.arrays = {key: tf.Variable(value, trainable=False, name=key) for key, value in arrays.items()}

    def gather(self, key: str, rows: tf.Tensor) -> tf.Tensor:
        return tf.gather(self.arrays[key], rows)

    def empty(self, keys: tuple[str, ...]) -> dict:
        return {key: tf.zeros([0, *self.arrays[key].shape[1:]], self.arrays[key].dtype) for key in keys}


def _precompute(vectors_of, ids: list[int], name: str) -> KnownVectors:
    """``vectors_of`` (the tower path) run over every id, stacked per output."""
    if not ids:
        raise ValueError(f"the catalogue holds no {name}s: there is nothing to serve")
    parts: dict[str, list] = {}
    for start in range(0, len(ids), _PRECOMPUTE_BATCH):
        batch = tf.constant(ids[start:start + _PRECOMPUTE_BATCH], tf.int64)
        for key, value in vectors_of(batch).items():
            parts.setdefault(key, []).append(value.numpy())
    arrays = {key: np.concatenate(values) for key, values in parts.items()}
    return KnownVectors(arrays, name=f"known_{name}s")


class ServingModule(tf.Module):
    """What `tf.saved_model.save` writes for TF-Serving, TFMA and the index job."""

    def __init__(self, model: TwoTowerModel, tf_transform_output, users: Mapping[int, User],
                 movies: Mapping[int, Movie], *, rating_scale: tuple[float, float]):
        """``rating_scale``: the (lowest, highest) training rating (features.rating_scale), baked
        in as the range every served rating is clipped to: 1..5 for an ML-1M model, 0.5..5 for
        an ml-latest one."""
        super().__init__(name="movielens")
        self.model = model
        self.rating_scale = (float(rating_scale[0]), float(rating_scale[1]))
        self.tft_layer = tf_transform_output.transform_features_layer()
        spec = dict(tf_transform_output.raw_feature_spec())
        spec.pop(f.LABEL_KEY, None)
        self._example_spec = spec
        # id -> raw feature lookups for the id-only signatures (tracked by the module, saved)
        self.user_tables = _lookup_tables(users, "user")
        self.movie_tables = _lookup_tables(movies, "movie")
        # the backing tf.Variables, so that a session-bundle load restores them (module docstring)
        self.model_variables = [getattr(v, "value", v) for v in model.variables]
        self.user_rows = _row_table(sorted(users))
        self.movie_rows = _row_table(sorted(movies))
        self.known_users = _precompute(self._user_vectors_of, sorted(users), "user")
        self.known_movies = _precompute(self._movie_vectors_of, sorted(movies), "movie")

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
        return {RATING_OUTPUT: clip_rating(self.model(transformed, training=False), self.rating_scale)}

    def _user_outputs(self, user: dict) -> dict:
        """The user tower's embedding, its bias (+ the global mean) and the bias alone."""
        transformed = self._transform(self._raw(user, None, tf.shape(user[f.USER_ID])[0]))
        embedding, bias = self.model.user_outputs(transformed)
        return {EMBEDDING_OUTPUT: embedding, BIAS_OUTPUT: bias + self.model.global_mean, _RAW_BIAS: bias}

    def _user_vector(self, user: dict) -> dict:
        outputs = self._user_outputs(user)
        return {key: outputs[key] for key in (EMBEDDING_OUTPUT, BIAS_OUTPUT)}

    def _movie_vector(self, movie: dict) -> dict:
        transformed = self._transform(self._raw(None, movie, tf.shape(movie[f.MOVIE_ID])[0]))
        embedding, bias = self.model.movie_outputs(transformed)
        return {EMBEDDING_OUTPUT: embedding, BIAS_OUTPUT: bias}

    def _user_vectors_of(self, user_id: tf.Tensor) -> dict:
        """Everything an id-only user signature returns, by the tower path (precomputed at export)."""
        out = self._user_outputs(self._known_user(user_id))
        if self.model.retrieval is not None:
            out[_QUERY] = self._user_query(user_id)[EMBEDDING_OUTPUT]
        return out

    def _movie_vectors_of(self, movie_id: tf.Tensor) -> dict:
        out = dict(self._movie_vector(self._known_movie(movie_id)))
        if self.model.retrieval is not None:
            out[_CANDIDATE] = self._movie_candidate(movie_id)[EMBEDDING_OUTPUT]
            out[_QUERY] = self._movie_query(movie_id)[EMBEDDING_OUTPUT]
        return out

    def _rate_known(self, user_rows: tf.Tensor, movie_rows: tf.Tensor) -> dict:
        """The rating from the precomputed outputs: TwoTowerModel.score's sum, in its order."""
        user = self.known_users.gather(EMBEDDING_OUTPUT, user_rows)
        movie = self.known_movies.gather(EMBEDDING_OUTPUT, movie_rows)
        rating = (tf.reduce_sum(user * movie, axis=-1) + self.known_users.gather(_RAW_BIAS, user_rows)
                  + self.known_movies.gather(BIAS_OUTPUT, movie_rows) + self.model.global_mean)
        if self.model.head is not None:
            pair = tf.concat([user, movie, user * movie], axis=-1)
            rating = rating + tf.squeeze(self.model.head(pair, training=False), -1)
        return {RATING_OUTPUT: clip_rating(rating, self.rating_scale)}

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
        user_rows, movie_rows = self.user_rows.lookup(user_id), self.movie_rows.lookup(movie_id)
        return tf.cond(_all_known(user_rows, movie_rows), lambda: self._rate_known(user_rows, movie_rows),
                       lambda: self.serve_features(self._known_user(user_id), self._known_movie(movie_id)))

    @tf.function(input_signature=[USER_FEATURE_SPECS, MOVIE_FEATURE_SPECS])
    def serve_features(self, user, movie):
        return _unless_empty(user[f.USER_ID], lambda: self._rate(user, movie), self._empty_rating)

    @tf.function(input_signature=[_USER_IDS])
    def serve_user_embedding(self, user_id):
        return self._known_or(self.known_users, self.user_rows, user_id, (EMBEDDING_OUTPUT, BIAS_OUTPUT),
                              lambda: self.serve_user_embedding_features(self._known_user(user_id)))

    @tf.function(input_signature=[_MOVIE_IDS])
    def serve_movie_embedding(self, movie_id):
        return self._known_or(self.known_movies, self.movie_rows, movie_id, (EMBEDDING_OUTPUT, BIAS_OUTPUT),
                              lambda: self.serve_movie_embedding_features(self._known_movie(movie_id)))

    @tf.function(input_signature=[_USER_IDS])
    def serve_user_query(self, user_id):
        return self._known_or(self.known_users, self.user_rows, user_id, (_QUERY,),
                              lambda: self._user_query(user_id))

    @tf.function(input_signature=[_MOVIE_IDS])
    def serve_movie_candidate(self, movie_id):
        return self._known_or(self.known_movies, self.movie_rows, movie_id, (_CANDIDATE,),
                              lambda: self._movie_candidate(movie_id))

    @tf.function(input_signature=[_MOVIE_IDS])
    def serve_movie_query(self, movie_id):
        return self._known_or(self.known_movies, self.movie_rows, movie_id, (_QUERY,),
                              lambda: self._movie_query(movie_id))

    @tf.function(input_signature=[_USER_IDS, _HISTORY_MOVIES, _HISTORY_RATINGS])
    def serve_user_history(self, user_id, history_movie_id, history_rating):
        """One user (``user_id`` holds one id; an unknown one is a visitor) with an explicit
        history: TwoTowerModel.history_vectors. The history's raw movie ids go through the
        Transform like every movie id (an unknown one gets the OOV bucket). An empty
        ``user_id`` is an empty batch: outputs of 0 rows, like every signature's."""
        return _unless_empty(user_id, lambda: self._history_vectors(user_id, history_movie_id, history_rating),
                             self._empty_history)

    def _history_vectors(self, user_id, history_movie_id, history_rating) -> dict:
        tf.debugging.assert_equal(tf.size(user_id), 1, message="user_id must hold exactly one id")
        tf.debugging.assert_equal(tf.size(history_movie_id), tf.size(history_rating),
                                  message="history_movie_id and history_rating differ in length")
        user = self._transform(self._raw(self._known_user(user_id), None, tf.shape(user_id)[0]))

        def movie_indices():
            raw = self._raw(None, {f.MOVIE_ID: history_movie_id}, tf.shape(history_movie_id)[0])
            return tf.reshape(self._transform(raw)[f.MOVIE_ID_XF], [-1])

        # the Transform is never run on no rows (_unless_empty); an empty history has no terms
        movies = tf.cond(tf.size(history_movie_id) > 0, movie_indices, lambda: tf.zeros([0], tf.int64))
        return self.model.history_vectors(user, movies, history_rating)

    def _empty_history(self) -> dict:
        rows = self.known_users.empty((EMBEDDING_OUTPUT, BIAS_OUTPUT, _QUERY))
        return {EMBEDDING_OUTPUT: rows[EMBEDDING_OUTPUT], BIAS_OUTPUT: rows[BIAS_OUTPUT],
                QUERY_OUTPUT: rows[_QUERY], QUERY_TERMS_OUTPUT: rows[_QUERY],
                READS_HISTORY_OUTPUT: tf.zeros([0], tf.int32)}

    @tf.function(input_signature=[USER_FEATURE_SPECS])
    def serve_user_embedding_features(self, user):
        return _unless_empty(user[f.USER_ID], lambda: self._user_vector(user),
                             lambda: self.known_users.empty((EMBEDDING_OUTPUT, BIAS_OUTPUT)))

    @tf.function(input_signature=[MOVIE_FEATURE_SPECS])
    def serve_movie_embedding_features(self, movie):
        return _unless_empty(movie[f.MOVIE_ID], lambda: self._movie_vector(movie),
                             lambda: self.known_movies.empty((EMBEDDING_OUTPUT, BIAS_OUTPUT)))

    def _known_or(self, known: "KnownVectors", rows_table, ids: tf.Tensor, keys: tuple[str, ...], towers) -> dict:
        """The precomputed outputs ``keys`` (renamed for the signature) when every id is known,
        else what ``towers`` computes for the whole batch."""
        rows = rows_table.lookup(ids)
        names = {_QUERY: EMBEDDING_OUTPUT, _CANDIDATE: EMBEDDING_OUTPUT}

        def gathered():
            return {names.get(key, key): known.gather(key, rows) for key in keys}

        return tf.cond(_all_known(rows), gathered, towers)

    def _empty_rating(self) -> dict:
        return {RATING_OUTPUT: tf.zeros([0], tf.float32)}

    def _rate_examples(self, serialized):
        def rate():
            raw = tf.io.parse_example(serialized, self._example_spec)
            return {REGRESS_OUTPUT: clip_rating(self.model(self._transform(raw), training=False), self.rating_scale)}

        return _unless_empty(serialized, rate, lambda: {REGRESS_OUTPUT: tf.zeros([0], tf.float32)})

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
            SIGNATURE_USER_HISTORY: self.serve_user_history.get_concrete_function(),
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
