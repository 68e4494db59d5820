"""MovieLens ExampleGen: raw MovieLens files -> tf.Examples, one per rating.

A FileBasedExampleGen whose executor reads a MovieLens folder (ML-1M `*.dat` or ML-100K
`u.*`, optionally with a `user,movie,rating[,timestamp]` CSV in place of the ratings file),
validates every line (see `movielens_files`) and joins each rating with its user's and
movie's features. TFX's own ExampleGen machinery does the rest: the deterministic hash
split into train/eval/test and the gzipped TFRecord output, span/fingerprint for caching.
After the examples are written, the executor also writes the second output, `catalogue`
(data.catalogue): the parsed users/movies tables and the rating counts of what landed
in Split-train, so that no later step re-reads the raw files outside ML-Metadata lineage.

Parsing happens once, in the driver of the Beam job, so that a malformed file fails fast
with `path:line: field ...` before any worker starts. The driver then encodes the join
compactly (EncodedRatings: each user's, movie's and rating value's serialized feature entries
once, plus small per-rating codes) and workers assemble the serialized tf.Examples of row
ranges with Arrow kernels: byte-identical to the per-record protos' deterministic
serialization, so TFX's hash split is unchanged, at ~1/35 of their cost. The encoding goes
to the executor's temporary folder as Arrow IPC files that each worker memory-maps once
(`EncodedRatings.save` / `load`): pickled into the DoFn it was shipped whole with the Beam
graph, which at 25M ratings (a gigabyte of codes and timestamp entries) cost more than
the encoding itself.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from tfx import types
from tfx.components.example_gen import utils as example_gen_utils, write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor, _PartitionFn
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import proto_utils

from common import fileio
from common.allocator import no_numpy_hugepages
from common.errors import UserError
from common.phase_clock import PhaseClock
from components.example_gen_options import make_custom_config, read_custom_config
from components.input_fingerprint import ContentFingerprintDriver
from data import features
from data.catalogue import MovieLensCatalogue, build_catalogue, read_split_ratings, write_catalogue
from data.movielens_files import MovieLensData, load_movielens, raw_values, summary

CATALOGUE_KEY = "catalogue"

CHUNK_ROWS = 100_000  # ratings per shard: one file per split each
# train/eval/test = 64/16/20: the seed's 80/20 split, then 80/20 of the train part.
DEFAULT_SPLITS = (("train", 16), ("eval", 4), ("test", 5))


def _int(values: list) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float(values: list) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _bytes(values: list) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(v).encode("utf-8") for v in values]))


_ENCODERS = {"int64": _int, "float32": _float, "string": _bytes}


def _serialization_order(row: features.RawFeature) -> tuple[bool, int]:
    """Ints, floats, strings, then lists (table order within each): the order the examples'
    features have always been inserted in. ExampleGen's split hashes the *deterministic*
    serialization, which orders a proto map by key whatever the insertion order (that key
    order is what EncodedRatings reproduces); the insertion order only shows in a plain
    SerializeToString()."""
    return row.is_list, features.DTYPES.index(row.dtype)


def record_to_example(record: Mapping[str, Any],
                      table: Sequence[features.RawFeature] = features.RAW_FEATURES) -> tf.train.Example:
    """One joined rating record (see MovieLensData.records) as a tf.Example: one feature per
    row of the feature table, a list or a single value as the row says."""
    feature = {row.name: _ENCODERS[row.dtype](list(record[row.name]) if row.is_list else [record[row.name]])
               for row in sorted(table, key=_serialization_order)}
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _varint(value: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative int (a length prefix)."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _entry_bytes(row: features.RawFeature, value: Any) -> bytes:
    """The serialized map entry `row.name -> value` of a tf.train.Features (with its tag and
    length): a Features holding just this one feature serializes to exactly these bytes."""
    feature = _ENCODERS[row.dtype](list(value) if row.is_list else [value])
    return tf.train.Features(feature={row.name: feature}).SerializeToString(deterministic=True)


def _numeric_entries(row: features.RawFeature, values: np.ndarray, chunk: int = 1 << 20) -> pa.BinaryArray:
    """``_entry_bytes(row, v)`` for every v of ``values`` (a scalar int64 or float32 row) in
    NumPy: an entry is a fixed prefix followed by the value's own bytes (a float's 4 little-
    endian bytes; an int's base-128 varint of its 64-bit two's complement, 1 to 10 bytes), and
    the prefix depends only on that byte count, since every length inside it does. So each
    prefix is read off one per-value serialization and the rest is array arithmetic: the
    Python loop it replaces took 38 s on the 4.8M distinct timestamps of 5M ratings."""
    if row.dtype == "float32":
        value_bytes = values.astype("<f4").view(np.uint8).reshape(-1, 4)
        counts = np.full(len(values), 4, np.int64)
        samples = {4: float(values[0])} if len(values) else {}
    else:
        unsigned = values.astype(np.int64).view(np.uint64)
        shifts = np.arange(10, dtype=np.uint64) * np.uint64(7)
        counts = np.ones(len(values), np.int64)
        value_bytes = np.empty((len(values), 10), np.uint8)
        for lo in range(0, len(values), chunk):
            part = unsigned[lo:lo + chunk, None] >> shifts  # (rows, 10) 7-bit groups, low first
            counts[lo:lo + chunk] += np.count_nonzero(part[:, 1:], axis=1)
            more = np.arange(10) < (counts[lo:lo + chunk, None] - 1)  # continuation bits
            value_bytes[lo:lo + chunk] = (part & np.uint64(0x7F)).astype(np.uint8) | (more * 0x80).astype(np.uint8)
        samples = {int(n): int(values[np.argmax(counts == n)]) for n in np.flatnonzero(np.bincount(counts))}
    prefixes = {n: _entry_bytes(row, v)[:-n] for n, v in samples.items()}
    # Each byte count's entries are fixed-width rows: lay them out group after group (one
    # contiguous block each), then put them back in value order with one Arrow take, which
    # is linear; a NumPy scatter of every byte to its final offset was 8.5 of the 9.8 s.
    groups = [np.flatnonzero(counts == n) for n in prefixes]
    sizes = np.concatenate([np.full(len(rows), len(prefixes[n]) + n, np.int64)
                            for n, rows in zip(prefixes, groups)] or [np.zeros(0, np.int64)])
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    if offsets[-1] >= 2 ** 31:
        raise ValueError(f"{row.name}: {offsets[-1]:,} bytes of distinct entries do not fit an Arrow binary array")
    blocks = []
    for (n, prefix), rows in zip(prefixes.items(), groups):
        block = np.empty((len(rows), len(prefix) + n), np.uint8)
        block[:, :len(prefix)] = np.frombuffer(prefix, np.uint8)
        block[:, len(prefix):] = value_bytes[rows, :n]
        blocks.append(block.reshape(-1))
    data = np.concatenate(blocks or [np.zeros(0, np.uint8)])
    grouped = pa.Array.from_buffers(pa.binary(), len(values),
                                    [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)])
    if len(groups) <= 1:  # one byte count (all floats, most timestamps): already in order
        return grouped
    position = np.empty(len(values), np.int64)  # value i sits at grouped[position[i]]
    position[np.concatenate(groups)] = np.arange(len(values))
    return grouped.take(pa.array(position))


def _entries(row: features.RawFeature, values: list[dict]) -> pa.BinaryArray:
    """The serialized entries of ``row`` for each raw-value dict (see ``_entry_bytes``)."""
    return pa.array([_entry_bytes(row, v[row.name]) for v in values], pa.binary())


def _compact(codes: np.ndarray) -> np.ndarray:
    """Codes in the smallest unsigned dtype that holds them (the Beam graph ships them)."""
    return codes.astype(np.min_scalar_type(max(int(codes.max(initial=0)), 0)))


@dataclass
class EncodedRatings:
    """Every rating of a MovieLensData as the tf.Example bytes ExampleGen writes, kept compact:
    each feature's distinct serialized map entries once (a user's once per user, a rating
    value's once per value), as an Arrow binary array, plus small integer codes per rating
    that pick a row's entry of each feature.

    `examples(start, stop)` assembles the bytes of a row range in Arrow's C++ kernels (take,
    element-wise binary join; no per-row protos or Python), byte-identical to
    ``record_to_example(record).SerializeToString(deterministic=True)``: the entries are
    joined in key order, as deterministic serialization orders a proto map, so the hash split
    of TFX's ExampleGen (which hashes the bytes a source yields) puts every rating where the
    per-record protos put it.
    """

    fragments: list[tuple[str, pa.BinaryArray]]  # per feature in key order: (codes column, entries)
    codes: dict[str, np.ndarray]                 # codes column -> per-rating code
    headers: pa.BinaryArray                      # Features length -> the Example's header bytes

    def __len__(self) -> int:
        return len(next(iter(self.codes.values())))

    @classmethod
    def build(cls, data: MovieLensData,
              table: Sequence[features.RawFeature] = features.RAW_FEATURES) -> "EncodedRatings":
        ratings = data.ratings
        entities = {"user": (data.users, ratings.user_id), "movie": (data.movies, ratings.movie_id)}
        codes: dict[str, np.ndarray] = {}
        entries: dict[str, list[dict]] = {}  # codes column -> raw values of each code
        numeric: dict[str, np.ndarray] = {}  # a scalar number's column -> its distinct values
        for tower, (by_id, ids) in entities.items():
            if any(row.tower == tower for row in table):
                known = np.fromiter(by_id.keys(), np.int64, len(by_id))
                codes[tower] = _compact(pd.Index(known).get_indexer(ids))  # a hash lookup: linear
                entries[tower] = [raw_values(by_id[i]) for i in known.tolist()]
        for row in table:
            if row.tower not in entities:  # a Ratings column: one entry per distinct value
                # hash factorisation, linear in the ratings (np.unique sorts: 13 s of 25M's build)
                inverse, values = pd.factorize(getattr(ratings, row.name), sort=False)
                codes[row.name] = _compact(inverse)
                if row.dtype in ("int64", "float32") and not row.is_list:
                    numeric[row.name] = values
                else:
                    entries[row.name] = [{row.name: v} for v in values.tolist()]
        fragments = []
        longest = 0
        for row in sorted(table, key=lambda r: r.name.encode("utf-8")):
            source = row.tower if row.tower in entities else row.name
            blobs = (_numeric_entries(row, numeric[source]) if source in numeric
                     else _entries(row, entries[source]))
            fragments.append((source, blobs))
            longest += int(pc.max(pc.binary_length(blobs)).as_py() or 0)
        # Example.features is field 1 (tag byte 0x0a) followed by its length
        headers = pa.array([b"\n" + _varint(n) for n in range(longest + 1)], pa.binary())
        return cls(fragments, codes, headers)

    def save(self, folder: str) -> None:
        """Writes the encoding as Arrow IPC files under ``folder`` (a local path or a URI), for
        workers to ``load``: the codes as one table, each feature's entries as one more."""
        fileio.makedirs(folder)
        tables = {"codes": pa.table({name: pa.array(column) for name, column in self.codes.items()}),
                  "headers": pa.table({"headers": self.headers})}
        for i, (source, blobs) in enumerate(self.fragments):
            tables[f"fragment-{i:02d}"] = pa.table({source: blobs})
        for name, table in tables.items():
            path = fileio.join(folder, f"{name}.arrow")
            if not fileio.is_uri(path):  # straight to the file: no in-memory copy of it
                with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                    writer.write_table(table)
                continue
            sink = pa.BufferOutputStream()
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            fileio.write_bytes(path, sink.getvalue().to_pybytes())

    @classmethod
    def load(cls, folder: str) -> "EncodedRatings":
        """The encoding ``save`` wrote; a local folder is memory-mapped (no copy), so every
        worker of a machine shares the page cache's one copy."""
        def read(name: str) -> pa.Table:
            path = fileio.join(folder, f"{name}.arrow")
            source = pa.memory_map(path) if not fileio.is_uri(path) else pa.BufferReader(fileio.read_bytes(path))
            return pa.ipc.open_file(source).read_all()

        codes = read("codes")
        fragments = []
        while fileio.exists(fileio.join(folder, f"fragment-{len(fragments):02d}.arrow")):
            table = read(f"fragment-{len(fragments):02d}")
            fragments.append((table.column_names[0], table.column(0).combine_chunks()))
        return cls(fragments,
                   {name: codes.column(name).combine_chunks().to_numpy(zero_copy_only=True)
                    for name in codes.column_names},
                   read("headers").column(0).combine_chunks())

    def examples(self, start: int = 0, stop: int | None = None) -> list[bytes]:
        """The serialized tf.Examples of the ratings in ``[start, stop)``."""
        sl = slice(start, stop)
        entries = [blobs.take(self.codes[source][sl]) for source, blobs in self.fragments]
        body = pc.binary_join_element_wise(*entries, b"")
        return pc.binary_join_element_wise(self.headers.take(pc.binary_length(body)), body, b"").to_pylist()


