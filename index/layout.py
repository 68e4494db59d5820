"""Where an index version lives on disk, and how it is published without ever being half-visible.

Layout below one index folder (``<artifacts>/index`` by default)::

    <index_dir>/
      LATEST                 one line: the name of the version folder to serve
      <model_version>/       one complete, gate-passing index version (see FILES)
      .tmp-*/                builds in progress (never read by anyone)

Why a pointer file: readers (the similarity service, the CLI) open ``LATEST`` once and then
only a folder that was complete *before* the pointer moved. The pointer is replaced with
``os.replace`` (atomic on POSIX), so a reader sees the old or the new name, never a torn one;
the version folder itself appears with one ``os.rename`` of a fully written temp folder.

The index folder may also be a URI (``gs://bucket/movielens/index``; anything
``tf.io.gfile`` opens). Then the builder still builds and gates in a local temp folder
(FAISS reads and writes local files only), uploads the version under a ``.tmp-*`` name,
renames it into place file by file (``manifest.json`` last) and only then rewrites LATEST,
which is one object: a Cloud Storage object is replaced whole when its upload completes, so
readers again see the old or the new name. Readers copy a remote version to a local folder
before loading it (``Similarity.load``). Paths below an index folder are ``Path`` objects
for local folders and ``str`` URIs otherwise (``child``); a URI is never made a ``Path``.
"""
from __future__ import annotations

import json
import os
import uuid
import zlib
from pathlib import Path
from typing import Any, Collection, Mapping

from common import fileio

LATEST = "LATEST"
MANIFEST = "manifest.json"
FORMAT_VERSION = 2
#: versions Similarity reads: 1 had one embedding space and no rating terms
READABLE_FORMAT_VERSIONS = (1, 2)

# --- files of one version folder (all NumPy .npy, JSON or faiss.write_index; no pickle) ---
USER_IDS = "user_ids.npy"              # int64 [n_users], row -> raw user id
MOVIE_IDS = "movie_ids.npy"            # int64 [n_movies], row -> raw movie id
USER_VECTORS = "user_vectors.npy"      # float32 [n_users, D], raw tower outputs
MOVIE_VECTORS = "movie_vectors.npy"    # float32 [n_movies, D], raw tower outputs
USER_BIAS = "user_bias.npy"            # float32 [n_users]: rating bias + global mean (optional)
MOVIE_BIAS = "movie_bias.npy"          # float32 [n_movies]: rating bias (optional)
QUERY_VECTORS = "query_vectors.npy"    # float32 [n_users, R]: retrieval queries (optional)
CANDIDATE_VECTORS = "candidate_vectors.npy"  # float32 [n_movies, R]: retrieval candidates (optional)
MOVIE_QUERY_VECTORS = "movie_query_vectors.npy"  # float32 [n_movies, R]: one-movie queries (optional)
USERS_META = "users.json"              # list of demographics dicts, in row order
MOVIES_META = "movies.json"            # list of title/year/genres dicts, in row order
SEEN_INDPTR = "seen_indptr.npy"        # int64 [n_users + 1], CSR row pointers
SEEN_MOVIES = "seen_movies.npy"        # int64 [n_seen], movie *rows* each user rated
SEEN_RATINGS = "seen_ratings.npy"      # float32 [n_seen]: the pair's training rating, NaN: none (optional)
MOVIES_COSINE = "movies_cosine.faiss"  # inner product over L2-normalised movie vectors
USERS_COSINE = "users_cosine.faiss"    # inner product over L2-normalised user vectors
MOVIES_IP = "movies_ip.faiss"          # raw inner product: query (or user) vector -> movies
POSTERS_INDEX = "posters.faiss"        # optional: cosine over poster CNN features
POSTER_IDS = "poster_ids.npy"          # int64, row -> raw movie id (movies with a poster)
POSTER_VECTORS = "poster_vectors.npy"  # float32, L2-normalised poster features

#: index name (manifest key) -> file
INDEX_FILES: dict[str, str] = {
    "movies_cosine": MOVIES_COSINE,
    "users_cosine": USERS_COSINE,
    "movies_ip": MOVIES_IP,
}
POSTERS = "posters"


def default_index_dir(artifacts: Path | str | None = None) -> Path | str:
    """``<artifacts>/index`` (settings.paths decides the artifacts root and its env var)."""
    from settings.paths import ArtifactPaths

    paths = ArtifactPaths(os.fspath(artifacts)) if artifacts is not None else ArtifactPaths()
    return fileio.to_path(paths.index_dir)


