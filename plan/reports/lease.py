"""A report run's lease: the worker generating a run says it is alive; only a silent one's run is taken up again.

A run took minutes to generate at most, so `pending-reports` took a run still running ten minutes after its start
for one whose worker died and generated it again, beside the first. The worker now renews `heartbeat_at` every
HEARTBEAT_SECONDS from a thread of its own while it generates, and a run is taken up again only when that was not
renewed for STALE_RUNNING (the worker died, or hangs past LONGEST, when it stops renewing). Every write of a run's
worker names the claim it made (`started_at`, the moment it took the run up), so a worker that was replaced writes
nothing more: not its progress, not a failure over its successor's report, not the report a second time.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine import clock
from engine.db import session_scope
from plan.reports.models import ReportRun

log = logging.getLogger(__name__)
STALE_RUNNING = timedelta(minutes=10)  # a run whose worker said nothing this long: it died
HEARTBEAT_SECONDS = 60.0  # how often a worker generating a run says so
LONGEST = timedelta(hours=1)  # a run still generating after this hangs: its lease is no longer renewed


class Lost(Exception):
    """The run was taken up by another worker (this one was silent too long): write nothing more."""


class Lease:
    """The claim of one worker on one run, from `started_at` = `since`; renewed while the `with` block runs."""

    def __init__(self, factory: sessionmaker[Session], run_id: int, since: datetime) -> None:
        self.factory, self.run_id, self.since = factory, run_id, since
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._renew, name=f"report-run-{run_id}-lease", daemon=True)

    def __enter__(self) -> Lease:
        self._beat.start()
        return self

    def __exit__(self, _kind: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self._stop.set()
        self._beat.join()

    def _mine(self) -> Any:
        return (ReportRun.id == self.run_id) & (ReportRun.status == "running") & (ReportRun.started_at == self.since)

    def write(self, **values: Any) -> None:
        """Write the run's progress (or its failure) and renew the lease, in a transaction of its own.

        Raises: Lost
        """
        with session_scope(self.factory) as session:
            taken = session.execute(update(ReportRun).where(self._mine()).values(heartbeat_at=clock.now(), **values)
                                    .execution_options(synchronize_session=False))
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise Lost(self.run_id)

    def take(self, session: Session) -> ReportRun:
        """Return the run under a row lock for the worker's last write, in the caller's transaction.

        Raises: Lost
        """
        row = session.scalar(select(ReportRun).where(self._mine()).with_for_update())
        if row is None:
            raise Lost(self.run_id)
        return row

    def _renew(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            if clock.now() - clock.as_utc(self.since) > LONGEST:
                log.warning("report run %s still generating after %s: no longer renewed", self.run_id, LONGEST)
                return
            try:
                self.write()
            except Lost:
                return
            except Exception:  # the database away for a moment: the next beat tries again
                log.warning("could not renew the lease of report run %s", self.run_id, exc_info=True)


def renewed_at(row: ReportRun) -> datetime | None:
    """When the run's worker last said it was alive: the later of its lease's renewal and its start (a worker of a
    release before the lease, during an upgrade, claims a run without renewing it)."""
    seen = [clock.as_utc(t) for t in (row.heartbeat_at, row.started_at) if t is not None]
    return max(seen) if seen else None


renewed_in_sql = case((ReportRun.heartbeat_at > ReportRun.started_at, ReportRun.heartbeat_at),
                      else_=ReportRun.started_at)  # renewed_at in SQL

__all__ = ["HEARTBEAT_SECONDS", "LONGEST", "STALE_RUNNING", "Lease", "Lost", "renewed_at", "renewed_in_sql"]