class _RowsToExamples(beam.DoFn):
    """Turns a [start, stop) range of the ratings into serialized tf.Examples."""

    def __init__(self, encoded_folder: str):
        self._folder = encoded_folder
        self._count = beam.metrics.Metrics.counter("movielens", "examples")

    def setup(self) -> None:
        self._encoded = EncodedRatings.load(self._folder)

    def process(self, row_range: tuple[int, int]) -> Iterator[bytes]:
        start, stop = row_range
        examples = self._encoded.examples(start, stop)
        self._count.inc(len(examples))
        yield from examples


def load_input(exec_properties: Mapping[str, Any]) -> MovieLensData:
    """Parses the MovieLens folder at input_base with the component's options.

    Raises MovieLensFormatError (and MovieLensEmptyError for no users/movies/ratings), so a
    bad or empty input stops the run here, naming the file, before Transform runs.
    """
    options = read_custom_config(exec_properties)
    data = load_movielens(
        exec_properties[standard_component_specs.INPUT_BASE_KEY],
        ratings_csv=options.get("ratings_csv") or None,
        skip_bad_rows=bool(options.get("skip_bad_rows", False)),
        quarantine_path=options.get("quarantine_path") or None,
    )
    logging.info("MovieLens ExampleGen: %s", summary(data))
    return data


