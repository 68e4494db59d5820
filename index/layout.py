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
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any, Mapping

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


def default_index_dir(artifacts: Path | None = None) -> Path:
    """``<artifacts>/index`` (settings.paths decides the artifacts root and its env var)."""
    from settings.paths import ArtifactPaths

    return Path((ArtifactPaths(artifacts) if artifacts is not None else ArtifactPaths()).index_dir)


def default_model_base_path(artifacts: Path | None = None) -> Path:
    """``<artifacts>/serving/<model>``: where the Pusher puts numbered SavedModel versions."""
    from settings.paths import ArtifactPaths

    return Path((ArtifactPaths(artifacts) if artifacts is not None else ArtifactPaths()).model_base_path)


class IndexNotFoundError(FileNotFoundError):
    """No published index (no LATEST, or it names a missing folder)."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file of a version folder except the manifest itself."""
    return {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}


def verify_checksums(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first file that is missing or differs from the manifest."""
    for name, entry in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{folder}: {name} is listed in {MANIFEST} but missing")
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
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


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_latest(index_dir: Path) -> str | None:
    """The version name LATEST points at, or None when nothing was published yet."""
    try:
        name = (Path(index_dir) / LATEST).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


def latest_stamp(index_dir: Path) -> tuple[int, int, int] | None:
    """A cheap change detector for LATEST (inode, mtime, size): os.replace always changes it."""
    try:
        st = os.stat(Path(index_dir) / LATEST)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def write_latest(index_dir: Path, version: str) -> None:
    """Move the LATEST pointer to ``version`` (which must already be a complete folder)."""
    index_dir = Path(index_dir)
    if not (index_dir / version / MANIFEST).is_file():
        raise IndexNotFoundError(f"refusing to point LATEST at {index_dir / version}: "
                                 f"it has no {MANIFEST}")
    write_text_atomic(index_dir / LATEST, version + "\n")


def latest_version_dir(index_dir: Path) -> Path:
    """The folder LATEST points at; IndexNotFoundError with a hint when there is none."""
    index_dir = Path(index_dir)
    name = read_latest(index_dir)
    if name is None:
        raise IndexNotFoundError(f"no index published in {index_dir} (no {LATEST} file); "
                                 f"run `movielens-tfx export-index` first")
    folder = index_dir / name
    if not (folder / MANIFEST).is_file():
        raise IndexNotFoundError(f"{index_dir / LATEST} points at {name!r} but "
                                 f"{folder / MANIFEST} does not exist")
    return folder


def version_dir(index_dir: Path, version: str | None) -> Path:
    """An explicit version folder, or LATEST's when ``version`` is None."""
    if version is None:
        return latest_version_dir(index_dir)
    folder = Path(index_dir) / version
    if not (folder / MANIFEST).is_file():
        raise IndexNotFoundError(f"no index version {version!r} in {index_dir}")
    return folder
