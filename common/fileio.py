"""File I/O for local paths and filesystem URIs (gs://, s3://, ram://, hdfs://...) alike.

Why: the pipeline runs on a laptop (local folders) and on Vertex AI / Kubeflow, where the
data, the pipeline root, the serving folder and the index folder are Cloud Storage URIs.
Every read and write of those goes through this module, which sends URIs to
``tf.io.gfile`` (TensorFlow's filesystem layer: what TFX, TF-Serving and
``tf.saved_model`` use, so whatever filesystem they can open, this can) and local paths to
the standard library.

Local paths deliberately do not go through gfile: the standard library keeps the POSIX
guarantees the index publisher relies on (``os.replace`` is atomic, ``fsync``), and the
similarity service and CLIs, which only ever read local index copies, never import
TensorFlow (seconds and hundreds of MB) just to open a file. TensorFlow is imported lazily,
the first time a URI is touched.

Object stores have no folders and no atomic rename: ``rename_tree`` on a URI renames file
by file (a server-side copy + delete on GCS). Callers that publish (the Pusher, the index
builder) therefore assemble in a staging name that readers ignore and rename last; see
their docstrings.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator, Sequence

from common.uris import is_uri, join

__all__ = [
    "PathLike", "basename", "copy_file", "copy_tree", "dirname", "exists", "glob", "is_uri",
    "isdir", "isfile", "join", "listdir", "local_copy", "makedirs", "mtime_ns", "read_bytes",
    "read_text", "rename", "rename_tree", "rmtree", "sha256", "size", "to_path", "walk_files",
    "write_bytes", "write_text",
]

PathLike = str | os.PathLike

_CHUNK = 8 << 20


def _gfile():
    import tensorflow as tf  # lazily: only URIs need TensorFlow's filesystems

    return tf.io.gfile


def to_path(value: PathLike) -> str | Path:
    """A ``Path`` for a local path, the ``str`` itself for a URI.

    ``Path("gs://bucket/x")`` collapses the double slash (``gs:/bucket/x``), so a URI must
    never become a Path; argparse flags that may take a URI use this as their ``type=``.
    """
    text = os.fspath(value)
    return text if is_uri(text) else Path(text)


def basename(path: PathLike) -> str:
    text = os.fspath(path).rstrip("/")
    return posixpath.basename(text) if is_uri(text) else os.path.basename(text)


def dirname(path: PathLike) -> str:
    text = os.fspath(path).rstrip("/")
    return posixpath.dirname(text) if is_uri(text) else os.path.dirname(text)


def exists(path: PathLike) -> bool:
    text = os.fspath(path)
    return _gfile().exists(text) if is_uri(text) else os.path.exists(text)


def isdir(path: PathLike) -> bool:
    text = os.fspath(path)
    return _gfile().isdir(text) if is_uri(text) else os.path.isdir(text)


def isfile(path: PathLike) -> bool:
    text = os.fspath(path)
    if is_uri(text):
        gfile = _gfile()
        return gfile.exists(text) and not gfile.isdir(text)
    return os.path.isfile(text)


def listdir(path: PathLike) -> list[str]:
    """Entry names (not paths), sorted; folders without the trailing ``/`` GCS adds."""
    text = os.fspath(path)
    names = _gfile().listdir(text) if is_uri(text) else os.listdir(text)
    return sorted({name.rstrip("/") for name in names})


def glob(pattern: PathLike) -> list[str]:
    """Sorted matches of a ``*``/``?`` pattern (``tf.io.gfile.glob`` semantics for URIs)."""
    text = os.fspath(pattern)
    if is_uri(text):
        return sorted(_gfile().glob(text))
    import glob as std_glob

    return sorted(std_glob.glob(text))


def makedirs(path: PathLike) -> None:
    text = os.fspath(path)
    _gfile().makedirs(text) if is_uri(text) else os.makedirs(text, exist_ok=True)


def read_bytes(path: PathLike) -> bytes:
    text = os.fspath(path)
    if is_uri(text):
        import tensorflow as tf

        try:
            with tf.io.gfile.GFile(text, "rb") as handle:
                return handle.read()
        except tf.errors.NotFoundError:  # the same exception as for a local path
            raise FileNotFoundError(f"{text}: no such file") from None
    with open(text, "rb") as handle:
        return handle.read()


def read_text(path: PathLike, encoding: str = "utf-8") -> str:
    return read_bytes(path).decode(encoding)


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write a whole file, replacing it (its folder is created).

    On a URI the bytes go to a temp name that is then renamed over ``path``: some gfile
    filesystems do not truncate a file opened for writing (ram:// appends), and on an object
    store the rename (a server-side copy) replaces the object whole, so a reader sees the old
    or the new content. Locally a plain write; use ``rename`` for atomic replacement."""
    text = os.fspath(path)
    parent = dirname(text)
    if parent:
        makedirs(parent)
    if is_uri(text):
        gfile = _gfile()
        tmp = f"{text}.tmp-{uuid.uuid4().hex[:12]}"
        try:
            with gfile.GFile(tmp, "wb") as handle:
                handle.write(data)
            gfile.rename(tmp, text, overwrite=True)
        finally:
            if gfile.exists(tmp):
                gfile.remove(tmp)
    else:
        with open(text, "wb") as handle:
            handle.write(data)


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    write_bytes(path, text.encode(encoding))


