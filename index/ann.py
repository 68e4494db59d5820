"""FAISS index construction from factory strings, search-time knobs and recall against exact search.

Why this module exists: the export job, the poster job and the benchmarks all build indexes
the same way (always inner product, over normalised vectors when the caller wants cosine) and
must measure recall@10 the same way, so the rules live here:

* **What to build** is a FAISS factory string (``faiss.index_factory``): anything FAISS
  parses, e.g. ``Flat``, ``HNSW32``, ``IVF4096_HNSW32,SQ8``, ``IVF16384_HNSW32,PQ16,Refine(SQ8)``.
  ``flat``/``hnsw``/``ivf`` are the three shorthands this project started with; ``auto``
  picks by catalogue size (``preset``), following FAISS's wiki "Guidelines to choose an index"
  and "Indexing 1G vectors".
* **Training** (IVF, PQ, SQ, OPQ) uses a random sample (``train_size``: 64 points per
  inverted list, at least 65,536), not the whole catalogue: FAISS's k-means subsamples to 256
  per centroid anyway and warns below 39, and training dominates build time at 10M.
* **IVF lists for inner product** are cut by L2 k-means and filled by L2 assignment, then
  probed by inner product to the centroids (``_l2_partitioned``). FAISS's default for an
  inner-product IVF is spherical k-means (centroids on the unit sphere, assignment by inner
  product), which ignores the norms that decide a top inner product: the best items of a
  query scatter over many cones. L2 cells are compact, so <q, x> = <q, c> + <q, x - c> stays
  close to <q, c> within a cell: on the clustered 1M set ``IVF4096_HNSW32,SQ8`` passed the
  tuner's goal at nprobe 64 where spherical lists needed nprobe 768
  (benchmarks/results/index_scale.json). The written index is an ordinary inner-product
  IVF: it loads, maps and searches like any other.
* **Search-time knobs** have FAISS's ``ParameterSpace`` names (``efSearch``, ``nprobe``,
  ``quantizer_efSearch``, ``k_factor_rf``) and are passed per query as nested
  ``SearchParameters`` (``search_parameters``): nothing on the shared index is mutated, so
  any number of threads may search it.
* **Tuning**: unless given, the knobs are tuned at build time to the cheapest setting (by
  measured search time) that reaches the target recall on one half of the sampled queries
  with a statistical margin (``tune_goal``: TUNE_Z standard errors of the difference
  between the two halves' means, from the spread of per-query recall at that setting), so
  the held-out half passes the gate unless it is unlucky by more than TUNE_Z standard
  errors; the recall that is *reported* is measured on that other half, so the number in
  the manifest is not fitted to its own test. More sample queries, a smaller margin.
* **Recall** counts a returned item as correct when its exact score is at least the exact
  k-th best score (minus float rounding): tied items are interchangeable, so duplicates in
  the catalogue cannot make an exact index look imperfect. The exact top-k comes from one
  brute-force pass (``ExactTopK``: blocked BLAS matmul), shared by every tuning step.
"""
from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import faiss
import numpy as np

#: auto = ``preset`` by size; flat/hnsw/ivf = the shorthands below; or pass ``factory``.
INDEX_TYPES = ("auto", "flat", "hnsw", "ivf")
RECALL_K = 10
HNSW_EF_CANDIDATES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048)
REFINE_K_FACTORS = (2, 4, 8, 16, 32, 64)
PLATEAU_STEPS = 3
#: Standard errors of margin between the tuning half's recall and the target (tune_goal).
TUNE_Z = 2.0
EXACT_BLOCK = 262_144
EXACT_QUERIES = 1_000
#: Below this many vectors exact search answers within the latency gate (Flat, the preset).
FLAT_UP_TO = 100_000
#: Up to this many, HNSW's (4·D + 8·M) bytes per vector fit a laptop: the preset's HNSW32.
HNSW_UP_TO = 2_000_000
#: Compressed presets keep at most this many bytes per vector (codes + id + refinement).
COMPRESSED_BYTES = 128
MIN_TRAIN = 65_536
TRAIN_PER_LIST = 64
#: IVF lists from L2 k-means and L2 assignment, probed by inner product (``_l2_partitioned``);
#: "spherical" is FAISS's own default for an inner-product IVF (kept to compare against).
PARTITION_L2 = "l2"
PARTITION_SPHERICAL = "spherical"
PARTITIONS = (PARTITION_L2, PARTITION_SPHERICAL)


