"""Sample inputs for the serving-runtime check: real users and movies of the pushed model.

Why here and not in tools/serving_runtime_check.py: that script runs under the serving
image's TensorFlow and must not import the project, yet its inputs must be valid for the
model: ids it knows, a gender, age and occupation code it was trained on, genres joined the
way the raw-feature signatures take them. The feature table (data.features) and the
model's own catalogue (assets.extra/catalogue) know all that, so this module, in the project's
environment, writes them out as plain JSON:

  rows            one dict per batch row: every signature input (raw feature) by name,
                  user i paired with movie i
  examples        the same rows as tf.Examples ({name: {"int64"|"float"|"bytes": [...]}}),
                  every raw feature the model parses (the label aside)
  example_inputs  the signature inputs that take serialized tf.Examples
  calls           signatures whose inputs are not one row per batch entry, each with its own
                  inputs and the rows each output must have: user_embedding_with_history (one
                  visitor, a history of the sample movies)

A model without a catalogue (pushed before they existed) gets the features' defaults and no
ids; the script then takes ids from the warm-up requests.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data import features as f
from index.visitors import VISITOR_USER_ID
from model.signature_names import (
    BIAS_OUTPUT,
    EMBEDDING_OUTPUT,
    EXAMPLES_INPUT,
    HISTORY_MOVIES_INPUT,
    HISTORY_RATINGS_INPUT,
    QUERY_OUTPUT,
    QUERY_TERMS_OUTPUT,
    READS_HISTORY_OUTPUT,
    REGRESS_INPUT,
    SIGNATURE_USER_HISTORY,
)

BATCH = 3
_KINDS = {"int64": "int64", "float32": "float", "string": "bytes"}


def _entities(version_dir: Path) -> tuple[list[Any], list[Any]]:
    """The first BATCH users and movies (by id) of the model's catalogue; ([], []) without one."""
    from data.catalogue import has_catalogue, model_catalogue_dir, read_catalogue

    folder = model_catalogue_dir(version_dir)
    if not has_catalogue(folder):
        return [], []
    catalogue = read_catalogue(folder)
    users = [catalogue.users[i] for i in sorted(catalogue.users)[:BATCH]]
    movies = [catalogue.movies[i] for i in sorted(catalogue.movies)[:BATCH]]
    return users, movies


def _raw_value(row: f.RawFeature, entity: Any | None) -> Any:
    """The feature's raw value for a user/movie (its default without one, or for the others)."""
    if entity is not None and row.tower in ("user", "movie") and hasattr(entity, row.name):
        value = getattr(entity, row.name)
        return tuple(value) if row.is_list else value
    return row.default


def sample_payload(version_dir: Path) -> dict[str, Any]:
    users, movies = _entities(version_dir)
    count = min(len(users), len(movies)) or BATCH
    rows, examples = [], []
    for i in range(count):
        pair = {"user": users[i] if users else None, "movie": movies[i] if movies else None}
        row: dict[str, Any] = {}
        example: dict[str, dict[str, list]] = {}
        for feature in f.RAW_FEATURES:
            if feature.tower == "label":
                continue
            value = _raw_value(feature, pair.get(feature.tower))
            no_id = pair.get(feature.tower) is None and feature.name in (f.USER_ID, f.MOVIE_ID)
            if feature.in_signatures and not no_id:
                row[feature.name] = f.LIST_SEPARATOR.join(map(str, value)) if feature.is_list else value
            values = list(value) if feature.is_list else [value]
            example[feature.name] = {_KINDS[feature.dtype]: values}
        rows.append(row)
        examples.append(example)
    return {"rows": rows, "examples": examples, "example_inputs": [EXAMPLES_INPUT, REGRESS_INPUT],
            "calls": _history_call([m.movie_id for m in movies])}


def _history_call(movie_ids: list[int]) -> dict[str, Any]:
    """user_embedding_with_history for a visitor who rated the sample movies (none: no call)."""
    if not movie_ids:
        return {}
    n = len(movie_ids)
    ratings = [float(4 + i % 2) for i in range(n)]
    return {SIGNATURE_USER_HISTORY: {
        "inputs": {f.USER_ID: [VISITOR_USER_ID], HISTORY_MOVIES_INPUT: movie_ids, HISTORY_RATINGS_INPUT: ratings},
        "rows": {EMBEDDING_OUTPUT: 1, BIAS_OUTPUT: 1, QUERY_OUTPUT: 1, READS_HISTORY_OUTPUT: 1, QUERY_TERMS_OUTPUT: n}}}


def write_samples(version_dir: Path, path: Path) -> Path:
    path.write_text(json.dumps(sample_payload(version_dir), indent=1) + "\n", encoding="utf-8")
    return path
