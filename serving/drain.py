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

import threading
import time

import grpc

from serving import errors

SHUTTING_DOWN = "The model server is shutting down; retry on another replica"


class Drain:
    """Counts requests in flight; after `start()`, `enter()` refuses new ones."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._in_flight = 0
        self._draining = False

    def enter(self) -> None:
        """Called as a request starts; raises UNAVAILABLE once draining."""
        with self._cond:
            if self._draining:
                raise errors.ServingError(grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN)
            self._in_flight += 1

    def leave(self) -> None:
        with self._cond:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._cond.notify_all()

    def start(self) -> None:
        with self._cond:
            self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def wait_idle(self, timeout: float) -> bool:
        """Blocks until no request is running, at most `timeout` seconds; True if idle."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            return self._cond.wait_for(lambda: self._in_flight == 0, max(0.0, deadline - time.monotonic()))
