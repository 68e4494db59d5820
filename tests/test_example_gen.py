"""Tests of the vectorised example encoding of components.example_gen.

ExampleGen's hash split hashes the bytes the source yields, so the encoded bytes must equal
the per-record protos' deterministic serialization byte for byte, or every split (and every
benchmark number measured on one) would move.
"""
from __future__ import annotations

import itertools

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to
from tfx.components.example_gen.base_example_gen_executor import _PartitionFn

from components.example_gen import (
    DEFAULT_SPLITS,
    EncodedRatings,
    _to_examples,
    output_config,
    record_to_example,
    write_splits,
)
from data import features as F
from data.movielens_files import load_movielens
from tests.test_movielens_files import write_ml1m


def legacy_bytes(data, start=0, stop=None) -> list[bytes]:
    return [record_to_example(r).SerializeToString(deterministic=True) for r in data.records(start, stop)]


def test_encoded_bytes_equal_the_per_record_protos_on_real_ml100k(shared_data):
    data = load_movielens(shared_data / "ml-100k")
    encoded = EncodedRatings.build(data)
    assert len(encoded) == len(data.ratings) == 100_000
    for start in range(0, len(encoded), 25_000):  # every rating, in row ranges as the DoFn does
        assert encoded.examples(start, start + 25_000) == legacy_bytes(data, start, start + 25_000)


def test_encoded_bytes_cover_lists_latin1_titles_fractional_ratings_and_timestamps(tmp_path):
    movies = ("1::Toy Story (1995)::Animation|Children's|Comedy\n"
              "73::Misérables, Les (1995)::Drama|Musical\n"
              "5::No Genre Nor Year::\n")  # empty genre list, year 0
    folder = write_ml1m(tmp_path / "ml-1m", movies=movies)
    csv = tmp_path / "ratings.csv"
    csv.write_text("user,movie,rating,timestamp\n1,1,3.5,2147483648\n2,73,1,0\n3,5,4.25,978302109\n"
                   "3,1,5,1\n2,5,2,300\n")
    data = load_movielens(folder, ratings_csv=csv)
    encoded = EncodedRatings.build(data)
    expected = legacy_bytes(data)
    assert encoded.examples() == expected
    assert encoded.examples(1, 4) == expected[1:4]
    assert encoded.examples(2, 2) == []
    parsed = tf.io.parse_single_example(encoded.examples(2, 3)[0], F.parse_spec())
    assert parsed[F.TITLE].numpy().tolist() == ["No Genre Nor Year".encode()]
    assert parsed[F.GENRES].values.numpy().tolist() == []
    assert parsed[F.RATING].numpy().tolist() == [4.25]
    assert parsed[F.TIMESTAMP].numpy().tolist() == [978302109]
    first = tf.io.parse_single_example(encoded.examples(0, 1)[0], F.parse_spec())
    assert first[F.TIMESTAMP].numpy().tolist() == [2147483648]
    assert first[F.GENRES].values.numpy().tolist() == [b"Animation", b"Children's", b"Comedy"]


def test_long_titles_get_a_two_byte_length_header(tmp_path):
    title = "A" * 300  # the Features message passes 127 bytes: its length is a 2-byte varint
    folder = write_ml1m(tmp_path / "ml-1m", movies=f"1::{title} (1999)::Drama\n73::B (1995)::War\n"
                                                   f"1001::C (1982)::Comedy\n")
    data = load_movielens(folder)
    assert EncodedRatings.build(data).examples() == legacy_bytes(data)


def test_the_beam_source_yields_the_bytes_tfx_splits_as_before(tmp_path):
    folder = write_ml1m(tmp_path / "ml-1m")
    data = load_movielens(folder)
    expected = legacy_bytes(data)
    buckets = list(itertools.accumulate(n for _, n in DEFAULT_SPLITS))
    split_config = output_config().split_config
    # the split TFX computes from the bytes is the one it computed from the protos
    assert ([_PartitionFn(b, len(buckets), buckets, split_config) for b in expected]
            == [_PartitionFn(e, len(buckets), buckets, split_config)
                for e in map(record_to_example, data.records())])
    with beam.Pipeline() as pipeline:
        assert_that(_to_examples(pipeline, data, str(tmp_path / "encoded")), equal_to(expected))


