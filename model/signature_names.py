"""The exported SavedModel's signature names and their input/output tensor names, declared once.

Everyone who calls or writes the signatures imports them from here: the exporter
(model.signatures), the index job (index.embed), the rating client (serving.client),
the commands and the benchmarks. No TensorFlow import: the index service and the client
read this module without it. What each signature does is documented in model.signatures.

Inputs of the id and raw-feature signatures are the raw feature names of data.features.
"""
from __future__ import annotations

from typing import Final

SIGNATURE_DEFAULT: Final = "serving_default"   # TensorFlow's default signature key
SIGNATURE_RATE_WITH_FEATURES: Final = "rate_with_features"
SIGNATURE_USER_EMBEDDING: Final = "user_embedding"
SIGNATURE_MOVIE_EMBEDDING: Final = "movie_embedding"
SIGNATURE_USER_EMBEDDING_FEATURES: Final = "user_embedding_with_features"
SIGNATURE_MOVIE_EMBEDDING_FEATURES: Final = "movie_embedding_with_features"
SIGNATURE_USER_QUERY: Final = "user_query_embedding"
SIGNATURE_MOVIE_CANDIDATE: Final = "movie_candidate_embedding"
SIGNATURE_MOVIE_QUERY: Final = "movie_query_embedding"
SIGNATURE_USER_HISTORY: Final = "user_embedding_with_history"
SIGNATURE_TF_EXAMPLE: Final = "serving_tf_example"
SIGNATURE_REGRESS: Final = "regress"

# Tensor names. `regress` uses TF-Serving's Regress names, which its Regress API requires.
RATING_OUTPUT: Final = "rating"
EMBEDDING_OUTPUT: Final = "embedding"
BIAS_OUTPUT: Final = "bias"
EXAMPLES_INPUT: Final = "examples"
# user_embedding_with_history: one explicit history (movie ids and their ratings) in; its
# retrieval query, each entry's term of it, and whether the rating towers read it, out
HISTORY_MOVIES_INPUT: Final = "history_movie_id"
HISTORY_RATINGS_INPUT: Final = "history_rating"
QUERY_OUTPUT: Final = "query"
QUERY_TERMS_OUTPUT: Final = "query_terms"
READS_HISTORY_OUTPUT: Final = "reads_history"
REGRESS_INPUT: Final = "inputs"
REGRESS_OUTPUT: Final = "outputs"
REGRESS_METHOD: Final = "tensorflow/serving/regress"
