"""benchmarks.two_tower.fit_predict(refit=True): the validation fit chooses the epoch count and a
final fit on the whole train part, for exactly that many epochs, is the model that predicts
(as the myfm peer chooses its rank on a validation slice and then fits on everything)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from baselines.data import random_split
from benchmarks.two_tower import fit_model, fit_predict, prepare
from data.movielens_files import load_movielens
from data.synthetic_data import generate
from model.blended_towers import BlendedTowers, gibbs_rating
from model.model import HParams

TINY = {"embedding_dim": 8, "user_id_dim": 4, "feature_dim": 4, "movie_id_dim": 4, "title_embedding_dim": 4,
        "lstm_units": 4, "hidden": 4, "history_dim": 4, "movie_history_dim": 4, "retrieval_dim": 8,
        "batch_size": 256, "retrieval_fit": "closed_form", "epochs": 4, "patience": 4, "seed": 0,
        "gibbs_samples": 0}
#: TINY with small Gibbs towers (model.blended_towers)
GIBBS = {**TINY, "gibbs_samples": 4, "gibbs_iterations": 20, "gibbs_rank": 4}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    out: Path = tmp_path_factory.mktemp("synthetic")
    generate(out, n_users=80, n_movies=50, n_ratings=3_000, seed=0)
    return load_movielens(out)


def test_the_final_fit_runs_the_validation_fits_best_epoch_count_on_every_training_row(data) -> None:
    train_idx, test_idx = random_split(len(data.ratings.rating), 0.1, 0)
    result = fit_predict(data, train_idx, test_idx, HParams.from_dict(TINY), refit=True, verbose=0)
    assert len(result.history["val_rmse"]) == 4  # the validation fit ran its epochs ...
    chosen = result.history["best_epoch"] + 1
    assert len(result.final_history["loss"]) == chosen  # ... and the final fit the chosen count,
    assert "val_rmse" not in result.final_history       # without validation data
    assert sorted(result.fit_idx) == sorted(train_idx)  # on the whole train part (history included)
    assert len(result.validation_idx) == 0
    assert result.predictions.shape == (len(test_idx),)
    assert np.isfinite(result.predictions).all()
    assert result.model.retrieval is None  # predicted ratings never read the retrieval towers


def test_the_final_fit_serves_the_gibbs_towers_with_the_weight_chosen_on_validation(data) -> None:
    """The Gibbs towers' weight is chosen as the epoch count is: on the validation slice, by the
    validation fit; the final fit, which has no validation data, serves that weight."""
    train_idx, test_idx = random_split(len(data.ratings.rating), 0.1, 0)
    result = fit_predict(data, train_idx, test_idx, HParams.from_dict(GIBBS), refit=True, verbose=0)
    chosen, final = result.history["gibbs"], result.final_history["gibbs"]
    assert chosen["weight_chosen_on_eval"] and set(chosen["eval_rmse"]) == {"towers", "gibbs", "served"}
    assert chosen["eval_rmse"]["served"] <= min(chosen["eval_rmse"]["towers"], chosen["eval_rmse"]["gibbs"]) + 1e-3
    assert final["weight"] == chosen["weight"] and not final["weight_chosen_on_eval"] and "eval_rmse" not in final
    model = result.model
    assert isinstance(model, BlendedTowers) and model.gibbs_weight == chosen["weight"] and final["samples"] == 4
    inputs = result.inputs(test_idx)
    towers = model.towers.predict(inputs, batch_size=4096, verbose=0)
    gibbs = gibbs_rating(model.gibbs_user, model.gibbs_movie, model.gibbs_global, inputs)
    expected = np.clip((1 - model.gibbs_weight) * towers + model.gibbs_weight * gibbs, 1, 5)
    np.testing.assert_allclose(result.predictions, expected, atol=1e-4)


def test_a_fit_without_validation_data_refuses_retrieval_towers_it_cannot_tune(data) -> None:
    train_idx, _ = random_split(len(data.ratings.rating), 0.1, 0)
    with pytest.raises(ValueError, match="retrieval_dim=0"):
        fit_model(data, train_idx, HParams.from_dict(TINY), validation_fraction=0.0, verbose=0)


def test_folding_the_validation_slice_back_gives_the_rows_a_split_without_one_has(data) -> None:
    """The final fit reuses the validation fit's analysis: the same rows in the same order, and
    the history and mean of all of them, as a fresh analysis without a validation slice."""
    train_idx, _ = random_split(len(data.ratings.rating), 0.1, 0)
    hp = HParams.from_dict(TINY)
    folded = prepare(data, train_idx, hp).without_validation()
    fresh = prepare(data, train_idx, hp, validation_fraction=0.0)
    np.testing.assert_array_equal(folded.fit_idx, fresh.fit_idx)
    assert len(folded.validation_idx) == 0
    assert folded.global_mean == fresh.global_mean
    np.testing.assert_array_equal(folded.history.ratings, fresh.history.ratings)
    np.testing.assert_array_equal(folded.history.movies, fresh.history.movies)


def test_models_trained_apart_refit_each_member_for_the_first_members_best_epoch_count(data) -> None:
    """HParams.ensemble_apart with refit: the validation fit is the first member alone (one
    model, early stopping), and the final fit refits every member, each with its own seed, for
    that member's best epoch count; the assembled ensemble serves the members' mean rating."""
    train_idx, test_idx = random_split(len(data.ratings.rating), 0.1, 0)
    hp = HParams.from_dict({**TINY, "epochs": 6, "patience": 1, "ensemble_size": 2, "ensemble_apart": True})
    result = fit_predict(data, train_idx, test_idx, hp, refit=True, verbose=0)
    assert "members" not in result.history  # one model validated ...
    chosen = result.history["best_epoch"] + 1
    assert len(result.history["val_rmse"]) >= chosen
    assert [len(m["loss"]) for m in result.final_history["members"]] == [chosen] * 2  # ... both refitted
    assert result.model.hp.ensemble_size == 2 and result.model.hp.ensemble_independent
    assert result.model.user_bias.embeddings.shape[1] == 2
    assert result.model.retrieval is None
    members = [m.predict(result.inputs(test_idx), batch_size=4096, verbose=0).reshape(-1)
               for m in result.member_models]
    assert not np.allclose(members[0], members[1])  # their own seeds
    np.testing.assert_allclose(result.predictions.reshape(-1), np.clip(np.mean(members, axis=0), 1, 5), atol=1e-4)


def test_models_trained_apart_without_refit_each_stop_on_their_own_and_average_no_worse(data) -> None:
    """Without refit (the ranking benchmark's fit), each member stops early on its own and the
    assembled ensemble validates no worse than the members on average (the RMSE of a mean is at
    most the mean of the RMSEs)."""
    train_idx, _ = random_split(len(data.ratings.rating), 0.1, 0)
    hp = HParams.from_dict({**TINY, "epochs": 6, "patience": 1, "ensemble_size": 2, "ensemble_apart": True})
    result = fit_model(data, train_idx, hp, verbose=0)
    members = result.history["members"]
    best = result.history["member_best_epochs"]
    assert len(best) == 2 and all(len(m["val_rmse"]) >= b + 1 for m, b in zip(members, best))
    assert result.history["val_rmse"][0] <= np.mean([min(m["val_rmse"]) for m in members]) + 1e-6