def _encode(data: MovieLensData, work_dir: str) -> int:
    """Encodes ``data`` into ``work_dir`` (for the workers) and returns its rating count."""
    encoded = EncodedRatings.build(data)
    encoded.save(work_dir)
    return len(encoded)


def _to_examples(pipeline: beam.Pipeline, data: MovieLensData, work_dir: str) -> beam.pvalue.PCollection:
    """One serialized tf.Example per rating of the parsed data (the encoding is kept in
    ``work_dir`` until the pipeline has run)."""
    n = _encode(data, work_dir)
    ranges = [(start, min(start + CHUNK_ROWS, n)) for start in range(0, n, CHUNK_ROWS)]
    return (pipeline
            | "RowRanges" >> beam.Create(ranges, reshuffle=True)
            | "ToExamples" >> beam.ParDo(_RowsToExamples(work_dir)))


class _WriteSplitShards(beam.DoFn):
    """Encodes shard ``index`` (a [start, stop) row range), splits it with TFX's own partition
    function and writes one gzipped TFRecord file per split, ``<split dir>/data_tfrecord-
    <index>-of-<count>.gz``: what TFX's Partition + WriteSplit do, without their per-element
    Beam steps (a Reshuffle of every example, the bulk of ExampleGen's time). A retried
    bundle rewrites the same bytes to the same names."""

    def __init__(self, encoded_folder: str, split_uris: Sequence[str], split_config, count: int):
        self._folder = encoded_folder
        self._split_uris = list(split_uris)
        self._split_config = split_config
        self._buckets = list(itertools.accumulate(s.hash_buckets for s in split_config.splits))
        self._count = count
        self._examples = beam.metrics.Metrics.counter("movielens", "examples")

    def setup(self) -> None:
        self._encoded = EncodedRatings.load(self._folder)

    def process(self, shard: tuple[int, int, int]) -> Iterator[tuple[str, int]]:
        index, start, stop = shard
        examples = self._encoded.examples(start, stop)
        parts = np.fromiter((_PartitionFn(e, len(self._buckets), self._buckets, self._split_config)
                             for e in examples), np.int64, len(examples))
        for split, uri in enumerate(self._split_uris):
            fileio.makedirs(uri)
            path = fileio.join(uri, f"{write_split.DEFAULT_FILE_NAME}-{index:05d}-of-{self._count:05d}.gz")
            with tf.io.TFRecordWriter(path, options="GZIP") as writer:
                for i in np.flatnonzero(parts == split).tolist():
                    writer.write(examples[i])
            yield uri, int(np.count_nonzero(parts == split))
        self._examples.inc(len(examples))


