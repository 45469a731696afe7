"""The rate limiter's store in Redis: counts like limits' own, one round trip per request instead of three."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from limits import parse
from limits.storage import RedisStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy.orm import Session

from tests.scale.test_worker import redis_db, redis_url  # noqa: F401  (fixtures)
from tests.web.conftest import app_on
from tests.web.flows import Api, deploy_good, token_for
from web import limits_redis
from web.extensions import limiter


def _commands(storage: Any) -> list[str]:
    """Record the commands a store's client sends from now on."""
    sent: list[str] = []
    client = storage.storage
    original = client.execute_command

    def recording(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return original(*args, **kwargs)

    client.execute_command = recording
    return sent


def test_the_uri_of_a_redis_url_and_of_others() -> None:
    assert limits_redis.uri_for("redis://localhost:6379/3") == "jzredis://localhost:6379/3"
    assert limits_redis.uri_for("rediss://h/1") == "jzrediss://h/1"
    assert limits_redis.uri_for("valkey://h/1") == "valkey://h/1"  # limits' own store


def test_it_counts_like_limits_store_in_one_round_trip(redis_url: str) -> None:  # noqa: F811
    ours = storage_from_string(limits_redis.uri_for(redis_url))
    theirs = storage_from_string(redis_url, key_prefix="THEIRS")
    assert isinstance(ours, limits_redis.OneTripRedisStorage) and isinstance(theirs, RedisStorage)
    limit = parse("5 per minute")
    ours_limiter, theirs_limiter = FixedWindowRateLimiter(ours), FixedWindowRateLimiter(theirs)
    ours_limiter.hit(limit, "warm-up")  # the script's first use loads it (SCRIPT LOAD)
    sent = _commands(ours)
    for _ in range(7):
        assert ours_limiter.hit(limit, "token-a") == theirs_limiter.hit(limit, "token-a")
        ours_stats, theirs_stats = ours_limiter.get_window_stats(limit, "token-a"), \
            theirs_limiter.get_window_stats(limit, "token-a")
        assert ours_stats.remaining == theirs_stats.remaining
        assert abs(ours_stats.reset_time - theirs_stats.reset_time) <= 1
    assert sent == ["EVALSHA"] * 7  # a hit and its window's stats: one command
    assert ours_limiter.get_window_stats(limit, "token-b").remaining == 5  # another key asks Redis
    assert sent[7:] == ["GET", "TTL"]


def test_a_hit_in_another_thread_is_not_taken_for_this_ones(redis_url: str) -> None:  # noqa: F811
    storage = storage_from_string(limits_redis.uri_for(redis_url))
    limiter, limit = FixedWindowRateLimiter(storage), parse("10 per minute")
    limiter.hit(limit, "shared")
    other = threading.Thread(target=lambda: [limiter.hit(limit, "shared") for _ in range(3)])
    other.start()
    other.join()
    assert limiter.get_window_stats(limit, "shared").remaining == 10 - 1  # this thread's own last hit
    storage.clear(limit.key_for("shared"))
    assert limiter.get_window_stats(limit, "shared").remaining == 10  # cleared: asks Redis


@pytest.fixture
def redis_app(db_url: str, session: Session, review_org: dict[str, Any], redis_url: str,  # noqa: F811
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv("JZFLOW_REDIS_URL", redis_url)
    yield from app_on(db_url, session, JZFLOW_API_RATE_LIMIT="3 per minute")


def test_the_api_counts_in_redis_with_one_command_per_request(redis_app: Flask) -> None:
    assert redis_app.config["RATELIMIT_STORAGE_URI"].startswith("jzredis://")
    deploy_good(redis_app)
    api = Api(redis_app, token_for(redis_app, "fg"))
    sent = _commands(limiter.storage)
    answers = [api.get("/api/tasks") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers.get("X-RateLimit-Remaining") for a in answers[:3]] == ["2", "1", "0"]
    assert int(answers[3].headers["Retry-After"]) > 0
    assert sent.count("EVALSHA") == 4 and "GET" not in sent and "TTL" not in sent, sent


def test_a_slow_request_still_answers_its_headers_from_its_own_hit(redis_app: Flask,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The first request of a process compiles and loads what it needs: on a busy host it took over a second, and
    the headers' reads then went to Redis (CI saw GET and TTL). The count answers them for the whole request."""
    deploy_good(redis_app)
    api = Api(redis_app, token_for(redis_app, "fg"))
    clock = iter(range(0, 10_000, 7))  # every look at the clock: 7 s later
    monkeypatch.setattr(limits_redis.time, "monotonic", lambda: float(next(clock)))
    sent = _commands(limiter.storage)
    answers = [api.get("/api/tasks") for _ in range(2)]
    assert [a.headers.get("X-RateLimit-Remaining") for a in answers] == ["2", "1"]
    assert sent == ["EVALSHA", "EVALSHA"], sent


def test_a_new_request_never_reads_the_last_one_s_count(redis_url: str) -> None:  # noqa: F811
    storage = storage_from_string(limits_redis.uri_for(redis_url))
    assert isinstance(storage, limits_redis.OneTripRedisStorage)
    limiter, limit = FixedWindowRateLimiter(storage), parse("10 per minute")
    limiter.hit(limit, "mine")
    storage.new_request()
    sent = _commands(storage)
    assert limiter.get_window_stats(limit, "mine").remaining == 9
    assert sent == ["GET", "TTL"]  # asked Redis: the count belonged to the request before


def test_each_request_forgets_the_last_count_before_the_limiter_counts(redis_app: Flask) -> None:
    hooks = [f.__name__ for f in redis_app.before_request_funcs[None]]
    limiter_check = next(i for i, name in enumerate(hooks) if "check_request_limit" in name)
    assert hooks.index("_new_limiter_request") < limiter_check, hooks
    storage = limiter.storage
    assert isinstance(storage, limits_redis.OneTripRedisStorage)
    storage._counted.last = ("a key", 1, 0.0, limits_redis.time.monotonic())
    with redis_app.test_request_context("/healthz"):  # no limit: the limiter counts nothing here
        redis_app.preprocess_request()
    assert storage._counted.last is None


def test_an_app_with_rate_limits_off_serves_its_pages(db_url: str, session: Session,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """RATELIMIT_ENABLED off (the browser tests' app): the limiter has no store, and asking for it is an error."""
    monkeypatch.setattr(limiter, "_storage", None)  # as in a process whose only app has the limiter off
    apps = app_on(db_url, session, RATELIMIT_ENABLED=False)
    app = next(apps)
    try:
        assert app.test_client().get("/login").status_code == 200
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        next(apps, None)
