"""The hot-instance cache keeps the newest workflow it was given (engine/runtime/hot.py).

Only speed rides on it (every save is guarded by the row's lock_version), but an older entry put over a newer one,
or a newer one evicted by a reader that read the row before the save, costs the next completion a deserialisation.
The interleavings are forced: the other thread's steps run the moment the cache first lets go of its lock.
"""
from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from engine.runtime import hot
from tests.engine.conftest import InterleavedLock

KEY = ("postgresql://test/hot-order", 7)


@pytest.fixture
def cache() -> Iterator[hot.HotCache]:
    yield hot.HotCache()


def _entry(lock_version: int) -> hot.Entry:
    return hot.Entry(lock_version, 1, SimpleNamespace(lock_version=lock_version), 1_000)  # type: ignore[arg-type]


def test_a_stale_look_given_back_never_replaces_a_save_published_meanwhile(
        cache: hot.HotCache, monkeypatch: pytest.MonkeyPatch) -> None:
    """A look borrowed version 5; a completion saved 6 and published it while the look gave 5 back."""
    monkeypatch.setattr(cache, "_lock", InterleavedLock(cache._lock, lambda: cache.put(KEY, _entry(6))))
    cache.put_back(KEY, _entry(5))
    kept = cache._entries.get(KEY)
    assert kept is not None and kept.lock_version == 6
    assert cache.bytes == kept.size


def test_an_older_workflow_is_never_put_over_a_newer_one(cache: hot.HotCache) -> None:
    cache.put(KEY, _entry(6))
    cache.put(KEY, _entry(5))
    cache.put_back(KEY, _entry(4))
    kept = cache._entries[KEY]
    assert kept.lock_version == 6 and cache.bytes == kept.size
    cache.put(KEY, _entry(7))  # a newer one replaces it
    assert cache._entries[KEY].lock_version == 7 and cache.bytes == 1_000 and len(cache) == 1


def test_a_reader_at_an_older_lock_version_leaves_the_newer_entry(cache: hot.HotCache) -> None:
    cache.put(KEY, _entry(6))
    misses = cache.misses
    assert cache.take(KEY, 5, 1) is None  # read the row before the save that wrote 6 committed
    assert cache.misses == misses + 1
    kept = cache._entries.get(KEY)
    assert kept is not None and kept.lock_version == 6 and cache.bytes == kept.size
    assert cache.take(KEY, 6, 1) is kept.workflow  # the completion at 6 still finds it


def test_a_reader_at_a_newer_lock_version_drops_the_stale_entry(cache: hot.HotCache) -> None:
    cache.put(KEY, _entry(5))
    assert cache.take(KEY, 6, 1) is None  # another process saved 6: what is kept here is stale
    assert KEY not in cache._entries and cache.bytes == 0


def test_a_reader_at_the_same_lock_version_of_another_process_version_drops_it(cache: hot.HotCache) -> None:
    cache.put(KEY, _entry(5))
    assert cache.take(KEY, 5, 2) is None
    assert KEY not in cache._entries and cache.bytes == 0
