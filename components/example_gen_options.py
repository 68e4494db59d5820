"""The MovieLens ExampleGen's options, packed the way FileBasedExampleGen carries them.

FileBasedExampleGen has one slot for executor options, `custom_config` (a CustomConfig proto
holding an Any); ours is a Struct of {ratings_csv, skip_bad_rows, quarantine_path}. Both the
executor (which reads the files) and the driver (which fingerprints them, see
`input_fingerprint`) unpack it, so the packing and unpacking live here, once.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from google.protobuf import any_pb2, json_format, struct_pb2
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs


def make_custom_config(*, ratings_csv: str | None = None, skip_bad_rows: bool = False,
                       quarantine_path: str | None = None) -> example_gen_pb2.CustomConfig:
    """Options of the MovieLens executor, packed the way FileBasedExampleGen carries them."""
    struct = struct_pb2.Struct()
    struct.update({"ratings_csv": ratings_csv or "", "skip_bad_rows": bool(skip_bad_rows),
                   "quarantine_path": quarantine_path or ""})
    packed = any_pb2.Any()
    packed.Pack(struct)
    return example_gen_pb2.CustomConfig(custom_config=packed)


def read_custom_config(exec_properties: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of make_custom_config, from exec_properties ({} when no Struct is packed)."""
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        return {}
    config = example_gen_pb2.CustomConfig()
    if isinstance(raw, str):
        json_format.Parse(raw, config)
    else:
        config.CopyFrom(raw)
    if not config.HasField("custom_config") or not config.custom_config.Is(struct_pb2.Struct.DESCRIPTOR):
        return {}
    struct = struct_pb2.Struct()
    config.custom_config.Unpack(struct)
    return json.loads(json_format.MessageToJson(struct))
