"""benchmarks.tune: bad variants are refused by name before any data is read or model fitted, and
--peer scores the myfm peer on the rows the variants validate on."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from benchmarks import tune


@pytest.mark.parametrize("variant, message", [
    ("{history_dim: 32}", "bad variant"),
    ('{"no_such_knob": 1}', "unknown hyperparameters: \\['no_such_knob'\\]"),
])
def test_bad_variants_are_refused_with_the_reason(variant, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        tune.main([variant, "--data", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_nothing_to_fit_is_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        tune.main(["--data", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "at least one variant (or --peer, --gibbs-towers)" in capsys.readouterr().err


def test_peer_is_scored_on_the_models_validation_rows(tmp_path):
    """--peer: the myfm peer is fitted on the rows the variants are fitted on and scored on the
    rows they validate on (prepare's cut), and it learns (beats the global mean there)."""
    pytest.importorskip("myfm")
    from baselines.data import random_split, rating_data
    from common.metrics import rmse
    from benchmarks.two_tower import prepare, validation_cut
    from data.movielens_files import load_movielens
    from data.synthetic_data import generate, size_kwargs
    from model.model import HParams

    generate(tmp_path / "data", **size_kwargs("tiny"), seed=3)
    out = tmp_path / "tune.json"
    assert tune.main(["--data", str(tmp_path / "data"), "--peer", "--seed", "2", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["results"] == [] and record["peer"]["rank"] == 32

    data = load_movielens(tmp_path / "data")
    train_idx, _ = random_split(len(data.ratings.rating), 0.2, 2)
    prepared = prepare(data, train_idx, HParams(seed=2))
    fit_idx, val_idx = validation_cut(train_idx, 2)
    np.testing.assert_array_equal(fit_idx, prepared.fit_idx)
    np.testing.assert_array_equal(val_idx, prepared.validation_idx)
    ratings = rating_data(data.ratings)
    mean_rmse = rmse(np.full(len(val_idx), ratings.rating[fit_idx].mean()), ratings.rating[val_idx])
    assert record["peer"]["val_rmse"] < mean_rmse - 0.02


@pytest.mark.parametrize("settings", ['{"rank": 4, "no_such": 1}', '[4]', '{rank}', '{"samples": [0]}'])
def test_bad_gibbs_towers_settings_are_refused(settings, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        tune.main(["--data", str(tmp_path / "missing"), "--gibbs-towers", settings])
    assert exit_info.value.code == 2
    assert "--gibbs-towers" in capsys.readouterr().err


def test_gibbs_towers_are_scored_on_the_peer_s_rows_and_kept_for_blending(tmp_path, capsys):
    """--gibbs-towers: model.gibbs_towers is fitted on the rows the peer is fitted on and scored
    on the rows it is scored on; it learns; leaving features out changes the fit; with
    --blend-check its ratings are kept, read back on a second run, and blended."""
    pytest.importorskip("myfm")
    from baselines.data import random_split
    from common.metrics import rmse
    from benchmarks.two_tower import validation_cut
    from data.movielens_files import load_movielens
    from data.synthetic_data import generate, size_kwargs

    generate(tmp_path / "data", **size_kwargs("tiny"), seed=3)
    out, folder = tmp_path / "tune.json", tmp_path / "kept"
    settings = ['{"rank": 4, "n_iter": 30, "samples": [3, 25]}',
                '{"rank": 4, "n_iter": 30, "grouped": false, "without": ["genres_xf"]}']
    common = ["--data", str(tmp_path / "data"), "--out", str(out), "--gibbs-towers", settings[0],
              "--gibbs-towers", settings[1]]
    assert tune.main([*common, "--peer"]) == 0
    record = json.loads(out.read_text())
    first, second = record["gibbs_towers"]
    assert first["groups"] == 9 and second["groups"] == 8  # ids, histories, 3 + 2 features; genres left out
    assert first["val_rmse"] != second["val_rmse"]
    by_samples = first["val_rmse_by_samples"]  # the towers' tables: all 25 kept samples rate as myfm does
    assert set(by_samples) == {"3", "25"} and by_samples["25"] == pytest.approx(first["val_rmse"], abs=1e-4)
    assert by_samples["3"] != by_samples["25"] and second["val_rmse_by_samples"] == {}
    data = load_movielens(tmp_path / "data")
    train_idx, _ = random_split(len(data.ratings.rating), 0.2, 0)
    fit_idx, val_idx = validation_cut(train_idx, 0)
    truth = data.ratings.rating[val_idx]
    assert first["val_rmse"] < rmse(np.full(len(val_idx), data.ratings.rating[fit_idx].mean()), truth) - 0.02
    assert abs(first["val_rmse"] - record["peer"]["val_rmse"]) < 0.1  # the same rows: a like score
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # stdout: only JSON lines
    assert [row["model"] for row in lines] == ["Bayesian FM (myfm)", *2 * ["Gibbs towers (model.gibbs_towers)"]]

    assert tune.main([*common, "--blend-check", str(folder)]) == 0
    record = json.loads(out.read_text())
    keys = [row["key"] for row in record["gibbs_towers"]]
    assert sorted(p.stem for p in folder.glob("*.npy")) == sorted(keys)
    assert record["results"][-1]["blends"]["models"] == 2
    assert tune.main([*common, "--blend-check", str(folder)]) == 0  # kept: read, not fitted
    again = json.loads(out.read_text())["gibbs_towers"]
    assert [row.get("seconds") for row in again] == [None, None]
    assert again[0]["val_rmse_by_samples"] == record["gibbs_towers"][0]["val_rmse_by_samples"]
    assert [row["val_rmse"] for row in again] == [row["val_rmse"] for row in record["gibbs_towers"]]


@pytest.mark.slow  # a validation fit, a refit and a myfm fit (a minute or more): CI's slow tier
def test_refit_check_scores_both_fits_on_a_fresh_held_out_slice(tmp_path):
    """--refit-check: the variant is fitted on the train part minus a slice cut with another
    seed, as benchmarks.accuracy fits it (validation fit, then the refit), and both fits are
    scored on that slice; the peer is fitted on the same rows and scored on the same slice."""
    pytest.importorskip("myfm")
    from baselines.data import random_split
    from benchmarks.two_tower import validation_cut
    from data.movielens_files import load_movielens
    from data.synthetic_data import generate, size_kwargs

    generate(tmp_path / "data", **size_kwargs("tiny"), seed=4)
    out = tmp_path / "tune.json"
    variant = '{"epochs": 3, "embedding_dim": 8, "lstm_units": 4, "retrieval_dim": 0}'
    assert tune.main([variant, "--data", str(tmp_path / "data"), "--refit-check", "--peer", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    [row] = record["results"]
    data = load_movielens(tmp_path / "data")
    train_idx, _ = random_split(len(data.ratings.rating), 0.2, 0)
    _, held = validation_cut(train_idx, tune.REFIT_CHECK_SEED)
    _, usual = validation_cut(train_idx, 0)
    assert row["held_out_rows"] == len(held) and len(np.intersect1d(held, usual)) < len(held) // 2
    assert row["final_fit_epochs"] == row["best_epoch"] and len(row["val_rmse"]) >= row["best_epoch"]
    truth = data.ratings.rating[held]
    mean_rmse = float(np.sqrt(np.mean((truth - data.ratings.rating[np.setdiff1d(train_idx, held)].mean()) ** 2)))
    for score in (row["held_out_rmse_validation_fit"], row["held_out_rmse_refit"], record["peer"]["val_rmse"]):
        assert 0.3 < score < mean_rmse + 0.05
    assert row["held_out_rmse_validation_fit"] != row["held_out_rmse_refit"]


@pytest.mark.parametrize("seeds, message", [("0,x", "comma-separated integers"), ("1,1", "each seed once")])
def test_bad_average_seeds_are_refused(seeds, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        tune.main(["{}", "--data", str(tmp_path / "missing"), "--average-seeds", seeds])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow  # two small fits (a minute or more): CI's slow tier
def test_average_seeds_scores_each_fit_and_the_average_of_their_predictions(tmp_path, capsys):
    """--average-seeds: one fit per model seed on the same rows; the average of k fits'
    predictions is scored on the same slice, so k = 1 is the first fit's score, and averaging
    two different fits is no worse than the worse of them (squared error is convex) and differs
    from both. Each fit's epochs are shown on stderr; stdout carries only the results' JSON."""
    from data.synthetic_data import generate, size_kwargs

    generate(tmp_path / "data", **size_kwargs("tiny"), seed=5)
    out = tmp_path / "tune.json"
    variant = '{"epochs": 3, "embedding_dim": 8, "lstm_units": 4, "retrieval_dim": 0}'
    assert tune.main([variant, "--data", str(tmp_path / "data"), "--average-seeds", "0,1", "--out", str(out)]) == 0
    [row] = json.loads(out.read_text())["results"]
    assert row["seeds"] == [0, 1] and len(row["seconds_each"]) == 2
    first, second = row["val_rmse_each"]
    one, two = row["val_rmse_average_of_first_k"]
    assert first != second and one == first
    assert two <= max(first, second) + 1e-5 and two not in (first, second)
    printed = capsys.readouterr()
    assert [json.loads(line) for line in printed.out.splitlines()] == [row]
    assert "variant 1/1" in printed.err and printed.err.count("Epoch 1/3") == 2


def test_checks_are_given_one_at_a_time(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        tune.main(["{}", "--data", str(tmp_path / "missing"), "--refit-check", "--blend-check", str(tmp_path / "p")])
    assert exit_info.value.code == 2
    assert "separate checks: give one" in capsys.readouterr().err


@pytest.mark.slow  # two small fits (a minute or more): CI's slow tier
def test_blend_check_keeps_held_out_ratings_and_scores_their_averages(tmp_path):
    """--blend-check: each variant's ratings of the refit check's held-out slice are kept under a
    key of its settings and the split; a second run reads them instead of fitting; each kept
    model, each pair and all of them are scored on that slice; another split's files are not mixed in."""
    from baselines.data import random_split
    from common.metrics import rmse
    from benchmarks.two_tower import validation_cut
    from data.movielens_files import load_movielens
    from data.synthetic_data import generate, size_kwargs

    generate(tmp_path / "data", **size_kwargs("tiny"), seed=6)
    folder, out = tmp_path / "kept", tmp_path / "tune.json"
    small = '"epochs": 2, "embedding_dim": 8, "lstm_units": 4, "retrieval_dim": 0'
    variants = ["{" + small + "}", "{" + small + ', "linear_ids": true}']
    common = ["--data", str(tmp_path / "data"), "--blend-check", str(folder), "--out", str(out)]
    assert tune.main([*variants, *common]) == 0
    first = json.loads(out.read_text())["results"]
    assert [row["seconds"] is not None for row in first[:2]] == [True, True]
    assert all(row["best_epoch"] in (1, 2) for row in first[:2])  # 1-based, of "epochs": 2
    keys = [row["key"] for row in first[:2]]
    assert keys[0] != keys[1] and sorted(p.name for p in folder.glob("*.npy")) == sorted(f"{k}.npy" for k in keys)

    data = load_movielens(tmp_path / "data")
    train_idx, _ = random_split(len(data.ratings.rating), 0.2, 0)
    _, held = validation_cut(train_idx, tune.REFIT_CHECK_SEED)
    truth = data.ratings.rating[held]
    kept = [np.load(folder / f"{k}.npy") for k in keys]
    assert not np.allclose(kept[0], kept[1])
    for row, predicted in zip(first, kept):
        assert row["held_out_rmse"] == pytest.approx(rmse(predicted, truth), abs=1e-5)
    blends = first[2]["blends"]
    assert blends["models"] == 2 and blends["all"] == pytest.approx(rmse((kept[0] + kept[1]) / 2, truth), abs=1e-5)
    [pair] = blends["pairs"]
    assert sorted(pair[:2]) == sorted(keys) and pair[2] == blends["all"]
    errors = [predicted - truth for predicted in kept]
    assert pair[3] == pytest.approx(np.corrcoef(*errors)[0, 1], abs=1e-4) and pair[3] < 1

    assert tune.main([variants[0], *common]) == 0  # kept: read, not fitted
    again = json.loads(out.read_text())["results"]
    assert again[0]["key"] == keys[0] and again[0]["seconds"] is None and again[1]["blends"]["models"] == 2
    assert again[0]["best_epoch"] == first[0]["best_epoch"]
    assert tune.main([variants[0], *common, "--seed", "1"]) == 0  # another split: fitted, scored alone
    other = json.loads(out.read_text())["results"]
    assert other[0]["key"] not in keys and other[0]["seconds"] is not None and other[1]["blends"]["models"] == 1
    generate(tmp_path / "other", **size_kwargs("tiny"), seed=7)  # other ratings: never read as these
    assert tune.main([variants[0], *common[2:], "--data", str(tmp_path / "other")]) == 0
    assert json.loads(out.read_text())["results"][0]["key"] not in keys
