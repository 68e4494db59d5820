"""Free TCP ports on the loopback, for processes this one starts and then connects to.

Why the ground floor: the local Trainer workers' TF_CONFIG (model.distribute), the pipeline
image's served model (kubeflow.local_run) and the serving and index benchmarks each start a
server on a port the OS picked; one helper asks the OS the same way for all of them.
"""
from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now (the OS picks them)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
