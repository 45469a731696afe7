"""Benchmark: 待办 of a user with 50 open tasks, in PostgreSQL holding 1,000,000 human tasks and 10,000 users.

    python bench/inbox.py [--tasks N] [--users N] [--repeat N] [--warmup N] [--smoke]

A throwaway PostgreSQL database (JZFLOW_BENCH_PG_URL, default the local server) is migrated, seeded
(data/seed: units, roles, 71 users) and bpmn/ deployed; then COPY (psycopg `cursor.copy`) loads the bulk:
users up to --users (each in one org unit with one role), process instances of the three processes (4 human
tasks each, 70% completed, 28% running, 2% terminated) and their human tasks and candidates up to --tasks:
completed and cancelled steps, and open ones due from 20 days ago to 40 days ahead (15% undated), half of
them claimed by a member of the candidate unit or role; candidates are an org unit (55%), a role (35%) or a
user (10%). The measured user, `bench_inbox`, works in a small 街道 office of their own: 20 open tasks
claimed by them, 30 open tasks of their office to claim, 150 done, 20 cancelled — so 待办 holds exactly 50.

Measured, after warm-up: (a) the list query the page uses (engine.tasks.inbox.todo_page, a new session
each time), (b) the whole page: GET /inbox through Flask's test client, logged in (session cookie):
routing, login, the list, the counts, saved filters, the template. Also printed: an EXPLAIN (ANALYZE,
BUFFERS) summary of every statement todo_page sends. The database is dropped at the end. The last line:

    p50_ms=<page p50> p95_ms=<page p95> rows=<human_task rows in the database>
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "bench":
    sys.path[0] = str(_ROOT)

from sqlalchemy import event, func, select, text
from werkzeug.security import generate_password_hash

from bench import common
from engine import (
    clock,
    deploy,
    org,
)
from engine.org.actors import SYSTEM, actor_for
from engine.org.models import Membership, OrgUnit, Role, User
from engine.runtime.models import ProcessDefinition, ProcessFile, ProcessInstance, ProcessVersion
from engine.tasks import inbox
from engine.tasks.models import HumanTask, TaskCandidate
from plan.data import seed

USERNAME = "bench_inbox"
PASSWORD = "bench-Passw0rd"
TASKS_PER_INSTANCE = 4
MINE, CLAIMABLE, DONE, CANCELLED = 20, 30, 150, 20  # the measured user's tasks


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of samples in seconds, in milliseconds."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] * 1000.0


# --- the data -------------------------------------------------------------------------------------------

class Loader:
    """Rows for COPY, with ids handed out here (the sequences are set afterwards)."""

    def __init__(self, db: common.BenchDatabase, seed_value: int = 20250901) -> None:
        self.db = db
        self.rng = random.Random(seed_value)
        self.now = clock.now()
        with db.factory() as s:
            self.next_id = {t.__tablename__: (s.scalar(select(func.max(t.id))) or 0) + 1
                            for t in (User, Membership, ProcessInstance, HumanTask, TaskCandidate)}
            self.units = list(s.scalars(select(OrgUnit.id).where(OrgUnit.code != "bench_desk")))
            self.roles = list(s.scalars(select(Role.id)))
            self.processes = self._processes(s)
            self.members: dict[tuple[str, int], list[int]] = {}
            for user_id, unit_id, role_id in s.execute(select(Membership.user_id, Membership.org_unit_id,
                                                              Membership.role_id)):
                if unit_id is not None:
                    self.members.setdefault(("unit", unit_id), []).append(user_id)
                if role_id is not None:
                    self.members.setdefault(("role", role_id), []).append(user_id)
            # everyone but the measured user, who gets only the tasks `measured_user` gives them
            self.user_ids = list(s.scalars(select(User.id).where(User.username != USERNAME)))
            s.rollback()
        self.rows: dict[str, list[tuple[Any, ...]]] = {}

    @staticmethod
    def _processes(s: Any) -> list[tuple[str, int, int, list[tuple[str, str, str | None]]]]:
        """(key, definition id, version id, user tasks (bpmn id, name, form)) of every deployed process."""
        found = []
        for key, definition_id, version_id in s.execute(
                select(ProcessDefinition.key, ProcessDefinition.id, ProcessVersion.id)
                .join(ProcessVersion, ProcessVersion.definition_id == ProcessDefinition.id)):
            bpmn = s.scalar(select(ProcessFile.text).where(ProcessFile.version_id == version_id,
                                                              ProcessFile.name == f"{key}.bpmn"))
            tasks = re.findall(r'<bpmn:userTask id="([^"]+)" name="([^"]+)"', bpmn or "")
            forms = dict(re.findall(r'<bpmn:userTask id="([^"]+)".*?formJsonSchemaFilename" value="([^"]+)"',
                                    bpmn or "", re.S))
            found.append((key, definition_id, version_id, [(t, n, forms.get(t)) for t, n in tasks]))
        return found

    def take(self, table: str) -> int:
        value = self.next_id[table]
        self.next_id[table] += 1
        return value

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.rows.setdefault(table, []).append(row)

    # rows -------------------------------------------------------------------------------------------

    def users(self, count: int) -> None:
        """Users up to `count` in all, each in one org unit and with one role."""
        for n in range(count - len(self.user_ids)):
            user_id = self.take("app_user")
            self.add("app_user", (user_id, f"bench{n:05d}", f"基准用户{n:05d}", None, None, True, False, self.now))
            unit, role = self.rng.choice(self.units), self.rng.choice(self.roles)
            self.add("membership", (self.take("membership"), user_id, unit, None, False))
            self.add("membership", (self.take("membership"), user_id, None, role, False))
            self.members.setdefault(("unit", unit), []).append(user_id)
            self.members.setdefault(("role", role), []).append(user_id)
            self.user_ids.append(user_id)

    def instance(self, n: int, status: str) -> tuple[int, str, int, list[tuple[str, str, str | None]], datetime]:
        key, definition_id, version_id, tasks = self.rng.choice(self.processes)
        instance_id = self.take("process_instance")
        started = self.now - timedelta(seconds=self.rng.uniform(3600, 365 * 86400))
        ended = started + timedelta(days=self.rng.uniform(1, 30)) if status != "running" else None
        if ended is not None and ended > self.now:
            ended = self.now - timedelta(hours=1)
        self.add("process_instance", (instance_id, definition_id, version_id, f"BENCH-{n:07d}",
                                      f"基准流程 BENCH-{n:07d}", status, "{}", "bench", 1, None,
                                      self.rng.choice(self.user_ids), started, ended or started, ended))
        return instance_id, key, version_id, tasks, started

    def task(self, instance_id: int, key: str, spec: tuple[str, str, str | None], state: str, created: datetime, *,
             candidate: tuple[str, int] | None = None, assignee: int | None = None, claimed: bool | None = None) -> None:
        """One human task with one candidate; an open one is claimed (by a member of its group) half of the time."""
        task_id = self.take("human_task")
        group = candidate or self._group()
        members = self.members.get(group) or self.user_ids
        due_at = None
        if self.rng.random() > 0.15:  # 15% have no deadline
            due_at = self.now + timedelta(days=self.rng.uniform(-20, 40)) if state == "ready" else \
                created + timedelta(days=self.rng.uniform(1, 10))
        completed_at = completed_by = None
        if state == "ready":
            if assignee is None and (claimed if claimed is not None else self.rng.random() < 0.5):
                assignee = self.rng.choice(members)
        elif state == "completed":
            assignee = completed_by = assignee or self.rng.choice(members)
            completed_at = min(created + timedelta(days=self.rng.uniform(0.1, 8)), self.now)
        bpmn_id, name, form = spec
        self.add("human_task", (
            task_id, instance_id, f"bench-{task_id}", bpmn_id, name, key, None, state, assignee, None, form,
            None, 50, None, created, due_at, due_at - timedelta(days=2) if due_at else None, completed_at,
            completed_by, None, "bpmn", None, None, None, None, False))
        kind, value = group
        self.add("task_candidate", (self.take("task_candidate"), task_id, value if kind == "user" else None,
                                    value if kind == "unit" else None, value if kind == "role" else None))

    def _group(self) -> tuple[str, int]:
        roll = self.rng.random()
        if roll < 0.55:
            return ("unit", self.rng.choice(self.units))
        if roll < 0.90:
            return ("role", self.rng.choice(self.roles))
        return ("user", self.rng.choice(self.user_ids))

    def bulk(self, tasks: int) -> None:
        """Instances of 4 tasks each until `tasks` human tasks exist: completed steps, then the open ones."""
        n = 0
        while self.next_id["human_task"] < tasks:
            roll = self.rng.random()
            status = "completed" if roll < 0.70 else "running" if roll < 0.98 else "terminated"
            instance_id, key, _version, specs, started = self.instance(n, status)
            for i in range(TASKS_PER_INSTANCE):
                spec = specs[min(i, len(specs) - 1)] if i < TASKS_PER_INSTANCE - 1 else self.rng.choice(specs)
                created = started + timedelta(days=i * 2)
                last = i == TASKS_PER_INSTANCE - 1
                state = ("ready" if last or (i == TASKS_PER_INSTANCE - 2 and self.rng.random() < 0.1) else "completed") \
                    if status == "running" else "cancelled" if status == "terminated" and last else "completed"
                self.task(instance_id, key, spec, state, min(created, self.now))
            n += 1
            if len(self.rows["human_task"]) >= 50_000:
                self.flush()

    def measured_user(self, user_id: int, desk_id: int) -> None:
        """The measured user's 50 open tasks (20 claimed, 30 to claim), 150 done and 20 cancelled."""
        plan = ([("ready", True)] * MINE + [("ready", False)] * CLAIMABLE + [("completed", True)] * DONE +
                [("cancelled", False)] * CANCELLED)
        for n, (state, theirs) in enumerate(plan):
            status = "running" if state == "ready" else "completed"
            instance_id, key, _version, specs, started = self.instance(900_000_000 + n, status)
            created = min(started + timedelta(days=1), self.now)
            self.task(instance_id, key, self.rng.choice(specs), state, created, candidate=("unit", desk_id),
                      assignee=user_id if theirs else None, claimed=theirs)

    def flush(self) -> None:
        """COPY what is buffered, in foreign-key order."""
        order = ("app_user", "membership", "process_instance", "human_task", "task_candidate")
        columns = {
            "app_user": "id, username, display_name, email, password_hash, is_active, is_admin, created_at",
            "membership": "id, user_id, org_unit_id, role_id, is_head",
            "process_instance": "id, definition_id, version_id, business_key, title, status, state, serializer_version,"
                                " lock_version, next_timer_at, started_by_id, started_at, updated_at, ended_at",
            "human_task": "id, instance_id, task_guid, bpmn_id, name, process_key, lane, state, assignee_id, owner_id,"
                          " form_schema, form_ui_schema, priority, sla, created_at, due_at, warn_at, completed_at,"
                          " completed_by_id, instructions, kind, parent_task_id, cosign_position, delegation_state,"
                          " pending_data, blocked",
            "task_candidate": "id, task_id, user_id, org_unit_id, role_id",
        }
        raw = self.db.engine.raw_connection()
        try:
            with raw.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
                for table in order:
                    with cursor.copy(f"COPY {table} ({columns[table]}) FROM STDIN") as copy:
                        for row in self.rows.get(table, []):
                            copy.write_row(row)
            raw.commit()
        finally:
            raw.close()
        self.rows = {}


