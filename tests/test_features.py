"""The feature table (data/features.py) is the one place a feature is wired.

Three guarantees: the curated schema declares exactly the table's raw features with the
table's types; the parse spec, the signatures' specs, ExampleGen's tf.Examples and the
towers' inputs follow the table (a row added to a test-local copy shows up in each); and
no module outside features.py spells a feature name as a string literal.
"""
from __future__ import annotations

import ast
import dataclasses
import tokenize
from pathlib import Path

import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from data import features as f
from pipeline.configs import SCHEMA_PATH as SCHEMA

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_TYPES = {"int64": schema_pb2.INT, "float32": schema_pb2.FLOAT, "string": schema_pb2.BYTES}
PACKAGES = ("common", "settings", "data", "model", "components", "pipeline", "serving", "index", "baselines", "kubeflow",
            "benchmarks", "commands")

#: A user feature the project does not have, to see the derived specs pick it up.
NATIONALITY = f.RawFeature("nationality", "string", "user", "")
#: A list feature of another dtype: lists travel through the signatures as joined strings.
FAVOURITE_YEARS = f.RawFeature("favourite_years", "int64", "user", (), is_list=True)


def _schema() -> schema_pb2.Schema:
    return text_format.Parse(SCHEMA.read_text(encoding="utf-8"), schema_pb2.Schema())


# --- the schema agrees with the table -------------------------------------------------------
def test_schema_declares_the_table_s_raw_features_with_their_types():
    declared = {feature.name: feature for feature in _schema().feature}
    assert list(declared) == [row.name for row in f.RAW_FEATURES]
    for row in f.RAW_FEATURES:
        feature = declared[row.name]
        assert feature.type == SCHEMA_TYPES[row.dtype], row.name
        if row.is_list:
            assert not feature.HasField("shape"), row.name
        else:
            assert [d.size for d in feature.shape.dim] == [1], row.name


def test_schema_parse_spec_is_the_table_s():
    from tensorflow_transform.tf_metadata import schema_utils

    assert schema_utils.schema_as_feature_spec(_schema()).feature_spec == f.parse_spec()


def test_schema_domains_are_the_table_s_domains():
    """Each demographic's domain admits its "unknown" default (data without demographics),
    ratings span every format's scale, and genres have no fixed domain (the data's own)."""
    schema = _schema()
    domains = {domain.name: tuple(domain.value) for domain in schema.string_domain}
    assert domains[f.GENDER] == f.GENDERS + (f.raw_feature(f.GENDER).default,)
    assert f.GENRES not in domains
    declared = {feature.name: feature for feature in schema.feature}
    assert not declared[f.GENRES].domain and not declared[f.GENRES].value_count.max
    rating = declared[f.RATING].float_domain
    assert (rating.min, rating.max) == (f.MIN_RATING, f.MAX_RATING) == f.HALF_STAR_SCALE
    assert declared[f.AGE].int_domain.min == f.raw_feature(f.AGE).default == 0
    assert declared[f.AGE].int_domain.max == max(f.AGE_CODES)
    assert declared[f.OCCUPATION].int_domain.min == f.raw_feature(f.OCCUPATION).default == -1
    assert declared[f.OCCUPATION].int_domain.max == f.NUM_OCCUPATIONS - 1


def test_rating_scale_is_the_training_ratings_range():
    assert f.rating_scale([1.0, 5.0, 3.0]) == f.WHOLE_STAR_SCALE == (1.0, 5.0)
    assert f.rating_scale([0.5, 4.5, 5.0]) == f.HALF_STAR_SCALE == (0.5, 5.0)
    assert f.rating_scale([]) == f.WHOLE_STAR_SCALE


# --- derived specs follow the table ---------------------------------------------------------
def test_parse_spec_follows_the_rows():
    spec = f.parse_spec()
    assert set(spec) == {row.name for row in f.RAW_FEATURES}
    assert spec[f.GENRES] == tf.io.VarLenFeature(tf.string)
    assert spec[f.AGE] == tf.io.FixedLenFeature([1], tf.int64)
    assert spec[f.RATING] == tf.io.FixedLenFeature([1], tf.float32)
    assert f.LABEL_KEY not in f.parse_spec(label=False)

    grown = f.parse_spec(f.RAW_FEATURES + (NATIONALITY, FAVOURITE_YEARS))
    assert set(grown) - set(spec) == {NATIONALITY.name, FAVOURITE_YEARS.name}
    assert grown[NATIONALITY.name] == tf.io.FixedLenFeature([1], tf.string)
    assert grown[FAVOURITE_YEARS.name] == tf.io.VarLenFeature(tf.int64)


