"""Every raw and transformed feature of the pipeline, as one table.

ExampleGen writes the RAW features, the Transform `preprocessing_fn` turns them into the
TRANSFORMED ones, the model reads the transformed ones and serving signatures accept the
raw ones. Each raw feature is one `RawFeature` row of RAW_FEATURES and each transformed one
a `TransformedFeature` row of TRANSFORMED_FEATURES; everything that used to restate the
per-feature wiring by hand derives it from the rows instead:

  parse_spec()          the tf.Example parse spec: what ExampleGen writes, the curated schema
                        declares (tests/test_features.py checks the two agree) and the
                        Transform reads
  signature_specs()     the TensorSpecs of the raw-feature serving signatures, per tower
  RawFeature.default    the raw value of a missing feature: the other tower's side of an
                        embedding signature, an id unknown to the served model's lookups
  tower_inputs()        which transformed features each tower of the model reads

So adding a user feature is: a row here, its parsing in `movielens_files` (a `User` field
of the same name), its transformation in `preprocessing`, its use in `model.UserTower`, and
a feature in pipeline/schema/schema.pbtxt. Nothing else in the project spells a feature
name as a string literal (tests/test_features.py greps for them).

TensorFlow is imported lazily, by the spec functions only: the index service and the CLI
read this module without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

#: Which tower of the model a feature belongs to; "label" is the rating the model regresses,
#: "none" a feature no tower reads (kept in the examples for analyses).
Tower = Literal["user", "movie", "label", "none"]
#: dtype names as TensorFlow spells them (tf.as_dtype accepts them).
DType = Literal["int64", "float32", "string"]
TOWERS: Final = ("user", "movie", "label", "none")
DTYPES: Final = ("int64", "float32", "string")
#: A list feature travels through the raw-feature signatures as one string of its values
#: joined by this separator, as genres are written in movies.dat.
LIST_SEPARATOR: Final = "|"


@dataclass(frozen=True)
class RawFeature:
    """One raw feature: a tf.Example key written by ExampleGen.

    Its value comes from the attribute of the same name of `movielens_files.User` (tower
    "user"), `movielens_files.Movie` (tower "movie") or `movielens_files.Ratings` (the others).
    """

    name: str
    dtype: DType
    tower: Tower
    #: the raw value when the feature is missing (unknown ids, the other tower's side of an
    #: embedding signature, the parse default of preprocessing_fn's densification);
    #: a list feature's default is the empty list
    default: int | float | str | tuple = 0
    #: variable-length list (e.g. genres) rather than one value per example
    is_list: bool = False
    #: accepted by the raw-feature signatures (rate_with_features, *_embedding_with_features)
    #: and baked into the served model's per-id lookup tables
    in_signatures: bool = True
    doc: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"feature {self.name!r}: dtype {self.dtype!r} is not one of {DTYPES}")
        if self.tower not in TOWERS:
            raise ValueError(f"feature {self.name!r}: tower {self.tower!r} is not one of {TOWERS}")
        if self.in_signatures and self.tower not in ("user", "movie"):
            raise ValueError(f"feature {self.name!r}: only user and movie features enter the signatures")

    @property
    def signature_dtype(self) -> DType:
        """A signature's input dtype: list features travel as one LIST_SEPARATOR-joined string."""
        return "string" if self.is_list else self.dtype

    @property
    def signature_default(self) -> int | float | str:
        """The default as a signature input carries it (a list's is the empty joined string)."""
        return LIST_SEPARATOR.join(self.default) if self.is_list else self.default


@dataclass(frozen=True)
class TransformedFeature:
    """One output of preprocessing_fn, read by the model's `tower` (or its label)."""

    name: str
    source: str   # the raw feature it is computed from
    dtype: DType
    #: per example: () for a scalar; VOCAB_WIDTH for a dimension whose size a Transform
    #: vocabulary decides (the genre multi-hot), resolved per model by model.Vocab
    shape: tuple[int, ...]
    tower: Tower
    doc: str = ""