class FactoryError(ValueError):
    """A factory string FAISS cannot build (the message says which string and why)."""


@dataclass(frozen=True)
class AnnConfig:
    """How to build one index; None for a knob means "tune automatically"."""

    index_type: str = "flat"
    factory: str | None = None      # any faiss.index_factory string; overrides index_type
    hnsw_m: int = 32
    ef_construction: int | None = None  # None: 200 for the "hnsw" shorthand, faiss's 40 else
    ef_search: int | None = None
    nlist: int | None = None
    nprobe: int | None = None
    k_factor: int | None = None     # refinement: k_factor * k candidates re-scored
    train_size: int | None = None   # None: train_size(n, nlist)
    target_recall: float = 0.95
    tune_margin: float | None = None   # None: tune_goal's statistical margin; else this fixed one
    recall_queries: int = 1000
    seed: int = 0
    partition: str = PARTITION_L2   # how an IVF's lists are formed (PARTITIONS)

    def __post_init__(self) -> None:
        if self.index_type not in INDEX_TYPES:
            raise ValueError(f"index type must be one of {INDEX_TYPES}, got {self.index_type!r}")
        if self.partition not in PARTITIONS:
            raise ValueError(f"partition must be one of {PARTITIONS}, got {self.partition!r}")
        if self.factory is not None and not self.factory.strip():
            raise FactoryError("the index factory string is empty")


