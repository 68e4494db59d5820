"""Where a live model server spends a 1-pair request: py-spy samples and per-thread CPU.

Why from outside: an in-process timing (benchmarks.serving_profile) shows what the graph
costs, not what the server process adds around it -- gRPC's threads, the handler, the
conversions, TensorFlow's call path and its own compute threads. This samples the server
process while one client sends 1-pair requests (the cell where that overhead shows most):

  * `py-spy record --nonblocking` (Python frames of every thread, 250 Hz): each sample of a
    gRPC worker busy with a request is put in one layer -- the graph itself (TF's
    `quick_execute`), TF's Python call path around it, the server's own code (validation,
    conversions, version lookup), and gRPC (deserialising, sending the response);
  * `py-spy record --native` (native frames too, 50 Hz, it pauses the process per sample):
    the top native frames, so C++ time under a Python frame is named;
  * CPU seconds per thread kind from /proc (Python threads, TensorFlow's `tf_Compute` pool,
    gRPC's event engine) over the same window: what no sampler of Python stacks sees.

py-spy comes from the benchmark extra (`pip install -e '.[benchmark]'`); without it the
profile is left out and says why. Used by `python -m benchmarks.serving` (its `profile`).
"""
from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

#: Layers of a request on a gRPC worker thread, by the innermost frame that names one; the
#: first match from the leaf up decides. (frame prefix, file fragment) -> layer; py-spy writes
#: a frame as "function (path/file.py:line)".
_LAYERS = (
    (("quick_execute ", "tensorflow/python/eager/execute.py"), "graph (TensorFlow kernels)"),
    (("", "tensorflow/"), "TensorFlow's Python call path"),
    (("", "serving/"), "server code (validation, conversion, versions)"),
    (("", "grpc/"), "gRPC (receive, send)"),
)
_REQUEST_FRAME = "_unary_response_in_pool"


def py_spy() -> str | None:
    """The py-spy executable next to this Python, else on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def _record(pid: int, seconds: float, native: bool, out: Path) -> str | None:
    """Runs py-spy on `pid` into `out` (raw collapsed stacks); an error text, or None."""
    exe = py_spy()
    if exe is None:
        return "py-spy is not installed (pip install -e '.[benchmark]')"
    flags = ["--native", "-r", "50"] if native else ["--nonblocking", "-r", "250"]
    command = [exe, "record", "--threads", *flags, "-d", str(max(1, int(seconds))), "-f", "raw", "-o", str(out),
               "-p", str(pid)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0 or not out.exists():
        return f"py-spy failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-300:]}"
    return None


def _stacks(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def _layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        for (prefix, fragment), layer in _LAYERS:
            if frame.startswith(prefix) and fragment in frame:
                return layer
    return "other"


def request_layers(stacks: list[tuple[list[str], int]]) -> dict[str, float]:
    """Share of the samples of gRPC workers busy with a request, by layer (sums to 1)."""
    counts: collections.Counter = collections.Counter()
    for frames, count in stacks:
        if any(frame.startswith(_REQUEST_FRAME) for frame in frames):
            counts[_layer(frames)] += count
    total = sum(counts.values())
    return {layer: round(n / total, 3) for layer, n in counts.most_common()} if total else {}


def top_frames(stacks: list[tuple[list[str], int]], limit: int = 12) -> list[dict]:
    """The leaf frames that hold the most samples of request work (names without addresses)."""
    counts: collections.Counter = collections.Counter()
    total = 0
    for frames, count in stacks:
        if not any(frame.startswith(_REQUEST_FRAME) for frame in frames):
            continue
        total += count
        counts[_frame_name(frames[-1])] += count
    return [{"frame": name, "share": round(n / total, 3)} for name, n in counts.most_common(limit)] if total else []


def _frame_name(frame: str) -> str:
    """'func (path/to/site-packages/pkg/file.py:12)' -> 'func (pkg/file.py:12)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far per thread kind of `pid` (/proc/PID/task/*/stat, utime + stime)."""
    kinds: collections.Counter = collections.Counter()
    ticks = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kind = "TensorFlow tf_Compute pool" if name.startswith("tf_") else \
            "gRPC event engine" if name.startswith(("event_engine", "grpc_global")) else "Python threads"
        kinds[kind] += (int(fields[11]) + int(fields[12])) / ticks
    return dict(kinds)


def profile_server(pid: int, send_one: Callable[[int], None], seconds: float = 8.0) -> dict:
    """Samples `pid` while one client thread calls `send_one(i)` back to back."""
    stop = threading.Event()
    sent = [0]

    def client() -> None:
        while not stop.is_set():
            send_one(sent[0])
            sent[0] += 1

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    time.sleep(1.0)  # the client under way
    report: dict = {"seconds": seconds, "client": "1 client, 1-pair requests back to back"}
    with tempfile.TemporaryDirectory(prefix="server-profile-") as tmp:
        cpu_before, sent_before = thread_cpu(pid), sent[0]
        python_out = Path(tmp) / "python.txt"
        error = _record(pid, seconds, native=False, out=python_out)
        cpu_after, sent_after = thread_cpu(pid), sent[0]
        requests = max(1, sent_after - sent_before)
        report["cpu_ms_per_request_by_thread"] = {
            kind: round((cpu_after.get(kind, 0.0) - cpu_before.get(kind, 0.0)) * 1e3 / requests, 3)
            for kind in sorted(cpu_after)}
        report["requests"] = requests
        if error:
            report["error"] = error
        else:
            python_stacks = _stacks(python_out)
            report["request_layers"] = request_layers(python_stacks)
            report["python_top_frames"] = top_frames(python_stacks)
            native_out = Path(tmp) / "native.txt"
            native_error = _record(pid, min(seconds, 5.0), native=True, out=native_out)
            report["native_top_frames"] = [] if native_error else top_frames(_stacks(native_out))
            if native_error:
                report["native_error"] = native_error
    stop.set()
    thread.join(30)
    return report
