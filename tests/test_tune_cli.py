"""benchmarks.tune: bad variants are refused by name before any data is read or model fitted."""
from __future__ import annotations

import re

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
