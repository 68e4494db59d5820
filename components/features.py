"""Every raw and transformed feature of the pipeline, named once.

ExampleGen writes the RAW features, the Transform `preprocessing_fn` turns them into the
TRANSFORMED ones, the model reads the transformed ones and serving signatures accept the
raw ones. Nothing else in the project spells a feature name as a string literal.
"""
from __future__ import annotations

from typing import Final

# --- raw features (tf.Example keys written by ExampleGen) -------------------------------
USER_ID: Final = "user_id"          # int64
MOVIE_ID: Final = "movie_id"        # int64
RATING: Final = "rating"            # float32, the label (1..5)
TIMESTAMP: Final = "timestamp"      # int64 seconds since epoch, 0 when the source has none
GENDER: Final = "gender"            # bytes, "M" or "F"
AGE: Final = "age"                  # int64, ML-1M age code (1, 18, 25, 35, 45, 50, 56)
OCCUPATION: Final = "occupation"    # int64, ML-1M occupation code 0..20
ZIP: Final = "zip"                  # bytes, zip code as written by the user
TITLE: Final = "title"              # bytes (UTF-8), title without the "(year)"
YEAR: Final = "year"                # int64, release year, 0 when unknown
GENRES: Final = "genres"            # bytes list, subset of GENRE_NAMES (may be empty)

LABEL_KEY: Final = RATING
INT_FEATURES: Final = (USER_ID, MOVIE_ID, TIMESTAMP, AGE, OCCUPATION, YEAR)
FLOAT_FEATURES: Final = (RATING,)
STRING_FEATURES: Final = (GENDER, ZIP, TITLE)
LIST_FEATURES: Final = (GENRES,)
USER_FEATURES: Final = (USER_ID, GENDER, AGE, OCCUPATION, ZIP)
MOVIE_FEATURES: Final = (MOVIE_ID, TITLE, YEAR, GENRES)

# --- domains ----------------------------------------------------------------------------
GENRE_NAMES: Final = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)
GENDERS: Final = ("M", "F")
AGE_CODES: Final = (1, 18, 25, 35, 45, 50, 56)
NUM_OCCUPATIONS: Final = 21
MIN_RATING: Final = 1.0
MAX_RATING: Final = 5.0
#: A rating at or above this is a "like": a relevant test item in the ranking benchmarks, a
#: full-weight positive of the retrieval softmax.
RELEVANT_RATING: Final = 4.0

# --- transformed features (outputs of preprocessing_fn, inputs of the model) -------------
def transformed_name(key: str) -> str:
    """The transformed feature's name for a raw feature key."""
    return f"{key}_xf"


USER_ID_XF: Final = transformed_name(USER_ID)          # int64 vocab index (+ OOV buckets)
MOVIE_ID_XF: Final = transformed_name(MOVIE_ID)        # int64 vocab index (+ OOV buckets)
GENDER_XF: Final = transformed_name(GENDER)            # int64 0=M 1=F 2=unknown
AGE_XF: Final = transformed_name(AGE)                  # int64 index into AGE_CODES, 7=unknown
OCCUPATION_XF: Final = transformed_name(OCCUPATION)    # int64 vocab index (+ OOV bucket)
ZIP_PREFIX_XF: Final = "zip_prefix_xf"                 # int64 vocab index of zip[:ZIP_PREFIX_LEN]
GENRES_XF: Final = transformed_name(GENRES)            # float32 [NUM_GENRES] multi-hot
TITLE_IDS_XF: Final = "title_ids_xf"                   # int64 [TITLE_LENGTH], 0 = padding
TITLE_LENGTH_XF: Final = "title_length_xf"             # int64, real tokens (<= TITLE_LENGTH)
LABEL_XF: Final = transformed_name(RATING)             # float32

NUM_GENRES: Final = len(GENRE_NAMES)
TITLE_LENGTH: Final = 15
ZIP_PREFIX_LEN: Final = 3
NUM_GENDER_VALUES: Final = len(GENDERS) + 1
NUM_AGE_VALUES: Final = len(AGE_CODES) + 1
OOV_BUCKETS: Final = 1   # user/movie ids unseen in training map to one shared bucket

# Vocabulary file names (tft.vocabulary outputs, read back by the model for sizes).
USER_ID_VOCAB: Final = "user_id_vocab"
MOVIE_ID_VOCAB: Final = "movie_id_vocab"
OCCUPATION_VOCAB: Final = "occupation_vocab"
ZIP_PREFIX_VOCAB: Final = "zip_prefix_vocab"
TITLE_VOCAB: Final = "title_vocab"
