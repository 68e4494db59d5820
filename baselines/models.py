"""Every baseline, in the order the tables list them, and picking some of them by name.

Why a registry: the demo, the accuracy benchmark and the CLI must agree on which models a
"baselines" row set contains and in which order, so that tables stay comparable over time.
Import a model from here or from its own module; both are the same class.
"""
from __future__ import annotations

from typing import Callable, Iterable

from baselines.bayesian_fm import BayesianFM
from baselines.biases import Biases, GlobalMean
from baselines.factorization import MatrixFactorization
from baselines.knn import ItemItemCF, UserUserCF

__all__ = [
    "ALL_BASELINES",
    "BayesianFM",
    "Biases",
    "GlobalMean",
    "ItemItemCF",
    "MatrixFactorization",
    "Predictor",
    "UserUserCF",
    "baselines_named",
]

Predictor = GlobalMean | Biases | ItemItemCF | UserUserCF | MatrixFactorization | BayesianFM

#: Factories (zero-argument callables) for every baseline, in table order. The last is the
#: peer from outside this project (myfm, a benchmark/test extra): building it without myfm
#: installed raises a UserError naming the install command.
ALL_BASELINES: list[Callable[[], Predictor]] = [
    GlobalMean,
    Biases,
    ItemItemCF,
    UserUserCF,
    MatrixFactorization,
    BayesianFM,
]


def baselines_named(names: Iterable[str]) -> list[Callable[[], Predictor]]:
    """The factories of ``names`` (each model's ``name``), in table order.

    Raises ``KeyError`` listing every unknown name, so a typo is reported, not skipped.
    """
    wanted = set(names)
    chosen = [f for f in ALL_BASELINES if f.name in wanted]  # type: ignore[attr-defined]
    unknown = wanted - {f.name for f in chosen}  # type: ignore[attr-defined]
    if unknown:
        known = ", ".join(f.name for f in ALL_BASELINES)  # type: ignore[attr-defined]
        raise KeyError(f"unknown model(s): {', '.join(sorted(unknown))} (known: {known})")
    return chosen
