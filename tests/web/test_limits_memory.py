"""The rate limiter's store without Redis: counts like limits' memory storage, without a thread per request."""
from __future__ import annotations

import threading
import time

import pytest
from flask import Flask
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from web import limits_memory


def test_the_app_uses_the_swept_store_when_there_is_no_redis(app: Flask) -> None:
    assert app.config["RATELIMIT_STORAGE_URI"] == limits_memory.URI
    assert isinstance(storage_from_string(limits_memory.URI), limits_memory.SweptMemoryStorage)


def test_it_limits_like_the_memory_store_and_starts_no_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = storage_from_string(limits_memory.URI)
    limiter = FixedWindowRateLimiter(storage)
    limit = parse("5 per minute")
    started: list[threading.Timer] = []
    monkeypatch.setattr(threading.Timer, "start", lambda timer: started.append(timer))
    assert [limiter.hit(limit, "token-a") for _ in range(7)] == [True] * 5 + [False] * 2
    assert limiter.hit(limit, "token-b")  # another key has its own window
    for _ in range(200):
        limiter.hit(limit, "token-c")
    assert started == []  # limits' own store starts a timer thread whenever the last one has finished


def test_expired_counters_are_swept_and_a_new_window_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = storage_from_string(limits_memory.URI)
    assert isinstance(storage, limits_memory.SweptMemoryStorage)
    monkeypatch.setattr(limits_memory.SweptMemoryStorage, "SWEEP_SECONDS", 0.0)
    limiter = FixedWindowRateLimiter(storage)
    limit = parse("2 per second")
    assert [limiter.hit(limit, "k") for _ in range(3)] == [True, True, False]
    time.sleep(1.1)
    assert limiter.hit(limit, "other")  # this hit sweeps: the expired counter of "k" is gone
    assert not any("/k/" in key or key.endswith("/k") for key in storage.storage)
    assert limiter.hit(limit, "k")  # a new window for k
