"""The production topology (docs/operations.md): two gunicorn web hosts and two Celery workers on one PostgreSQL and Redis.

For JZFLOW_TOPOLOGY_SECONDS (60 by default) client threads drive mixed work through both web processes in turn:
starts (with Idempotency-Key, some sent twice), completions, claims raced by two users on the two hosts at once,
while the workers fire due timers and run deadline sweeps (escalations) sent by beat and by hand, concurrently.
Then, from the database and the audit chain: nothing lost (every answered start and completion is there), nothing
done twice (one start, one completion, one claim winner, one timer fire, one escalation step, one notification
each), the audit chain verifies, and both hosts' /metrics add up the counters of every web process.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock, config, deploy, org, tasks
from engine.audit.models import AuditEvent
from engine.db import make_engine, make_sessionmaker, session_scope
from engine.deadlines.models import EscalationStep
from engine.notify.models import OutboxMessage
from engine.org import tokens
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime import instances
from engine.runtime.models import ProcessInstance
from engine.tasks.collab_models import Notification
from engine.tasks.models import HumanTask
from tests.conftest import read_fixture_dir
from tests.scale.test_worker import redis_db, redis_url  # noqa: F401  (fixtures)
from tests.workers import REPO, Workers, send_task, start_due_instances, worker_env

pytestmark = pytest.mark.scale
SECONDS = float(os.environ.get("JZFLOW_TOPOLOGY_SECONDS", "60"))
METRICS_TOKEN = "topology-metrics-token"
SUBMIT = {"project_name": "拓扑测试项目", "investment": 1200, "project_type": "industrial"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Web:
    """One gunicorn web host (master + 2 processes × 4 threads), like a host of the production split."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**env, "JZFLOW_BIND": f"127.0.0.1:{self.port}", "JZFLOW_WEB_WORKERS": "2", "JZFLOW_WEB_THREADS": "4"}
        self._out = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py"),
                                         "web.wsgi:app"], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                        stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.url} not ready in {timeout} s:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait(10)
        self._out.close()


def call(base: str, method: str, path: str, token: str, body: dict[str, Any] | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
    request = urllib.request.Request(f"{base}{path}", data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"null")
        except ValueError:
            return exc.code, raw[:300]


@dataclass
class Ledger:
    """What the clients were told, to hold the database to."""

    started: set[int] = field(default_factory=set)
    completed: list[int] = field(default_factory=list)
    claim_winners: dict[int, str] = field(default_factory=dict)
    replays: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)


def _scenario(hosts: list[str], tok: dict[str, str], ledger: Ledger, rng: random.Random) -> None:
    """One application: start (idempotent, sometimes sent twice), submit, two window officers race to claim, complete."""
    a, b = rng.sample(hosts, 2)
    key = uuid.uuid4().hex
    status, started = call(a, "POST", "/api/processes/review_process/instances", tok["applicant"],
                           {"title": f"拓扑 {key[:6]}"}, {"Idempotency-Key": key})
    if status != 201:
        ledger.error(f"start {status}: {started}")
        return
    if rng.random() < 0.3:  # the client retries on the other host: the same answer, no second instance
        again, replay = call(b, "POST", "/api/processes/review_process/instances", tok["applicant"],
                             {"title": f"拓扑 {key[:6]}"}, {"Idempotency-Key": key})
        if again != 201 or replay.get("id") != started["id"]:
            ledger.error(f"idempotent replay {again}: {replay} vs {started['id']}")
        with ledger.lock:
            ledger.replays += 1
    with ledger.lock:
        ledger.started.add(int(started["id"]))
    submit = started["next_task_id"]
    status, done = call(b, "POST", f"/api/tasks/{submit}/complete", tok["applicant"], {"data": SUBMIT})
    if status != 200:
        ledger.error(f"submit {status}: {done}")
        return
    with ledger.lock:
        ledger.completed.append(int(submit))
    accept = done["next_tasks"][0]
    results: dict[str, int] = {}

    def claim(user: str, host: str) -> None:
        results[user] = call(host, "POST", f"/api/tasks/{accept}/claim", tok[user])[0]

    racers = [threading.Thread(target=claim, args=("window", a)), threading.Thread(target=claim, args=("window2", b))]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    winners = [u for u, s in results.items() if s == 200]
    if len(winners) != 1 or sorted(results.values()) not in ([200, 409], [200, 403]):
        ledger.error(f"claim race on task {accept}: {results}")
        return
    with ledger.lock:
        ledger.claim_winners[int(accept)] = winners[0]
    decision = "reject" if rng.random() < 0.5 else "accept"
    status, finished = call(rng.choice(hosts), "POST", f"/api/tasks/{accept}/complete", tok[winners[0]],
                            {"data": {"decision": decision}})
    if status != 200:
        ledger.error(f"accept {status}: {finished}")
        return
    with ledger.lock:
        ledger.completed.append(int(accept))


