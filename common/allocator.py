"""How the pipeline's large NumPy arrays get their memory.

NumPy asks the kernel for transparent huge pages on every array of 4 MB or more
(madvise(MADV_HUGEPAGE)). Where the kernel's THP defrag setting is "madvise" (the Linux
default), a fault on such an array may compact memory first to find a huge page, and that
stall grows with the array and with how fragmented memory is: measured here, a fresh cumsum of
25M int64 took 0.45 s with the advice and 0.12 s without (5M: 0.010 and 0.029 s), so the
ingestion of 25M ratings, made of many such passes, grew faster than the ratings did. Without
the advice, faults cost the same per page at any size. NUMPY_MADVISE_HUGEPAGE, NumPy's own
switch, wins when set.
"""
from __future__ import annotations

import os


def no_numpy_hugepages() -> None:
    """Stops NumPy's huge-page advice for arrays allocated from now on, unless the
    NUMPY_MADVISE_HUGEPAGE environment variable chose otherwise."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return
    from numpy._core import multiarray

    multiarray._set_madvise_hugepage(False)
