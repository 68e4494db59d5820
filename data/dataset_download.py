"""Download the official MovieLens archives from GroupLens, verified and cached.

Why: the GroupLens licence forbids redistributing MovieLens, so the project cannot ship the
data; each user downloads the official archive once. The download is checked against the
published MD5, or, for an archive whose MD5 is not recorded here, against the files it must
hold (a truncated or tampered archive would otherwise surface much later as odd model metrics),
written atomically (an interrupted download never looks complete) and cached (pipelines call
this on every run).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from data.movielens_files import FMT_ML_1M, FMT_ML_100K, FMT_ML_LATEST, detect_format, extract_zip, find_data_dir

__all__ = [
    "Archive",
    "DATASETS",
    "DatasetDownloadError",
    "ChecksumMismatchError",
    "GROUPLENS_URL",
    "OfflineError",
    "fetch_movielens",
    "md5_of",
]

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/{name}.zip"

@dataclass(frozen=True)
class Archive:
    """One official GroupLens archive and how a download of it is checked."""

    #: the MovieLens file format inside (data.movielens_files.detect_format)
    fmt: str
    #: files the archive must hold (paths inside the zip): the check of a download where no MD5
    #: is recorded (a weaker one: it catches a truncated or wrong archive, not an edited file)
    members: tuple[str, ...]
    #: the MD5 GroupLens publishes next to the archive (``{name}.zip.md5``); None where none
    #: could be confirmed from this (offline) machine
    md5: str | None = None


def _members(folder: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{folder}/{name}" for name in names)


#: The official archives. MD5s: GroupLens publishes them next to the archives; that page could
#: not be fetched from this (offline) machine, so ML-1M's and ML-100K's were confirmed against
#: independent public code that pins the same GroupLens URLs (e.g. eli-osherovich/papers_with_code
#: datasets/movielens/dl_config.py) and match the values we knew, and ML-25M's against two
#: independent public records of its published ml-25m.zip.md5. ml-latest-small's is not
#: recorded: GroupLens re-issues that archive (the 2018 release is the current one) and no
#: published value could be confirmed, so its download is checked by its files alone.
#: Re-check against https://files.grouplens.org/datasets/movielens/ when online.
DATASETS: dict[str, Archive] = {
    "ml-1m": Archive(FMT_ML_1M, _members("ml-1m", "movies.dat", "ratings.dat", "users.dat", "README"),
                     md5="c4d9eecfca2ab87c1945afe126590906"),
    "ml-100k": Archive(FMT_ML_100K, _members("ml-100k", "u.data", "u.item", "u.user", "u.genre",
                                             "u.occupation", "README"),
                       md5="0e33842e24a9c977be4e0107933c0723"),
    # about 1 MB: 100,836 ratings of 9,742 movies by 610 users (half stars, no demographics)
    "ml-latest-small": Archive(FMT_ML_LATEST, _members("ml-latest-small", "movies.csv", "ratings.csv",
                                                       "links.csv", "tags.csv", "README.txt")),
    # about 250 MB: 25,000,095 ratings of 62,423 movies by 162,541 users
    "ml-25m": Archive(FMT_ML_LATEST, _members("ml-25m", "movies.csv", "ratings.csv", "links.csv", "tags.csv",
                                              "genome-scores.csv", "genome-tags.csv", "README.txt"),
                      md5="6b51fb2759a8657d3bfcbfc42b592ada"),
}

_CHUNK = 1 << 16
_TIMEOUT_S = 60


class DatasetDownloadError(RuntimeError):
    """The data set could not be obtained."""


class OfflineError(DatasetDownloadError):
    """The archive could not be downloaded (no network, or GroupLens unreachable)."""


class ChecksumMismatchError(DatasetDownloadError):
    """The downloaded archive is not the official one (truncated, corrupted or replaced)."""


def md5_of(path: Path) -> str:
    """Hex MD5 of a file, read in chunks (archives are tens of MB)."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _missing_members(zip_path: Path, archive: Archive) -> list[str]:
    """The files ``archive`` must hold that the zip at ``zip_path`` lacks (all of them when it
    is not a readable zip)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            present = set(zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return list(archive.members)
    return [member for member in archive.members if member not in present]


def _verify(zip_path: Path, name: str, archive: Archive, expected_md5: str | None) -> str | None:
    """Why ``zip_path`` is not the official ``name`` archive, or None when it passes: its MD5
    when one is expected, else the files it must hold."""
    if expected_md5 is not None:
        actual = md5_of(zip_path)
        if actual == expected_md5:
            return None
        return f"MD5 {actual} does not match the expected {expected_md5} for {name}.zip"
    missing = _missing_members(zip_path, archive)
    if missing:
        return f"{name}.zip lacks the files the official archive holds: {', '.join(missing)}"
    return None


def _manual_hint(name: str, zip_path: Path) -> str:
    official = GROUPLENS_URL.format(name=name)
    return (f"Download {official} on a machine with internet access, then either copy it to "
            f"{zip_path} (it is then used as the cache), or pass the local .zip or its extracted "
            f"folder directly, e.g. load_movielens('/path/to/{name}.zip') or "
            f"load_movielens('/path/to/{name}/').")


def _offline_message(name: str, url: str, zip_path: Path, exc: BaseException) -> str:
    return (f"could not download {name} from {url}: {exc}. This machine looks offline (or the "
            f"server is unreachable). " + _manual_hint(name, zip_path))


def _download(url: str, dest: Path, *, name: str, progress: bool) -> None:
    """Download ``url`` to ``dest`` through a temporary file renamed into place at the end."""
    try:
        resp = urllib.request.urlopen(url, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:  # the server answered: not an offline problem
        raise DatasetDownloadError(f"could not download {name} from {url}: HTTP {exc.code} "
                                   f"{exc.reason}. " + _manual_hint(name, dest)) from exc
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
        raise OfflineError(_offline_message(name, url, dest, exc)) from exc
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with resp, os.fdopen(fd, "wb") as out:
            total = resp.headers.get("Content-Length")
            with tqdm(total=int(total) if total and total.isdigit() else None, unit="B",
                      unit_scale=True, unit_divisor=1024, desc=f"downloading {name}",
                      file=sys.stderr, disable=not progress, leave=False) as bar:
                while True:
                    try:
                        chunk = resp.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:  # connection lost
                        raise OfflineError(_offline_message(name, url, dest, exc)) from exc
                    if not chunk:
                        break
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch_movielens(
    name: str,
    cache_dir: Path,
    *,
    url: str | None = None,
    expected_md5: str | None = None,
    progress: bool = True,
) -> Path:
    """Return the folder holding the files of MovieLens ``name`` (a key of ``DATASETS``:
    'ml-1m', 'ml-100k', 'ml-latest-small', 'ml-25m').

    Downloads ``{cache_dir}/{name}.zip`` from GroupLens (or ``url``, e.g. a mirror or a
    ``file://`` URL) unless a verified copy is already cached, checks its MD5
    (``expected_md5`` defaults to the official archive's) or, where no MD5 is recorded, the
    files it must hold, extracts it and returns the data folder (e.g.
    ``{cache_dir}/ml-1m.extracted/ml-1m``), ready for ``load_movielens``.

    Raises:
      ValueError: unknown ``name``.
      OfflineError: the download failed; the message says how to supply the archive by hand.
      ChecksumMismatchError: the archive is not the expected one; it is deleted, not kept.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown MovieLens data set {name!r}; expected one of {sorted(DATASETS)}")
    archive = DATASETS[name]
    expected = (expected_md5 or archive.md5 or "").lower() or None
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    zip_path = cache_dir / f"{name}.zip"
    url = url or GROUPLENS_URL.format(name=name)

    if zip_path.is_file() and _verify(zip_path, name, archive, expected) is not None:
        zip_path.unlink()  # stale or corrupted cache: fetch again
    if not zip_path.is_file():
        _download(url, zip_path, name=name, progress=progress)
        problem = _verify(zip_path, name, archive, expected)
        if problem is not None:
            zip_path.unlink()
            raise ChecksumMismatchError(
                f"{url}: {problem}; the download was deleted. A truncated download or a different "
                f"file (not the official GroupLens archive) is the usual cause: retry, or check the URL.")

    root = extract_zip(zip_path, cache_dir)
    folder = find_data_dir(root)
    found = detect_format(folder)
    if found != archive.fmt:
        shutil.rmtree(root, ignore_errors=True)
        raise DatasetDownloadError(f"{zip_path} holds {found} data, not {name} ({archive.fmt} files)")
    return folder