def prepare(db: common.BenchDatabase, tasks: int, users: int) -> tuple[int, float]:
    """Seed, deploy, bulk-load; return (human_task rows, seconds)."""
    t0 = time.perf_counter()
    with db.factory() as s:
        seed.load_seed(s)
        deploy.deploy(s, deploy.read_directory(_ROOT / "bpmn"), actor=SYSTEM)
        desk = org.add_unit(s, code="bench_desk", name="胶东街道便民服务站", kind="street")
        user = org.add_user(s, username=USERNAME, display_name="基准测试用户", unit_codes=["bench_desk"])
        user.password_hash = generate_password_hash(PASSWORD, method="pbkdf2:sha256:1000")
        s.commit()
        user_id, desk_id = user.id, desk.id
    loader = Loader(db)
    loader.users(users)
    loader.flush()
    loader.measured_user(user_id, desk_id)
    loader.bulk(tasks)
    loader.flush()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("app_user", "membership", "process_instance", "human_task", "task_candidate"):
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
            conn.execute(text(f"VACUUM ANALYZE {table}"))
        rows = int(conn.execute(text("SELECT count(*) FROM human_task")).scalar() or 0)
    return rows, time.perf_counter() - t0


# --- measuring ------------------------------------------------------------------------------------------

def measure_query(db: common.BenchDatabase, repeat: int, warmup: int) -> list[float]:
    samples = []
    for n in range(warmup + repeat):
        with db.factory() as s:
            actor = actor_for(s, USERNAME)
            t0 = time.perf_counter()
            page = inbox.todo_page(s, actor)
            elapsed = time.perf_counter() - t0
            s.rollback()
        assert len(page.rows) == MINE + CLAIMABLE and page.next_cursor is None, (len(page.rows), page.next_cursor)
        if n >= warmup:
            samples.append(elapsed)
    return samples


