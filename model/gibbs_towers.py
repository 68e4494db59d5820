"""The rating towers' linear parts fitted by Gibbs sampling: a Bayesian factorization machine
(myfm) over the two towers' own inputs.

Why: the accuracy benchmark's peer is a Bayesian FM on ids and SVD++-style histories only, and
it beats every deterministic relative of its method that the two towers were given (movie-side
histories, ensembles, tuned and stronger priors: docs/model.md). The towers hold more than the
peer reads: the users' demographics and the movies' genres and titles. This module fits the
peer's sampler over all of them, each input its own prior group, whose mean and precision the
sampler learns (myfm's ``group_shapes``; ``grouped=False`` gives every input one group, as the
peer has): regularisation learned per input from the data. Which inputs and groups to use is
chosen on validation rows (``benchmarks.tune --gibbs-towers``).

An FM whose every input sits on the user's or the movie's side is a two-tower model. With x the
user's inputs u followed by the movie's m,

    FM(x) = w0 + (w_u . u + pairs within u) + (w_m . m + pairs within m) + <V_u' u, V_m' m>,

a user bias, a movie bias and the inner product of a user vector and a movie vector: the
towers' rating. K posterior samples side by side, each vector scaled by 1/sqrt(K), give the
mean of the K samples' ratings as one inner product, the layout of the towers' ensembles
(model.towers). ``GibbsTowers.tower_tables`` makes that split (TowerTables), and its ratings
over every kept sample equal myfm's posterior mean wherever the user and the movie had training
ratings (an input no rating touched serves its prior's mean: ``_prior_means_for_untouched``).

Inputs, one prior group each, all built from the training ratings and the towers' transformed
features (indexed by vocabulary index):

- user side: the id (one-hot), the movies the user rated (1/sqrt(n) each, as SVD++ and the
  peer), gender, age group and occupation (one-hot);
- movie side: the id, the users who rated it (1/sqrt(n)), its genres and its title's words
  (each set 1/sqrt(n)).

myfm (a pinned dependency) is imported when a model is built, so importing this module does
not load it; a broken install fails with one line saying how to reinstall. The Trainer serves
the fit through model.blended_towers; the accuracy benchmark's peer (baselines.bayesian_fm) is
built from the same blocks, without side inputs.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp

from common.errors import UserError
from data import features as f

__all__ = ["GibbsTowers", "HISTORY_GROUP", "ID_GROUP", "SideInputs", "SideTables", "TowerTables", "import_myfm", "no_progress_bar", "relation_block", "side_inputs"]

#: Gibbs sweeps, and the rank of each sample's vectors: the peer's configuration.
N_ITER, RANK = 200, 32

def import_myfm(needed_by: str = "model.gibbs_towers") -> Any:
    """The ``myfm`` module, or a UserError saying how to install it (one line, not a traceback),
    imported where a model is built."""
    try:
        import myfm
    except ImportError as error:
        raise UserError(f"{needed_by} needs the myfm package, a pinned dependency: "
                        f"pip install -c requirements.lock -e . (make install does)") from error
    return myfm


@contextmanager
def no_progress_bar(myfm: Any) -> Iterator[None]:
    """myfm always draws a tqdm bar on stderr (no flag turns it off): it would land between a
    benchmark's result lines and as carriage-return junk in the demo's log file, so it is
    disabled for the fit (its module's ``tqdm`` name is swapped back afterwards)."""
    module = getattr(myfm, "base", None)
    bar = getattr(module, "tqdm", None)
    if bar is None:
        yield
        return
    module.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        module.tqdm = bar


@dataclass
class SideInputs:
    """One side's features per vocabulary index: ``categorical`` name -> (codes [n], number of
    codes), each a one-hot group; ``sets`` name -> a [n, width] matrix whose nonzero columns are
    the row's members (genres, title words), each a group weighted 1/sqrt(set size)."""

    categorical: dict[str, tuple[np.ndarray, int]]
    sets: dict[str, sp.csr_matrix]


def _feature_kinds(tower: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """A tower's transformed inputs other than its id, by how the FM reads them (from the
    feature table): one-value codes (one-hot), float vectors (multi-hot sets), int vectors
    (word ids, 0 = padding, as sets)."""
    ids = (f.USER_ID_XF, f.MOVIE_ID_XF)
    rows = [row for row in f.TRANSFORMED_FEATURES if row.tower == tower and row.name not in ids]
    return (tuple(r.name for r in rows if r.shape == () and r.dtype == "int64"),
            tuple(r.name for r in rows if r.shape != () and r.dtype == "float32"),
            tuple(r.name for r in rows if r.shape != () and r.dtype == "int64"))


def side_inputs(tower: str, index: np.ndarray, columns: dict[str, np.ndarray], n: int) -> SideInputs:
    """``tower``'s ("user" or "movie") features per vocabulary index, from rows of transformed
    columns (one per example, or one per user or movie) whose vocabulary index is ``index``.

    An index's features are its first row's (a user's or a movie's features do not change
    between its rows); an index without rows (an OOV bucket) gets code 0 and empty sets. The
    number of codes of a one-hot feature is its largest code + 1. A feature missing from
    ``columns`` is left out."""
    index = np.asarray(index, np.int64)
    seen, first = np.unique(index, return_index=True)
    codes_of, sets_of, words_of = (tuple(k for k in kind if k in columns) for kind in _feature_kinds(tower))
    categorical = {}
    for name in codes_of:
        codes = np.zeros(n, np.int64)
        codes[seen] = np.asarray(columns[name])[first]
        categorical[name] = (codes, int(codes.max()) + 1)
    sets = {}
    for name in sets_of:
        rows = np.zeros((n, np.asarray(columns[name]).shape[1]), np.float64)
        rows[seen] = np.asarray(columns[name])[first]
        sets[name] = sp.csr_matrix(rows)
    for name in words_of:
        words = np.asarray(columns[name])[first]
        row, position = np.nonzero(words > 0)
        sets[name] = sp.csr_matrix((np.ones(len(row)), (seen[row], words[row, position])),
                                   shape=(n, int(words.max(initial=0)) + 1))
    return SideInputs(categorical, sets)


def _group_names(side: SideInputs) -> list[str]:
    """relation_block's group names, in its order."""
    return [ID_GROUP, HISTORY_GROUP, *side.categorical, *side.sets]


def _one_hot(codes: np.ndarray, width: int) -> sp.csr_matrix:
    codes = np.asarray(codes, np.int64)
    return sp.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)), shape=(len(codes), width))


