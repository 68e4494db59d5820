"""Every timing JSON records the host's load at its start and end, and flags a busy start."""
from benchmarks.host import QUIET_LOAD, HostLoad


def test_a_busy_start_is_flagged_and_warned(capsys):
    host = HostLoad(start=[QUIET_LOAD + 0.5, 0.9, 0.8], name="ranking")
    record = host.record()
    assert record["quiet_host"] is False
    assert record["load_average_1_5_15_at_start"] == [QUIET_LOAD + 0.5, 0.9, 0.8]
    assert len(record["load_average_1_5_15_at_end"]) == 3
    assert "[ranking] warning" in capsys.readouterr().err


def test_a_quiet_start_is_recorded_without_a_warning(capsys):
    host = HostLoad(start=[QUIET_LOAD, 0.5, 0.5])
    assert host.record()["quiet_host"] is True
    assert capsys.readouterr().err == ""


def test_the_start_is_read_from_the_host_when_not_given():
    start = HostLoad().start
    assert len(start) == 3 and all(x >= 0 for x in start)
