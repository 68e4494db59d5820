"""Graceful shutdown's first phase: refuse new requests with UNAVAILABLE, let running ones finish.

Why not just grpc's `server.stop(grace)`: grpc core's shutdown cancels every call that has
reached the server but not yet a handler ("pending" calls are zombified and the client sees
CANCELLED, grpc/grpc#41785), and under load there always are some. CANCELLED tells a client
that *it* gave up, so it does not retry. Draining first avoids that: from SIGTERM on every new
request is answered at once with UNAVAILABLE ("retry elsewhere"), requests already running
finish, and only when none is left (or the grace period is over) do the front ends stop.
The standard health service reports NOT_SERVING meanwhile, so load balancers move away.
"""
from __future__ import annotations

import grpc

from serving import errors
from serving.in_flight import InFlight

SHUTTING_DOWN = "The model server is shutting down; retry on another replica"


class Drain:
    """Counts requests in flight; after `start()`, `enter()` refuses new ones."""

    def __init__(self) -> None:
        self._requests = InFlight()

    def enter(self) -> None:
        """Called as a request starts; raises UNAVAILABLE once draining."""
        if not self._requests.try_enter():
            raise errors.ServingError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)

    def leave(self) -> None:
        self._requests.leave()

    def start(self) -> None:
        self._requests.close()

    @property
    def in_flight(self) -> int:
        return self._requests.count

    def wait_idle(self, timeout: float) -> bool:
        """Blocks until no request is running, at most `timeout` seconds; True if idle."""
        return self._requests.wait_idle(max(0.0, timeout))
