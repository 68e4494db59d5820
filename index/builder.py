"""Build one index version from embeddings, gate it, and publish it atomically.

Why separate from the CLI (``index.export``): the export job feeds it a SavedModel's
vectors, the ranking benchmark an MF model's, the index benchmark random ones; all of them
must produce the same folder, measured and gated the same way.

Sequence (nothing is visible to readers until the last two steps, and only if the gate passes):

1. write every file into ``<index_dir>/.tmp-<version>-<random>/``;
2. load that folder with ``Similarity`` (proves it is readable) and time queries;
3. write ``manifest.json`` (counts, recall@10 per index, latency, sha256 of every file);
4. gate: recall@10 >= min_recall for every index and p50 latency <= max_latency_ms;
5. pass: ``os.rename`` the folder to ``<index_dir>/<version>`` then move ``LATEST``;
   fail: delete it (or keep it under ``rejected/`` for a post-mortem) and leave LATEST alone.

A remote ``index_dir`` (gs://..., any ``tf.io.gfile`` URI; see ``index.layout``): steps 1-4
run in a local temp folder exactly as above (FAISS writes local files only), then the
version is uploaded to ``<index_dir>/.tmp-<version>-<random>/``, renamed file by file into
``<index_dir>/<version>/`` (``manifest.json`` last) and LATEST is rewritten last of all.
Object stores cannot rename a folder atomically, but no reader looks at a folder before
LATEST names it, so a half-uploaded version stays invisible all the same.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from common import fileio
from index import ann, layout
from index.embed import Embeddings
from index.similarity import Similarity

#: A hook that writes extra files (e.g. the poster index) into the build folder and returns
#: manifest entries to merge: {"indexes": {...}, "counts": {...}, ...}.
ExtraWriter = Callable[[Path], dict[str, Any]]

#: Temp folders older than this are debris of a killed build (an OOM-killed pod, ^C).
STALE_AFTER_S = 6 * 3600


@dataclass(frozen=True)
class Gate:
    """What an index must reach before LATEST may point at it."""

    min_recall: float = 0.95
    max_latency_ms: float = 5.0


@dataclass
class BuildResult:
    passed: bool
    version: str
    folder: Path | str | None      # the published (or kept rejected) folder (a URI when remote); None if deleted
    manifest: dict[str, Any]
    reasons: list[str] = field(default_factory=list)


class VersionExistsError(FileExistsError):
    """The version folder exists already and overwrite was not asked for."""


def save_npy(path: Path, array: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def save_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, ensure_ascii=False) + "\n", encoding="utf-8")


def write_faiss(path: Path, built: ann.BuiltIndex) -> dict[str, Any]:
    """Write an index and return its manifest entry (file, params, recall, timings)."""
    import faiss

    faiss.write_index(built.index, str(path))
    ntotal = int(built.index.ntotal)
    return {"file": path.name, "metric": "inner_product", "ntotal": ntotal,
            "params": built.params, "recall_at_10": built.recall_at_10,
            "build_seconds": round(built.build_seconds, 4),
            "train_seconds": round(built.train_seconds, 4),
            # the whole file: codes, ids, refinement data, quantizer and graph
            "bytes_per_vector": round(path.stat().st_size / max(ntotal, 1), 2),
            "tuning": built.tuning}


def measure_latency(similarity: Similarity, n_queries: int = 300, k: int = 10,
                    seed: int = 0) -> dict[str, Any]:
    """Wall time of single in-process queries (k=10), evenly mixed over the three query kinds.

    The first few queries of each kind are warm-up and not counted (page faults, caches).
    """
    rng = np.random.default_rng(seed)
    movies, users = similarity.movie_ids, similarity.user_ids
    kinds: dict[str, Callable[[int], object]] = {
        "similar_movies": lambda i: similarity.similar_movies(int(movies[i % len(movies)]), k),
        "similar_users": lambda i: similarity.similar_users(int(users[i % len(users)]), k),
        "recommendations": lambda i: similarity.recommend(int(users[i % len(users)]), k),
    }
    per_kind = max(1, n_queries // len(kinds))
    all_ms: list[float] = []
    by_kind: dict[str, dict[str, float]] = {}
    for name, query in kinds.items():
        picks = rng.integers(0, 1 << 30, per_kind + 5)
        for i in picks[:5]:
            query(int(i))
        times = []
        for i in picks[5:]:
            start = time.perf_counter()
            query(int(i))
            times.append((time.perf_counter() - start) * 1000.0)
        all_ms += times
        by_kind[name] = {"p50": float(np.percentile(times, 50)),
                         "p99": float(np.percentile(times, 99))}
    return {"p50": float(np.percentile(all_ms, 50)), "p99": float(np.percentile(all_ms, 99)),
            "queries": len(all_ms), "k": k, "by_query": by_kind}


def check_gate(manifest: dict[str, Any], gate: Gate) -> list[str]:
    """Why ``manifest``'s measurements keep the version from LATEST (empty: it passes).

    A pure function of the recorded recall and latency, so its rules are tested on given
    numbers; what a host measures (``measure_latency``) is another matter."""
    reasons = []
    for name, entry in manifest["indexes"].items():
        if entry["recall_at_10"] < gate.min_recall:
            reasons.append(f"{name}: recall@10 {entry['recall_at_10']:.4f} < min {gate.min_recall}"
                           f" (params {entry['params']})")
    p50 = manifest["latency_ms"]["p50"]
    if p50 > gate.max_latency_ms:
        reasons.append(f"p50 query latency {p50:.3f} ms > max {gate.max_latency_ms} ms")
    return reasons


def sweep_stale(index_dir: Path, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete temp/trash folders that a killed build left behind (older than ``max_age_s``).

    Only old ones: a younger ``.tmp-*`` may belong to a build running right now.
    """
    removed = []
    now = time.time()
    for path in index_dir.iterdir():
        if path.is_dir() and path.name.startswith((".tmp-", ".trash-")):
            try:
                if now - path.stat().st_mtime > max_age_s:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            except FileNotFoundError:
                pass
    return removed


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            layout.fsync_path(path)
    layout.fsync_path(folder)


