"""Content-keyed input fingerprint for the MovieLens ExampleGen.

TFX's FileBasedDriver records span, version and an input fingerprint into the ExampleGen's
exec_properties (and onto its output artifact); the portable launcher hashes those
exec_properties into the cache key (tfx/orchestration/portable/launcher.py, step 7, via
cache_utils.get_cache_context), so the fingerprint decides whether a rerun is cached. TFX's
own fingerprint (tfx.utils.io_utils.generate_fingerprint) covers only the files matched under
input_base, by size and mtime in whole seconds. That misses two things here:

* the `--ratings CSV`, which lives outside input_base and reaches the executor only as a path
  string in custom_config: rewriting that file kept the cache key unchanged;
* an edit that keeps the size and lands in the same second (or a copy that keeps mtimes,
  ``cp -p``/``rsync -t``/unzip): unchanged size and mtime, different data.

`ContentFingerprintDriver` keeps TFX's span/version resolution and replaces the fingerprint
with one made of the sha256 of every input file: each file matched by the split patterns
under input_base and every path-valued custom_config entry in `INPUT_FILE_KEYS`. Editing any
input changes the cache key; an unchanged input (even if touched or copied) keeps it.
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping

from tfx.components.example_gen import driver as example_gen_driver, utils as example_gen_utils
from tfx.dsl.io import fileio  # TFX's own glob, as its fingerprint uses: same files matched
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from common import fileio as project_fileio
from components.example_gen_options import read_custom_config

# custom_config entries naming input files read by the executor (outside input_base).
INPUT_FILE_KEYS = ("ratings_csv",)


def file_sha256(path: str) -> tuple[int, str]:
    """(size in bytes, sha256 hex digest) of one file's content."""
    return project_fileio.size(path), project_fileio.sha256(path)


def _files(pattern: str) -> list[str]:
    return sorted(path for path in fileio.glob(pattern) if not fileio.isdir(path))


def split_fingerprint(split_name: str, pattern: str, base: str) -> str:
    """One line per split, in TFX's `split:NAME,num_files:N,total_bytes:B` form, plus the
    sha256 of each matched file (by its path relative to `base`)."""
    entries, total = [], 0
    for path in _files(pattern):
        size, digest = file_sha256(path)
        total += size
        entries.append(f"{os.path.relpath(path, base)}={digest}")
    return (f"split:{split_name},num_files:{len(entries)},total_bytes:{total},"
            f"sha256:{';'.join(entries)}")


def extra_file_fingerprint(key: str, path: str) -> str:
    """The fingerprint line of one input file named outside input_base."""
    if not fileio.exists(path):
        # Let the executor report the missing file with its own message; the key still
        # differs from any run that had the file.
        return f"{key}:{path},missing"
    size, digest = file_sha256(path)
    return f"{key}:{path},bytes:{size},sha256:{digest}"


def content_fingerprint(input_base: str, splits: Iterable[example_gen_pb2.Input.Split],
                        extra_files: Mapping[str, str]) -> str:
    """The fingerprint of every input: the split patterns' files and the extra files."""
    lines = [split_fingerprint(split.name, os.path.join(input_base, split.pattern), input_base)
             for split in splits]
    lines += [extra_file_fingerprint(key, path) for key, path in sorted(extra_files.items()) if path]
    return "\n".join(lines)


class ContentFingerprintDriver(example_gen_driver.FileBasedDriver):
    """FileBasedDriver whose input fingerprint is the sha256 of every input file's content,
    including the custom_config files in `INPUT_FILE_KEYS` (e.g. the `--ratings` CSV)."""

    def resolve_exec_properties(self, exec_properties, pipeline_info, component_info):
        exec_properties = super().resolve_exec_properties(exec_properties, pipeline_info, component_info)
        input_config = example_gen_pb2.Input()  # patterns with span/version filled in above
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        options = read_custom_config(exec_properties)
        extra = {key: str(options.get(key) or "") for key in INPUT_FILE_KEYS}
        exec_properties[example_gen_utils.FINGERPRINT_PROPERTY_NAME] = content_fingerprint(
            exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits, extra)
        return exec_properties
