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

A model without a catalogue (pushed before they existed) gets the features' defaults and no
ids; the script then takes ids from the warm-up requests.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data import features as f
from model.signature_names import EXAMPLES_INPUT, REGRESS_INPUT

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
    return {"rows": rows, "examples": examples, "example_inputs": [EXAMPLES_INPUT, REGRESS_INPUT]}


def write_samples(version_dir: Path, path: Path) -> Path:
    path.write_text(json.dumps(sample_payload(version_dir), indent=1) + "\n", encoding="utf-8")
    return path
