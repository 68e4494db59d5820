"""Path strings that may be filesystem URIs (gs://, s3://, ram://, ...) or local paths.

Why its own module: the artifacts layout (settings.paths) and the file layer (common.fileio)
both tell a URI from a local path and join parts onto either, and must agree on how.
"""
from __future__ import annotations

import os
import posixpath
from pathlib import Path


def is_uri(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` paths (gs://, s3://, ram://, ...), which are not local files."""
    return "://" in str(path)


def normalize(path: str | os.PathLike) -> str:
    """An absolute local path, or a URI as written (without a trailing slash)."""
    text = os.fspath(path)
    if is_uri(text):
        return text.rstrip("/")
    return str(Path(text).expanduser().resolve())


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base/part/...`` for local paths and URIs alike."""
    text = os.fspath(base)
    return posixpath.join(text, *parts) if is_uri(text) else os.path.join(text, *parts)
