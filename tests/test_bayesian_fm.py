"""baselines.bayesian_fm: the myfm Bayesian FM peer learns, clips, answers unseen ids, chooses its
rank on validation rows cut from train only, and lands as a row in the accuracy benchmark.

Why generated low-rank ratings: a factorization machine must recover user x movie interactions
that biases cannot, and a planted rank-3 structure (a few hundred users and movies, a few Gibbs
sweeps) shows that in seconds; the ML-100K number is the benchmark's (benchmarks.accuracy).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from baselines import bayesian_fm
from baselines.bayesian_fm import FM_RANKS, BayesianFM
from baselines.biases import Biases, GlobalMean
from baselines.data import RatingData, random_split
from baselines.models import ALL_BASELINES
from common.metrics import rmse

#: Gibbs sweeps for the tests: enough to beat the baselines clearly, few enough for ~1 s a fit.
N_ITER = 40


def low_rank_ratings(n_users: int = 300, n_items: int = 200, n: int = 9_000, seed: int = 0) -> RatingData:
    """Whole-star ratings 3.5 + b_u + b_i + p_u.q_i + noise (rank 3), rounded and clipped to 1..5;
    raw ids offset so that ids are not dense indices."""
    rng = np.random.default_rng(seed)
    p, q = rng.normal(0, 0.6, (n_users, 3)), rng.normal(0, 0.6, (n_items, 3))
    b_u, b_i = rng.normal(0, 0.3, n_users), rng.normal(0, 0.3, n_items)
    u, i = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    score = 3.5 + b_u[u] + b_i[i] + np.einsum("ij,ij->i", p[u], q[i]) + rng.normal(0, 0.4, n)
    return RatingData(u + 1, i + 1_000, np.clip(np.rint(score), 1, 5))


@pytest.fixture(scope="module")
def split() -> tuple[RatingData, RatingData]:
    data = low_rank_ratings()
    train_idx, test_idx = random_split(len(data), 0.1, seed=0)
    return data.subset(train_idx), data.subset(test_idx)


@pytest.fixture(scope="module")
def fitted(split) -> BayesianFM:
    return BayesianFM(n_iter=N_ITER).fit(split[0])


def test_the_peer_learns_interactions_the_biases_cannot(fitted, split) -> None:
    train, test = split
    score = rmse(fitted.predict(test.user, test.item), test.rating)
    floor = rmse(GlobalMean().fit(train).predict(test.user, test.item), test.rating)
    biases = rmse(Biases().fit(train).predict(test.user, test.item), test.rating)
    # measured: 0.63 vs GlobalMean 0.85 and Biases 0.77
    assert score < floor - 0.15, f"Bayesian FM RMSE {score:.4f} vs GlobalMean {floor:.4f}"
    assert score < biases - 0.08, f"Bayesian FM RMSE {score:.4f} vs Biases {biases:.4f}"


def test_predictions_are_clipped_to_the_training_range(fitted, split) -> None:
    train, _ = split
    users, items = np.meshgrid(np.unique(train.user), np.unique(train.item))
    pred = fitted.predict(users.ravel(), items.ravel())
    low, high = float(train.rating.min()), float(train.rating.max())
    assert fitted.scale == (low, high) == (1.0, 5.0)
    assert np.all((pred >= low) & (pred <= high))
    # the planted structure drives some predictions past 5: clipping is at work, not vacuous
    assert np.any(pred == high)


def test_unseen_users_and_movies_get_the_bias_fallback(fitted, split) -> None:
    train, _ = split
    seen_user, seen_item = int(train.user[0]), int(train.item[0])
    users = np.array([99_999, seen_user, 99_999, seen_user])
    items = np.array([seen_item, 99_999, 99_999, seen_item])
    pred = fitted.predict(users, items)
    assert pred.shape == (4,) and np.all(np.isfinite(pred)) and np.all((pred >= 1.0) & (pred <= 5.0))
    # an unseen side: what Biases answers (mu + the known side's bias); both unseen: mu
    np.testing.assert_allclose(pred[:3], Biases().fit(train).predict(users[:3], items[:3]))
    assert pred[2] == pytest.approx(float(np.mean(train.rating, dtype=np.float64)))


def test_the_rank_is_chosen_on_a_validation_cut_of_the_training_rows_only(split, monkeypatch) -> None:
    train, _ = split
    cuts, fits = [], []
    real_split, real_fm = bayesian_fm.random_split, bayesian_fm._FittedFM

    def spy_split(n, fraction, seed):
        cuts.append((n, fraction, seed, real_split(n, fraction, seed)))
        return cuts[-1][3]

    def spy_fm(u, i, r, n_users, n_items, rank, n_iter, seed):
        fits.append((len(r), rank))
        return real_fm(u, i, r, n_users, n_items, rank, n_iter, seed)

    monkeypatch.setattr(bayesian_fm, "random_split", spy_split)
    monkeypatch.setattr(bayesian_fm, "_FittedFM", spy_fm)
    model = BayesianFM(n_iter=N_ITER).fit(train)
    # it was given train only, cut it once (as ease.choose_lambda does), and fitted each rank of
    # the grid on the cut's fit part, then the chosen rank on all of train
    assert len(cuts) == 1 and cuts[0][:3] == (len(train), 0.1, 1)
    fit_idx, val_idx = cuts[0][3]
    assert len(val_idx) > 0 and len(fit_idx) + len(val_idx) == len(train)
    assert fits == [(len(fit_idx), rank) for rank in FM_RANKS] + [(len(train), model.rank)]
    scores = model.tuning["validation"]
    assert [s["rank"] for s in scores] == list(FM_RANKS)
    assert model.rank in FM_RANKS and model.tuning["params"] == {"rank": model.rank}
    assert model.rank == min(scores, key=lambda s: s["validation_rmse"])["rank"]


def test_a_one_rank_grid_skips_validation_and_tiny_data_still_fits() -> None:
    data = low_rank_ratings(n_users=5, n_items=4, n=4)  # too few ratings to cut a validation slice
    model = BayesianFM(n_iter=5).fit(data)
    assert model.rank == bayesian_fm.DEFAULT_RANK and model.tuning == {"params": {"rank": 32}, "validation": []}
    single = BayesianFM(ranks=(8,), n_iter=5).fit(low_rank_ratings(n=500))
    assert single.rank == 8 and single.tuning == {}
    with pytest.raises(ValueError, match="empty"):
        BayesianFM(n_iter=5).fit(data.subset(np.array([], dtype=np.int64)))


def test_baselines_import_without_myfm_and_the_peer_names_the_install_command() -> None:
    """myfm is imported where a model is built: importing ``baselines`` does not load it, and a
    broken install names the command that installs it."""
    code = ("import sys; sys.modules['myfm'] = None\n"
            "import baselines.models, baselines.scoring, commands.compare\n"
            "from common.errors import UserError\n"
            "try:\n    baselines.models.BayesianFM()\n"
            "except UserError as error:\n    print(error)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=120).stdout
    assert "pip install -c requirements.lock -e ." in out


def test_the_accuracy_benchmark_writes_the_peers_row(tmp_path: Path) -> None:
    """benchmarks.accuracy's baseline rows (--skip-two-tower: no model fit) include the peer,
    fitted on the same split, with the rank it chose and the validation scores it chose on."""
    from benchmarks import accuracy
    from data.synthetic_data import generate

    generate(tmp_path / "data", n_users=60, n_movies=40, n_ratings=1_200, seed=0)
    out = tmp_path / "accuracy.json"
    assert accuracy.main(["--dataset", "synthetic", "--data", str(tmp_path / "data"), "--test-fraction", "0.2",
                          "--skip-two-tower", "--out", str(out)]) == 0
    rows = {row["model"]: row for row in json.loads(out.read_text())}
    assert sorted(rows) == sorted(factory.name for factory in ALL_BASELINES)  # no two-tower row
    peer = rows[BayesianFM.name]
    assert (peer["dataset"], peer["split"], peer["seed"]) == ("synthetic", "80/20", 0)
    assert peer["params"]["rank"] in FM_RANKS and [s["rank"] for s in peer["validation"]] == list(FM_RANKS)
    assert peer["rmse"] < rows[GlobalMean.name]["rmse"]
    with pytest.raises(SystemExit):
        accuracy.main(["--dataset", "synthetic", "--data", str(tmp_path / "data"), "--skip-baselines",
                       "--skip-two-tower", "--out", str(out)])
