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


def _validate(**overrides):
    """TFDV's anomalies of one example (an ML-1M-like row, ``overrides`` applied) under the
    curated schema."""
    import pandas as pd

    schema = tfdv.load_schema_text(str(configs.SCHEMA_PATH))
    row = {"user_id": 1, "movie_id": 2, "rating": 4.0, "timestamp": 0, "gender": "M", "age": 25,
           "occupation": 3, "zip": "1", "title": "A", "year": 1999, "genres": ["Comedy"], **overrides}
    frame = pd.DataFrame({key: [value] for key, value in row.items()})
    return tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(frame, configs.stats_options()), schema)


def test_schema_finds_out_of_range_ratings(tmp_path):
    """Real TFDV validation of a curated-schema violation, then the gate's message."""
    anomalies = _validate(rating=7.0)
    uri = str(tmp_path / "anomalies")
    _write(uri, "train", anomalies)
    _write(uri, "eval", anomalies_pb2.Anomalies())
    lines = data_gate.describe(data_gate.read_anomalies(uri, '["train", "eval"]'))
    assert any(line.startswith("split 'train', feature 'rating':") for line in lines), lines
    assert not any("'eval'" in line for line in lines)


def test_schema_takes_the_ml_latest_format():
    """Half stars, a genre ML-1M does not have and no demographics: no anomaly (the genre
    vocabulary comes from the data; unknown demographics are their own bucket)."""
    anomalies = _validate(rating=0.5, genres=["IMAX", "Children", "Sci-Fi"], gender="", age=0, occupation=-1,
                          zip="")
    assert not anomalies.anomaly_info, data_gate.describe({"train": anomalies})
    assert not _validate(genres=[]).anomaly_info  # "(no genres listed)": an empty list


def test_a_rare_bad_value_shows_in_the_pipelines_sketched_statistics():
    """StatisticsGen counts string values with fixed-size sketches (configs.stats_options): one
    gender outside the schema's domain among 50,000 examples of 50,000 distinct titles and
    zips still reaches the validator, as with TFDV's exact counts."""
    import numpy as np
    import pandas as pd

    n = 50_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "user_id": rng.integers(1, 20_000, n), "movie_id": rng.integers(1, 20_000, n), "rating": 4.0,
        "timestamp": 0, "gender": np.where(rng.random(n) < 0.5, "M", "F"), "age": 25, "occupation": 3,
        "zip": [str(i) for i in range(n)], "title": [f"Title {i}" for i in range(n)], "year": 1999,
        "genres": [["Comedy"]] * n})
    schema = tfdv.load_schema_text(str(configs.SCHEMA_PATH))
    clean = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(frame, configs.stats_options()), schema)
    assert not clean.anomaly_info, data_gate.describe({"train": clean})
    frame.loc[31_337, "gender"] = "X"
    anomalies = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(frame, configs.stats_options()),
                                         schema)
    assert list(anomalies.anomaly_info) == ["gender"], data_gate.describe({"train": anomalies})


def test_clean_data_passes(tmp_path):
    uri = str(tmp_path / "anomalies")
    _write(uri, "train", anomalies_pb2.Anomalies())
    assert data_gate.describe(data_gate.read_anomalies(uri, '["train"]')) == []


def test_schema_names_every_raw_feature_once():
    from data import features as f

    schema = tfdv.load_schema_text(str(configs.SCHEMA_PATH))
    names = [feature.name for feature in schema.feature]
    raw = set(f.INT_FEATURES + f.FLOAT_FEATURES + f.STRING_FEATURES + f.LIST_FEATURES)
    assert sorted(names) == sorted(raw) and len(names) == len(set(names))
    assert f.GENRES not in {d.name for d in schema.string_domain}  # each data set's own genres