def write_splits(pipeline: beam.Pipeline, data: MovieLensData, split_uris: Sequence[str],
                 split_config: example_gen_pb2.SplitConfig, work_dir: str) -> beam.pvalue.PCollection:
    """Writes every rating of ``data`` as a serialized tf.Example into the split folders
    (``split_uris[i]`` for ``split_config.splits[i]``), split by TFX's hash partition; the
    encoding is kept in ``work_dir`` until the pipeline has run."""
    n = _encode(data, work_dir)
    shards = [(i, start, min(start + CHUNK_ROWS, n)) for i, start in enumerate(range(0, n, CHUNK_ROWS))]
    return (pipeline
            | "Shards" >> beam.Create(shards, reshuffle=True)
            | "EncodeSplitWrite" >> beam.ParDo(_WriteSplitShards(work_dir, split_uris, split_config, len(shards))))


class Executor(BaseExampleGenExecutor):
    """TFX ExampleGen executor for raw MovieLens files; also writes the catalogue output."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        executor = self

        @beam.ptransform_fn
        @beam.typehints.with_input_types(beam.Pipeline)
        @beam.typehints.with_output_types(bytes)
        def _source(pipeline: beam.Pipeline, exec_properties: dict[str, Any],
                    split_pattern: str) -> beam.pvalue.PCollection:
            del split_pattern  # The folder is read as a whole: three files make one dataset.
            # Kept for Do: the catalogue's tables are the ones these examples were joined with.
            executor._data = load_input(exec_properties)
            return _to_examples(pipeline, executor._data, executor._encoded_dir())

        return _source

    def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                               exec_properties: dict[str, Any]) -> dict[str, beam.pvalue.PCollection]:
        """Writes the splits itself (write_splits) and so hands the base Do none to write."""
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        if not output_config.split_config.splits:  # no hash split: TFX's generic path
            return super().GenerateExamplesByBeam(pipeline, exec_properties)
        self._data = load_input(exec_properties)
        self._phases.lap("parse")
        uris = [artifact_utils.get_split_uri(self._examples_outputs, split.name)
                for split in output_config.split_config.splits]
        write_splits(pipeline, self._data, uris, output_config.split_config, self._encoded_dir())
        self._phases.lap("encode")
        return {}

    def _encoded_dir(self) -> str:
        """Where the workers read the encoding from: the execution's temporary folder, which
        the launcher deletes once the component has run."""
        return fileio.join(self._get_tmp_dir(), "encoded-ratings")

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        no_numpy_hugepages()  # arrays of every rating: keep their page faults linear (common.allocator)
        self._data: MovieLensData | None = None
        self._examples_outputs = output_dict[standard_component_specs.EXAMPLES_KEY]
        self._phases = PhaseClock()
        super().Do(input_dict, output_dict, exec_properties)
        self._phases.lap("write splits")
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        splits = artifact_utils.decode_split_names(examples.split_names)
        data = self._data if self._data is not None else load_input(exec_properties)
        # Counted from the written TFRecords: the catalogue says what Split-train really holds.
        pairs = {split: read_split_ratings(examples.uri, split) for split in splits}
        self._phases.lap("read splits back")
        if "train" in pairs and not len(pairs["train"][0]):
            raise UserError(f"{data.source}: {len(data.ratings)} rating(s) parsed, but none landed in the "
                            f"train split; the model needs more ratings to train on")
        if output_dict.get(CATALOGUE_KEY):
            catalogue = artifact_utils.get_single_instance(output_dict[CATALOGUE_KEY])
            write_catalogue(catalogue.uri, build_catalogue(data.users, data.movies, pairs, source=data.source))
            logging.info("MovieLens ExampleGen: catalogue written to %s", catalogue.uri)
        self._phases.lap("catalogue")
        logging.info("MovieLens ExampleGen: seconds per phase %s", self._phases.seconds)


def output_config(splits: tuple[tuple[str, int], ...] = DEFAULT_SPLITS) -> example_gen_pb2.Output:
    """Hash-bucket split config: deterministic, by the serialized example."""
    return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=buckets)
        for name, buckets in splits]))


class MovieLensExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    """FileBasedExampleGen's spec plus the `catalogue` output (data.catalogue)."""

    OUTPUTS = {
        **standard_component_specs.FileBasedExampleGenSpec.OUTPUTS,
        CATALOGUE_KEY: ChannelParameter(type=MovieLensCatalogue),
    }