@dataclass
class BuiltIndex:
    """A built index with the parameters it must be searched with and its measured recall."""

    index: faiss.Index
    params: dict[str, Any]
    recall_at_10: float
    build_seconds: float
    tuning: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero instead of becoming NaN)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def auto_nlist(n: int) -> int:
    """~sqrt(n) inverted lists, but at least 39 training points per list (faiss' minimum)."""
    return int(max(1, min(round(np.sqrt(n)), n // 39)))


def preset_nlist(n: int) -> int:
    """4·sqrt(n) rounded to a power of two: the low end of FAISS's "4·sqrt(N) to 16·sqrt(N)"
    (lists of ~n/nlist vectors; the low end keeps k-means affordable on a few cores)."""
    return int(2 ** round(np.log2(max(4 * np.sqrt(n), 1))))


def preset(n: int, d: int) -> str:
    """The factory string ``auto`` builds for ``n`` vectors of dimension ``d``.

    FAISS's guidelines, sized for one machine: exact search while it answers in about a
    millisecond; HNSW (fast, no training, but (4·D + 8·M) bytes per vector and slow to build)
    up to a few million; above that an IVF with an HNSW coarse quantizer and compressed
    codes: SQ8 (D bytes) while D + 8 (the id) fits COMPRESSED_BYTES, else PQ codes with SQ4
    refinement data trimmed to the same budget; from 100M, OPQ + PQ codes alone
    ("Indexing 1G vectors"), re-ranked outside the index if needed.
    """
    if n < FLAT_UP_TO:
        return "Flat"
    if n < HNSW_UP_TO:
        return "HNSW32"
    nlist = preset_nlist(n)
    if n >= 100_000_000:
        m = _pq_m(d, 32)
        return f"OPQ{m}_{4 * m},IVF{nlist}_HNSW32,PQ{m}"
    if d + 8 <= COMPRESSED_BYTES:
        return f"IVF{nlist}_HNSW32,SQ8"
    m = _pq_m(d, max(8, COMPRESSED_BYTES - 8 - d // 2))
    return f"IVF{nlist}_HNSW32,PQ{m},Refine(SQ4)" if m + 8 + d // 2 <= COMPRESSED_BYTES else \
        f"IVF{nlist}_HNSW32,PQ{_pq_m(d, COMPRESSED_BYTES - 8)}"


def _pq_m(d: int, at_most: int) -> int:
    """The largest number of PQ sub-quantizers <= at_most that divides d."""
    for m in range(min(at_most, d), 0, -1):
        if d % m == 0:
            return m
    return 1


def factory_string(n: int, d: int, config: AnnConfig) -> str:
    """What ``config`` asks for, as a factory string."""
    if config.factory is not None:
        return config.factory.strip()
    kind = config.index_type
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return f"HNSW{config.hnsw_m}"
    if kind == "ivf":
        return f"IVF{min(config.nlist or auto_nlist(n), max(n, 1))},Flat"
    return preset(n, d)


def train_size(n: int, index: faiss.Index) -> int:
    """Training points for ``index`` (64 per inverted list, at least MIN_TRAIN; at most n)."""
    ivf = _find(index, faiss.IndexIVF)
    lists = int(ivf.nlist) if ivf is not None else 0
    return int(min(n, max(MIN_TRAIN, TRAIN_PER_LIST * lists)))


def new_index(d: int, factory: str) -> faiss.Index:
    """``faiss.index_factory`` for inner product, with an error that names the string."""
    try:
        return faiss.index_factory(int(d), factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        text = str(error).strip()
        detail = re.split(r"\.cpp:\d+: ", text)[-1].removeprefix("Error: ") if text else ""
        raise FactoryError(f"FAISS cannot build index factory string {factory!r} for D={d}: "
                           f"{detail} (see faiss.index_factory's syntax: e.g. 'Flat', 'HNSW32', "
                           f"'IVF4096_HNSW32,SQ8', 'IVF16384_HNSW32,PQ16,Refine(SQ8)')") from None


def check_factory(factory: str, d: int = 240) -> None:
    """Fail early on a factory string FAISS cannot parse (D=240 divides by most PQ sizes;
    the real dimension is checked again when the index is built)."""
    if not factory.strip():
        raise FactoryError("the index factory string is empty")
    try:
        new_index(d, factory.strip())
    except FactoryError as error:
        if "could not parse" in str(error) or "not recognized" in str(error):
            raise


# --- the index's structure -------------------------------------------------------------
def _layers(index: faiss.Index) -> Iterable[faiss.Index]:
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


def _find(index: faiss.Index, kind: type) -> Any:
    return next((layer for layer in _layers(index) if isinstance(layer, kind)), None)


def _ivf_quantizer_hnsw(ivf: faiss.IndexIVF) -> bool:
    return isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW)


def knob_space(index: faiss.Index) -> dict[str, tuple[int, ...]]:
    """The search-time knobs ``index`` has and the values tuning tries, cheapest first."""
    space: dict[str, tuple[int, ...]] = {}
    if _find(index, faiss.IndexRefine) is not None:
        space["k_factor_rf"] = REFINE_K_FACTORS
    ivf = _find(index, faiss.IndexIVF)
    if ivf is not None:
        nlist = int(ivf.nlist)
        # 1, 2, 3, 4, 6, 8, 12, ... and nlist itself (the clamp), so every IVF can reach exact
        space["nprobe"] = tuple(sorted({min(v, nlist) for i in range(int(np.log2(max(nlist, 1))) + 1)
                                        for v in (2 ** i, 3 * 2 ** i // 2)}))
    hnsw = _find(index, faiss.IndexHNSW)
    if hnsw is not None:
        space["efSearch"] = HNSW_EF_CANDIDATES
    return space


def default_knobs(index: faiss.Index) -> dict[str, int]:
    """The index's own current settings (what it searches with when nobody tunes it)."""
    knobs: dict[str, int] = {}
    refine = _find(index, faiss.IndexRefine)
    if refine is not None:
        knobs["k_factor_rf"] = int(refine.k_factor)
    ivf = _find(index, faiss.IndexIVF)
    if ivf is not None:
        knobs["nprobe"] = int(ivf.nprobe)
    hnsw = _find(index, faiss.IndexHNSW)
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
    ivf = _find(index, faiss.IndexIVF)
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
            if _ivf_quantizer_hnsw(layer):
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


# --- recall ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ExactTopK:
    """The exact k-th best score of each query (one brute-force pass, reused by tuning)."""

    queries: np.ndarray
    kth: np.ndarray        # [q, 1]
    k: int

    @classmethod
    def compute(cls, vectors: np.ndarray, queries: np.ndarray, k: int = RECALL_K) -> "ExactTopK":
        k = min(k, len(vectors))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        kth = np.empty((len(queries), 1), dtype=np.float32)
        # Blocked BLAS matmul + partial sort: about 2x faster than faiss.knn on 2 cores
        # (measured at 1M x 64); blocks of rows and of queries bound the scratch memory
        # (EXACT_BLOCK x EXACT_QUERIES floats) at any catalogue and sample size.
        for first in range(0, len(queries), EXACT_QUERIES):
            chunk = queries[first:first + EXACT_QUERIES]
            best = np.full((len(chunk), 0), -np.inf, dtype=np.float32)
            for start in range(0, len(vectors), EXACT_BLOCK):
                scores = chunk @ np.asarray(vectors[start:start + EXACT_BLOCK], dtype=np.float32).T
                if scores.shape[1] > k:
                    scores = np.partition(scores, -k, axis=1)[:, -k:]
                best = np.concatenate([best, scores], axis=1)
                if best.shape[1] > k:
                    best = np.partition(best, -k, axis=1)[:, -k:]
            kth[first:first + len(chunk)] = best.min(axis=1, keepdims=True)
        return cls(queries, kth, k)

    def subset(self, rows: slice) -> "ExactTopK":
        return ExactTopK(self.queries[rows], self.kth[rows], self.k)

    def recall(self, index: faiss.Index, params: dict[str, Any], vectors: np.ndarray) -> float:
        return mean_recall(self.per_query_recall(index, params, vectors))

    def per_query_recall(self, index: faiss.Index, params: dict[str, Any],
                         vectors: np.ndarray) -> np.ndarray:
        """Each query's share of its true top-k that ``index`` returns ([q] floats)."""
        if len(self.queries) == 0:
            return np.zeros(0)
        _, rows = search(index, params, self.queries, self.k)
        valid = rows >= 0
        got = np.einsum("qd,qkd->qk", self.queries, vectors[np.where(valid, rows, 0)])
        tolerance = 1e-4 * np.maximum(1.0, np.abs(self.kth))
        hits = valid & (got >= self.kth - tolerance)
        return hits.sum(axis=1) / self.k


def mean_recall(per_query: np.ndarray) -> float:
    """Recall over a sample from its per-query recalls (no queries: nothing missed, 1.0)."""
    return float(per_query.mean()) if len(per_query) else 1.0


def tuning_halves(exact: ExactTopK) -> tuple[ExactTopK, ExactTopK]:
    """The queries knobs are tuned on and those recall is reported on: the sample's two
    halves, or the whole sample twice when halves would be under 20 queries."""
    half = len(exact.queries) // 2
    if half < 20:
        return exact, exact
    return exact.subset(slice(0, half)), exact.subset(slice(half, None))


def tune_goal(target: float, per_query: np.ndarray, held_out: int, z: float = TUNE_Z) -> float:
    """The recall the tuning half must reach so the held-out half reaches ``target``.

    Both halves' means scatter around the setting's true recall; their difference has
    standard deviation s·sqrt(1/n_tune + 1/n_held_out), s the per-query spread. Reaching
    ``target`` + z of those leaves a held-out shortfall only about once in 40 tries at z = 2,
    and the margin shrinks as the sample grows: 1000 queries split in halves and a spread
    of 0.1 give 0.013, 4000 give 0.006 (a fixed margin would be too wide or too narrow)."""
    n = len(per_query)
    if n < 2:
        return min(1.0, target)
    spread = float(np.std(per_query, ddof=1))
    return min(1.0, target + z * spread * float(np.sqrt(1.0 / n + (1.0 / held_out if held_out else 0.0))))


def recall_at_k(index: faiss.Index, params: dict[str, Any], vectors: np.ndarray,
                queries: np.ndarray, k: int = RECALL_K) -> float:
    """Mean fraction of the true top-k (ties allowed) that ``index`` returns for ``queries``."""
    if len(queries) == 0 or len(vectors) == 0:
        return 1.0
    return ExactTopK.compute(vectors, queries, k).recall(index, params, vectors)


# --- building -------------------------------------------------------------------------
def _describe(factory: str, index: faiss.Index, partition: str) -> dict[str, Any]:
    kind = ("flat" if factory == "Flat" else
            "hnsw" if re.fullmatch(r"HNSW\d+(_?Flat)?", factory) else
            "ivf" if _find(index, faiss.IndexIVF) is not None else "other")
    params: dict[str, Any] = {"index_type": kind, "factory": factory}
    ivf = _find(index, faiss.IndexIVF)
    if ivf is not None:
        params["nlist"] = int(ivf.nlist)
        params["partition"] = partition
    hnsw = _find(index, faiss.IndexHNSW)
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
    ivf = _find(index, faiss.IndexIVF)
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
    hnsw = _find(index, faiss.IndexHNSW)
    if hnsw is not None:
        ef_c = config.ef_construction or (200 if config.index_type == "hnsw" and config.factory is None
                                          else None)
        if ef_c:
            hnsw.hnsw.efConstruction = int(ef_c)
    ivf = _find(index, faiss.IndexIVF)
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
