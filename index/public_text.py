"""What the similarity service may tell a client about server-side files: no absolute paths.

Why: error details and /version are read by anyone who can reach the service; absolute
paths there (the index folder, a model's catalogue, a gs:// bucket) describe the server's
disk layout and mount points, which no client needs. The server's own log keeps the full
paths (index.live logs ``last_error`` as it was raised); clients get the same text with
paths named relatively:

* below the index folder: relative to it (``3/movies.faiss``, ``LATEST``);
* the index folder itself: "the index folder given by --index-dir";
* a model version's file (the index's catalogue): relative to the model base path, from the
  model version on (``3/assets.extra/catalogue``);
* the data an index was built from (the manifest's ``data_source``: the MovieLens folder,
  local or gs://): by the dataset, the folder's own name (``ml-1m``);
* any other absolute path or URI: ``<server path>``.
"""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from common import fileio

INDEX_DIR_NAME = "the index folder given by --index-dir"
HIDDEN_PATH = "<server path>"

# An absolute POSIX path (a '/' not preceded by a path or word character, so '3/movies.faiss'
# and 'and/or' stay) or a URI (gs://bucket/..., file:///...). It stops at whitespace, quotes,
# brackets and the ':' / ',' that error messages put after a path.
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"()\[\]<>,]*"
                       r"|(?<![\w.~/-])/[^\s'\"()\[\]<>:,]+")


def _spellings(index_dir: Path | str) -> list[str]:
    """The index folder as error texts may spell it: as given, and resolved (longest first)."""
    given = str(index_dir).rstrip("/") or "/"
    forms = {given}
    if not fileio.is_uri(given):
        forms.add(str(Path(given).resolve()))
    return sorted(forms, key=len, reverse=True)


def public_text(text: str | None, index_dir: Path | str) -> str | None:
    """``text`` (an error message) with every server path named relatively (module docstring)."""
    if text is None:
        return None
    for folder in _spellings(index_dir):
        escaped = re.escape(folder)
        text = re.sub(escaped + r"/+", "", text)  # below the index folder: relative to it
        text = re.sub(escaped + r"(?![\w.~/-])", INDEX_DIR_NAME, text)
    return _ABSOLUTE.sub(HIDDEN_PATH, text)


def model_relative(path: str | None, model_version: str) -> str | None:
    """A model version's file relative to the model base path (``<version>/...``); a path that
    names no folder of that version becomes HIDDEN_PATH."""
    if path is None:
        return None
    parts = PurePosixPath(path.split("://", 1)[-1]).parts
    if model_version in parts:
        start = len(parts) - 1 - parts[::-1].index(model_version)  # the last such folder
        return str(PurePosixPath(*parts[start:]))
    return path if _ABSOLUTE.search(path) is None else HIDDEN_PATH


def dataset_name(source: str | None) -> str | None:
    """The dataset a data folder holds, by the folder's own name: ``/data/ml-1m`` and
    ``gs://bucket/movielens/ml-1m/`` are both ``ml-1m`` (what a client can compare between
    versions; where it lies on the server is the server's business). None or "" (an older
    catalogue that recorded no source): None."""
    if not source:
        return None
    name = PurePosixPath(str(source).split("://", 1)[-1].rstrip("/")).name
    return name if name and _ABSOLUTE.search(name) is None else HIDDEN_PATH