class MovieLensExampleGenComponent(FileBasedExampleGen):
    """FileBasedExampleGen with a catalogue output, whose driver (TFX's FileBasedDriver: span,
    version, input fingerprint) fingerprints every input file by content, the `ratings_csv`
    too (components.input_fingerprint), so an edited input is never served from cache."""

    SPEC_CLASS = MovieLensExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = ContentFingerprintDriver

    def __init__(self, *, input_base: str, input_config: example_gen_pb2.Input,
                 output_config: example_gen_pb2.Output, custom_config: example_gen_pb2.CustomConfig):
        spec = MovieLensExampleGenSpec(
            input_base=input_base, input_config=input_config, output_config=output_config,
            custom_config=custom_config, range_config=None,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            examples=types.Channel(type=standard_artifacts.Examples),
            catalogue=types.Channel(type=MovieLensCatalogue))
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)


def MovieLensExampleGen(input_base: str, *, ratings_csv: str | None = None,
                        skip_bad_rows: bool = False, quarantine_path: str | None = None,
                        splits: tuple[tuple[str, int], ...] = DEFAULT_SPLITS) -> FileBasedExampleGen:
    """The ExampleGen component for a MovieLens folder (ML-1M or ML-100K layout).

    Its driver fingerprints every input file by content (see `input_fingerprint`), the
    `ratings_csv` too, so an edited input is never served from cache."""
    return MovieLensExampleGenComponent(
        input_base=input_base,
        input_config=example_gen_utils.make_default_input_config("*"),
        output_config=output_config(splits),
        custom_config=make_custom_config(ratings_csv=ratings_csv, skip_bad_rows=skip_bad_rows,
                                         quarantine_path=quarantine_path),
    ).with_id("MovieLensExampleGen")
