"""The anomalies gate: ExampleValidator's findings stop the run with one readable line each."""
from __future__ import annotations

import os

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2

from components import data_gate
from pipeline import configs


def _write(uri, split, anomalies):
    os.makedirs(os.path.join(uri, f"Split-{split}"))
    with open(os.path.join(uri, f"Split-{split}", "SchemaDiff.pb"), "wb") as handle:
        handle.write(anomalies.SerializeToString())


def test_schema_finds_out_of_range_ratings_and_unknown_genres(tmp_path):
    """Real TFDV validation of curated-schema violations, then the gate's message."""
    import pandas as pd

    schema = tfdv.load_schema_text(str(configs.SCHEMA_PATH))
    frame = pd.DataFrame({"user_id": [1], "movie_id": [2], "rating": [7.0], "timestamp": [0], "gender": ["M"],
                          "age": [25], "occupation": [3], "zip": ["1"], "title": ["A"], "year": [1999],
                          "genres": [["Comedy", "Space Opera"]]})
    stats = tfdv.generate_statistics_from_dataframe(frame)
    anomalies = tfdv.validate_statistics(stats, schema)
    uri = str(tmp_path / "anomalies")
    _write(uri, "train", anomalies)
    _write(uri, "eval", anomalies_pb2.Anomalies())
    lines = data_gate.describe(data_gate.read_anomalies(uri, '["train", "eval"]'))
    assert any(line.startswith("split 'train', feature 'rating':") for line in lines), lines
    assert any(line.startswith("split 'train', feature 'genres':") for line in lines), lines
    assert not any("'eval'" in line for line in lines)


def test_clean_data_passes(tmp_path):
    uri = str(tmp_path / "anomalies")
    _write(uri, "train", anomalies_pb2.Anomalies())
    assert data_gate.describe(data_gate.read_anomalies(uri, '["train"]')) == []


def test_schema_names_every_raw_feature_once():
    from components import features as f

    schema = tfdv.load_schema_text(str(configs.SCHEMA_PATH))
    names = [feature.name for feature in schema.feature]
    raw = set(f.INT_FEATURES + f.FLOAT_FEATURES + f.STRING_FEATURES + f.LIST_FEATURES)
    assert sorted(names) == sorted(raw) and len(names) == len(set(names))
    genres = {d.name: list(d.value) for d in schema.string_domain}["genres"]
    assert genres == list(f.GENRE_NAMES)
