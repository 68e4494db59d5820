"""benchmarks.train_speed: bad variants are refused by name before any data is read or model fitted."""
from __future__ import annotations

import re

import pytest

from benchmarks import train_speed


@pytest.mark.parametrize("args, message", [
    (["{batch_size: 4096}"], "bad variant"),
    (['{"no_such_knob": 1}'], "unknown hyperparameters: \\['no_such_knob'\\]"),
    (["{}", "--fit", "x"], "bad variant"),
])
def test_bad_variants_are_refused_with_the_reason(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        train_speed.main([*args, "--dataset", "ml-1m", "--data", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)