def test_signature_specs_follow_the_rows():
    user = f.signature_specs("user")
    movie = f.signature_specs("movie")
    assert list(user) == [f.USER_ID, f.GENDER, f.AGE, f.OCCUPATION, f.ZIP]
    assert list(movie) == [f.MOVIE_ID, f.TITLE, f.GENRES]  # the year is not a signature input
    assert movie[f.GENRES] == tf.TensorSpec([None], tf.string)  # genres as one '|'-joined string

    table = f.RAW_FEATURES + (NATIONALITY, FAVOURITE_YEARS)
    grown = f.signature_specs("user", table)
    assert list(grown) == [*user, NATIONALITY.name, FAVOURITE_YEARS.name]
    assert grown[FAVOURITE_YEARS.name] == tf.TensorSpec([None], tf.string)
    assert f.signature_specs("movie", table) == movie
    hidden = dataclasses.replace(NATIONALITY, in_signatures=False)
    assert f.signature_specs("user", f.RAW_FEATURES + (hidden,)) == user


def test_served_model_specs_are_the_derived_ones():
    from model import signatures

    assert signatures.USER_FEATURE_SPECS == f.signature_specs("user")
    assert signatures.MOVIE_FEATURE_SPECS == f.signature_specs("movie")


def test_example_gen_writes_one_feature_per_row():
    from components.example_gen import record_to_example

    record = {f.USER_ID: 1, f.MOVIE_ID: 2, f.RATING: 4.0, f.TIMESTAMP: 5, f.GENDER: "F", f.AGE: 25,
              f.OCCUPATION: 3, f.ZIP: "0123", f.TITLE: "Ça", f.YEAR: 1995, f.GENRES: ["Drama", "War"]}
    example = record_to_example(record)
    parsed = tf.io.parse_single_example(example.SerializeToString(), f.parse_spec())
    assert set(parsed) == set(record)
    assert parsed[f.TITLE].numpy().tolist() == ["Ça".encode()]
    assert parsed[f.GENRES].values.numpy().tolist() == [b"Drama", b"War"]
    assert parsed[f.RATING].numpy().tolist() == [4.0]

    table = f.RAW_FEATURES + (NATIONALITY, FAVOURITE_YEARS)
    grown = record_to_example({**record, NATIONALITY.name: "NZ", FAVOURITE_YEARS.name: [1999, 2001]}, table)
    parsed = tf.io.parse_single_example(grown.SerializeToString(), f.parse_spec(table))
    assert parsed[NATIONALITY.name].numpy().tolist() == [b"NZ"]
    assert parsed[FAVOURITE_YEARS.name].values.numpy().tolist() == [1999, 2001]


def test_example_bytes_keep_the_legacy_feature_order():
    """ExampleGen splits by a hash of the serialized example: the bytes must not change."""
    from components.example_gen import record_to_example

    record = {f.USER_ID: 1, f.MOVIE_ID: 2, f.RATING: 4.0, f.TIMESTAMP: 5, f.GENDER: "F", f.AGE: 25,
              f.OCCUPATION: 3, f.ZIP: "0123", f.TITLE: "T", f.YEAR: 1995, f.GENRES: ["Drama"]}
    legacy = {}  # the order the examples were written in before the feature table
    for key in ("user_id", "movie_id", "timestamp", "age", "occupation", "year"):
        legacy[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[record[key]]))
    legacy["rating"] = tf.train.Feature(float_list=tf.train.FloatList(value=[record["rating"]]))
    for key in ("gender", "zip", "title", "genres"):
        values = record[key] if key == "genres" else [record[key]]
        legacy[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))
    legacy = tf.train.Example(features=tf.train.Features(feature=legacy))
    assert record_to_example(record).SerializeToString() == legacy.SerializeToString()


