"""FAISS index construction, search-time parameters and recall against exact search.

Why this module exists: the export job, the poster job and the benchmarks all build the same
three kinds of index (exact, HNSW, IVF; always inner product, over normalised vectors when
the caller wants cosine) and must all measure recall@10 the same way, so the rules live here:

* ``flat`` is exact (``IndexFlatIP``): recall is 1.0 by construction and still measured.
* ``hnsw`` (``IndexHNSWFlat``) and ``ivf`` (``IndexIVFFlat``) trade recall for speed through
  one search-time knob each (``efSearch``, ``nprobe``). Unless given explicitly, the knob is
  tuned at build time to the smallest value that reaches the target recall (plus a small
  margin) on one half of the sampled queries, and the recall that is *reported* is measured
  on the other half, so the number in the manifest is not fitted to its own test.
* Recall counts a returned item as correct when its exact score is at least the exact k-th
  best score (minus float rounding): tied items are interchangeable, so duplicates in the
  catalogue cannot make an exact index look imperfect.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

INDEX_TYPES = ("flat", "hnsw", "ivf")
RECALL_K = 10
HNSW_EF_CANDIDATES = (16, 32, 64, 128, 256, 512, 1024, 2048)


@dataclass(frozen=True)
class AnnConfig:
    """How to build one index; None for ef_search/nprobe/nlist means "choose automatically"."""

    index_type: str = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int | None = None
    nlist: int | None = None
    nprobe: int | None = None
    target_recall: float = 0.95
    tune_margin: float = 0.02   # tune to target + margin: the held-out half is noisier
    recall_queries: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"index type must be one of {INDEX_TYPES}, got {self.index_type!r}")


@dataclass
class BuiltIndex:
    """A built index with the parameters it must be searched with and its measured recall."""

    index: faiss.Index
    params: dict[str, Any]
    recall_at_10: float
    build_seconds: float
    tuning: list[dict[str, float]] = field(default_factory=list)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero instead of becoming NaN)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def auto_nlist(n: int) -> int:
    """~sqrt(n) inverted lists, but at least 39 training points per list (faiss' minimum)."""
    return int(max(1, min(round(np.sqrt(n)), n // 39)))


def search_params(params: dict[str, Any], k: int,
                  selector: faiss.IDSelector | None = None) -> faiss.SearchParameters | None:
    """Per-query search parameters: thread-safe (nothing on the shared index is mutated)."""
    kind = params["index_type"]
    if kind == "hnsw":
        return faiss.SearchParametersHNSW(efSearch=max(int(params["ef_search"]), k), sel=selector)
    if kind == "ivf":
        return faiss.SearchParametersIVF(nprobe=int(params["nprobe"]), sel=selector)
    return faiss.SearchParameters(sel=selector) if selector is not None else None


def search(index: faiss.Index, params: dict[str, Any], queries: np.ndarray, k: int,
           selector: faiss.IDSelector | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the top-k rows for each query; rows are -1 where fewer than k exist."""
    queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, index.d)
    k = max(1, min(k, index.ntotal))
    p = search_params(params, k, selector)
    if p is None:
        return index.search(queries, k)
    return index.search(queries, k, params=p)


def recall_at_k(index: faiss.Index, params: dict[str, Any], vectors: np.ndarray,
                queries: np.ndarray, k: int = RECALL_K) -> float:
    """Mean fraction of the true top-k (ties allowed) that ``index`` returns for ``queries``."""
    if len(queries) == 0 or len(vectors) == 0:
        return 1.0
    k = min(k, len(vectors))
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    true_scores, _ = exact.search(queries, k)
    kth = true_scores[:, -1:]
    _, rows = search(index, params, queries, k)
    valid = rows >= 0
    got = np.einsum("qd,qkd->qk", queries, vectors[np.where(valid, rows, 0)])
    tolerance = 1e-4 * np.maximum(1.0, np.abs(kth))
    hits = valid & (got >= kth - tolerance)
    return float(hits.sum() / (len(queries) * k))


def _new_index(vectors: np.ndarray, config: AnnConfig) -> tuple[faiss.Index, dict[str, Any]]:
    n, d = vectors.shape
    if config.index_type == "flat":
        index: faiss.Index = faiss.IndexFlatIP(d)
        params: dict[str, Any] = {"index_type": "flat"}
    elif config.index_type == "hnsw":
        index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        params = {"index_type": "hnsw", "m": config.hnsw_m,
                  "ef_construction": config.ef_construction, "ef_search": config.ef_search or 64}
    else:
        nlist = min(config.nlist or auto_nlist(n), max(n, 1))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = config.seed
        index.train(vectors)
        params = {"index_type": "ivf", "nlist": nlist, "nprobe": config.nprobe or 1}
    index.add(vectors)
    return index, params


def build_index(vectors: np.ndarray, config: AnnConfig,
                queries: np.ndarray | None = None) -> BuiltIndex:
    """Build an inner-product index over ``vectors`` and measure its recall@10.

    ``queries`` are what the index will be asked (the vectors themselves by default); a
    sample of at most ``config.recall_queries`` of them is used.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"need a non-empty [n, D] matrix to index, got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinity; refusing to index them")
    queries = vectors if queries is None else np.ascontiguousarray(queries, dtype=np.float32)
    rng = np.random.default_rng(config.seed)
    sample = queries[rng.permutation(len(queries))[:config.recall_queries]]

    start = time.perf_counter()
    index, params = _new_index(vectors, config)
    build_seconds = time.perf_counter() - start

    tuning: list[dict[str, float]] = []
    knob = {"hnsw": "ef_search", "ivf": "nprobe"}.get(config.index_type)
    explicit = config.ef_search if knob == "ef_search" else config.nprobe
    if knob is not None and explicit is None:
        # Tune on one half, report on the other (when there are enough queries to split).
        half = len(sample) // 2
        tune_set, report_set = (sample[:half], sample[half:]) if half >= 20 else (sample, sample)
        candidates = (HNSW_EF_CANDIDATES if knob == "ef_search"
                      else sorted({min(2 ** i, params["nlist"])
                                   for i in range(int(np.log2(params["nlist"])) + 2)}))
        for value in candidates:
            params[knob] = int(value)
            recall = recall_at_k(index, params, vectors, tune_set)
            tuning.append({knob: int(value), "recall_at_10": recall})
            if recall >= min(1.0, config.target_recall + config.tune_margin):
                break
        params["tuned"] = True
        sample = report_set
    elif knob is not None:
        params["tuned"] = False
    recall = recall_at_k(index, params, vectors, sample)
    return BuiltIndex(index=index, params=params, recall_at_10=recall,
                      build_seconds=build_seconds, tuning=tuning)