def size(path: PathLike) -> int:
    text = os.fspath(path)
    return int(_gfile().stat(text).length) if is_uri(text) else os.path.getsize(text)


def mtime_ns(path: PathLike) -> int:
    """Modification time in ns (0 where the filesystem does not keep one, e.g. ram://)."""
    text = os.fspath(path)
    return int(_gfile().stat(text).mtime_nsec) if is_uri(text) else os.stat(text).st_mtime_ns


def sha256(path: PathLike) -> str:
    """Hex sha256 of a file, streamed (a SavedModel or a FAISS index may be large)."""
    text = os.fspath(path)
    digest = hashlib.sha256()
    handle = _gfile().GFile(text, "rb") if is_uri(text) else open(text, "rb")
    with handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def walk_files(root: PathLike) -> Iterator[str]:
    """Paths relative to ``root`` (``/``-separated) of every file below it."""
    text = os.fspath(root)
    walker = _gfile().walk(text) if is_uri(text) else os.walk(text)
    for folder, _, files in walker:
        rel = os.path.relpath(folder, text) if not is_uri(text) else folder[len(text.rstrip("/")):].strip("/")
        rel = "" if rel in (".", "") else rel.replace(os.sep, "/")
        for name in files:
            yield posixpath.join(rel, name) if rel else name


def copy_file(src: PathLike, dst: PathLike, overwrite: bool = True) -> None:
    """Copy one file between any two filesystems (local -> gs://, gs:// -> local, ...)."""
    src_text, dst_text = os.fspath(src), os.fspath(dst)
    if not is_uri(src_text) and not is_uri(dst_text):
        if not overwrite and os.path.exists(dst_text):
            raise FileExistsError(dst_text)
        os.makedirs(os.path.dirname(dst_text) or ".", exist_ok=True)
        shutil.copyfile(src_text, dst_text)
        return
    gfile = _gfile()
    parent = dirname(dst_text)
    if parent:
        makedirs(parent)
    gfile.copy(src_text, dst_text, overwrite=overwrite)


def copy_tree(src: PathLike, dst: PathLike) -> None:
    """Copy every file below ``src`` to the same relative path below ``dst`` (any filesystems)."""
    src_text, dst_text = os.fspath(src), os.fspath(dst)
    if not is_uri(src_text) and not is_uri(dst_text):
        shutil.copytree(src_text, dst_text, dirs_exist_ok=True)
        return
    makedirs(dst_text)
    for rel in walk_files(src_text):
        copy_file(join(src_text, *rel.split("/")), join(dst_text, *rel.split("/")))


def rename(src: PathLike, dst: PathLike, overwrite: bool = False) -> None:
    """Rename a file: atomic locally (``os.replace``/``os.rename``); copy + delete on object stores."""
    src_text, dst_text = os.fspath(src), os.fspath(dst)
    if is_uri(src_text) or is_uri(dst_text):
        _gfile().rename(src_text, dst_text, overwrite=overwrite)
    elif overwrite:
        os.replace(src_text, dst_text)
    else:
        if os.path.exists(dst_text):
            raise FileExistsError(dst_text)
        os.rename(src_text, dst_text)


def rename_tree(src: PathLike, dst: PathLike, last: Sequence[str] = ()) -> None:
    """Move the folder ``src`` to the new name ``dst``.

    Locally one ``os.rename`` (atomic). For a URI, file by file with ``tf.io.gfile.rename``
    and then the emptied ``src`` is deleted: an object store has no folder to rename (GCS
    renames objects by copy + delete), and a whole-folder gfile rename is not portable (the
    ram:// filesystem drops the files). Not atomic: readers must ignore ``src``'s and
    ``dst``'s names until the caller's final pointer (TF-Serving's numeric folder name, the
    index's LATEST) says the folder is complete. Files named in ``last`` move after all
    others (the Pusher moves ``saved_model.pb`` last: a SavedModel without it is not loaded).
    """
    src_text, dst_text = os.fspath(src), os.fspath(dst)
    if not is_uri(src_text) and not is_uri(dst_text):
        os.rename(src_text, dst_text)
        return
    if exists(dst_text):
        raise FileExistsError(f"{dst_text} exists already")
    gfile = _gfile()
    files = sorted(walk_files(src_text), key=lambda rel: posixpath.basename(rel) in last)
    for rel in files:
        parts = rel.split("/")
        target = join(dst_text, *parts)
        parent = dirname(target)
        if parent:
            gfile.makedirs(parent)
        gfile.rename(join(src_text, *parts), target)
    if not files:
        gfile.makedirs(dst_text)
    rmtree(src_text)


def rmtree(path: PathLike, ignore_errors: bool = True) -> None:
    """Delete a folder and everything below it; a missing folder is not an error."""
    text = os.fspath(path)
    if not is_uri(text):
        shutil.rmtree(text, ignore_errors=ignore_errors)
        return
    gfile = _gfile()
    try:
        if gfile.exists(text):
            gfile.rmtree(text)
    except Exception:
        if not ignore_errors:
            raise


def local_copy(path: PathLike, prefix: str = "movielens-") -> Path:
    """A local copy of a remote file or folder in a new temp folder (for libraries such as FAISS
    and ``zipfile`` that only open local files). A local path is returned as it is."""
    text = os.fspath(path)
    if not is_uri(text):
        return Path(text)
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    target = tmp / basename(text)
    if isdir(text):
        copy_tree(text, target)
    else:
        copy_file(text, target)
    return target