def test_the_genre_width_is_a_per_model_vocabulary_size():
    """The genre multi-hot's width is not a constant: the model reads it from the Transform."""
    from model.model import Vocab, example_batch

    (genres,) = [row for row in f.TRANSFORMED_FEATURES if row.name == f.GENRES_XF]
    assert genres.shape == (f.VOCAB_WIDTH,)
    for width in (19, 20):
        vocab = Vocab(users=3, movies=3, occupations=2, title_words=4, genres=width)
        assert example_batch(vocab, n=2)[f.GENRES_XF].shape == (2, width)


def test_tower_inputs_follow_the_rows():
    assert f.USER_INPUTS == (f.USER_ID_XF, f.GENDER_XF, f.AGE_XF, f.OCCUPATION_XF)
    assert f.MOVIE_INPUTS == (f.MOVIE_ID_XF, f.GENRES_XF, f.TITLE_IDS_XF)
    assert f.tower_inputs("label") == (f.LABEL_XF,)
    extra = f.TransformedFeature("nationality_xf", NATIONALITY.name, "int64", (), "user")
    assert f.tower_inputs("user", f.TRANSFORMED_FEATURES + (extra,)) == (*f.USER_INPUTS, extra.name)
    assert {row.source for row in f.TRANSFORMED_FEATURES} <= {row.name for row in f.RAW_FEATURES}


def test_rows_are_checked():
    with pytest.raises(ValueError, match="dtype"):
        f.RawFeature("x", "int32", "user")
    with pytest.raises(ValueError, match="tower"):
        f.RawFeature("x", "int64", "item")
    with pytest.raises(ValueError, match="signatures"):
        f.RawFeature("x", "int64", "none")
    assert len({row.name for row in f.RAW_FEATURES}) == len(f.RAW_FEATURES)


# --- no feature name outside features.py ----------------------------------------------------
#: String literals that equal a feature name but name something else, with why.
ALLOWED = {
    ("model/signature_names.py", f.RATING): "the rating signatures' output tensor",
    ("index/embed.py", f.RATING): "the rating towers' embedding space",
    ("baselines/data.py", f.RATING): "a dataclass attribute of the baselines' rating triples",
    ("data/movielens_types.py", f.TITLE): "a column of ml-latest's movies.csv header",
    ("data/movielens_types.py", f.GENRES): "a column of ml-latest's movies.csv header",
}


def _string_literals(path: Path):
    """(line, value) of every plain string literal in a Python file (f-strings skipped)."""
    with path.open("rb") as handle:
        for token in tokenize.tokenize(handle.readline):
            if token.type != tokenize.STRING:
                continue
            prefix = token.string[:token.string.index(token.string[-1])].lower()
            if "f" in prefix:
                continue
            value = ast.literal_eval(token.string)
            if isinstance(value, str):
                yield token.start[0], value


def test_no_feature_name_literal_outside_features_py():
    names = ({row.name for row in f.RAW_FEATURES} | {row.name for row in f.TRANSFORMED_FEATURES})
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "data/features.py":
                continue
            found += [f"{rel}:{line}: {value!r}" for line, value in _string_literals(path)
                      if value in names and (rel, value) not in ALLOWED]
    assert not found, "feature names spelled outside data/features.py:\n" + "\n".join(found)


def test_the_literal_scan_sees_literals(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text('x = {"user_id": 1}\ny = f"{z}user_id"\n"""user_id in a docstring"""\n', encoding="utf-8")
    assert list(_string_literals(path)) == [(1, "user_id"), (3, "user_id in a docstring")]


#: String literals that equal a signature name but name something else.
SIGNATURE_ALLOWED = {
    ("serving/rest_api.py", "regress"): "the REST API's :regress verb",
    ("model/towers.py", "user_embedding"): "the user tower's output layer (a weight name)",
    ("model/towers.py", "movie_embedding"): "the movie tower's output layer (a weight name)",
}


def test_signature_names_are_declared_once():
    """Every module that names a signature imports the one set (model.signature_names)."""
    from model import signature_names

    values = {value for key, value in vars(signature_names).items() if key.startswith("SIGNATURE_")}
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "model/signature_names.py":
                continue
            found += [f"{rel}:{line}: {value!r}" for line, value in _string_literals(path)
                      if value in values and (rel, value) not in SIGNATURE_ALLOWED]
    assert not found, "signature names spelled outside model/signature_names.py:\n" + "\n".join(found)