def _publish(tmp: Path, target: Path, overwrite: bool) -> None:
    """Rename the complete temp folder into place (atomically when the target is new)."""
    _fsync_tree(tmp)
    if target.exists():
        if not overwrite:
            raise VersionExistsError(f"{target} appeared while building; not replacing it")
        trash = target.with_name(f".trash-{target.name}-{uuid.uuid4().hex[:8]}")
        target.rename(trash)
        tmp.rename(target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        tmp.rename(target)
    layout.fsync_path(target.parent)


def write_version_files(folder: Path, embeddings: Embeddings, users_meta: Sequence[dict],
                        movies_meta: Sequence[dict], seen: tuple[np.ndarray, ...],
                        config: ann.AnnConfig,
                        log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Write vectors, id maps, metadata, seen map and the three indexes; return their entries.

    ``seen``: (indptr, movie rows) from ``metadata.seen_csr``, optionally with a third array,
    the pairs' training ratings (``metadata.seen_ratings``), written as SEEN_RATINGS.

    The rating terms and the retrieval vectors are written only when the embeddings carry them
    (an older model's version has neither, like a format-1 folder)."""
    e = embeddings
    save_npy(folder / layout.USER_IDS, e.user_ids)
    save_npy(folder / layout.MOVIE_IDS, e.movie_ids)
    save_npy(folder / layout.USER_VECTORS, e.user_vectors)
    save_npy(folder / layout.MOVIE_VECTORS, e.movie_vectors)
    if e.can_rate:
        save_npy(folder / layout.USER_BIAS, e.user_bias)
        save_npy(folder / layout.MOVIE_BIAS, e.movie_bias)
    if e.has_retrieval:
        save_npy(folder / layout.QUERY_VECTORS, e.query_vectors)
        save_npy(folder / layout.CANDIDATE_VECTORS, e.candidate_vectors)
    if e.movie_query_vectors is not None:
        save_npy(folder / layout.MOVIE_QUERY_VECTORS, e.movie_query_vectors)
    save_json(folder / layout.USERS_META, list(users_meta))
    save_json(folder / layout.MOVIES_META, list(movies_meta))
    indptr, seen_rows = seen[0], seen[1]
    if len(indptr) != len(e.user_ids) + 1:
        raise ValueError("seen map does not match the users")
    save_npy(folder / layout.SEEN_INDPTR, np.asarray(indptr, np.int64))
    save_npy(folder / layout.SEEN_MOVIES, np.asarray(seen_rows, np.int64))
    if len(seen) > 2 and seen[2] is not None:
        if len(seen[2]) != len(seen_rows):
            raise ValueError("seen ratings do not match the seen map")
        save_npy(folder / layout.SEEN_RATINGS, np.asarray(seen[2], np.float32))

    similar_users, similar_movies = e.similar_vectors()
    movie_unit, user_unit = ann.l2_normalise(similar_movies), ann.l2_normalise(similar_users)
    # Stage one of /recommendations: the retrieval candidates searched with the users' queries
    # (a model without a retrieval space: the rating towers' movie vectors with the users').
    queries, candidates = e.search_vectors()
    if e.similar_by_movie_query:  # similar movies ask movies_ip too: measure both kinds of query
        queries = np.concatenate([queries, e.movie_query_vectors])
    plans = {  # index -> (database vectors, the queries it will be asked)
        "movies_cosine": (movie_unit, movie_unit),
        "users_cosine": (user_unit, user_unit),
        "movies_ip": (candidates, queries),
    }
    entries = {}
    for name, (database, queries) in plans.items():
        factory = ann.factory_string(*database.shape, config)
        log(f"{name}: {factory} over {len(database):,} vectors (D={database.shape[1]})")
        built = ann.build_index(database, config, queries, log=lambda m, n=name: log(f"{n}: {m}"))
        entries[name] = write_faiss(folder / layout.INDEX_FILES[name], built)
        entries[name]["normalised"] = name != "movies_ip"
    return entries


def build_index_version(
    index_dir: Path,
    version: str,
    embeddings: Embeddings,
    users_meta: Sequence[dict],
    movies_meta: Sequence[dict],
    seen: tuple[np.ndarray, ...],
    config: ann.AnnConfig = ann.AnnConfig(),
    gate: Gate = Gate(),
    provenance: dict[str, Any] | None = None,
    extra: ExtraWriter | None = None,
    overwrite: bool = False,
    keep_rejected: bool = False,
    latency_queries: int = 300,
    log: Callable[[str], None] = lambda message: None,
) -> BuildResult:
    """Build, measure, gate and (if it passes) publish ``<index_dir>/<version>``.

    ``index_dir`` may be a URI: see the module docstring (``_build_remote``)."""
    if fileio.is_uri(index_dir):
        return _build_remote(
            str(index_dir), version, embeddings, users_meta, movies_meta, seen, config, gate,
            provenance=provenance, extra=extra, overwrite=overwrite, keep_rejected=keep_rejected,
            latency_queries=latency_queries, log=log)
    started = time.perf_counter()
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    for path in sweep_stale(index_dir):
        log(f"removed {path}: left over by an interrupted build")
    target = index_dir / version
    if target.exists() and not overwrite:
        raise VersionExistsError(f"index version {version} exists already at {target}; "
                                 f"pass --overwrite to rebuild it")
    tmp = index_dir / f".tmp-{version}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        retrieval = (f", retrieval R={embeddings.query_vectors.shape[1]}" if embeddings.has_retrieval else "")
        log(f"building {config.factory or config.index_type} indexes over {len(embeddings.movie_ids):,} movies and "
            f"{len(embeddings.user_ids):,} users (D={embeddings.dimension}{retrieval}) in {tmp}")
        indexes = write_version_files(tmp, embeddings, users_meta, movies_meta, seen, config, log)
        manifest: dict[str, Any] = {
            "format_version": layout.FORMAT_VERSION,
            "model_version": version,
            "build_id": uuid.uuid4().hex,
            "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "index_type": config.index_type,
            "index_factory": config.factory,
            "dimension": embeddings.dimension,
            "retrieval_dimension": (int(embeddings.query_vectors.shape[1]) if embeddings.has_retrieval
                                    else None),
            "similar_space": embeddings.similar_space,
            # similar movies: a one-movie history's query searched in movies_ip (else cosine)
            "movie_queries": embeddings.similar_by_movie_query,
            "retrieval": embeddings.has_retrieval,  # movies_ip searches the retrieval space
            "rerank": embeddings.can_rate,          # the rating terms are there to re-rank with
            "seen_ratings": len(seen) > 2 and seen[2] is not None,  # users' top-rated movies
            "counts": {"users": len(embeddings.user_ids), "movies": len(embeddings.movie_ids),
                       "seen_pairs": int(len(seen[1]))},
            "indexes": indexes,
            **(provenance or {}),
        }
        if extra is not None:
            added = extra(tmp)
            manifest["indexes"].update(added.pop("indexes", {}))
            manifest["counts"].update(added.pop("counts", {}))
            manifest.update(added)
        manifest["files"] = layout.file_checksums(tmp)
        manifest["latency_ms"] = {}
        layout.write_json_atomic(tmp / layout.MANIFEST, manifest)

        # Read back what was written (not the in-memory objects) and time real queries.
        manifest["latency_ms"] = measure_latency(Similarity.load(tmp), latency_queries)
        manifest["recall_at_10"] = min(e["recall_at_10"] for e in manifest["indexes"].values())
        reasons = check_gate(manifest, gate)
        manifest["gate"] = {"min_recall": gate.min_recall, "max_latency_ms": gate.max_latency_ms,
                            "passed": not reasons, "reasons": reasons}
        manifest["build_seconds"] = round(time.perf_counter() - started, 3)
        layout.write_json_atomic(tmp / layout.MANIFEST, manifest)

        if reasons:
            kept = None
            if keep_rejected:
                kept = index_dir / "rejected" / f"{version}-{manifest['build_id'][:8]}"
                kept.parent.mkdir(exist_ok=True)
                tmp.rename(kept)
            return BuildResult(False, version, kept, manifest, reasons)
        _publish(tmp, target, overwrite)
        layout.write_latest(index_dir, version)
        return BuildResult(True, version, target, manifest, [])
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _build_remote(index_dir: str, version: str, embeddings: Embeddings, users_meta: Sequence[dict],
                  movies_meta: Sequence[dict], seen: tuple[np.ndarray, ...],
                  config: ann.AnnConfig, gate: Gate, *, overwrite: bool, keep_rejected: bool,
                  log: Callable[[str], None], **build_kwargs: Any) -> BuildResult:
    """Build and gate in a local temp index folder, then upload and publish to a URI.

    Leftover ``.tmp-*`` uploads of killed jobs are not swept here (object stores keep no
    folder mtimes to tell a stale one from a running one); they are never read, and a bucket
    lifecycle rule or ``gsutil rm -r`` removes them.
    """
    target = fileio.join(index_dir, version)
    if fileio.exists(target) and not overwrite:
        raise VersionExistsError(f"index version {version} exists already at {target}; "
                                 f"pass --overwrite to rebuild it")
    local_dir = Path(tempfile.mkdtemp(prefix="movielens-index-build-"))
    try:
        local = build_index_version(local_dir, version, embeddings, users_meta, movies_meta, seen,
                                    config, gate, overwrite=False, keep_rejected=keep_rejected,
                                    log=log, **build_kwargs)
        if not local.passed:
            kept = None
            if local.folder is not None:
                kept = fileio.join(index_dir, "rejected", Path(local.folder).name)
                fileio.copy_tree(local.folder, kept)
            return BuildResult(False, version, kept, local.manifest, local.reasons)
        upload = fileio.join(index_dir, f".tmp-{version}-{uuid.uuid4().hex[:12]}")
        log(f"uploading {version} to {index_dir}")
        try:
            fileio.copy_tree(local.folder, upload)
            if fileio.exists(target):  # --overwrite: move the old version out of the way first
                if not overwrite:
                    raise VersionExistsError(f"{target} appeared while building; not replacing it")
                trash = fileio.join(index_dir, f".trash-{version}-{uuid.uuid4().hex[:8]}")
                fileio.rename_tree(target, trash)
                fileio.rename_tree(upload, target, last=(layout.MANIFEST,))
                fileio.rmtree(trash)
            else:
                fileio.rename_tree(upload, target, last=(layout.MANIFEST,))
        finally:
            fileio.rmtree(upload)
        layout.write_latest(index_dir, version)
        return BuildResult(True, version, target, local.manifest, [])
    finally:
        shutil.rmtree(local_dir, ignore_errors=True)