def _normalised_set(members: sp.spmatrix) -> sp.csr_matrix:
    """Each row's nonzero columns as 1/sqrt(their number): SVD++'s weighting of a set."""
    seen = sp.csr_matrix(members, dtype=np.float64, copy=True)
    seen.sum_duplicates()
    seen.eliminate_zeros()
    seen.data[:] = 1.0
    counts = np.maximum(np.diff(seen.indptr), 1).astype(np.float64)
    return sp.diags(1.0 / np.sqrt(counts)) @ seen


def relation_block(own: np.ndarray, other: np.ndarray, n_own: int, n_other: int,
                   side: SideInputs) -> tuple[sp.csr_matrix, list[int]]:
    """One row per ``own`` index: [its one-hot id | the ``other`` indices it was rated with
    (or rated by), 1/sqrt(n) | each categorical feature one-hot | each set 1/sqrt(n)], and the
    width of each of those groups in order (myfm's ``group_shapes``)."""
    pairs = sp.csr_matrix((np.ones(len(own)), (own, other)), shape=(n_own, n_other))
    blocks = [sp.identity(n_own, format="csr"), _normalised_set(pairs)]
    for name, (codes, width) in side.categorical.items():
        if len(codes) != n_own:
            raise ValueError(f"feature {name!r} has {len(codes)} rows, not one per index ({n_own})")
        blocks.append(_one_hot(codes, width))
    for name, members in side.sets.items():
        if members.shape[0] != n_own:
            raise ValueError(f"feature {name!r} has {members.shape[0]} rows, not one per index ({n_own})")
        blocks.append(_normalised_set(members))
    return sp.hstack(blocks, format="csr", dtype=np.float64), [b.shape[1] for b in blocks]