# --- domains ----------------------------------------------------------------------------
#: Demographics are optional: ML-1M and ML-100K have them, the ml-latest format (ml-latest-small,
#: ML-20M, ML-25M, ML-32M) has no users file at all. A user without them carries the rows'
#: defaults below (gender "", age 0, occupation -1, zip ""), which preprocessing maps to an
#: "unknown" bucket of each feature (GENDER_XF 2, AGE_XF len(AGE_CODES), an occupation
#: vocabulary entry of its own), so such users train and serve like any other.
GENDERS: Final = ("M", "F")
AGE_CODES: Final = (1, 18, 25, 35, 45, 50, 56)
NUM_OCCUPATIONS: Final = 21
#: The rating scales of the formats: ML-1M and ML-100K rate in whole stars 1..5, the ml-latest
#: format in half stars 0.5..5. The loader checks each format against its own scale.
WHOLE_STAR_SCALE: Final = (1.0, 5.0)
HALF_STAR_SCALE: Final = (0.5, 5.0)
#: The lowest and highest rating of any format (the curated schema's rating domain). A served
#: rating is clipped to the range of the model's own training ratings instead (rating_scale).
MIN_RATING: Final = HALF_STAR_SCALE[0]
MAX_RATING: Final = HALF_STAR_SCALE[1]
#: A rating at or above this is a "like": a relevant test item in the ranking benchmarks, a
#: full-weight positive of the retrieval softmax.
RELEVANT_RATING: Final = 4.0


def rating_scale(ratings: Sequence[float]) -> tuple[float, float]:
    """(lowest, highest) of a model's training ratings: the range its predictions are clipped to.

    Taken from the data rather than from a constant so that one model serves whatever scale it
    was trained on: an ML-1M model clips to 1..5, an ml-latest model to 0.5..5, and neither
    ever predicts a rating its data could not hold. No ratings: the whole-star scale.
    """
    import numpy as np

    values = np.asarray(ratings, dtype=np.float64).ravel()
    if not len(values):
        return WHOLE_STAR_SCALE
    return float(values.min()), float(values.max())


# --- raw features (tf.Example keys written by ExampleGen) -------------------------------
USER_ID: Final = "user_id"
MOVIE_ID: Final = "movie_id"
RATING: Final = "rating"
TIMESTAMP: Final = "timestamp"
GENDER: Final = "gender"
AGE: Final = "age"
OCCUPATION: Final = "occupation"
ZIP: Final = "zip"
TITLE: Final = "title"
YEAR: Final = "year"
GENRES: Final = "genres"

RAW_FEATURES: Final[tuple[RawFeature, ...]] = (
    RawFeature(USER_ID, "int64", "user", 0, doc="MovieLens user id"),
    RawFeature(MOVIE_ID, "int64", "movie", 0, doc="MovieLens movie id"),
    RawFeature(RATING, "float32", "label", 0.0, in_signatures=False,
               doc="the label: 1..5 (ML-1M, ML-100K) or 0.5..5 in half stars (ml-latest)"),
    RawFeature(TIMESTAMP, "int64", "none", 0, in_signatures=False,
               doc="seconds since epoch, 0 when the source has none"),
    RawFeature(GENDER, "string", "user", "", doc='"M" or "F"; "" when the data has no demographics (unknown)'),
    RawFeature(AGE, "int64", "user", 0, doc="ML-1M age code (AGE_CODES); 0 when unknown"),
    RawFeature(OCCUPATION, "int64", "user", -1, doc="ML-1M occupation code 0..20; -1 when unknown"),
    RawFeature(ZIP, "string", "user", "", doc='zip code as written by the user; "" when unknown'),
    RawFeature(TITLE, "string", "movie", "", doc='UTF-8 title without the "(year)"'),
    RawFeature(YEAR, "int64", "movie", 0, in_signatures=False, doc="release year, 0 when unknown"),
    RawFeature(GENRES, "string", "movie", (), is_list=True,
               doc="the data set's genre names (its own set: 18 in ML-1M, 19 in ml-latest), may be empty"),
)
LABEL_KEY: Final = RATING


def raw_feature(name: str, table: Sequence[RawFeature] = RAW_FEATURES) -> RawFeature:
    """The row of one raw feature."""
    for row in table:
        if row.name == name:
            return row
    raise KeyError(f"no raw feature {name!r}")


def raw_names(table: Sequence[RawFeature] = RAW_FEATURES, *, tower: str | None = None,
              dtype: str | None = None, is_list: bool | None = None,
              in_signatures: bool | None = None) -> tuple[str, ...]:
    """Names of the rows matching every given criterion, in table order."""
    return tuple(row.name for row in table
                 if (tower is None or row.tower == tower) and (dtype is None or row.dtype == dtype)
                 and (is_list is None or row.is_list == is_list)
                 and (in_signatures is None or row.in_signatures == in_signatures))


INT_FEATURES: Final = raw_names(dtype="int64", is_list=False)
FLOAT_FEATURES: Final = raw_names(dtype="float32", is_list=False)
STRING_FEATURES: Final = raw_names(dtype="string", is_list=False)
LIST_FEATURES: Final = raw_names(is_list=True)
USER_FEATURES: Final = raw_names(tower="user")
MOVIE_FEATURES: Final = raw_names(tower="movie")