def test_saved_encoding_loads_memory_mapped_with_the_same_bytes(tmp_path, shared_data):
    data = load_movielens(shared_data / "ml-100k")
    encoded = EncodedRatings.build(data)
    encoded.save(str(tmp_path / "encoded"))
    loaded = EncodedRatings.load(str(tmp_path / "encoded"))
    assert [s for s, _ in loaded.fragments] == [s for s, _ in encoded.fragments]
    assert {k: v.dtype for k, v in loaded.codes.items()} == {k: v.dtype for k, v in encoded.codes.items()}
    assert loaded.examples(40_000, 41_000) == encoded.examples(40_000, 41_000)


@pytest.mark.parametrize("row, values", [
    (F.TIMESTAMP, [0, 1, 127, 128, 300, 16_383, 16_384, 978_302_109, 2 ** 31, 2 ** 35 + 7, 2 ** 62, -1, -(2 ** 40)]),
    (F.RATING, [0.5, 1.0, 3.5, 4.25, 5.0, -2.0]),
])
def test_numeric_entries_equal_the_per_value_protos(row, values):
    from components.example_gen import _entry_bytes, _numeric_entries

    table_row = next(r for r in F.RAW_FEATURES if r.name == row)
    array = np.array(values, np.int64 if table_row.dtype == "int64" else np.float32)
    expected = [_entry_bytes(table_row, v) for v in array.tolist()]
    assert _numeric_entries(table_row, array).to_pylist() == expected
    assert _numeric_entries(table_row, array, chunk=3).to_pylist() == expected
    assert _numeric_entries(table_row, array[:0]).to_pylist() == []


@pytest.mark.parametrize("codes", [np.array([0, 5, 255]), np.array([0, 70_000])])
def test_codes_are_shipped_in_the_smallest_dtype(codes):
    from components.example_gen import _compact

    compact = _compact(codes)
    assert compact.tolist() == codes.tolist()
    assert compact.dtype.itemsize == (1 if codes.max() < 256 else 4)


def read_split(folder) -> list[bytes]:
    files = sorted(str(p) for p in folder.glob("*.gz"))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")] if files else []


@pytest.mark.slow  # all 100,000 real ML-100K ratings through TFX's split, about 20 s: CI's slow tier
def test_write_splits_puts_every_real_ml100k_rating_where_tfx_split_its_proto(tmp_path, shared_data):
    data = load_movielens(shared_data / "ml-100k")
    split_config = output_config().split_config
    buckets = list(itertools.accumulate(n for _, n in DEFAULT_SPLITS))
    expected = {name: [] for name, _ in DEFAULT_SPLITS}
    for record in data.records():
        example = record_to_example(record)  # today's per-record proto, split as TFX splits it
        expected[DEFAULT_SPLITS[_PartitionFn(example, 3, buckets, split_config)][0]].append(
            example.SerializeToString(deterministic=True))
    folders = [tmp_path / f"Split-{name}" for name, _ in DEFAULT_SPLITS]
    with beam.Pipeline() as pipeline:
        write_splits(pipeline, data, [str(f) for f in folders], split_config, str(tmp_path / "encoded"))
    for (name, _), folder in zip(DEFAULT_SPLITS, folders):
        assert sorted(read_split(folder)) == sorted(expected[name]), name
    assert sum(len(v) for v in expected.values()) == 100_000


def test_default_beam_args_skip_tfx_building_its_own_sdist():
    from tfx.utils import dependency_utils

    from pipeline import configs

    args = list(configs.DEFAULT_BEAM_ARGS)
    assert dependency_utils.make_beam_dependency_flags(args) == args  # no --extra_package added
    with beam.Pipeline(argv=args) as pipeline:  # and the DirectRunner runs with them
        assert_that(pipeline | beam.Create([1, 2]) | beam.Map(lambda x: x * 10), equal_to([10, 20]))
