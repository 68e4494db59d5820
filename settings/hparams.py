"""The Trainer's hyperparameters, their defaults, and `NAME=VALUE` parsing.

One dataclass for every runner: the local CLI (`--hparam`), the Kubeflow runner and the
benchmarks parse overrides with `HParams.parse`, the pipeline passes every effective value to
the Trainer's custom_config (so a changed default changes the cache key), and the Trainer
rebuilds them with `HParams.from_dict`. What each default measured is in
benchmarks/results/ (tune*.json, accuracy_*.json, ranking_*.json) and the README.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from common.errors import UserError

#: How the retrieval towers are fitted (HParams.retrieval_fit; model.model.choose_retrieval_fit).
RETRIEVAL_FITS = ("auto", "closed_form", "ials", "softmax")


@dataclass
class HParams:
    """Hyperparameters; the pipeline's Trainer custom_config overrides any of them."""

    embedding_dim: int = 200          # D, the tower output size
    user_id_dim: int = 32
    feature_dim: int = 16
    movie_id_dim: int = 32
    title_embedding_dim: int = 32
    lstm_units: int = 128
    hidden: int = 32
    # True: the user and movie id embeddings enter the output layer directly (linear, as the
    # factors of matrix factorisation do) instead of through a `hidden`-unit ReLU block + dropout.
    linear_ids: bool = False
    dropout: float = 0.2
    # Training only: dropout on the D terms u_d * m_d of the rating's inner product (each kept
    # term scaled by 1 / (1 - rate)), so no factor dimension carries a rating alone; 0: none.
    factor_dropout: float = 0.0
    # >0: the id embeddings and biases are Gaussian posteriors (mean-field variational Bayes,
    # model.variational): sampled in training with the KL to their L2 prior, served by their
    # means; the value is the ratings' noise variance sigma^2 that weighs data against prior.
    variational_ids: float = 0.0
    # True (with variational_ids > 0): the rating histories' embedding tables too, one sample
    # of each table per training step.
    variational_history: bool = False
    l2: float = 1e-5
    id_l2: float = 4e-5               # L2 on id embeddings and biases (whole tables)
    history_l2: float = 4e-5          # L2 on the rating histories' embeddings (whole tables)
    learning_rate: float = 1e-2
    decay_rate: float = 0.9           # learning rate multiplier per epoch
    batch_size: int = 4096
    # ML-1M 80/20's best epoch is the 11th (accuracy.json: 14 epochs run with patience 3, the
    # best weights kept), so 12 epochs and patience 2 keep that model and skip its last epochs;
    # the per-epoch learning-rate decay makes the first epochs identical whatever the cap.
    epochs: int = 12
    patience: int = 2                 # early stopping on eval RMSE
    unique_titles: bool = True        # run the LSTM once per distinct movie in a batch
    weight_decay: float = 0.0         # AdamW decoupled weight decay (0: plain Adam)
    output_l2: float = 0.0            # per-example L2 on the tower outputs (MF-style regulariser)
    bias_l2: float = 0.0              # per-example L2 on the user/movie biases
    title_dropout: float = 0.2        # dropout on the title encoding (the LSTM mean)
    ema_momentum: float = 0.995       # >0: validate/keep an exponential moving average of the weights
    # ... averaged over at most this many epochs: the momentum is lowered to
    # 1 - 1 / (ema_epochs * steps per epoch) when an epoch has fewer than ~200 steps (small data),
    # where 0.995 would average over many epochs and validation would see stale weights.
    ema_epochs: float = 1.3
    head_units: int = 0               # >0: MLP head on [u, m, u*m] adds a term to the dot product
    # User-tower input from the user's training ratings (SVD++-style: which movies, and how far
    # from the mean each was rated), history_dim-d sums / sqrt(count).
    history_dim: int = 32             # 0: no history input
    # True: each rating level weighs the how-rated embeddings by its own learned vector (both
    # histories), initialised to (level - mean); False: by the fixed scalar (level - mean).
    history_level_weights: bool = False
    history_hidden: int = 0
    # Training only: dropout on each tower's history vector (the sums above, both sides) before
    # the output layer; 0: none.
    history_dropout: float = 0.0
    # Movie-tower input from the movie's training ratings (model.rating_history.MovieHistory: which
    # users rated it, and how far from the mean), the user side's mirror; 0: none.
    movie_history_dim: int = 128
    movie_history_hidden: int = 0     # >0: the movie history through a dense ReLU block of this width
    # >1: that many rating models (towers.TowerEnsemble: own ids, features and histories, one
    # shared title LSTM) trained side by side and served as one pair of towers of K * D, whose
    # rating is the members' mean; ensemble_bagging > 0: each member skips that share of each batch.
    ensemble_size: int = 1
    ensemble_bagging: float = 0.0     # share of each batch that each member leaves out (0: none)
    # True: each member has its own user and movie biases (served: their mean) instead of one pair
    # for all, whose data term would count K times against its L2.
    ensemble_own_biases: bool = False
    # True: the members share nothing but the batches (each its own title LSTM, and its own
    # biases), as models trained apart would; the LSTM then runs K times per batch.
    ensemble_independent: bool = False
    # True: the members are trained apart, one after another, each a single model with its own
    # seed (initial weights, batch order, dropout) and early stopping, then assembled into one
    # independent ensemble for serving (model.ensemble_apart).
    ensemble_apart: bool = False
    # Retrieval towers (model.retrieval_towers.RetrievalTowers), disjoint from the rating towers.
    retrieval_dim: int = 128          # R; 0: no retrieval towers (the index then ranks by the rating towers)
    retrieval_weight: float = 1.0     # against the MSE (the weights are disjoint, so mostly a switch)
    retrieval_queries: int = 1024     # examples of a batch used as queries (a full softmax each)
    retrieval_low_rating_weight: float = 0.3  # weight of examples rated below features.RELEVANT_RATING
    retrieval_l2: float = 1e-2        # per-example L2 on the query/candidate rows an example uses
    retrieval_full_softmax_max: int = 50_000  # larger catalogues: in-batch sampled softmax, logQ-corrected
    # "closed_form": EASE's item-item weights factorised to rank R (model.item_item), lambda
    # chosen on the eval split; it needs movies x movies matrices (model.ials.closed_form_bytes).
    # "ials": implicit ALS (model.ials), alpha and lambda chosen on the eval split, memory
    # linear in the catalogue. "softmax": the towers are trained by the softmax above.
    # "auto": the closed form where it fits retrieval_memory_gb, iALS elsewhere.
    retrieval_fit: str = "auto"
    retrieval_memory_gb: float = 0.0  # the closed form's memory budget; 0: half of this machine's memory
    # >0: after the gradient fit, a Bayesian factorization machine over the towers' own inputs
    # (ids, both rating histories, demographics, genres) is fitted by Gibbs sampling
    # (model.gibbs_towers) and this many of its posterior samples join the served towers
    # (model.blended_towers): the rating is the weighted mean of the two models'; 0: none.
    gibbs_samples: int = 32
    gibbs_iterations: int = 200       # Gibbs sweeps (the first 5 are dropped as burn-in)
    gibbs_rank: int = 32              # each sample's vector size
    # True: each input its own prior group (mean and precision learned per input); False: one
    # group for all, as the accuracy benchmark's Bayesian FM peer has.
    gibbs_grouped: bool = True
    # The Gibbs model's share of the served rating, in [0, 1]; below 0: chosen on the eval split
    # (the least-squares weight of the two models' ratings there).
    gibbs_weight: float = -1.0
    # Above this many training ratings the Trainer leaves the Gibbs towers out (recorded in
    # history.json): their fit's time grows with ratings x gibbs_iterations (about four minutes on
    # ML-1M's 760,000 on 2 cores), and their served tables with (users + movies) x gibbs_samples
    # x gibbs_rank; 0: no limit.
    gibbs_max_ratings: int = 5_000_000
    # The Trainer holds the transformed training examples in memory while model.trainer's
    # estimate (IN_MEMORY_COPIES x their bytes) fits this, and streams them from the TFRecords
    # with tf.data otherwise; 0: half of this machine's memory.
    train_memory_gb: float = 0.0
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict | None) -> "HParams":
        known = {k: v for k, v in (values or {}).items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(values or {}) - set(known))
        if unknown:
            raise ValueError(f"unknown hyperparameters: {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**known)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def parse(cls, pairs: Sequence[str], flag: str = "--hparam") -> dict[str, Any]:
        """`name=value` strings -> {name: value} typed like the defaults (only the overrides).

        Raises UserError naming the flag and the known names for an unknown name or a value
        of the wrong type.
        """
        defaults = cls().to_dict()
        result: dict[str, Any] = {}
        for pair in pairs:
            name, sep, value = pair.partition("=")
            if not sep or name not in defaults:
                raise UserError(f"{flag} {pair!r}: expected NAME=VALUE with NAME one of {sorted(defaults)}")
            kind = type(defaults[name])
            try:
                result[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
            except ValueError:
                raise UserError(f"{flag} {pair!r}: {value!r} is not a valid {kind.__name__}") from None
        return result
