"""Failed logins counted per account and per client address, in the database (every process sees them).

Only failures count, never successes: an office behind one NAT address logs in all day, while guessing
one account's password, or many accounts' from one address, is stopped. Counters live in the database
(no Redis, no per-process memory), so they hold across web workers and through a Redis outage; when the
database itself is down nobody logs in anyway (fail closed). A fixed window per key: the first failure
opens it, the count resets when it has passed.

An address is counted as the client it stands for (`client_key`): an IPv4 address alone, an IPv6 address by its
/64. Every home line and cloud host is given a whole /64, so an attacker can take a new address in it for each try
for free; per exact address, an IPv6 guesser would never be limited.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import case, delete, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.db import is_postgres
from engine.org.models import LoginFailure

MAX_KEY = 200
IPV6_CLIENT_PREFIX = 64  # the prefix one subscriber or one host holds: all its addresses are one client


@dataclass(frozen=True)
class Limits:
    per_account: int = 10
    per_address: int = 100
    window_seconds: int = 900


class Attempt(NamedTuple):
    """One try counted: the seconds to wait (0: it may go on), and the keys this try brought to their limit — if its
    password is wrong, it is the failure that locks them (`account`, `address`): once per key and window."""

    wait: int
    locking: tuple[str, ...] = ()


def client_key(address: str | None) -> str | None:
    """Return the client a remote address stands for: an IPv4 address itself, an IPv6 address its /64 (in one
    spelling), an IPv4-mapped IPv6 address its IPv4 address; anything else as given; None without an address."""
    if not address:
        return None
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False))  # a zone id (%eth0) dropped
    return str(parsed)


def _keys(username: str, address: str | None) -> list[str]:
    keys = ["user:" + username.strip().lower()[:MAX_KEY - 5]]
    client = client_key(address)
    if client:
        keys.append("addr:" + client[:MAX_KEY - 5])
    return keys


def _count(session: Session, key: str, *, now: datetime, stale: datetime) -> tuple[int, datetime]:
    """Count one try against a key in one atomic upsert (a window older than `stale` starts again at `now`);
    return the key's failures and window start."""
    insert = pg_insert if is_postgres(session) else sqlite_insert
    restart = LoginFailure.window_start <= stale
    stmt = insert(LoginFailure).values(key=key, failures=1, window_start=now)
    failures, start = session.execute(stmt.on_conflict_do_update(index_elements=[LoginFailure.key], set_={
        "failures": case((restart, 1), else_=LoginFailure.failures + 1),
        "window_start": case((restart, now), else_=LoginFailure.window_start),
    }).returning(LoginFailure.failures, LoginFailure.window_start)).one()
    return int(failures), start


def attempt(session: Session, *, username: str, address: str | None, now: datetime, limits: Limits) -> Attempt:
    """Count one try against the account and the address before its password is looked at; return the seconds to
    wait (0 when this try may go on) and the keys it brings to their limit (flushes: the caller commits at once, so
    that tries sent together see it).

    Read first and written after the check, tries sent together all found the count under the limit and were all
    looked at; counted first (one atomic upsert each), no more than the limit ever are. A refused try is taken back,
    so one try only in a window reaches a key's limit (each count is returned to one try).
    """
    window = timedelta(seconds=limits.window_seconds)
    wait, keys, locking = 0, _keys(username, address), []
    for key in keys:
        failures, start = _count(session, key, now=now, stale=now - window)
        limit = limits.per_account if key.startswith("user:") else limits.per_address
        if failures > limit:
            wait = max(wait, int((start + window - now).total_seconds()) + 1)
        elif failures == limit:
            locking.append("account" if key.startswith("user:") else "address")
    if wait:
        _take_back(session, keys)
    session.flush()
    return Attempt(wait, () if wait else tuple(locking))


def succeeded(session: Session, *, username: str, address: str | None) -> None:
    """Take back a try that `attempt` counted and that logged in: successes never count (clears the account's)."""
    forget_account(session, username=username)
    _take_back(session, _keys(username, address)[1:])


def _take_back(session: Session, keys: list[str]) -> None:
    session.execute(update(LoginFailure).where(LoginFailure.key.in_(keys), LoginFailure.failures > 0)
                    .values(failures=LoginFailure.failures - 1))


def forget_account(session: Session, *, username: str) -> None:
    """A successful login clears its account's failures (never its address's: that would reset a guesser)."""
    session.execute(delete(LoginFailure).where(LoginFailure.key == _keys(username, None)[0]))


def purge(session: Session, *, now: datetime, limits: Limits) -> int:
    """Delete counters whose window has passed; return how many."""
    stale = now - timedelta(seconds=limits.window_seconds)
    result = session.execute(delete(LoginFailure).where(LoginFailure.window_start <= stale))
    return int(result.rowcount)  # type: ignore[attr-defined]
