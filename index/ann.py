"""FAISS index construction from factory strings, search-time knobs and recall against exact search.

Why this module exists: the export job, the poster job and the benchmarks all build indexes
the same way (always inner product, over normalised vectors when the caller wants cosine) and
must measure recall@10 the same way, so the rules live here:

* **IVF lists for inner product** are cut by L2 k-means and filled by L2 assignment, then
  probed by inner product to the centroids (``_l2_partitioned``). FAISS's default for an
  inner-product IVF is spherical k-means (centroids on the unit sphere, assignment by inner
  product), which ignores the norms that decide a top inner product: the best items of a
  query scatter over many cones. L2 cells are compact, so <q, x> = <q, c> + <q, x - c> stays
  close to <q, c> within a cell: on the clustered 1M set ``IVF4096_HNSW32,SQ8`` passed the
  tuner's goal at nprobe 64 where spherical lists needed nprobe 768
  (benchmarks/results/index_scale.json). The written index is an ordinary inner-product
  IVF: it loads, maps and searches like any other.

This module builds and reads indexes; the rules it builds with are one module each, and
their public names are importable from here too: `ann_factory` (what to build),
`ann_knobs` (search-time knobs) and `ann_recall` (recall against exact search, tuning margin).
"""
from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import faiss
import numpy as np

from index.ann_factory import (
    COMPRESSED_BYTES,
    FLAT_UP_TO,
    HNSW_UP_TO,
    INDEX_TYPES,
    MIN_TRAIN,
    PARTITION_L2,
    PARTITION_SPHERICAL,
    PARTITIONS,
    TRAIN_PER_LIST,
    AnnConfig,
    FactoryError,
    auto_nlist,
    check_factory,
    factory_string,
    l2_normalise,
    new_index,
    preset,
    preset_nlist,
    train_size,
)
from index.ann_knobs import (
    HNSW_EF_CANDIDATES,
    REFINE_K_FACTORS,
    default_knobs,
    find_layer,
    ivf_quantizer_is_hnsw,
    knob_space,
    knobs_of,
    layers_of,
    parallel_over_lists,
    quantizer_ef,
    search,
    search_parameters,
)
from index.ann_recall import (
    EXACT_BLOCK,
    EXACT_QUERIES,
    RECALL_K,
    TUNE_Z,
    ExactTopK,
    mean_recall,
    recall_at_k,
    tune_goal,
    tuning_halves,
)

__all__ = ["AnnConfig", "auto_nlist", "build_index", "BuiltIndex", "check_factory", "COMPRESSED_BYTES",
           "default_knobs", "EXACT_BLOCK", "EXACT_QUERIES", "ExactTopK", "factory_string", "FactoryError",
           "find_layer", "FLAT_UP_TO", "HNSW_EF_CANDIDATES", "HNSW_UP_TO", "INDEX_TYPES",
           "ivf_quantizer_is_hnsw", "knob_space", "knobs_of", "l2_normalise", "layers_of", "mean_recall",
           "MIN_TRAIN", "MMAP_FLAG_CHOICES", "new_index", "parallel_over_lists", "PARTITION_L2",
           "PARTITION_SPHERICAL", "PARTITIONS", "PLATEAU_STEPS", "preset", "preset_nlist", "quantizer_ef",
           "read_index", "recall_at_k", "RECALL_K", "REFINE_K_FACTORS", "search", "search_parameters",
           "TRAIN_PER_LIST", "train_size", "tune", "tune_goal", "TUNE_Z", "tuning_halves"]

PLATEAU_STEPS = 3


@dataclass
class BuiltIndex:
    """A built index with the parameters it must be searched with and its measured recall."""

    index: faiss.Index
    params: dict[str, Any]
    recall_at_10: float
    build_seconds: float
    tuning: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0


# --- building -------------------------------------------------------------------------
def _describe(factory: str, index: faiss.Index, partition: str) -> dict[str, Any]:
    kind = ("flat" if factory == "Flat" else
            "hnsw" if re.fullmatch(r"HNSW\d+(_?Flat)?", factory) else
            "ivf" if find_layer(index, faiss.IndexIVF) is not None else "other")
    params: dict[str, Any] = {"index_type": kind, "factory": factory}
    ivf = find_layer(index, faiss.IndexIVF)
    if ivf is not None:
        params["nlist"] = int(ivf.nlist)
        params["partition"] = partition
    hnsw = find_layer(index, faiss.IndexHNSW)
    if hnsw is not None:
        params["m"] = int(hnsw.hnsw.nb_neighbors(1))
        params["ef_construction"] = int(hnsw.hnsw.efConstruction)
    return params


