"""Shared helpers for bench/: throwaway databases, the bench org and process, bulk seeding, timing.

Benchmarks print figures; they are never timed tests (docs/architecture.md). Everything here is plain
functions over a migrated database, so later benchmarks (inbox, timers, audit) can reuse the
same org, process and 100k-instance seeding.
"""
from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine, Table, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, deploy, migrate, org
from engine.audit.models import AuditEvent
from engine.db import make_engine, make_sessionmaker
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.orm import Base
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask, TaskCandidate

BENCH_DIR = Path(__file__).resolve().parent
FIXTURES = BENCH_DIR / "fixtures"
BENCH_BPMN = FIXTURES / "bench_process.bpmn"
PROCESS_KEY = "bench_process"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/"

# What an applicant submits on `fill`: amount >= 1000 routes to `review`.
FILL_FORM: dict[str, Any] = {
    "project_name": "胶州智能家电产业园（一期）", "amount": 6000, "project_type": "industrial",
    "start_date": "2025-10-09", "contact": "张三 0532-87200000",
    "description": "年产智能家电200万台，新增就业1200人，分两期建设。",
}
REVIEW_FORM: dict[str, Any] = {"approved": True, "comment": "材料齐全，同意。"}
START_DATA: dict[str, Any] = {"applicant_unit": "青岛某智能科技有限公司", "district": "胶州湾"}

ROLES = (("applicant", "申请人"), ("reviewer", "审批部门"))  # the process's lanes map to these
USERS_PER_ROLE = 20


# --- timing -----------------------------------------------------------------------------------

def median_ms(samples: Sequence[float]) -> float:
    """Return the median of samples in seconds, as milliseconds."""
    return statistics.median(samples) * 1000.0


def p90_ms(samples: Sequence[float]) -> float:
    """Return the 90th percentile of samples in seconds, as milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1000.0


# --- databases --------------------------------------------------------------------------------

@dataclass
class BenchDatabase:
    """A migrated throwaway database and its engine."""

    kind: str  # sqlite | postgres
    url: str
    engine: Engine
    factory: sessionmaker[Session]

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"


def pg_url() -> str:
    """Return the PostgreSQL server URL benchmarks use (JZFLOW_BENCH_PG_URL or the local default)."""
    return os.environ.get("JZFLOW_BENCH_PG_URL") or DEFAULT_PG_URL


@contextmanager
def _sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="jzflow_bench_") as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.sqlite'}"


@contextmanager
def _postgres_url(suffix: str = "") -> Iterator[str]:
    """Create database jzflow_bench_<pid><suffix> on the server, yield its URL, drop it afterwards."""
    server = make_url(pg_url())
    name = f"jzflow_bench_{os.getpid()}{suffix}"
    admin = create_engine(server.set(database=server.database or "postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def database(kind: str, *, suffix: str = "") -> Iterator[BenchDatabase]:
    """Yield a freshly migrated SQLite (temp dir) or PostgreSQL (own database) for one benchmark."""
    if kind not in ("sqlite", "postgres"):
        raise ValueError(f"unknown database kind {kind!r}")
    with (_sqlite_url() if kind == "sqlite" else _postgres_url(suffix)) as url:
        migrate.upgrade(url)
        engine = make_engine(url)
        try:
            yield BenchDatabase(kind, url, engine, make_sessionmaker(engine))
        finally:
            engine.dispose()


# --- org and process --------------------------------------------------------------------------

@dataclass
class BenchOrg:
    """Users of the bench org by role code: user ids and usernames, plus role ids."""

    role_ids: dict[str, int]
    user_ids: dict[str, list[int]]
    usernames: dict[int, str]

    def username(self, role: str, i: int = 0) -> str:
        return self.usernames[self.user_ids[role][i]]


def setup_org(session: Session) -> BenchOrg:
    """Create the roles the bench process's lanes map to and USERS_PER_ROLE users in each (flushes)."""
    role_ids = {code: org.add_role(session, code=code, name=name).id for code, name in ROLES}
    user_ids: dict[str, list[int]] = {code: [] for code, _ in ROLES}
    usernames: dict[int, str] = {}
    for code, name in ROLES:
        for i in range(USERS_PER_ROLE):
            username = f"{code}{i + 1:03d}"
            user = org.add_user(session, username=username, display_name=f"{name}{i + 1:03d}", role_codes=[code])
            user_ids[code].append(user.id)
            usernames[user.id] = username
    session.flush()
    return BenchOrg(role_ids, user_ids, usernames)


def deploy_bench(session: Session) -> None:
    """Deploy bench/fixtures (the bench process and its forms) (flushes)."""
    deploy.deploy(session, deploy.read_directory(FIXTURES), actor=SYSTEM)


def actor(session: Session, username: str) -> Actor:
    """Return the Actor for a bench user."""
    return actor_for(session, username)


