"""engine.db.advisory_lock: one way to name a transaction-scoped lock. The key of a name is the same from one release
to the next (an old and a new process side by side during an upgrade wait for each other); several names are taken
in one statement, in sorted order; SQLite, whose transactions are IMMEDIATE, takes nothing."""
from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.orm import Session

from engine.db import advisory_key, advisory_lock


def test_a_names_key_is_the_first_64_bits_of_its_sha256_as_the_earlier_releases_took_them() -> None:
    # the formula messages, idempotency, indicators, reports, periods and slow projects each wrote out before
    for name in ("indicator_period:2025-03", "jzflow:message:付款通知", "idempotency\0" "7\0abc", "project_lag"):
        assert advisory_key(name) == int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    assert advisory_key("report_run:1:month:2025-03-01") == 3635861293207940569  # pinned: must never change


def test_the_named_locks_are_held_until_the_transaction_ends(session: Session) -> None:
    advisory_lock(session, "b", "a", "b")
    advisory_lock(session, "a")  # held already: taken again, no wait
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite: a no-op (the IMMEDIATE transaction holds the one writer lock)
    held = {int(row[0]) << 32 | int(row[1]) for row in session.execute(text(
        "SELECT classid, objid FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"))}
    assert held == {advisory_key("a") & 0xFFFF_FFFF_FFFF_FFFF, advisory_key("b") & 0xFFFF_FFFF_FFFF_FFFF}
    session.rollback()
    assert session.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                "AND pid = pg_backend_pid()")).scalar_one() == 0
