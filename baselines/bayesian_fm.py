"""A Bayesian factorization machine (myfm, Gibbs sampling): a peer from outside this project.

Why it is here: every other baseline is written in this package, so a slip in all of them (the
split, the metric, a too-weak bar) would go unseen. myfm is an independent, published
implementation of Rendle's Bayesian FM, and with SVD++-style implicit features on both sides it
is among the strongest published rating predictors on MovieLens (Rendle et al. 2019, "On the
Difficulty of Evaluating Baselines"); its row says how far the two-tower model is from that bar
on the very same split.

Features (Rendle, "Scaling Factorization Machines to Relational Data", 2013), all from the
training ratings only: the user's one-hot id and the movies the user rated, the movie's one-hot
id and the users who rated it, each neighbour set weighted 1/sqrt(n) as in SVD++. They are given
to myfm as two ``RelationBlock``s (one row per user, one per movie, indexed by each rating), so a
Gibbs sweep costs one pass over the blocks rather than over a ratings x features matrix: ~30 s
for 200 sweeps at rank 32 on ML-100K's 90 % on 2 cores (~75 s with the rank chosen on
validation first).

``import myfm`` happens only when a model is built, so ``import baselines`` does not load it.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from baselines.base import Baseline
from baselines.biases import Biases
from baselines.data import RatingData, random_split
from common.metrics import rmse
from model import gibbs_towers

__all__ = ["BayesianFM", "FM_RANKS", "choose_rank", "import_myfm"]

#: The rank grid chosen from on validation: two fits, kept cheap (each costs ~0.5x-1x the
#: final fit); rank 32, the configuration the peer was specified with, and half of it.
FM_RANKS = (16, 32)
#: The rank used when the training data is too small to cut a validation slice from.
DEFAULT_RANK = 32
#: Gibbs sweeps per fit (the specified configuration); myfm keeps the last n_iter - 5 samples.
N_ITER = 200
#: The validation slice cut from the training rows, as ``baselines.ease.choose_lambda`` cuts it.
VALIDATION_FRACTION, VALIDATION_SEED = 0.1, 1

#: who needs myfm, in the one-line error that says how to install it
_NEEDED_BY = "the 'Bayesian FM (myfm)' baseline"


def import_myfm() -> Any:
    """The ``myfm`` module, or a UserError saying how to install it.

    Why a function: myfm is imported where a model is built, and a broken install is one
    line, not a traceback.
    """
    return gibbs_towers.import_myfm(_NEEDED_BY)


def _relation_block(own: np.ndarray, other: np.ndarray, n_own: int, n_other: int) -> sp.csr_matrix:
    """One row per ``own`` entity: [its one-hot id | the ``other`` entities it co-occurs with,
    each 1/sqrt(n)] (n = its distinct neighbours; a repeated pair counts once): the Gibbs
    towers' block (model.gibbs_towers) without side inputs."""
    return gibbs_towers.relation_block(own, other, n_own, n_other, gibbs_towers.SideInputs({}, {}))[0]


