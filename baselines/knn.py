"""Neighbourhood baselines: item-based and user-based kNN on baseline residuals.

Why they are here: Surprise's ``KNNBaseline`` is the classical neighbourhood method the
literature reports next to matrix factorisation; on MovieLens the item-based variant is the
strongest classical rating predictor, so it is the bar the neural model's RMSE is held to.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from baselines.base import Baseline, als_biases
from baselines.data import RatingData

__all__ = ["ItemItemCF", "KNNBaseline", "UserUserCF"]


class KNNBaseline(Baseline):
    """kNN on baseline residuals (Surprise ``KNNBaseline``), vectorised.

    Prediction for (u, i), item-based (user-based swaps the roles)::

        r_hat = b_ui + sum_{j in N} s_ij (r_uj - b_uj) / sum_{j in N} s_ij

    where N are the ``k`` items rated by u most similar to i, keeping only
    positive similarities (as Surprise does); with no positive neighbour the
    prediction is the baseline b_ui = mu + b_u + b_i (ALS biases as in
    ``Biases``). Unseen users/items fall back to the baseline too.

    Similarity (``similarity=``):

    * ``"cosine"`` (default) -- cosine of the baseline-residual vectors
      x_ui = r_ui - b_ui over *all* their ratings (an "adjusted cosine"),
      ``sum_{u in U_ij} x_ui x_uj / (|x_i| |x_j|)``, times the shrinkage factor
      ``(n_ij - 1) / (n_ij - 1 + shrinkage)`` (n_ij = common raters). Because
      the norms run over all ratings, pairs with few common raters already get
      small similarities. On validation splits carved from the training rows it
      beat Surprise's ``pearson_baseline`` (ML-1M item-based 0.858 vs 0.865,
      ML-100K 0.903 vs 0.909), and it needs one matrix product fewer.
    * ``"pearson_baseline"`` -- Surprise's: the same cosine restricted to the
      *common* raters (norms over U_ij only), with the same shrinkage.

    Why it is fast: similarities are dense float32 matrix products of the
    residual and indicator matrices (multi-threaded BLAS), computed in row
    blocks so memory stays at a few hundred MB even for 6k users; prediction
    loops over the *grouping* side (one numpy step per user for item-based,
    per item for user-based), never per rating.
    """

    by: str = "item"

    def __init__(
        self,
        k: int = 40,
        similarity: str = "cosine",
        shrinkage: float = 100.0,
        min_k: int = 1,
        reg_u: float = 15.0,
        reg_i: float = 10.0,
        n_epochs: int = 10,
        block_size: int = 2048,
    ) -> None:
        super().__init__()
        if similarity not in ("pearson_baseline", "cosine"):
            raise ValueError(f"unknown similarity {similarity!r}")
        self.k, self.similarity, self.shrinkage, self.min_k = k, similarity, shrinkage, min_k
        self.reg_u, self.reg_i, self.n_epochs = reg_u, reg_i, n_epochs
        self.block_size = block_size
        self.sim: np.ndarray = np.zeros((0, 0), dtype=np.float32)
        self._by_other: sp.csr_matrix | None = None

    # "entity" = what similarities are between (items for item-based);
    # "other"  = the side whose ratings form the neighbourhood (users for item-based).
    def _roles(self, u: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (i, u) if self.by == "item" else (u, i)

    def fit(self, train: RatingData) -> "KNNBaseline":
        u, i, r = self._index(train)
        n_u, n_i = len(self.users), len(self.items)
        self.bu, self.bi = als_biases(
            u, i, r, n_u, n_i, self.mu, self.reg_u, self.reg_i, self.n_epochs
        )
        resid = (r - (self.mu + self.bu[u] + self.bi[i])).astype(np.float32)
        ent, oth = self._roles(u, i)
        n_ent, n_oth = (n_i, n_u) if self.by == "item" else (n_u, n_i)
        self.sim = self._similarity(ent, oth, resid, n_ent, n_oth)
        # Residuals grouped by the "other" side: row = user (item-based), cols = items.
        self._by_other = sp.csr_matrix((resid, (oth, ent)), shape=(n_oth, n_ent))
        self._by_other.sum_duplicates()
        self._by_other.sort_indices()
        return self

    def _similarity(
        self, ent: np.ndarray, oth: np.ndarray, resid: np.ndarray, n_ent: int, n_oth: int
    ) -> np.ndarray:
        x = np.zeros((n_oth, n_ent), dtype=np.float32)
        x[oth, ent] = resid
        m = np.zeros((n_oth, n_ent), dtype=np.float32)
        m[oth, ent] = 1.0
        sim = np.empty((n_ent, n_ent), dtype=np.float32)
        if self.similarity == "cosine":
            norm = np.sqrt(np.einsum("ij,ij->j", x, x))
        else:
            x2 = x * x
        for start in range(0, n_ent, self.block_size):
            blk = slice(start, min(start + self.block_size, n_ent))
            num = x[:, blk].T @ x  # sum over common raters of x_ui x_uj
            count = m[:, blk].T @ m  # n_ij, number of common raters
            if self.similarity == "pearson_baseline":
                den = (x2[:, blk].T @ m) * (m[:, blk].T @ x2)
                with np.errstate(invalid="ignore", divide="ignore"):
                    s = num / np.sqrt(den)
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    s = num / np.outer(norm[blk], norm)
            s[~np.isfinite(s)] = 0.0
            if self.shrinkage > 0:
                c1 = np.maximum(count - 1.0, 0.0)
                s *= c1 / (c1 + self.shrinkage)
            sim[blk] = s
        np.fill_diagonal(sim, 0.0)  # an entity is never its own neighbour
        return sim

    def predict(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        u, i = self._encode(user, item)
        pred = self._baseline(u, i)
        known = np.flatnonzero((u >= 0) & (i >= 0))
        if len(known) == 0:
            return self.clip(pred)
        ent, oth = self._roles(u[known], i[known])
        order = np.argsort(oth, kind="stable")
        oth_sorted = oth[order]
        bounds = np.flatnonzero(np.diff(oth_sorted)) + 1
        starts = np.r_[0, bounds]
        ends = np.r_[bounds, len(order)]
        indptr, indices, data = self._by_other.indptr, self._by_other.indices, self._by_other.data
        k = self.k
        for s, e in zip(starts, ends):
            o = oth_sorted[s]
            rows = known[order[s:e]]  # positions in the output
            targets = ent[order[s:e]]
            nb = indices[indptr[o] : indptr[o + 1]]
            if len(nb) == 0:
                continue
            res = data[indptr[o] : indptr[o + 1]]
            sims = self.sim[np.ix_(targets, nb)]  # (targets, rated neighbours)
            if len(nb) > k:
                top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
                sims = np.take_along_axis(sims, top, axis=1)
                res_k = res[top]
            else:
                res_k = np.broadcast_to(res, sims.shape)
            pos = np.maximum(sims, 0.0)
            wsum = pos.sum(axis=1)
            n_pos = (sims > 0).sum(axis=1)
            ok = (wsum > 0) & (n_pos >= self.min_k)
            if ok.any():
                pred[rows[ok]] += (pos[ok] * res_k[ok]).sum(axis=1) / wsum[ok]
        return self.clip(pred)


class ItemItemCF(KNNBaseline):
    """Item-based KNNBaseline: k=40, cosine of baseline residuals, shrinkage 100.

    Item-based neighbourhoods beat user-based ones on MovieLens because items
    have many more ratings each than users do, so item-item similarities are
    estimated more reliably (the Sarwar et al. / Koren observation).
    """

    name = "ItemItemCF"
    by = "item"


class UserUserCF(KNNBaseline):
    """User-based KNNBaseline: k=40, cosine of baseline residuals, shrinkage 100.

    The user-user similarity matrix is 6k x 6k on ML-1M (~150 MB in float32);
    it is built in row blocks so peak memory stays well under 1 GB.
    """

    name = "UserUserCF"
    by = "user"