def _touched_columns(block: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Which columns of ``block`` the training ratings' rows ``rows`` have a nonzero in. myfm
    samples the others from their prior alone: no rating ever read them."""
    return np.asarray(abs(block[np.unique(rows)]).sum(axis=0)).ravel() > 0


def _prior_means_for_untouched(V: np.ndarray, w: np.ndarray, widths: list[int],
                               touched: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``V`` and ``w`` with each group's untouched columns (``_touched_columns``) set to the mean
    of its touched ones, sample by sample.

    Why: myfm's samples of an untouched column are independent draws from the group's prior,
    N(mu, 1/lambda); the posterior mean rating they stand for is the prior mean's, and the
    touched columns' mean estimates mu (mu's own Gibbs step centres it there). Served as drawn,
    32 samples of noise would move every rating of the column's user or movie: the OOV id row
    of every visitor, the id of a movie no training user rated."""
    V, w = V.copy(), w.copy()
    start = 0
    for width in widths:
        columns = np.arange(start, start + width)
        start += width
        seen = touched[columns]
        if seen.any() and not seen.all():
            V[columns[~seen]] = V[columns[seen]].mean(axis=0)
            w[columns[~seen]] = w[columns[seen]].mean()
    return V, w


#: The names of a relation block's first two groups (relation_block): the id and the history.
ID_GROUP, HISTORY_GROUP = "id", "history"


@dataclass
class SideTables:
    """One side's FM parameters for K posterior samples, per feature column of its relation
    block (relation_block's order): ``vectors`` [columns, K * rank], each sample's rows scaled
    by 1/sqrt(K) and placed side by side; ``linear`` [columns], the mean of the samples' linear
    weights; ``groups``, (name, width) of each group of columns in order: ID_GROUP,
    HISTORY_GROUP, then each categorical and each set feature by its name; ``block``, the
    side's relation block (a row per index: its id, training history and features).

    For a row x of the block, x @ vectors is the side's vector in TowerTables, and
    x @ linear + (|x @ vectors|^2 - (x*x) @ |vectors|^2) / 2 its bias: the mean over the
    samples of w.x plus the pairs within x (|vectors| squared row by row is the mean of the
    samples' |v_i|^2, and |x @ vectors|^2 the mean of their |V'x|^2)."""

    vectors: np.ndarray
    linear: np.ndarray
    groups: list[tuple[str, int]]
    block: sp.csr_matrix

    def group(self, name: str) -> slice:
        """The columns of group ``name``."""
        start = 0
        for group, width in self.groups:
            if group == name:
                return slice(start, start + width)
            start += width
        raise KeyError(f"no group {name!r} in {[g for g, _ in self.groups]}")

    def terms(self, group: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x @ vectors [n, K * rank], x @ linear [n], (x*x) @ |vectors|^2 [n]) of every row x of
        the block, or of its columns in ``group``: the parts a row's vector and bias are made of."""
        columns = self.group(group) if group is not None else slice(None)
        x, vectors = self.block[:, columns], self.vectors[columns]
        return (np.asarray(x @ vectors), np.asarray(x @ self.linear[columns]).ravel(),
                np.asarray(x.multiply(x) @ np.sum(vectors ** 2, axis=1)).ravel())

    def rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(vectors [n, K * rank], biases [n]) of every row of the block."""
        vectors, linear, squares = self.terms()
        return vectors, linear + 0.5 * (np.sum(vectors ** 2, axis=1) - squares)


@dataclass
class IdPrior:
    """Per chosen sample: ``alpha`` [K], the noise precision; ``mean`` and ``precision``
    [K, 1 + rank], the user-id group's prior over (linear weight, vector); and ``trained``
    [n_users], whether a user index had training ratings (its id column was sampled from data)."""

    alpha: np.ndarray
    mean: np.ndarray
    precision: np.ndarray
    trained: np.ndarray


@dataclass
class TowerTables:
    """K posterior samples split into the two towers (module docstring), per vocabulary index:
    ``users`` [n_users, K * rank] and ``movies`` [n_movies, K * rank], each sample's vector
    scaled by 1/sqrt(K), so that one inner product is the mean of the samples' inner products;
    ``user_bias`` [n_users] and ``movie_bias`` [n_movies], the mean over the samples of each
    side's linear terms and pairs within the side; ``global_bias``, the mean w0."""

    users: np.ndarray
    movies: np.ndarray
    user_bias: np.ndarray
    movie_bias: np.ndarray
    global_bias: float

    def rating(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        """Unclipped ratings of (user index, movie index) pairs: the towers' rating."""
        return (np.einsum("ij,ij->i", self.users[users], self.movies[movies]) + self.user_bias[users]
                + self.movie_bias[movies] + self.global_bias)


class GibbsTowers:
    """A Bayesian FM over the towers' inputs (module docstring), fitted by ``n_iter`` Gibbs
    sweeps; ``predict`` is the posterior predictive mean over the kept samples (myfm keeps all
    but the first 5)."""

    def __init__(self, rank: int = RANK, n_iter: int = N_ITER, seed: int = 0, grouped: bool = True) -> None:
        self.rank, self.n_iter, self.seed, self.grouped = rank, n_iter, seed, grouped
        self.myfm = import_myfm()

    def fit(self, users: np.ndarray, movies: np.ndarray, ratings: np.ndarray, n_users: int, n_movies: int,
            user_side: SideInputs, movie_side: SideInputs) -> "GibbsTowers":
        """Fits on training ratings given as (user index, movie index, rating); the histories
        are these ratings' pairs."""
        users, movies = np.asarray(users, np.int64), np.asarray(movies, np.int64)
        if not len(users):
            raise ValueError("GibbsTowers needs at least one training rating")
        self.user_block, user_widths = relation_block(users, movies, n_users, n_movies, user_side)
        self.movie_block, movie_widths = relation_block(movies, users, n_movies, n_users, movie_side)
        self.group_shapes = user_widths + movie_widths
        self.user_groups = list(zip(_group_names(user_side), user_widths))
        self.movie_groups = list(zip(_group_names(movie_side), movie_widths))
        self.touched = np.concatenate([_touched_columns(self.user_block, users),
                                       _touched_columns(self.movie_block, movies)])
        self.model = self.myfm.MyFMRegressor(rank=self.rank, random_seed=self.seed)
        with no_progress_bar(self.myfm):
            self.model.fit(None, np.asarray(ratings, np.float64), n_iter=self.n_iter,
                           group_shapes=self.group_shapes if self.grouped else None,
                           X_rel=self._blocks(users, movies))
        return self

    def _blocks(self, users: np.ndarray, movies: np.ndarray) -> list:
        return [self.myfm.RelationBlock(np.asarray(users, np.int64), self.user_block),
                self.myfm.RelationBlock(np.asarray(movies, np.int64), self.movie_block)]

    def chosen_samples(self, samples: int | None = None) -> np.ndarray:
        """Indices of the kept posterior samples: all, or ``samples`` evenly spaced over the chain."""
        kept = len(self.model.w0_samples)
        if samples is None or samples >= kept:
            return np.arange(kept)
        return np.unique(np.linspace(0, kept - 1, max(samples, 1)).round().astype(int))

    def feature_tables(self, samples: int | None = None) -> tuple[SideTables, SideTables, float]:
        """The kept posterior samples, or ``samples`` of them (``chosen_samples``), as each
        side's per-column tables (SideTables: user, movie) and the mean w0: what the served
        towers read, for any input row, not only the training indices'."""
        chosen = self.chosen_samples(samples)
        n_user_features = self.user_block.shape[1]
        # myfm builds every kept sample anew on each read of V_samples (one array, whose rows
        # are views): read it once, and copy out only the chosen samples
        every_V, every_w = np.asarray(self.model.V_samples), np.asarray(self.model.w_samples)
        V = np.concatenate([every_V[s] for s in chosen], axis=1) / np.sqrt(len(chosen))
        w = every_w[chosen].mean(axis=0)
        V, w = _prior_means_for_untouched(V, w, [width for _, width in self.user_groups + self.movie_groups],
                                          self.touched)
        user = SideTables(V[:n_user_features], w[:n_user_features], self.user_groups, self.user_block)
        movie = SideTables(V[n_user_features:], w[n_user_features:], self.movie_groups, self.movie_block)
        return user, movie, float(np.mean(np.asarray(self.model.w0_samples)[chosen]))

    def id_prior(self, samples: int | None = None) -> "IdPrior":
        """The user-id group's prior and the noise precision, at each chosen sample's sweep
        (``chosen_samples``): what folding a new user's ratings into a sample needs."""
        chosen = self.chosen_samples(samples)
        hypers = self.model.history_.hypers
        sweeps = [hypers[len(hypers) - len(self.model.w0_samples) + s] for s in chosen]
        group = 0  # the user block's id group comes first, grouped or not (one group for all)
        mean = np.array([[h.mu_w[group], *np.asarray(h.mu_V)[group]] for h in sweeps], np.float64)
        precision = np.array([[h.lambda_w[group], *np.asarray(h.lambda_V)[group]] for h in sweeps], np.float64)
        return IdPrior(np.array([h.alpha for h in sweeps], np.float64), mean, precision,
                       self.touched[:self.user_block.shape[0]].copy())

    def tower_tables(self, samples: int | None = None) -> TowerTables:
        """The kept posterior samples, or ``samples`` of them evenly spaced over the chain,
        split into the two towers (TowerTables) for the training indices."""
        user, movie, global_bias = self.feature_tables(samples)
        (users, user_bias), (movies, movie_bias) = user.rows(), movie.rows()
        return TowerTables(users, movies, user_bias, movie_bias, global_bias)

    def predict(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        """Unclipped posterior mean ratings of (user index, movie index) pairs."""
        if not len(users):
            return np.zeros(0)
        return np.asarray(self.model.predict(None, self._blocks(users, movies)), np.float64)