class _FittedFM:
    """A myfm regressor with the relation blocks it was fitted on (the same blocks index the
    rows it predicts: a pair is (user row, movie row))."""

    def __init__(self, u: np.ndarray, i: np.ndarray, r: np.ndarray, n_users: int, n_items: int,
                 rank: int, n_iter: int, seed: int) -> None:
        myfm = import_myfm()
        self.myfm = myfm
        self.user_block = _relation_block(u, i, n_users, n_items)
        self.item_block = _relation_block(i, u, n_items, n_users)
        self.model = myfm.MyFMRegressor(rank=rank, random_seed=seed)
        with gibbs_towers.no_progress_bar(myfm):
            self.model.fit(None, r.astype(np.float64), n_iter=n_iter,
                           X_rel=[myfm.RelationBlock(u, self.user_block), myfm.RelationBlock(i, self.item_block)])

    def predict(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """The posterior predictive mean for (dense user, dense movie) pairs, both known."""
        if len(u) == 0:
            return np.zeros(0)
        blocks = [self.myfm.RelationBlock(u, self.user_block), self.myfm.RelationBlock(i, self.item_block)]
        return np.asarray(self.model.predict(None, blocks), dtype=np.float64)


def choose_rank(train: RatingData, ranks: Sequence[int] = FM_RANKS, n_iter: int = N_ITER, seed: int = 0,
                validation_fraction: float = VALIDATION_FRACTION,
                validation_seed: int = VALIDATION_SEED) -> tuple[int, list[dict]]:
    """The rank with the lowest RMSE on a validation slice cut from ``train`` (only), and every
    rank's validation RMSE (first best on a tie), as ``baselines.ease.choose_lambda`` chooses.

    It is given the training ratings and nothing else, so the test rows cannot leak in; each
    candidate is the full model (``BayesianFM`` with that rank, fallbacks included) fitted on
    the rest of ``train``. With fewer ratings than a validation slice needs it returns
    ``DEFAULT_RANK`` and no scores.
    """
    if not ranks:
        raise ValueError("choose_rank needs at least one rank")
    fit_idx, val_idx = random_split(len(train), validation_fraction, validation_seed)
    if len(val_idx) == 0 or len(fit_idx) == 0:
        return DEFAULT_RANK, []
    fit, held_out = train.subset(fit_idx), train.subset(val_idx)
    scores = []
    for rank in ranks:
        model = BayesianFM(ranks=(rank,), n_iter=n_iter, seed=seed).fit(fit)
        scores.append({"rank": int(rank),
                       "validation_rmse": round(rmse(model.predict(held_out.user, held_out.item), held_out.rating), 5)})
    best = min(scores, key=lambda row: row["validation_rmse"])
    return best["rank"], scores


class BayesianFM(Baseline):
    """Bayesian FM (myfm ``MyFMRegressor``, Gibbs sampling) on ids plus implicit neighbours.

    ``fit`` chooses the rank from ``ranks`` on a validation slice of the training rows
    (``choose_rank``; a one-rank grid skips it), then fits on all the training rows: ``n_iter``
    Gibbs sweeps, predicting the posterior mean over the last ``n_iter - 5`` samples. Pairs
    whose user or movie has no training rating get what every baseline gives them
    (``baselines.base``): mu + the known side's ALS bias (``Biases``' regularisation), or mu.
    Why not the FM's own answer with an empty row: no training row is empty, so its intercept w0
    is not the mean rating, and the bias fallback measured as good or better. (ML-100K 90/10
    seed 0, 30 users and 50 movies dropped from the train part, rank 32: w0 3.24 vs mean 3.53;
    test RMSE on their ratings, fallback vs empty row: unseen user 1.025 vs 1.025, unseen movie
    1.105 vs 1.202, both unseen 1.168 vs 1.183.)

    After ``fit``: ``rank`` (the one fitted) and ``tuning`` (``{"params": {"rank": ...},
    "validation": [{"rank", "validation_rmse"}, ...]}``), which ``baselines.scoring`` copies
    into the model's result row.
    """

    name = "Bayesian FM (myfm)"

    def __init__(self, ranks: Sequence[int] = FM_RANKS, n_iter: int = N_ITER, seed: int = 0,
                 validation_fraction: float = VALIDATION_FRACTION, validation_seed: int = VALIDATION_SEED) -> None:
        super().__init__()
        import_myfm()  # fail when built (one line naming the install), not inside a fit
        if not ranks:
            raise ValueError("BayesianFM needs at least one rank")
        self.ranks, self.n_iter, self.seed = tuple(int(r) for r in ranks), n_iter, seed
        self.validation_fraction, self.validation_seed = validation_fraction, validation_seed
        self.rank: int | None = None
        self._fm: _FittedFM | None = None

    def fit(self, train: RatingData) -> "BayesianFM":
        biases = Biases().fit(train)  # the fallback; also refuses an empty train before any FM fit
        self.users, self.items, self.mu, self.scale = biases.users, biases.items, biases.mu, biases.scale
        self.bu, self.bi = biases.bu, biases.bi
        if len(self.ranks) > 1:
            self.rank, scores = choose_rank(train, self.ranks, self.n_iter, self.seed,
                                            self.validation_fraction, self.validation_seed)
            self.tuning = {"params": {"rank": self.rank}, "validation": scores}
        else:
            self.rank = self.ranks[0]
        u, i = self.users.train_codes, self.items.train_codes
        self._fm = _FittedFM(u, i, train.rating, len(self.users), len(self.items), self.rank, self.n_iter, self.seed)
        return self

    def predict(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        u, i = self._encode(user, item)
        pred = self._baseline(u, i)
        both = (u >= 0) & (i >= 0)
        pred[both] = self._fm.predict(u[both], i[both])
        return self.clip(pred)
