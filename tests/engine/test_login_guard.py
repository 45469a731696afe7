"""Failed-login counters (Trust I hole 7): per account and address, windowed, purged by a job."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.celery_app import celery
from engine.org import login_guard
from engine.org.models import LoginFailure

LIMITS = login_guard.Limits(per_account=3, per_address=5, window_seconds=600)


def _attempt(session: Session, frozen: Any, username: str, address: str) -> int:
    wait = login_guard.attempt(session, username=username, address=address, now=frozen.now(), limits=LIMITS).wait
    session.commit()
    return wait


def test_hole7_failures_lock_the_account_then_the_window_passes(session: Session, frozen: Any) -> None:
    assert [_attempt(session, frozen, "Fg", "10.0.0.1") for _ in range(3)] == [0, 0, 0]
    # the account is what counts, whatever the spelling or the address
    assert _attempt(session, frozen, "fg ", "10.0.0.2") == 601
    assert _attempt(session, frozen, "zr", "10.0.0.1") == 0
    frozen.advance(timedelta(seconds=601))
    assert _attempt(session, frozen, "fg", "10.0.0.2") == 0
    session.expire_all()
    row = session.get(LoginFailure, "user:fg")
    assert row is not None and row.failures == 1  # a new window began


def test_a_try_is_counted_before_its_check_a_refused_one_and_a_success_are_taken_back(session: Session,
                                                                                       frozen: Any) -> None:
    def attempt(username: str, address: str) -> int:
        wait = login_guard.attempt(session, username=username, address=address, now=frozen.now(), limits=LIMITS).wait
        session.commit()
        return wait

    def failures(key: str) -> int:
        session.expire_all()
        row = session.get(LoginFailure, key)
        return row.failures if row else 0

    assert [attempt("Fg", "10.0.0.1") for _ in range(3)] == [0, 0, 0]  # three failures: the account's limit
    assert attempt("fg", "10.0.0.2") == 601 and failures("user:fg") == 3 and failures("addr:10.0.0.2") == 0
    for _ in range(4):  # successes from one address (an office's NAT) never add up to its limit
        assert attempt("zr", "10.0.0.1") == 0
        login_guard.succeeded(session, username="zr", address="10.0.0.1")
        session.commit()
    assert failures("addr:10.0.0.1") == 3 and failures("user:zr") == 0


def test_hole7_stale_counters_are_purged(session: Session, frozen: Any) -> None:
    _attempt(session, frozen, "a", "10.0.0.1")
    frozen.advance(timedelta(seconds=601))
    login_guard.attempt(session, username="b", address="10.0.0.9", now=frozen.now(), limits=LIMITS)
    assert login_guard.purge(session, now=frozen.now(), limits=LIMITS) == 2
    session.commit()
    assert session.scalar(select(func.count()).select_from(LoginFailure)) == 2
    assert celery.conf.beat_schedule["purge-login-failures"]["task"] == "engine.jobs.purge_login_failures"


def test_hole8_seal_runs_every_minute_by_default() -> None:
    assert celery.conf.beat_schedule["seal-audit"]["schedule"] == 60.0


def test_an_ipv6_client_is_counted_by_its_64_not_by_the_address_it_picks_in_it(session: Session, frozen: Any) -> None:
    # Every home line and cloud host gets a whole /64: an attacker picks a new address in it for each try.
    rotating = [f"2001:db8:7:9:{i:x}::{i + 1:x}" for i in range(5)]
    assert [_attempt(session, frozen, f"user{i}", address) for i, address in enumerate(rotating)] == [0] * 5
    # the sixth try from the same /64, however the address is spelled, is refused
    assert _attempt(session, frozen, "user9", "2001:DB8:7:9:FFFF:0:0:1") == 601
    assert _attempt(session, frozen, "user9", "2001:db8:7:a::1") == 0  # the next /64 is another client
    # IPv4 addresses stay apart, and an IPv4-mapped IPv6 address is its IPv4 address
    for i in range(5):
        _attempt(session, frozen, f"v4user{i}", "::ffff:192.0.2.7")
    assert _attempt(session, frozen, "v4user9", "192.0.2.7") == 601
    assert _attempt(session, frozen, "v4user9", "192.0.2.8") == 0
    assert login_guard.client_key("2001:db8:7:9:1:2:3:4") == "2001:db8:7:9::/64"
    assert login_guard.client_key("fe80::1%eth0") == "fe80::/64"
    assert login_guard.client_key("not an address") == "not an address"
    assert login_guard.client_key(None) is None and login_guard.client_key("") is None
