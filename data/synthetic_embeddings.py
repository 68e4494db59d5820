"""Generated embedding sets for the index tests and benchmarks, clustered like trained tower outputs.

Why not Gaussian noise: trained embeddings are neither uniform nor isotropic; approximate
indexes behave very differently on structure (IVF lists fill unevenly, HNSW finds shortcuts).
A set here is a Gaussian mixture built to carry the traits of the two-tower's outputs that
matter to an index:

* ``sqrt(n)`` clusters (taste groups), with Zipf(1.1) popularity, so lists are uneven;
* a decaying variance spectrum (axis i has standard deviation i^-1/2, then a random
  rotation): a few directions carry most of the signal, as in a learned space;
* vector norms spread log-normally (sigma 0.25), as popularity spreads the norms of
  retrieval candidates, so inner product is not cosine.

Queries come from the same mixture but are fresh draws (never database points, which would
find themselves). Everything is generated in chunks from one seed, so 10M x 64 costs its
2.56 GB once and two runs produce the same bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPREAD = 0.6       # within-cluster standard deviation relative to the centres'
NORM_SIGMA = 0.25  # log-normal spread of vector norms
ZIPF = 1.1
CHUNK = 500_000


@dataclass(frozen=True)
class ClusteredSet:
    """One mixture: its centres, popularity, spectrum and rotation (from ``seed``)."""

    n: int
    d: int
    seed: int = 0

    @property
    def n_clusters(self) -> int:
        return max(16, int(round(np.sqrt(self.n))))

    def _mixture(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, self.d, self.n_clusters])
        spectrum = (1.0 + np.arange(self.d)) ** -0.5
        rotation, _ = np.linalg.qr(rng.normal(size=(self.d, self.d)))
        centres = rng.normal(size=(self.n_clusters, self.d)) * spectrum
        popularity = 1.0 / (1.0 + np.arange(self.n_clusters)) ** ZIPF
        return centres, popularity / popularity.sum(), spectrum, rotation

    def draw(self, count: int, stream: int) -> np.ndarray:
        """``count`` float32 vectors; ``stream`` 0 is the database, others are query sets."""
        centres, popularity, spectrum, rotation = self._mixture()
        rng = np.random.default_rng([self.seed, self.d, self.n_clusters, stream + 1])
        out = np.empty((count, self.d), np.float32)
        for begin in range(0, count, CHUNK):
            m = min(CHUNK, count - begin)
            cluster = rng.choice(len(centres), m, p=popularity)
            points = centres[cluster] + SPREAD * rng.normal(size=(m, self.d)) * spectrum
            points = points @ rotation
            norms = np.linalg.norm(points, axis=1, keepdims=True)
            scale = np.exp(NORM_SIGMA * rng.normal(size=(m, 1)))
            out[begin:begin + m] = points / np.maximum(norms, 1e-12) * scale
        return out

    def database(self) -> np.ndarray:
        return self.draw(self.n, 0)

    def queries(self, count: int) -> np.ndarray:
        return self.draw(count, 1)