@contextlib.contextmanager
def _l2_partitioned(index: faiss.Index) -> Iterator[None]:
    """While the block trains and fills ``index``, its IVF (if any) partitions by L2: an L2
    quantizer of the same kind (flat, or HNSW with the same M) stands in for the inner-product
    one, k-means runs exact and non-spherical (``clustering_index``), and list assignment and
    residuals use L2. Afterwards the centroids move into the index's own inner-product
    quantizer, which is what search uses (and what the IVF's IP distance terms need)."""
    ivf = find_layer(index, faiss.IndexIVF)
    if (ivf is None or ivf.metric_type != faiss.METRIC_INNER_PRODUCT or ivf.is_trained
            or ivf.quantizer.ntotal):
        yield
        return
    own = faiss.downcast_index(ivf.quantizer)
    if isinstance(own, faiss.IndexHNSW):
        stand_in = faiss.IndexHNSWFlat(ivf.d, int(own.hnsw.nb_neighbors(1)))
        stand_in.hnsw.efSearch = 64   # nearest-centroid assignment: wider than FAISS's 16
    else:
        stand_in = faiss.IndexFlatL2(ivf.d)
    clustering = faiss.IndexFlatL2(ivf.d)
    trains_alone = ivf.quantizer_trains_alone   # a C char: SWIG gives and takes a 1-char str
    ivf.quantizer, ivf.quantizer_trains_alone = stand_in, "\x00"
    ivf.cp.spherical, ivf.clustering_index = False, clustering
    try:
        yield
        own.add(stand_in.reconstruct_n(0, stand_in.ntotal))
    finally:
        ivf.quantizer, ivf.quantizer_trains_alone, ivf.clustering_index = own, trains_alone, None


def _construct(vectors: np.ndarray, factory: str, config: AnnConfig,
               log: Any = None) -> tuple[faiss.Index, float]:
    """Create, train on a sample and fill the index; returns it and the training seconds."""
    n, d = vectors.shape
    index = new_index(d, factory)
    hnsw = find_layer(index, faiss.IndexHNSW)
    if hnsw is not None:
        ef_c = config.ef_construction or (200 if config.index_type == "hnsw" and config.factory is None
                                          else None)
        if ef_c:
            hnsw.hnsw.efConstruction = int(ef_c)
    ivf = find_layer(index, faiss.IndexIVF)
    if ivf is not None:
        if ivf.nlist > n:
            raise FactoryError(f"{factory!r} asks for {ivf.nlist:,} inverted lists but there are only "
                               f"{n:,} vectors to train them on")
        ivf.cp.seed = config.seed
    train_seconds = 0.0
    partition = _l2_partitioned(index) if config.partition == PARTITION_L2 else contextlib.nullcontext()
    with partition:
        if not index.is_trained:
            size = min(n, config.train_size or train_size(n, index))
            rng = np.random.default_rng(config.seed)
            sample = vectors if size >= n else vectors[np.sort(rng.choice(n, size, replace=False))]
            if log:
                log(f"training {factory} on {len(sample):,} of {n:,} vectors")
            start = time.perf_counter()
            index.train(np.ascontiguousarray(sample, dtype=np.float32))
            train_seconds = time.perf_counter() - start
        chunk = 1_000_000
        for begin in range(0, n, chunk):
            index.add(np.ascontiguousarray(vectors[begin:begin + chunk], dtype=np.float32))
            if log and n > chunk:
                log(f"added {min(begin + chunk, n):,} / {n:,} vectors")
    return index, train_seconds


def _timed_recall(index: faiss.Index, params: dict[str, Any], vectors: np.ndarray,
                  exact: ExactTopK) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    per_query = exact.per_query_recall(index, params, vectors)
    return per_query, time.perf_counter() - start