def default_model_base_path(artifacts: Path | str | None = None) -> Path | str:
    """``<artifacts>/serving/<model>``: where the Pusher puts numbered SavedModel versions."""
    from settings.paths import ArtifactPaths

    paths = ArtifactPaths(os.fspath(artifacts)) if artifacts is not None else ArtifactPaths()
    return fileio.to_path(paths.model_base_path)


def child(folder: Path | str, *names: str) -> Path | str:
    """``folder/name...``: a ``Path`` below a local folder, a URI ``str`` below a URI."""
    folder = fileio.to_path(folder)
    return folder.joinpath(*names) if isinstance(folder, Path) else fileio.join(folder, *names)


class IndexNotFoundError(FileNotFoundError):
    """No published index (no LATEST, or it names a missing folder)."""


def file_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file of a version folder except the manifest itself."""
    return {p.name: {"sha256": fileio.sha256(p), "bytes": p.stat().st_size}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}


def verify_checksums(folder: Path, manifest: Mapping[str, Any],
                     size_only: Collection[str] = ()) -> None:
    """Raise ValueError naming the first file that is missing or differs from the manifest.

    Files named in ``size_only`` (memory-mapped ones) are checked for their size only."""
    for name, entry in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{folder}: {name} is listed in {MANIFEST} but missing")
        if path.stat().st_size != entry["bytes"] or (
                name not in size_only and fileio.sha256(path) != entry["sha256"]):
            raise ValueError(f"{folder}: {name} does not match its sha256 in {MANIFEST} "
                             f"(corrupt or modified after publishing)")


def fsync_path(path: Path) -> None:
    """Flush a file or folder entry to disk, so a crash after publishing cannot lose it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    """Write temp + fsync + os.replace: readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(path.parent)


def write_json_atomic(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=1, sort_keys=False) + "\n")


def read_json(path: Path | str) -> Any:
    return json.loads(fileio.read_text(path))


def read_latest(index_dir: Path | str) -> str | None:
    """The version name LATEST points at, or None when nothing was published yet."""
    try:  # fileio raises FileNotFoundError for a missing URI too
        name = fileio.read_text(child(index_dir, LATEST)).strip()
    except FileNotFoundError:
        return None
    return name or None


def latest_stamp(index_dir: Path | str) -> tuple[int, int, int] | None:
    """A cheap change detector for LATEST (inode, mtime, size): os.replace always changes it.

    On a URI there is no inode (and ram:// keeps no mtime): (crc32 of the content, mtime,
    size) instead; LATEST is one short line, so reading it is as cheap as a stat there."""
    path = child(index_dir, LATEST)
    if fileio.is_uri(path):
        if not fileio.exists(path):
            return None
        data = fileio.read_bytes(path)
        return (zlib.crc32(data), fileio.mtime_ns(path), len(data))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def write_latest(index_dir: Path | str, version: str) -> None:
    """Move the LATEST pointer to ``version`` (which must already be a complete folder).

    Locally temp + fsync + os.replace; on a URI one object write, which object stores make
    visible whole when the upload completes (never a torn name either)."""
    if not fileio.isfile(child(index_dir, version, MANIFEST)):
        raise IndexNotFoundError(f"refusing to point LATEST at {child(index_dir, version)}: "
                                 f"it has no {MANIFEST}")
    if fileio.is_uri(index_dir):
        fileio.write_text(child(index_dir, LATEST), version + "\n")
    else:
        write_text_atomic(Path(index_dir) / LATEST, version + "\n")


def latest_version_dir(index_dir: Path | str) -> Path | str:
    """The folder LATEST points at; IndexNotFoundError with a hint when there is none."""
    index_dir = fileio.to_path(index_dir)
    name = read_latest(index_dir)
    if name is None:
        raise IndexNotFoundError(f"no index published in {index_dir} (no {LATEST} file); "
                                 f"run `movielens-tfx export-index` first")
    folder = child(index_dir, name)
    if not fileio.isfile(child(folder, MANIFEST)):
        raise IndexNotFoundError(f"{child(index_dir, LATEST)} points at {name!r} but "
                                 f"{child(folder, MANIFEST)} does not exist")
    return folder


def version_dir(index_dir: Path | str, version: str | None) -> Path | str:
    """An explicit version folder, or LATEST's when ``version`` is None."""
    if version is None:
        return latest_version_dir(index_dir)
    folder = child(index_dir, version)
    if not fileio.isfile(child(folder, MANIFEST)):
        raise IndexNotFoundError(f"no index version {version!r} in {index_dir}")
    return folder