def explain(db: common.BenchDatabase) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) every statement one todo_page sends; one line each."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        sent.append((statement, parameters))

    with db.factory() as s:
        actor = actor_for(s, USERNAME)
        event.listen(db.engine, "before_cursor_execute", capture)
        try:
            inbox.todo_page(s, actor)
        finally:
            event.remove(db.engine, "before_cursor_execute", capture)
        s.rollback()
    lines = []
    raw = db.engine.raw_connection()
    try:
        with raw.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
            for n, (statement, parameters) in enumerate(sent, 1):
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
                plan = cursor.fetchone()[0][0]
                nodes: list[str] = []

                def walk(node: dict[str, Any], into: list[str] = nodes) -> None:
                    label = node["Node Type"] + (f" {node['Index Name']}" if "Index Name" in node else "") + \
                        (f" {node['Relation Name']}" if "Relation Name" in node and "Index Name" not in node else "")
                    into.append(f"{label}(rows={node.get('Actual Rows')}×{node.get('Actual Loops')})")
                    for child in node.get("Plans", []):
                        walk(child, into)
                walk(plan["Plan"])
                top = plan["Plan"]
                what = "human_task+instance" if "JOIN process_instance" in statement else \
                    "claimable" if "assignee_id IS NULL" in statement else "mine" if "assignee_id =" in statement \
                    else "statement"
                lines.append(f"explain stmt={n} ({what}) time_ms={plan['Execution Time']:.2f} "
                             f"shared_hit={top.get('Shared Hit Blocks', 0)} read={top.get('Shared Read Blocks', 0)} "
                             f"plan=" + " > ".join(nodes))
        raw.rollback()
    finally:
        raw.close()
    return lines


