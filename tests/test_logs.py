"""common.logs.library_output_to: what libraries write to file descriptor 2 lands in the log
file, a command's progress lines on the terminal's stderr."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_descriptor_two_goes_to_the_log_and_progress_to_the_terminal(tmp_path):
    log = tmp_path / "logs" / "run.log"
    result = _run(f"""
        import os, subprocess, sys
        from common.logs import library_output_to, terminal
        print("before", file=sys.stderr, flush=True)
        with library_output_to({str(log)!r}) as term:
            os.write(2, b"C++ library line\\n")                   # what TF's C++ log does
            print("python warning line", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('child line\\\\n')"])
            print("[1/1] progress", file=terminal(), flush=True)
            assert term is terminal()
            with library_output_to({str(log)!r}) as inner:    # nested: the outer one holds
                assert inner is term
        print("after", file=sys.stderr, flush=True)
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["before", "[1/1] progress", "after"]
    text = log.read_text()
    for line in ("C++ library line", "python warning line", "child line"):
        assert line in text
    assert "progress" not in text


def test_a_replaced_stderr_is_left_alone(tmp_path, capsys):
    """Under a capturing test runner (sys.stderr replaced) nothing is redirected."""
    from common.logs import library_output_to, terminal

    log = tmp_path / "run.log"
    with library_output_to(log) as term:
        print("shown", file=term)
        assert terminal() is sys.stderr
    assert "shown" in capsys.readouterr().err
    assert not log.exists()
