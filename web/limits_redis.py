"""The rate limiter's store in Redis: one round trip per request where flask-limiter made three.

flask-limiter counts a hit (limits' INCRBY script), then reads the counter and its time to live back for the
X-RateLimit-* headers: two more round trips on every request (measured with `bench/throughput.py --redis`:
195 completions/s without Redis, 163/s with it). Here the hit's script returns the count and the time to live
together, and the header reads that follow in the same thread and request, for the same key, are answered from
them. A read of any other key, in a later request (web/__init__.py calls `new_request` before the limiter's check)
or after a minute asks Redis as limits' store does; so do the moving and sliding window strategies, which this
store leaves as they are. (The answers were first kept for a second: a process's first request, which compiles
and loads what it needs, took longer on a busy host, and its headers' reads went to Redis.) `jzredis://…` names
it: web/__init__.py turns JZFLOW_REDIS_URL into it (`uri_for`).
"""
from __future__ import annotations

import threading
import time
from typing import Any

from limits.storage import RedisStorage

PREFIX = "jz"
FRESH_SECONDS = 60.0  # the longest a hit's count answers the reads that follow it in its thread and request

# limits' incr_expire.lua, also returning the key's time to live (seconds)
_INCR_EXPIRE_TTL = """
local amount = tonumber(ARGV[2])
local current = redis.call("incrby", KEYS[1], amount)
if tonumber(current) == amount then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("ttl", KEYS[1])}
"""


def uri_for(redis_url: str) -> str:
    """Return the limiter's storage URI for a Redis URL (a URL this store does not take stays limits' own)."""
    scheme = redis_url.split("://", 1)[0]
    return PREFIX + redis_url if scheme in ("redis", "rediss", "redis+unix") else redis_url


class OneTripRedisStorage(RedisStorage):
    STORAGE_SCHEME = ["jzredis", "jzrediss", "jzredis+unix"]  # noqa: RUF012 # limits registers stores by this list

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix(PREFIX), **options)
        self._counted = threading.local()
        self._incr_expire_ttl = self.storage.register_script(_INCR_EXPIRE_TTL)  # EVALSHA; EVAL after a NOSCRIPT

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        current, ttl = self._incr_expire_ttl([self.prefixed_key(key)], [expiry, amount])
        self._counted.last = (key, int(current), time.time() + max(int(ttl), 0), time.monotonic())
        return int(current)

    def new_request(self) -> None:
        """Forget this thread's last count: a request begins, and its own hit comes first."""
        self._counted.last = None

    def _just_counted(self, key: str) -> tuple[str, int, float, float] | None:
        last: tuple[str, int, float, float] | None = getattr(self._counted, "last", None)
        if last is not None and last[0] == key and time.monotonic() - last[3] < FRESH_SECONDS:
            return last
        return None

    def get(self, key: str) -> int:
        last = self._just_counted(key)
        return last[1] if last is not None else super().get(key)

    def get_expiry(self, key: str) -> float:
        last = self._just_counted(key)
        return last[2] if last is not None else super().get_expiry(key)

    def clear(self, key: str) -> None:
        self._counted.last = None
        super().clear(key)


__all__ = ["OneTripRedisStorage", "uri_for"]
