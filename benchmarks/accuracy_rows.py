"""The rating-accuracy rows' model names and the targets they are held to.

Why its own module: `benchmarks.accuracy` writes the rows (and imports TensorFlow to fit the
model), while `benchmarks.tables` renders them on a page that must build without it.
"""
from __future__ import annotations

from baselines.bayesian_fm import BayesianFM

#: The model row of benchmarks/results/accuracy.json.
TWO_TOWER = "two-tower + title LSTM (this project)"
#: The peer row the model is held to: a Bayesian factorization machine (myfm).
PEER = BayesianFM.name
#: (dataset, split) pairs, seed 0, where the model's test RMSE must be at or below the peer's.
ACCURACY_TARGETS = (("ml-1m", "80/20"), ("ml-100k", "90/10"))
