"""Which version directories exist under a base path, and which of them should be served.

Same rules as TF-Serving's FileSystemStoragePathSource: a version is a child directory whose
name is a non-negative integer (leading zeros allowed: 00000123 is version 123); the
version policy picks among them (latest N -- default 1 --, all, or a specific list).
Whether a folder holds a whole SavedModel yet is for its load to find out (serving.manager
retries it, as TF-Serving's LoaderHarness does), so empty and half-written folders show up in
GetModelStatus instead of being silently skipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tensorflow_serving.config import file_system_storage_path_source_pb2

VersionPolicy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy


def scan_versions(base_path: Path) -> dict[int, Path] | None:
    """version -> directory; None when the base path itself is missing or unreadable."""
    try:
        children = list(base_path.iterdir())
    except OSError:
        return None
    versions: dict[int, Path] = {}
    for child in children:
        if child.name.isdigit() and child.is_dir():
            version = int(child.name)
            # Two spellings of one number (1 and 001): keep the first seen, like TF-Serving's map.
            versions.setdefault(version, child)
    return versions


def aspired_versions(policy: VersionPolicy, on_disk: Iterable[int]) -> set[int]:
    """The versions the policy wants served, out of those on disk."""
    available = sorted(set(on_disk))
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(available)
    if choice == "specific":
        return set(available) & set(policy.specific.versions)
    count = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions > 0 else 1
    return set(available[-count:])