def open_task_ids(session: Session, instance_ids: Sequence[int], bpmn_id: str) -> dict[int, int]:
    """Map each instance to the id of its READY human task with this bpmn id."""
    rows = session.execute(select(HumanTask.instance_id, HumanTask.id).where(
        HumanTask.instance_id.in_(list(instance_ids)), HumanTask.bpmn_id == bpmn_id, HumanTask.state == "ready"))
    return {r.instance_id: r.id for r in rows}


# --- bare SpiffWorkflow -----------------------------------------------------------------------

def bare_serializer() -> Any:
    """Return SpiffWorkflow's serializer as a bare app configures it: SPIFF_CONFIG plus Decimal and date."""
    from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
    from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
    registry = BpmnWorkflowSerializer.configure(SPIFF_CONFIG)
    registry.register(Decimal, lambda v: {"value": str(v)}, lambda v: Decimal(v["value"]))
    registry.register(date, lambda v: {"value": v.isoformat()}, lambda v: date.fromisoformat(v["value"]))
    return BpmnWorkflowSerializer(registry)


def bare_specs(bpmn: Path = BENCH_BPMN, process_id: str = PROCESS_KEY) -> tuple[Any, dict[str, Any]]:
    """Parse a BPMN file with SpiffWorkflow's own parser (XSD validation on, as deploy does)."""
    from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
    parser = SpiffBpmnParser(validator=VALIDATOR)
    parser.add_bpmn_file(str(bpmn))
    return parser.get_spec(process_id), parser.get_subprocess_specs(process_id)


# --- seeding ------------------------------------------------------------------------------------

SEED_TABLES: tuple[Table, ...] = (ProcessInstance.__table__, HumanTask.__table__,  # type: ignore[assignment]
                                  TaskCandidate.__table__, AuditEvent.__table__)


@dataclass
class Template:
    """The rows one real instance left in every per-instance table, to be copied."""

    name: str
    rows: dict[str, list[dict[str, Any]]]
    started_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.started_at = self.rows["process_instance"][0]["started_at"]


def capture_template(session: Session, name: str, instance_id: int) -> Template:
    """Read every row that belongs to an instance (instance, human tasks, candidates, audit events)."""
    def rows(table: Table, where: Any) -> list[dict[str, Any]]:
        return [dict(r._mapping) for r in session.execute(select(table).where(where).order_by(table.c.id))]
    pi, ht, tc, ae = SEED_TABLES
    task_ids = select(ht.c.id).where(ht.c.instance_id == instance_id)
    return Template(name, {
        "process_instance": rows(pi, pi.c.id == instance_id),
        "human_task": rows(ht, ht.c.instance_id == instance_id),
        "task_candidate": rows(tc, tc.c.task_id.in_(task_ids)),
        "audit_event": rows(ae, ae.c.stream == f"instance:{instance_id}"),
    })


@dataclass
class SeedStats:
    instances: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _next_ids(conn: Any) -> dict[str, int]:
    return {t.name: (conn.execute(select(func.max(t.c.id))).scalar() or 0) + 1 for t in SEED_TABLES}


def _copy_instance(tpl: Template, ids: dict[str, int], n: int, started_at: datetime, bench_org: BenchOrg,
                   rng: random.Random, out: dict[str, list[dict[str, Any]]]) -> None:
    """Append one copy of a template to `out`, with new ids, shifted times and mixed assignees."""
    shift = started_at - tpl.started_at
    role_by_id = {v: k for k, v in bench_org.role_ids.items()}

    def moved(value: datetime | None) -> datetime | None:
        return value + shift if value is not None else None

    instance_id = ids["process_instance"]
    ids["process_instance"] += 1
    for src in tpl.rows["process_instance"]:
        row = dict(src, id=instance_id, business_key=f"SEED-{n:06d}", title=f"基准测试流程 SEED-{n:06d}",
                   started_by_id=rng.choice(bench_org.user_ids["applicant"]))
        for col in ("started_at", "updated_at", "ended_at", "next_timer_at"):
            row[col] = moved(src[col])
        out["process_instance"].append(row)

    task_map: dict[int, int] = {}
    task_role: dict[int, str] = {}
    for src in tpl.rows["task_candidate"]:
        if src["role_id"] is not None:
            task_role[src["task_id"]] = role_by_id[src["role_id"]]
    for src in tpl.rows["human_task"]:
        new_id = ids["human_task"]
        ids["human_task"] += 1
        task_map[src["id"]] = new_id
        pool = bench_org.user_ids[task_role.get(src["id"], "applicant")]
        row = dict(src, id=new_id, instance_id=instance_id)
        for col in ("created_at", "due_at", "warn_at", "completed_at"):
            row[col] = moved(src[col])
        if src["state"] == "ready":  # the inbox mix: about half claimed, spread over the role's users
            row["assignee_id"] = row["owner_id"] = rng.choice(pool) if rng.random() < 0.5 else None
        else:
            who = rng.choice(pool)
            row["assignee_id"] = row["completed_by_id"] = who
            row["owner_id"] = who if src["owner_id"] is not None else None
        out["human_task"].append(row)
    for src in tpl.rows["task_candidate"]:
        out["task_candidate"].append(dict(src, id=ids["task_candidate"], task_id=task_map[src["task_id"]]))
        ids["task_candidate"] += 1

    prev = audit.GENESIS
    for src in tpl.rows["audit_event"]:
        after = src["after"]
        if isinstance(after, dict) and isinstance(after.get("task_id"), int):
            after = dict(after, task_id=task_map.get(after["task_id"], after["task_id"]))
        object_id = str(instance_id) if src["object_type"] == "process_instance" else \
            str(task_map.get(int(src["object_id"]), src["object_id"]))
        row = dict(src, id=ids["audit_event"], stream=f"instance:{instance_id}", at=moved(src["at"]),
                   object_id=object_id, after=after, prev_hash=prev)
        row["hash"] = prev = audit.event_hash(prev, SimpleNamespace(**row))  # type: ignore[arg-type]
        out["audit_event"].append(row)
        ids["audit_event"] += 1


