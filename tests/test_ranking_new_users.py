"""The new-users ranking protocol (``python -m benchmarks.ranking --protocol new-users``): its wiring.

Why these checks: a new-users number is only worth something if the held-out users really are
new to every model, if what is folded in and what is scored are disjoint parts of their ratings,
and if no list can score a movie the user just told the model about. The numbers themselves come
from the real data sets (benchmarks/results/ranking_new_users_*.json); here a small generated set
and one small two-tower fit (the rerank weight fixed: a validation fit would double the time).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from baselines import ease
from benchmarks import ranking, ranking_new_users as nu
from data import features as f
from data.movielens_files import load_movielens
from data.synthetic_data import generate

TINY = {"epochs": 1, "embedding_dim": 8, "user_id_dim": 4, "feature_dim": 4, "movie_id_dim": 4,
        "title_embedding_dim": 4, "lstm_units": 4, "hidden": 4, "history_dim": 4, "retrieval_dim": 8,
        "batch_size": 256, "retrieval_fit": "closed_form", "seed": 0}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    generate(out, n_users=80, n_movies=50, n_ratings=2_400, seed=0)
    return out


@pytest.fixture(scope="module")
def data(folder: Path):
    return load_movielens(folder)


@pytest.fixture(scope="module")
def outcome(data) -> nu.Evaluation:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nu, "VERBOSE", 0)
        return nu.evaluate(data, nu.MODELS, TINY, seed=0, candidates=20, rerank_weight=0.5)


def _pairs(r, user: int) -> Counter:
    mine = r.user_id == user
    return Counter(zip(r.movie_id[mine].tolist(), r.rating[mine].tolist()))


def test_held_out_users_are_absent_from_training(outcome: nu.Evaluation) -> None:
    split, validation = outcome.split, outcome.validation
    held = set(split.held_out.tolist())
    assert held and held.isdisjoint(split.train.ratings.user_id.tolist())
    assert held.isdisjoint(split.train.users)
    (fitted,) = outcome.two_tower
    assert held.isdisjoint(fitted.user_index)  # the two-tower model's users are the training users
    # a visitor is the unknown user: its transformed id is none of the training users'
    assert not np.isin(fitted.visitor_inputs[f.USER_ID_XF], fitted.user_table[f.USER_ID_XF]).any()
    # the validation users are training users, held out of the validation fit in turn
    val_held = set(validation.held_out.tolist())
    assert val_held and val_held <= set(split.train.users) and val_held.isdisjoint(held)
    assert val_held.isdisjoint(validation.train.ratings.user_id.tolist())
    assert len(split.train.movies) == len(validation.train.movies)  # the whole catalogue, always


def test_histories_and_scored_parts_partition_each_held_out_users_ratings(data, outcome: nu.Evaluation) -> None:
    split = outcome.split
    assert len(split.train.ratings) + len(split.history) + len(split.scored) == len(data.ratings)
    histories = split.histories()
    assert sorted(histories) == split.held_out.tolist()
    for user in split.held_out.tolist():
        history, scored = _pairs(split.history, user), _pairs(split.scored, user)
        assert history + scored == _pairs(data.ratings, user)
        assert set(m for m, _ in history).isdisjoint(m for m, _ in scored)
        n = sum(history.values()) + sum(scored.values())
        assert sum(history.values()) == min(max(1, round(n * nu.HISTORY_FRACTION)), n - 1)
        assert Counter(zip(histories[user][0].tolist(), histories[user][1].tolist())) == history
    assert set(split.relevant) <= set(split.held_out.tolist())


def test_history_movies_never_appear_in_any_rows_ranking(outcome: nu.Evaluation) -> None:
    names = [row["model"] for row in outcome.rows]
    assert len(names) == 5 and any("two-stage" in n for n in names) and any("stage one" in n for n in names)
    histories = outcome.split.histories()
    for name, ranked in outcome.rankings.items():
        assert set(ranked) == set(outcome.split.relevant), name
        for user, movies in ranked.items():
            assert movies and len(movies) == len(set(movies)) <= nu.TOP_N, name
            assert set(movies).isdisjoint(histories[user][0].tolist()), (name, user)
    for row in outcome.rows:
        assert 0.0 <= row["NDCG@10"] <= 1.0 and row["users"] == len(outcome.split.relevant)
        assert not row.get("notes"), row["notes"]  # the two-tower rows ran stage two
    by_name = {row["model"]: row for row in outcome.rows}
    ease_row = next(row for name, row in by_name.items() if name.startswith("EASE"))
    for paired in outcome.against_ease():  # the paired per-user difference averages to the rows' gap
        gap = by_name[paired["model"]]["NDCG@10"] - ease_row["NDCG@10"]
        assert paired["mean_difference"] == pytest.approx(gap, abs=1e-5)


def test_ease_fold_in_scores_are_the_historys_x_times_b(outcome: nu.Evaluation) -> None:
    split = outcome.split
    row = next(r for r in outcome.rows if r["model"].startswith("EASE"))
    weights = ease.fit_ease(ease.interaction_matrix(split.train), row["params"]["lambda"])
    movie_ids = np.array(sorted(split.train.movies))
    ranked = outcome.rankings[row["model"]]
    for user, (movies, _) in split.histories().items():
        if user not in ranked:
            continue
        x = np.zeros(len(movie_ids), np.float32)
        x[np.searchsorted(movie_ids, movies)] = 1.0
        direct = x @ weights
        unseen = np.sort(direct[x == 0])[::-1]
        got = direct[np.searchsorted(movie_ids, ranked[user])]
        np.testing.assert_allclose(got, unseen[:len(got)], rtol=1e-5, atol=1e-6)
        assert len(got) == min(nu.TOP_N, len(unseen))


def test_the_cli_writes_the_new_users_json(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "new_users.json"
    assert ranking.main(["--protocol", "new-users", "--data", str(folder), "--models", "ease", "puresvd",
                         "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["dataset"] == folder.name and report["protocol"] == "new-users"
    assert report["split"]["held_out_fraction"] == 0.1 and report["validation_split"]["seed"] == 1
    assert [r["model"].split()[0] for r in report["results"]] == ["EASE", "PureSVD", "most"]
    assert "load_average_1_5_15_at_start" in report and str(tmp_path) not in out.read_text()
    assert "NDCG@10" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        ranking.main(["--protocol", "new-users", "--data", str(folder), "--models", "mf", "--out", str(out)])