def tune(index: faiss.Index, params: dict[str, Any], vectors: np.ndarray, exact: ExactTopK,
         target: float, fixed: dict[str, int] | None = None,
         log: Any = None, margin: float | None = None, held_out: int = 0) -> tuple[dict[str, int], list[dict[str, float]]]:
    """The cheapest knob setting reaching ``target`` recall on ``exact``'s queries.

    A setting reaches it when its recall is at least ``target`` + ``margin``; with no
    ``margin``, at least ``tune_goal`` (the statistical margin for a held-out half of
    ``held_out`` queries, from that setting's per-query spread).

    The main knob (``nprobe`` of an IVF, else ``efSearch``) climbs its ladder until the
    target is reached; an index with a refinement stage does that for every ``k_factor_rf``
    and keeps the setting whose search took least time. Knobs in ``fixed`` are not tuned.
    A ladder also stops when recall has not risen for PLATEAU_STEPS steps (the codes, not
    the search, limit it: e.g. SQ/PQ rounding). Nothing reaching its goal: the cheapest
    setting reaching ``target`` itself (the codes cannot afford the margin), else the most
    accurate setting tried."""
    fixed = dict(fixed or {})
    space = {k: v for k, v in knob_space(index).items() if k not in fixed}
    main = "nprobe" if "nprobe" in space else "efSearch" if "efSearch" in space else None
    outer = space.get("k_factor_rf", (None,))
    trials: list[dict[str, float]] = []
    reached: list[tuple[float, dict[str, int]]] = []
    above_target: list[tuple[float, dict[str, int]]] = []
    best: tuple[float, dict[str, int]] | None = None
    for k_factor in outer:
        base = dict(fixed)
        if k_factor is not None:
            base["k_factor_rf"] = int(k_factor)
        ladder_best, flat_steps = -1.0, 0
        for value in (space[main] if main else (None,)):
            knobs = dict(base)
            if main is not None:
                knobs[main] = int(value)
            per_query, seconds = _timed_recall(index, {**params, "search": knobs}, vectors, exact)
            recall = mean_recall(per_query)
            goal = (min(1.0, target + margin) if margin is not None
                    else tune_goal(target, per_query, held_out))
            trials.append({**knobs, "recall_at_10": round(recall, 5), "goal": round(goal, 5),
                           "seconds": round(seconds, 5)})
            if log:
                log(f"tuning {knobs}: recall@10 {recall:.4f} (goal {goal:.4f}; {seconds:.3f} s for "
                    f"{len(exact.queries)} queries)")
            if best is None or recall > best[0]:
                best = (recall, knobs)
            if recall >= goal:
                reached.append((seconds, knobs))
                break
            if recall >= target:
                above_target.append((seconds, knobs))
            flat_steps = flat_steps + 1 if recall <= ladder_best + 1e-3 else 0
            ladder_best = max(ladder_best, recall)
            if flat_steps >= PLATEAU_STEPS:
                break
    for found in (reached, above_target):
        if found:
            return min(found, key=lambda r: r[0])[1], trials
    return (best[1] if best else dict(fixed)), trials


def build_index(vectors: np.ndarray, config: AnnConfig,
                queries: np.ndarray | None = None, log: Any = None,
                exact: "ExactTopK | None" = None) -> BuiltIndex:
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
    factory = factory_string(*vectors.shape, config)

    start = time.perf_counter()
    index, train_seconds = _construct(vectors, factory, config, log)
    build_seconds = time.perf_counter() - start
    params = _describe(factory, index, config.partition)

    given = {name: value for name, value in (("efSearch", config.ef_search), ("nprobe", config.nprobe),
                                             ("k_factor_rf", config.k_factor)) if value is not None}
    space = knob_space(index)
    tuning: list[dict[str, float]] = []
    if exact is None and len(sample):  # ``exact``: the sample's top-k, if the caller has it
        if log:
            log(f"exact top-{RECALL_K} of {len(sample):,} sample queries (brute force)")
        exact = ExactTopK.compute(vectors, sample)
    if exact is not None and any(knob not in given for knob in space):
        # Tune on one half, report on the other (when there are enough queries to split).
        tune_set, report_set = tuning_halves(exact)
        knobs, tuning = tune(index, params, vectors, tune_set, config.target_recall,
                             fixed={k: v for k, v in given.items() if k in space}, log=log,
                             margin=config.tune_margin,
                             held_out=len(report_set.queries) if report_set is not tune_set else 0)
        params["tuned"] = True
        exact = report_set
    else:
        knobs = {**default_knobs(index), **{k: v for k, v in given.items() if k in space}}
        if space:
            params["tuned"] = False
    params["search"] = knobs
    # the shorthands' manifest keys, which format-2 readers and the README's tables know
    if "efSearch" in knobs and params["index_type"] == "hnsw":
        params["ef_search"] = knobs["efSearch"]
    if "nprobe" in knobs:
        params["nprobe"] = knobs["nprobe"]
    recall = exact.recall(index, params, vectors) if exact is not None else 1.0
    return BuiltIndex(index=index, params=params, recall_at_10=recall,
                      build_seconds=build_seconds, tuning=tuning, train_seconds=train_seconds)


# --- files ----------------------------------------------------------------------------
#: Memory-mapping flags, most mapped first: the inverted lists (IO_FLAG_MMAP) together with
#: flat code arrays (IO_FLAG_MMAP_IFC: Flat/HNSW storage, SQ/PQ refinement codes); FAISS
#: cannot map both in some nestings (a refined IVF), so each alone is tried after.
MMAP_FLAG_CHOICES = (("IO_FLAG_MMAP|IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP | faiss.IO_FLAG_MMAP_IFC),
                     ("IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP_IFC),
                     ("IO_FLAG_MMAP", faiss.IO_FLAG_MMAP))


def read_index(path: Any, mmap: bool = False) -> tuple[faiss.Index, str]:
    """``faiss.read_index``; with ``mmap`` the first flag set the index type allows.

    Returns the index and the flags used ("" when read into memory). The file must stay
    where it is (unlinked is fine on POSIX; truncated is not) while the index is in use."""
    if mmap:
        for name, flags in MMAP_FLAG_CHOICES:
            try:
                return faiss.read_index(str(path), flags), name
            except RuntimeError:  # this nesting cannot be mapped this way: try the next
                continue
    return faiss.read_index(str(path)), ""