# --- transformed features (outputs of preprocessing_fn, inputs of the model) -------------
def transformed_name(key: str) -> str:
    """The transformed feature's name for a raw feature key."""
    return f"{key}_xf"


TITLE_LENGTH: Final = 15
NUM_GENDER_VALUES: Final = len(GENDERS) + 1
NUM_AGE_VALUES: Final = len(AGE_CODES) + 1
OOV_BUCKETS: Final = 1   # user/movie ids (and genres) unseen in training map to one shared bucket
#: A per-model width in TransformedFeature.shape: the size of a Transform vocabulary plus its
#: OOV bucket, known only once the train split is analysed (model.Vocab holds it).
VOCAB_WIDTH: Final = -1

USER_ID_XF: Final = transformed_name(USER_ID)
MOVIE_ID_XF: Final = transformed_name(MOVIE_ID)
GENDER_XF: Final = transformed_name(GENDER)
AGE_XF: Final = transformed_name(AGE)
OCCUPATION_XF: Final = transformed_name(OCCUPATION)
GENRES_XF: Final = transformed_name(GENRES)
TITLE_IDS_XF: Final = "title_ids_xf"
LABEL_XF: Final = transformed_name(RATING)

TRANSFORMED_FEATURES: Final[tuple[TransformedFeature, ...]] = (
    TransformedFeature(USER_ID_XF, USER_ID, "int64", (), "user", "vocab index (+ OOV buckets)"),
    TransformedFeature(GENDER_XF, GENDER, "int64", (), "user", "0=M 1=F 2=unknown (no demographics)"),
    TransformedFeature(AGE_XF, AGE, "int64", (), "user", "index into AGE_CODES, 7=unknown (no demographics)"),
    TransformedFeature(OCCUPATION_XF, OCCUPATION, "int64", (), "user",
                       "vocab index (+ OOV bucket); -1 (no demographics) is an entry like any other"),
    TransformedFeature(MOVIE_ID_XF, MOVIE_ID, "int64", (), "movie", "vocab index (+ OOV buckets)"),
    TransformedFeature(GENRES_XF, GENRES, "float32", (VOCAB_WIDTH,), "movie",
                       "multi-hot over the train split's genre vocabulary (GENRE_VOCAB) + 1 OOV slot"),
    TransformedFeature(TITLE_IDS_XF, TITLE, "int64", (TITLE_LENGTH,), "movie", "word ids, 0 = padding"),
    TransformedFeature(LABEL_XF, RATING, "float32", (), "label", "the rating"),
)


def tower_inputs(tower: str, table: Sequence[TransformedFeature] = TRANSFORMED_FEATURES) -> tuple[str, ...]:
    """The transformed features a tower ("user", "movie") reads, or the label ("label")."""
    return tuple(row.name for row in table if row.tower == tower)


USER_INPUTS: Final = tower_inputs("user")
MOVIE_INPUTS: Final = tower_inputs("movie")
MODEL_INPUTS: Final = USER_INPUTS + MOVIE_INPUTS

# Vocabulary file names (tft.vocabulary outputs, read back by the model for sizes).
USER_ID_VOCAB: Final = "user_id_vocab"
MOVIE_ID_VOCAB: Final = "movie_id_vocab"
OCCUPATION_VOCAB: Final = "occupation_vocab"
TITLE_VOCAB: Final = "title_vocab"
GENRE_VOCAB: Final = "genre_vocab"


# --- specs derived from the table (TensorFlow imported here only) ------------------------
def parse_spec(table: Sequence[RawFeature] = RAW_FEATURES, *, label: bool = True) -> dict:
    """The tf.Example parse spec of the raw features: scalars as [1]-shaped fixed-length
    features, lists as variable-length ones (as the curated schema declares them)."""
    import tensorflow as tf

    return {row.name: (tf.io.VarLenFeature(tf.as_dtype(row.dtype)) if row.is_list
                       else tf.io.FixedLenFeature([1], tf.as_dtype(row.dtype)))
            for row in table if label or row.tower != "label"}


def signature_specs(tower: str, table: Sequence[RawFeature] = RAW_FEATURES) -> dict[str, "tf.TensorSpec"]:
    """Name -> [batch] TensorSpec of a tower's inputs to the raw-feature signatures."""
    import tensorflow as tf

    return {row.name: tf.TensorSpec([None], tf.as_dtype(row.signature_dtype))
            for row in table if row.tower == tower and row.in_signatures}
