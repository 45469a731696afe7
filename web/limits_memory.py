"""The rate limiter's store without Redis: limits' memory storage, its expired counters swept inline.

limits' `MemoryStorage` starts a timer thread to sweep expired counters whenever the previous one has
finished, i.e. a thread started for nearly every request at a hundred requests a second (measured: about
half a millisecond of a completion's request). Expired counters are already ignored when read (`get`
checks the expiry), so the sweep only gives memory back: doing it in the request, at most once a second,
is enough. `jzmemory://` names this store (web/__init__.py uses it when no Redis is configured).
"""
from __future__ import annotations

import threading
import time

from limits.storage import MemoryStorage

URI = "jzmemory://"


class SweptMemoryStorage(MemoryStorage):
    STORAGE_SCHEME = ["jzmemory"]  # noqa: RUF012 # limits registers stores by this list
    SWEEP_SECONDS = 1.0

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: str) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._sweep_lock = threading.Lock()
        self._next_sweep = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:  # replaces the parent's private timer start
        now = time.monotonic()
        if now < self._next_sweep or not self._sweep_lock.acquire(blocking=False):
            return
        try:
            self._next_sweep = now + self.SWEEP_SECONDS
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]
        finally:
            self._sweep_lock.release()


__all__ = ["URI", "SweptMemoryStorage"]
