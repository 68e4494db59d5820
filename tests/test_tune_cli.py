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
    assert "at least one variant (or --peer)" in capsys.readouterr().err


def test_peer_is_scored_on_the_models_validation_rows(tmp_path):
    """--peer: the myfm peer is fitted on the rows the variants are fitted on and scored on the
    rows they validate on (prepare's cut), and it learns (beats the global mean there)."""
    pytest.importorskip("myfm")
    from baselines.data import random_split, rating_data
    from baselines.metrics import rmse
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
