"""Finding a MovieLens data set: its format, its folder (or .zip) and its ratings file.

A user passes a folder, a folder holding one (an extracted archive), a .zip or a URI; this
module turns that into the folder to read and says, when it cannot, which files it expected.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from common import fileio
from data.movielens_types import FMT_ML_1M, FMT_ML_100K, FMT_ML_LATEST, ML_1M_FILES, ML_100K_FILES, ML_LATEST_FILES


def child_path(folder: Path | str, *names: str) -> Path | str:
    """``folder/name``: a Path below a local Path, a URI string below a URI."""
    return folder.joinpath(*names) if isinstance(folder, Path) else fileio.join(folder, *names)


def file_name(path: Path | str) -> str:
    return path.name if isinstance(path, Path) else fileio.basename(path)


def detect_format(folder: Path | str) -> str | None:
    """'ml-1m' / 'ml-100k' / 'ml-latest' from the files present in ``folder``, else None.

    ML-1M and ML-100K are told by their users and movies files; their ratings files are not
    required here because a ratings CSV may be supplied separately. The ml-latest format has
    no users file, so it is told by its movies.csv and ratings.csv together, in a folder
    without users.dat or u.user (whose movies.csv would belong to something else).
    ``folder`` may be a URI (gs://...).
    """
    folder = fileio.to_path(folder)
    has = lambda name: fileio.isfile(child_path(folder, name))  # noqa: E731
    if has("users.dat") and has("movies.dat"):
        return FMT_ML_1M
    if has("u.user") and has("u.item"):
        return FMT_ML_100K
    if all(has(name) for name in ML_LATEST_FILES) and not (has("users.dat") or has("u.user")):
        return FMT_ML_LATEST
    return None


def _expected_files_text() -> str:
    return (f"{', '.join(ML_1M_FILES)} (ML-1M) or {', '.join(ML_100K_FILES)} (ML-100K) or "
            f"{', '.join(ML_LATEST_FILES)} (ml-latest format: ml-latest-small, ML-20M, ML-25M, ML-32M)")


def _subfolders(folder: Path | str) -> list[Path | str]:
    """The folders directly below ``folder``, sorted (hidden ones included, like glob("*/"))."""
    if isinstance(folder, Path):
        return [d for d in sorted(folder.glob("*/")) if d.is_dir()]
    children = [child_path(folder, name) for name in fileio.listdir(folder)]
    return [d for d in children if fileio.isdir(d)]


def find_data_dir(root: Path | str) -> Path | str:
    """The folder holding a MovieLens data set: ``root`` itself, or the single folder up to two
    levels below it (an extracted ``ml-1m.zip`` holds an ``ml-1m/`` folder). A URI root
    gives a URI (str), a local one a Path."""
    root = fileio.to_path(root)
    if detect_format(root):
        return root
    level1 = _subfolders(root)
    found = [d for d in level1 if detect_format(d)]
    if not found:
        found = [d for sub in level1 for d in _subfolders(sub) if detect_format(d)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ValueError(f"{root} holds several MovieLens data sets "
                         f"({', '.join(str(d) for d in found)}): pass one of them")
    raise FileNotFoundError(f"{root}: no MovieLens data set found; expected a folder with "
                            f"{_expected_files_text()}")


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "movielens"


def extract_zip(zip_path: Path, cache_dir: Path | None = None) -> Path:
    """Extract ``zip_path`` once and return the extraction folder.

    The archive goes to ``<cache_dir or the zip's folder>/<stem>.extracted`` (falling back to
    ``~/.cache/movielens`` when the zip's folder is read-only). Extraction happens in a
    temporary folder that is renamed into place, so an interrupted run never leaves a
    half-extracted data set that a later run would trust; a stamp of the zip's content (its
    sha256, not its name, size or mtime) makes a replaced zip get re-extracted.
    """
    zip_path = Path(zip_path).resolve()
    stamp = f"{zip_path.name} sha256:{fileio.sha256(zip_path)}\n"
    bases = [Path(cache_dir)] if cache_dir is not None else [zip_path.parent, _default_cache_dir()]
    last_error: OSError | None = None
    for base in bases:
        dest = base / f"{zip_path.stem}.extracted"
        marker = dest / ".extracted-from"
        if marker.is_file() and marker.read_text() == stamp:
            return dest
        try:
            base.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{zip_path.stem}.", dir=base))
        except OSError as exc:
            last_error = exc
            continue
        try:
            try:
                with zipfile.ZipFile(zip_path) as zf:
                    for name in zf.namelist():
                        target = (tmp / name).resolve()
                        if not target.is_relative_to(tmp.resolve()):
                            raise ValueError(f"{zip_path}: unsafe path in archive: {name!r}")
                    zf.extractall(tmp)
            except zipfile.BadZipFile as exc:
                raise ValueError(f"{zip_path}: not a valid zip archive ({exc})") from None
            (tmp / ".extracted-from").write_text(stamp)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return dest
    raise OSError(f"cannot extract {zip_path}: no writable cache folder "
                  f"(tried {', '.join(str(b) for b in bases)}): {last_error}")


def suffix_of(path: Path | str) -> str:
    return os.path.splitext(file_name(path))[1]


def resolve_folder(path: Path | str, cache_dir: Path | None) -> Path | str:
    if not fileio.exists(path):
        raise FileNotFoundError(f"MovieLens data not found: {path} does not exist (expected a folder "
                                f"with {_expected_files_text()}, or a .zip of one)")
    if not fileio.isdir(path):
        suffix = suffix_of(path)
        if suffix.lower() != ".zip":
            raise ValueError(f"{path}: expected a MovieLens folder or a .zip archive, got a "
                             f"{suffix or 'plain'} file")
        # zipfile reads local files only: a remote archive is copied to a local temp first
        # (and extracted next to that copy unless cache_dir says otherwise).
        path = extract_zip(fileio.local_copy(path, prefix="movielens-zip-"), cache_dir)
    return find_data_dir(path)


def _ml1m_ratings_file(folder: Path | str) -> Path | str:
    ratings_dat = child_path(folder, "ratings.dat")
    if fileio.isfile(ratings_dat):
        return ratings_dat
    if isinstance(folder, Path):
        csvs: list[Path | str] = sorted(folder.glob("ratings*.csv"))
    else:
        csvs = fileio.glob(fileio.join(folder, "ratings*.csv"))
    if len(csvs) == 1:
        return csvs[0]
    found = f"found {', '.join(file_name(c) for c in csvs)}" if csvs else "found none"
    raise FileNotFoundError(f"{folder}: ML-1M folder has users.dat and movies.dat but no ratings: "
                            f"expected ratings.dat or exactly one ratings*.csv ({found}); "
                            f"or pass ratings_csv=")


def ratings_source(folder: Path | str, fmt: str,
                    ratings_csv: str | os.PathLike[str] | None) -> tuple[Path | str, bytes, int | None]:
    """(ratings file, separator, field count or None for a CSV of 3 or 4 columns)."""
    if ratings_csv is not None:
        ratings_file = fileio.to_path(ratings_csv)
        if not fileio.isfile(ratings_file):
            raise FileNotFoundError(f"ratings CSV not found: {ratings_file} (expected a "
                                    f"user,movie,rating[,timestamp] file)")
        return ratings_file, b",", None
    if fmt == FMT_ML_1M:
        ratings_file = _ml1m_ratings_file(folder)
        return (ratings_file, b"::", 4) if suffix_of(ratings_file) == ".dat" else (ratings_file, b",", None)
    if fmt == FMT_ML_LATEST:  # userId,movieId,rating,timestamp (the header is skipped)
        return child_path(folder, "ratings.csv"), b",", None
    ratings_file = child_path(folder, "u.data")
    if not fileio.isfile(ratings_file):
        raise FileNotFoundError(f"{folder}: ML-100K folder has u.user and u.item but no "
                                f"u.data; or pass ratings_csv=")
    return ratings_file, b"\t", 4
