"""Search-time knobs: which a built index has, their defaults, and per-query SearchParameters.

* **Search-time knobs** have FAISS's ``ParameterSpace`` names (``efSearch``, ``nprobe``,
  ``quantizer_efSearch``, ``k_factor_rf``) and are passed per query as nested
  ``SearchParameters`` (``search_parameters``): nothing on the shared index is mutated, so
  any number of threads may search it.
"""
from __future__ import annotations

from typing import Any, Iterable

import faiss
import numpy as np

HNSW_EF_CANDIDATES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048)
REFINE_K_FACTORS = (2, 4, 8, 16, 32, 64)


def layers_of(index: faiss.Index) -> Iterable[faiss.Index]:
    """The index and the indexes it wraps, outermost first (pre-transform, refine, IVF)."""
    index = faiss.downcast_index(index)
    while index is not None:
        yield index
        if isinstance(index, faiss.IndexPreTransform):
            index = faiss.downcast_index(index.index)
        elif isinstance(index, faiss.IndexRefine):
            index = faiss.downcast_index(index.base_index)
        elif isinstance(index, faiss.IndexIDMap):
            index = faiss.downcast_index(index.index)
        else:
            index = None


def find_layer(index: faiss.Index, kind: type) -> Any:
    return next((layer for layer in layers_of(index) if isinstance(layer, kind)), None)


def ivf_quantizer_is_hnsw(ivf: faiss.IndexIVF) -> bool:
    return isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW)


def knob_space(index: faiss.Index) -> dict[str, tuple[int, ...]]:
    """The search-time knobs ``index`` has and the values tuning tries, cheapest first."""
    space: dict[str, tuple[int, ...]] = {}
    if find_layer(index, faiss.IndexRefine) is not None:
        space["k_factor_rf"] = REFINE_K_FACTORS
    ivf = find_layer(index, faiss.IndexIVF)
    if ivf is not None:
        nlist = int(ivf.nlist)
        # 1, 2, 3, 4, 6, 8, 12, ... and nlist itself (the clamp), so every IVF can reach exact
        space["nprobe"] = tuple(sorted({min(v, nlist) for i in range(int(np.log2(max(nlist, 1))) + 1)
                                        for v in (2 ** i, 3 * 2 ** i // 2)}))
    hnsw = find_layer(index, faiss.IndexHNSW)
    if hnsw is not None:
        space["efSearch"] = HNSW_EF_CANDIDATES
    return space


def default_knobs(index: faiss.Index) -> dict[str, int]:
    """The index's own current settings (what it searches with when nobody tunes it)."""
    knobs: dict[str, int] = {}
    refine = find_layer(index, faiss.IndexRefine)
    if refine is not None:
        knobs["k_factor_rf"] = int(refine.k_factor)
    ivf = find_layer(index, faiss.IndexIVF)
    if ivf is not None:
        knobs["nprobe"] = int(ivf.nprobe)
    hnsw = find_layer(index, faiss.IndexHNSW)
    if hnsw is not None:
        knobs["efSearch"] = int(hnsw.hnsw.efSearch)
    return knobs


def parallel_over_lists(index: faiss.Index, on: bool = True) -> None:
    """Let one query use every core: an IVF scans its probed lists in parallel
    (``parallel_mode`` 1; FAISS's default 0 parallelises over the queries of a batch only,
    so a single query runs on one thread), a fast-scan IVF likewise (``implem`` 15, which
    parallelises over lists). ``on=False`` restores FAISS's default. Only for a process
    that has its cores to itself and asks one query at a time: an OpenMP region waits for
    its slowest thread, so beside a busy neighbour a single query's p99 grows several-fold
    (benchmarks/index_busy_neighbour.py); the similarity service therefore loads with
    ``on=False`` (``index.similarity``). Mutates ``index``: set it before searches start."""
    ivf = find_layer(index, faiss.IndexIVF)
    if ivf is None:
        return
    ivf.parallel_mode = 1 if on else 0
    if isinstance(ivf, faiss.IndexIVFFastScan):
        ivf.implem = 15 if on else 0


def quantizer_ef(nprobe: int) -> int:
    """efSearch of an HNSW coarse quantizer asked for the nprobe nearest lists: HNSW returns
    good top-n only when its beam is wider than n, so twice nprobe (at least 64)."""
    return max(64, 2 * int(nprobe))


def knobs_of(params: dict[str, Any]) -> dict[str, int]:
    """The search knobs recorded in a manifest's params (also reads format-1/2 manifests,
    which kept ``ef_search`` / ``nprobe`` beside ``index_type``)."""
    if "search" in params:
        return {k: int(v) for k, v in params["search"].items()}
    kind = params.get("index_type")
    if kind == "hnsw":
        return {"efSearch": int(params["ef_search"])}
    if kind == "ivf":
        return {"nprobe": int(params["nprobe"])}
    return {}


def search_parameters(index: faiss.Index, knobs: dict[str, int], k: int,
                      selector: faiss.IDSelector | None = None) -> faiss.SearchParameters | None:
    """Nested per-query ``SearchParameters`` for ``index`` (thread-safe: the shared index is
    not touched). ``selector`` filters ids in the innermost index that sees ids (IVF or the
    flat/HNSW index), so a filtered search still returns k results when k exist."""
    if not knobs and selector is None:
        return None
    keep: list[Any] = []   # SWIG does not keep nested parameter objects alive: we do

    def build(layer: faiss.Index) -> faiss.SearchParameters:
        layer = faiss.downcast_index(layer)
        if isinstance(layer, faiss.IndexPreTransform):
            inner = build(layer.index)
            p = faiss.SearchParametersPreTransform(index_params=inner)
        elif isinstance(layer, faiss.IndexRefine):
            inner = build(layer.base_index)
            p = faiss.IndexRefineSearchParameters(
                k_factor=float(knobs.get("k_factor_rf", layer.k_factor)), base_index_params=inner)
        elif isinstance(layer, faiss.IndexIVF):
            nprobe = int(knobs.get("nprobe", layer.nprobe))
            p = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector)
            if ivf_quantizer_is_hnsw(layer):
                q = faiss.SearchParametersHNSW(efSearch=int(knobs.get("quantizer_efSearch",
                                                                      quantizer_ef(nprobe))))
                keep.append(q)
                p.quantizer_params = q
        elif isinstance(layer, faiss.IndexHNSW):
            ef = int(knobs.get("efSearch", layer.hnsw.efSearch))
            p = faiss.SearchParametersHNSW(efSearch=max(ef, k), sel=selector)
        else:
            p = faiss.SearchParameters(sel=selector)
        keep.append(p)
        return p

    top = build(index)
    top.referenced_objects = keep + ([selector] if selector is not None else [])
    return top


def search(index: faiss.Index, params: dict[str, Any], queries: np.ndarray, k: int,
           selector: faiss.IDSelector | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the top-k rows for each query; rows are -1 where fewer than k exist."""
    queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, index.d)
    k = max(1, min(k, index.ntotal))
    p = search_parameters(index, knobs_of(params), k, selector)
    if p is None:
        return index.search(queries, k)
    return index.search(queries, k, params=p)
