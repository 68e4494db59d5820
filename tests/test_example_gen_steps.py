"""The ExampleGen step profile runs the executor's steps on real files and names each one."""
from benchmarks.example_gen_steps import main, steps


def test_every_step_is_timed_on_real_ml100k(shared_data, capsys):
    result = steps(str(shared_data / "ml-100k"))
    assert result.pop("ratings") == 100_000
    assert list(result) == ["parse", "encode and write splits", "read splits back", "build catalogue"]
    assert all(seconds >= 0 for seconds in result.values())
    assert main([str(shared_data / "ml-100k")]) == 0
    assert "s per million ratings" in capsys.readouterr().out