def measure_page(db: common.BenchDatabase, repeat: int, warmup: int) -> list[float]:
    from web import create_app
    app = create_app({"DATABASE_URL": db.url, "TESTING": True, "WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False,
                      "SECRET_KEY": "bench", "JZFLOW_NO_KICK": True})
    try:
        client = app.test_client()
        response = client.post("/login", data={"username": USERNAME, "password": PASSWORD})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        html = client.get("/inbox").get_data(as_text=True)
        listed = len(re.findall(r'<td>(?:<span translate="no">)?<a href="/tasks/\d+">', html))
        assert listed == MINE + CLAIMABLE, listed
        assert html.count(">我的</td>") == MINE and html.count(">可认领</td>") == CLAIMABLE
        samples = []
        for n in range(warmup + repeat):
            t0 = time.perf_counter()
            response = client.get("/inbox")
            response.get_data()
            elapsed = time.perf_counter() - t0
            assert response.status_code == 200, response.status_code
            if n >= warmup:
                samples.append(elapsed)
        return samples
    finally:
        app.extensions["jzflow.engine"].dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=1_000_000, help="human_task rows in all (default 1,000,000)")
    parser.add_argument("--users", type=int, default=10_000, help="users in all (default 10,000)")
    parser.add_argument("--repeat", type=int, default=300, help="timed requests (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed requests first (default 30)")
    parser.add_argument("--smoke", action="store_true",
                        help="allow fewer than 200 requests: a run that only proves the bench works (its figures are noise)")
    args = parser.parse_args(argv)
    if args.repeat < (1 if args.smoke else 200):
        parser.error("--repeat: at least 200 (a p95 of fewer requests is noise; --smoke allows it)")
    with common.database("postgres", suffix="_inbox") as db:
        rows, seconds = prepare(db, args.tasks, args.users)
        with db.factory() as s:
            users = int(s.scalar(select(func.count()).select_from(User)) or 0)
            candidates = int(s.scalar(select(func.count()).select_from(TaskCandidate)) or 0)
            states = dict(s.execute(select(HumanTask.state, func.count()).group_by(HumanTask.state)).all())
            unclaimed = s.scalar(select(func.count()).select_from(HumanTask).where(
                HumanTask.state == "ready", HumanTask.assignee_id.is_(None)))
            s.rollback()
        print(f"seeded rows={rows} users={users} task_candidate={candidates} states={json.dumps(states)} "
              f"ready_unclaimed={unclaimed} seconds={seconds:.1f}", flush=True)
        query = measure_query(db, args.repeat, args.warmup)
        print(f"query todo_page n={len(query)} p50_ms={percentile(query, 50):.2f} p95_ms={percentile(query, 95):.2f} "
              f"max_ms={max(query) * 1000:.2f}", flush=True)
        for line in explain(db):
            print(line, flush=True)
        page = measure_page(db, args.repeat, args.warmup)
        print(f"page GET /inbox n={len(page)} p50_ms={percentile(page, 50):.2f} p95_ms={percentile(page, 95):.2f} "
              f"max_ms={max(page) * 1000:.2f} target_p95_ms=50", flush=True)
    print(f"p50_ms={percentile(page, 50):.2f} p95_ms={percentile(page, 95):.2f} rows={rows}")


if __name__ == "__main__":
    main()
