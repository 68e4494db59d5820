"""Wall clock of `make demo`'s tour, from a fresh artifacts folder (the install excluded).

    python -m benchmarks.demo_bench          # writes benchmarks/results/demo.json

Runs `python -m commands.cli demo` in a child process exactly as `make demo` does, with a new
temporary artifacts folder (so nothing is cached: data generation, the whole pipeline, the
baseline comparison, export-index, similar movies/users and the gRPC answers), and records
the whole wall clock, each component's seconds from the progress lines, the comparison table
the demo printed (the two-tower row against every baseline), and whether any library line
(TF's C++ log, absl, CUDA, Beam warnings) reached the terminal. The host's speed varies: the
JSON's timestamp and the README say under what load it ran.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from benchmarks.host import load_average

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
NOISE = ("oneDNN", "cuInit", "cuda", "absl::InitializeLog", "I0000", "W0000", "E0000", "UserWarning",
         "DeprecationWarning")
_DONE = re.compile(r"^\[\d+/\d+\] (\S+) done \((cached|[\d.]+) s?\)")
_ROW = re.compile(r"^\s+(\S.*?)\s+(\d\.\d{4})\s+(\d\.\d{4})$")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.demo_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "demo.json")
    args = parser.parse_args(argv)
    load_at_start = load_average()
    with tempfile.TemporaryDirectory(prefix="movielens-demo-") as tmp:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "commands.cli", "demo", "--artifacts", tmp], cwd=REPO,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        seconds = time.perf_counter() - start
    terminal = proc.stdout + proc.stderr
    components = {}
    for line in proc.stderr.splitlines():
        match = _DONE.match(line)
        if match:
            components[match.group(1)] = None if match.group(2) == "cached" else float(match.group(2))
    rows, in_table = [], False
    for line in proc.stdout.splitlines():
        if line.startswith("Test split RMSE"):
            in_table = True
            continue
        match = _ROW.match(line) if in_table else None
        if match:
            rows.append({"model": match.group(1), "rmse": float(match.group(2)), "mae": float(match.group(3))})
        elif in_table and rows:
            in_table = False
    noise = sorted({word for word in NOISE for line in terminal.splitlines() if word in line})
    model = next((r for r in rows if r["model"].startswith("two-tower")), None)
    baselines = [r for r in rows if not r["model"].startswith("two-tower")]
    result = {
        "command": "python -m commands.cli demo --artifacts <fresh temporary folder>",
        "exit_code": proc.returncode, "seconds_total": round(seconds, 1),
        "seconds_pipeline": round(sum(v for v in components.values() if v), 1),
        "seconds_per_component": components, "comparison": rows,
        "two_tower_beats_every_baseline": bool(model and baselines and all(model["rmse"] < b["rmse"] for b in baselines)),
        "library_lines_on_terminal": noise,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_1_5_15_at_start": load_at_start,
                    "load_average_1_5_15_at_end": load_average()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "comparison"}, indent=1))
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
