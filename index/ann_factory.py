"""What FAISS index to build: factory strings, the size presets and training sample sizes.

* **What to build** is a FAISS factory string (``faiss.index_factory``): anything FAISS
  parses, e.g. ``Flat``, ``HNSW32``, ``IVF4096_HNSW32,SQ8``, ``IVF16384_HNSW32,PQ16,Refine(SQ8)``.
  ``flat``/``hnsw``/``ivf`` are the three shorthands this project started with; ``auto``
  picks by catalogue size (``preset``), following FAISS's wiki "Guidelines to choose an index"
  and "Indexing 1G vectors".
* **Training** (IVF, PQ, SQ, OPQ) uses a random sample (``train_size``: 64 points per
  inverted list, at least 65,536), not the whole catalogue: FAISS's k-means subsamples to 256
  per centroid anyway and warns below 39, and training dominates build time at 10M.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import faiss
import numpy as np

from index.ann_knobs import find_layer

#: auto = ``preset`` by size; flat/hnsw/ivf = the shorthands below; or pass ``factory``.
INDEX_TYPES = ("auto", "flat", "hnsw", "ivf")
#: Below this many vectors exact search answers within the latency gate (Flat, the preset).
FLAT_UP_TO = 100_000
#: Up to this many, HNSW's (4·D + 8·M) bytes per vector fit a laptop: the preset's HNSW32.
HNSW_UP_TO = 2_000_000
#: Compressed presets keep at most this many bytes per vector (codes + id + refinement).
COMPRESSED_BYTES = 128
MIN_TRAIN = 65_536
TRAIN_PER_LIST = 64
#: IVF lists from L2 k-means and L2 assignment, probed by inner product (``index.ann._l2_partitioned``);
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
    ivf = find_layer(index, faiss.IndexIVF)
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