def _insert_sqlite(conn: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    conn.execute(table.insert(), rows)  # executemany; types (UTC datetimes, JSON) processed by SQLAlchemy


def _copy_postgres(cursor: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    # the columns the rows name: one they leave out takes its default, as an INSERT gives it
    columns = [c.name for c in table.c if not rows or c.name in rows[0]]
    json_cols = {c.name for c in table.c if c.type.__class__.__name__ == "JSON"}
    with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([json.dumps(row[c], ensure_ascii=False) if c in json_cols and row.get(c) is not None
                            else row.get(c) for c in columns])


def seed_copies(db: BenchDatabase, templates: Sequence[tuple[Template, float]], count: int, bench_org: BenchOrg,
                *, seed: int = 20250901, chunk: int = 5000, start: int = 0) -> SeedStats:
    """Bulk-insert `count` copies of the templates (picked by weight), spread over the past year.

    SQLite: executemany in chunks; PostgreSQL: COPY (psycopg cursor.copy), then VACUUM ANALYZE as
    autovacuum would. `start` numbers the business keys, so repeated calls add distinct instances.
    """
    t0 = time.perf_counter()
    rng = random.Random(seed + start)
    stats = SeedStats(rows={t.name: 0 for t in SEED_TABLES})
    weights = [w for _, w in templates]
    now = clock.now()
    raw = db.engine.raw_connection()
    try:
        with db.engine.connect() as conn:
            ids = _next_ids(conn)
        done = 0
        while done < count:
            out: dict[str, list[dict[str, Any]]] = {t.name: [] for t in SEED_TABLES}
            for i in range(done, min(count, done + chunk)):
                tpl = rng.choices(templates, weights)[0][0]
                started_at = now - timedelta(seconds=rng.uniform(3600, 365 * 86400))
                _copy_instance(tpl, ids, start + i, started_at, bench_org, rng, out)
            if db.is_postgres:
                with raw.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
                    for table in SEED_TABLES:
                        _copy_postgres(cursor, table, out[table.name])
                raw.commit()
            else:
                with db.engine.begin() as conn:
                    for table in SEED_TABLES:
                        _insert_sqlite(conn, table, out[table.name])
            for table in SEED_TABLES:
                stats.rows[table.name] += len(out[table.name])
            done = min(count, done + chunk)
        stats.instances = count
    finally:
        raw.close()
    _after_bulk_load(db)
    stats.seconds = time.perf_counter() - t0
    return stats


def _after_bulk_load(db: BenchDatabase) -> None:
    """Bring the database to a steady state after a bulk load (sequences, statistics, WAL)."""
    if db.is_postgres:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in SEED_TABLES:
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                  f"(SELECT max(id) FROM {table.name}))"))
                conn.execute(text(f"VACUUM ANALYZE {table.name}"))
    else:
        raw = db.engine.raw_connection()  # outside SQLAlchemy's BEGIN IMMEDIATE: a checkpoint needs no transaction
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        finally:
            raw.close()


def table_counts(db: BenchDatabase) -> dict[str, int]:
    """Count rows of the per-instance tables."""
    with db.engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar() or 0 for t in SEED_TABLES}


__all__ = [
    "BENCH_BPMN",
    "FILL_FORM",
    "PROCESS_KEY",
    "REVIEW_FORM",
    "START_DATA",
    "Base",
    "BenchDatabase",
    "BenchOrg",
    "SeedStats",
    "Template",
    "actor",
    "bare_serializer",
    "bare_specs",
    "capture_template",
    "database",
    "deploy_bench",
    "median_ms",
    "open_task_ids",
    "p90_ms",
    "pg_url",
    "seed_copies",
    "setup_org",
    "table_counts",
]