def _overdue_instances(session: Session, actor: Actor, count: int) -> None:
    """Applications submitted a week ago: their 一窗受理 (1 working day) is overdue, for the deadline sweep."""
    clock.freeze(datetime.now(clock.UTC) - timedelta(days=7))
    try:
        for _ in range(count):
            row = instances.start(session, process_key="review_process", actor=actor, data={})
            task = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.state == "ready"))
            assert task is not None
            tasks.complete(session, task_id=task.id, actor=actor, data=dict(SUBMIT))
        session.commit()
    finally:
        clock.unfreeze()


@pytest.fixture
def topology(tmp_path: Path, db_url: str, session: Session, review_org: dict[str, Actor],
             redis_url: str) -> Iterator[tuple[list[Web], Workers, dict[str, str], config.Settings]]:  # noqa: F811
    org.add_user(session, username="window2", display_name="窗口周九", unit_codes=["window"])
    session.commit()
    deploy.deploy(session, read_fixture_dir("good"), actor=SYSTEM)
    tok = {u: tokens.issue(session, tokens.owner(session, u), "拓扑", scope=tokens.READ_WRITE)
           for u in ("applicant", "window", "window2")}
    session.commit()
    _overdue_instances(session, actor_for(session, "applicant"), 5)
    session.close()
    settings = config.Settings(instance_dir=tmp_path / "instance", database_url=db_url, redis_url=redis_url)
    env = worker_env({"JZFLOW_DATABASE_URL": db_url, "JZFLOW_REDIS_URL": redis_url,
                      "JZFLOW_INSTANCE_DIR": str(settings.instance_dir), "JZFLOW_SECRET_KEY": "t" * 48,
                      "JZFLOW_METRICS_TOKEN": METRICS_TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
                      "JZFLOW_TIMER_SWEEP_SECONDS": "2", "JZFLOW_OUTBOX_SECONDS": "2", "JZFLOW_LOG_FORMAT": "json",
                      # the drive is one token's work for a whole office: not a test of the per-token limit
                      "JZFLOW_API_RATE_LIMIT": "100000 per minute"})
    (tmp_path / "metrics").mkdir()
    webs: list[Web] = []
    with Workers(tmp_path / "logs") as workers:
        try:
            webs = [Web(tmp_path / f"web{i}.log", env) for i in (1, 2)]
            for web in webs:
                web.wait_ready()
            workers.start({k: v for k, v in env.items() if k.startswith("JZFLOW_") or k.startswith("PROMETHEUS")},
                          beat=True)
            workers.start({k: v for k, v in env.items() if k.startswith("JZFLOW_") or k.startswith("PROMETHEUS")})
            yield webs, workers, tok, settings
        finally:
            for web in webs:
                web.stop()


@pytest.mark.timeout(SECONDS * 3 + 300)
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_web_hosts_and_two_workers_lose_nothing_and_do_nothing_twice(topology: Any, db_url: str) -> None:
    webs, workers, tok, settings = topology
    hosts = [w.url for w in webs]
    engine = make_engine(db_url)
    try:
        _drive(hosts, workers, tok, settings, make_sessionmaker(engine), webs)
    finally:
        engine.dispose()


