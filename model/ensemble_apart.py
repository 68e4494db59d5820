"""Ensembles of models trained apart (HParams.ensemble_apart).

K single two-tower models are fitted one after another, each with its own seed (initial
weights, batch order, dropout masks) and its own early stopping, and then assembled into one
independent ensemble (HParams.ensemble_size K, ensemble_independent; towers.TowerEnsemble's
layout): member k's towers and its column of the bias tables hold model k's weights, so the
served rating is the mean of the K models' ratings and the signatures, FAISS and TF-Serving see
one pair of [K * D] towers, as for any ensemble.

Why apart rather than side by side in one graph: members that share the batches keep more of
each other's errors; averaging models trained apart is the closer deterministic relative of a
Bayesian model's average over posterior samples (docs/model.md has what each measured).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from model.model import RatingHistory, TwoTowerModel, build_model
from settings.hparams import HParams


def member_hparams(hp: HParams, k: int) -> HParams:
    """Member k's settings: one model (no ensemble, no Gibbs towers: they join the assembled
    ensemble, model.blended_towers) seeded hp.seed + k. Only the first member
    has retrieval towers: they are fitted apart from the rating towers and never change a
    rating, so one fit serves the ensemble."""
    return dataclasses.replace(hp, ensemble_size=1, ensemble_apart=False, ensemble_independent=False,
                               ensemble_own_biases=False, ensemble_bagging=0.0, seed=hp.seed + k, gibbs_samples=0,
                               retrieval_dim=hp.retrieval_dim if k == 0 else 0)


def check_members(hp: HParams) -> None:
    """Refuses settings an ensemble trained apart cannot assemble, naming them."""
    if hp.ensemble_size < 2:
        raise ValueError(f"ensemble_apart needs ensemble_size >= 2, got {hp.ensemble_size}")
    if hp.variational_ids > 0 or hp.head_units > 0:
        raise ValueError("ensemble_apart assembles plain bias tables and no MLP head: "
                         "set variational_ids=0 and head_units=0")


def assemble(members: list[TwoTowerModel], hp: HParams, history: RatingHistory) -> TwoTowerModel:
    """One independent ensemble of ``members`` (fitted with member_hparams(hp, k), on the
    ratings ``history`` holds): their towers side by side, their biases as its bias columns,
    the first member's retrieval towers."""
    check_members(hp)
    if len(members) != hp.ensemble_size:
        raise ValueError(f"{len(members)} fitted members for ensemble_size {hp.ensemble_size}")
    first = members[0]
    ensemble_hp = dataclasses.replace(hp, ensemble_apart=False, ensemble_independent=True)
    model = build_model(first.vocab, ensemble_hp, first.global_mean, history)
    for k, member in enumerate(members):
        model.user_tower.members[k].set_weights(member.user_tower.get_weights())
        model.movie_tower.members[k].set_weights(member.movie_tower.get_weights())
    for name in ("user_bias", "movie_bias"):
        columns = [getattr(member, name).embeddings.numpy() for member in members]
        getattr(model, name).embeddings.assign(np.concatenate(columns, axis=1))
    if model.retrieval is not None:
        model.retrieval.set_weights(first.retrieval.get_weights())
    return model


def members_history(histories: list[dict]) -> dict:
    """One training history for K members fitted apart: each member's (``members``,
    ``member_best_epochs``), and their epochs and rates one after another (``loss``,
    ``examples_per_second``, ``seconds_per_epoch``). The caller adds the assembled ensemble's
    validation RMSE."""
    history = {"members": histories, "member_best_epochs": [h.get("best_epoch") for h in histories]}
    for key in ("loss", "examples_per_second", "seconds_per_epoch"):
        history[key] = [x for h in histories for x in h.get(key, [])]
    return history
