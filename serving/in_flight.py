"""A count of requests in flight on something that can be closed to new ones.

Why one class: two things in the server wait for running requests before they let go --
a model version being retired (serving.servable: it is unloaded once idle) and the whole
server draining on SIGTERM (serving.drain: it stops once idle) -- and both need the same
race-free pair of "refuse new ones from now on" and "wait until the running ones are done".
"""
from __future__ import annotations

import threading


class InFlight:
    """`try_enter()` counts a request unless `close()` was called; `wait_idle()` waits for 0."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0
        self._closed = False

    def try_enter(self) -> bool:
        """Counts one more request in flight; False once closed."""
        with self._cond:
            if self._closed:
                return False
            self._count += 1
            return True

    def leave(self) -> None:
        with self._cond:
            self._count -= 1
            if self._count == 0:
                self._cond.notify_all()

    def close(self) -> None:
        """No new requests from now on; running ones finish."""
        with self._cond:
            self._closed = True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Blocks until no request is in flight, at most `timeout` seconds; True if idle."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count == 0, timeout)

    @property
    def count(self) -> int:
        return self._count