def _drive(hosts: list[str], workers: Workers, tok: dict[str, str], settings: config.Settings,
           factory: sessionmaker[Session], webs: list[Web]) -> None:
    timer_ids = start_due_instances(factory, "timer_wait", 20, {"wait_for": "PT1H", "fire_count": 0})
    ledger = Ledger()
    stop_at = time.monotonic() + SECONDS

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop_at:
            try:
                _scenario(hosts, tok, ledger, rng)
            except Exception as exc:  # a client crash is a finding, not a reason to stop the others
                ledger.error(f"{type(exc).__name__}: {exc}")

    def sweeps() -> None:  # beat sends these too; by hand as well, so both workers run them at the same time
        while time.monotonic() < stop_at:
            for name in ("engine.jobs_deadlines.sweep_deadlines", "engine.jobs.sweep_timers"):
                send_task(settings, name)
                send_task(settings, name)
            time.sleep(5)

    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(client, n) for n in range(4)] + [pool.submit(sweeps)]
        for f in futures:
            f.result()
    logs = workers.tails() + "".join(f"\n----- {w.log} -----\n{w.tail()}" for w in webs)
    assert not ledger.errors, (ledger.errors[:10], logs)
    assert len(ledger.started) >= 4, (ledger, logs)

    def settled() -> bool:
        with session_scope(factory) as s:
            pending = s.scalar(select(func.count()).select_from(OutboxMessage).where(
                OutboxMessage.delivered_at.is_(None), OutboxMessage.kind == "in_app"))
            fired = s.scalar(select(func.count()).select_from(ProcessInstance).where(
                ProcessInstance.id.in_(timer_ids), ProcessInstance.status == "completed"))
            steps = s.scalar(select(func.count()).select_from(EscalationStep))
            return pending == 0 and fired == len(timer_ids) and bool(steps)
    send_task(settings, "engine.jobs_deadlines.sweep_deadlines")
    workers.started[0].wait_until(settled, 90, what="outbox, timers and escalations to settle")

    with session_scope(factory) as s:
        starts = Counter(s.scalars(select(AuditEvent.object_id).where(AuditEvent.action == "instance.start",
                                                                      AuditEvent.object_id.in_(
                                                                          [str(i) for i in ledger.started]))))
        assert set(starts) == {str(i) for i in ledger.started} and set(starts.values()) == {1}, "lost or doubled starts"
        titled = s.scalar(select(func.count()).select_from(ProcessInstance).where(ProcessInstance.title.like("拓扑 %")))
        assert titled == len(ledger.started), "an idempotent replay started a second instance"
        done = Counter(after["task_id"] for after in s.scalars(select(AuditEvent.after)
                                                              .where(AuditEvent.action == "task.complete")))
        doubled = {k: v for k, v in done.items() if v > 1}
        assert not doubled, f"completed twice: {doubled}"
        states = dict(s.execute(select(HumanTask.id, HumanTask.state).where(HumanTask.id.in_(ledger.completed))).all())
        assert set(states) == set(ledger.completed) and set(states.values()) == {"completed"}, "a completion was lost"
        assert {t: done[t] for t in ledger.completed} == dict.fromkeys(ledger.completed, 1), "a completion was lost"
        claims = Counter(s.scalars(select(AuditEvent.object_id).where(
            AuditEvent.action == "task.claim", AuditEvent.object_id.in_([str(t) for t in ledger.claim_winners]))))
        assert set(claims.values()) == {1} and len(claims) == len(ledger.claim_winners), "a raced claim won twice"
        fires = Counter(s.scalars(select(AuditEvent.object_id).where(AuditEvent.action == "timer.fire")))
        assert {str(i) for i in timer_ids} <= set(fires) and max(fires.values()) == 1, "a timer fired twice"
        per_step = s.execute(select(EscalationStep.object_type, EscalationStep.object_id, EscalationStep.round,
                                    EscalationStep.step, func.count()).group_by(
            EscalationStep.object_type, EscalationStep.object_id, EscalationStep.round, EscalationStep.step)).all()
        assert per_step and all(row[-1] == 1 for row in per_step), "an escalation step was taken twice"
        notes = s.execute(select(Notification.outbox_id, func.count()).where(Notification.outbox_id.is_not(None))
                          .group_by(Notification.outbox_id).having(func.count() > 1)).all()
        assert not notes, f"notifications delivered twice: {notes}"
        report = audit.verify(s)
        assert report.ok, report.problems[:5]

    # Each host's /metrics adds up the counters of every web process of the host (PROMETHEUS_MULTIPROC_DIR).
    bodies = []
    for base in hosts:
        request = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            bodies.append(response.read().decode())
    for body in bodies:
        starts_total = sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                           if line.startswith("jzflow_instance_starts_total"))
        assert starts_total >= len(ledger.started), body[-2000:]
        assert 'route="/api/tasks/<int:task_id>/claim"' in body
    print(f"topology: {SECONDS:.0f} s, {len(ledger.started)} starts ({ledger.replays} replays), "
          f"{len(ledger.completed)} completions, {len(ledger.claim_winners)} raced claims, {len(timer_ids)} timers, "
          f"{len(per_step)} escalation steps")
