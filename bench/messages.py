"""Benchmark: messages correlated per second on PostgreSQL with many waiting instances, against a completion.

    python bench/messages.py [--waiting 100000] [--repeat 200] [--warmup 20] [--others 100]

`--waiting` instances wait on a message catch (bench/fixtures/message_wait.bpmn), each with its own
correlation value (order_id), seeded in bulk: one real instance is started and its state copied with the
value replaced, with its `message_subscription` row and its audit stream (its events chained again under the
copy's stream, and the stream's head row), by COPY. Timed per message: new session →
engine.runtime.messages.publish(name, correlations={order_id: …}, payload) → commit, on instances picked at
random: the subscription index finds the instance, which is loaded, caught, run to its next user task and
saved with its projection and audit event. In the same run bench/engine.py's completion is measured
(`run_database("postgres", [--others])`, ours_ms): ratio = per-message time / per-completion time.

Last line: msgs_per_s=<x> ratio=<per-message / per-completion> waiting=<n>
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "bench":
    sys.path[0] = str(_ROOT)

from sqlalchemy import func, select, text

from bench import common
from bench import engine as engine_bench
from engine import audit, clock, deploy
from engine.audit.models import AuditEvent, AuditHead
from engine.org.actors import SYSTEM
from engine.runtime import instances, messages
from engine.runtime.message_models import BpmnMessage, MessageSubscription
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask

FIXTURE = _ROOT / "bench" / "fixtures" / "message_wait.bpmn"
KEY = "bench_message_wait"
TEMPLATE_ORDER = "ORD-TEMPLATE"


def order(n: int) -> str:
    return f"ORD-{n:08d}"  # the same length as TEMPLATE_ORDER: the state's text is copied as it is otherwise


def seed_waiting(db: common.BenchDatabase, count: int, chunk: int = 10_000) -> float:
    """Start one waiting instance and bulk-copy it `count` times with its own order_id; return seconds."""
    t0 = time.perf_counter()
    with db.factory() as session:
        deploy.deploy(session, {FIXTURE.name: FIXTURE.read_bytes()}, actor=SYSTEM, check_lanes=False)
        row = instances.start(session, process_key=KEY, actor=SYSTEM, data={"order_id": TEMPLATE_ORDER})
        session.commit()
        template = session.get(ProcessInstance, row.id)
        sub = session.scalar(select(MessageSubscription).where(MessageSubscription.instance_id == row.id))
        assert template is not None and sub is not None and TEMPLATE_ORDER in template.state
        tpl = {c: getattr(template, c) for c in (col.name for col in ProcessInstance.__table__.c)}
        tpl_sub = {c: getattr(sub, c) for c in (col.name for col in MessageSubscription.__table__.c)}
        # Its audit events: a real instance has its stream (instance.start) and the stream's head row.
        tpl_events = [{c: getattr(ev, c) for c in (col.name for col in AuditEvent.__table__.c)}
                      for ev in session.scalars(select(AuditEvent).where(AuditEvent.stream == f"instance:{row.id}")
                                                .order_by(AuditEvent.seq))]
        next_id = int(session.scalar(select(func.max(ProcessInstance.id))) or 0) + 1
        next_sub = int(session.scalar(select(func.max(MessageSubscription.id))) or 0) + 1
        next_event = int(session.scalar(select(func.max(AuditEvent.id))) or 0) + 1
        session.rollback()
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        now = clock.now()
        for start in range(0, count, chunk):
            rows, subs, evs, heads = [], [], [], []
            for n in range(start, min(count, start + chunk)):
                value = order(n)
                rows.append({**tpl, "id": next_id + n, "state": tpl["state"].replace(TEMPLATE_ORDER, value),
                             "business_key": value, "title": f"消息基准 {value}", "started_at": now, "updated_at": now})
                subs.append({**tpl_sub, "id": next_sub + n, "instance_id": next_id + n,
                             "correlation": messages.canonical({"order_id": value}), "business_key": value,
                             "created_at": now})
                prev = audit.GENESIS
                for k, src in enumerate(tpl_events):
                    ev = {**src, "id": next_event + n * len(tpl_events) + k, "stream": f"instance:{next_id + n}",
                          "object_id": str(next_id + n) if src["object_type"] == "process_instance"
                          else src["object_id"], "prev_hash": prev}
                    ev["hash"] = prev = audit.event_hash(prev, SimpleNamespace(**ev))  # type: ignore[arg-type]
                    evs.append(ev)
                if tpl_events:
                    heads.append({"stream": f"instance:{next_id + n}", "seq": len(tpl_events), "hash": prev})
            common._copy_postgres(cursor, ProcessInstance.__table__, rows)
            common._copy_postgres(cursor, MessageSubscription.__table__, subs)
            common._copy_postgres(cursor, AuditEvent.__table__, evs)
            common._copy_postgres(cursor, AuditHead.__table__, heads)
        raw.commit()
        for table in ("process_instance", "message_subscription", "audit_event"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        raw.commit()
    finally:
        raw.close()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE process_instance"))
        conn.execute(text("VACUUM ANALYZE message_subscription"))
        conn.execute(text("VACUUM ANALYZE audit_event"))
        conn.execute(text("VACUUM ANALYZE audit_head"))
    return time.perf_counter() - t0


def publish_one(db: common.BenchDatabase, n: int) -> tuple[float, messages.Outcome]:
    t0 = time.perf_counter()
    session = db.factory()
    out = messages.publish(session, name="bench_ping", actor=SYSTEM, correlations={"order_id": order(n)},
                           payload={"n": n}, ttl=0)
    session.commit()
    elapsed = time.perf_counter() - t0
    session.close()
    return elapsed, out


def check(db: common.BenchDatabase, out: messages.Outcome) -> None:
    """A delivery did what it should: the instance moved on to its user task, the message is delivered, once."""
    with db.factory() as session:
        ready = session.scalar(select(func.count()).select_from(HumanTask).where(
            HumanTask.instance_id == out.instance_id, HumanTask.bpmn_id == "after", HumanTask.state == "ready"))
        status = session.scalar(select(BpmnMessage.status).where(BpmnMessage.id == out.id))
        left = session.scalar(select(func.count()).select_from(MessageSubscription).where(
            MessageSubscription.instance_id == out.instance_id))
        session.rollback()
    if out.status != "delivered" or ready != 1 or status != "delivered" or left != 0:
        raise RuntimeError(f"unexpected delivery: {out} ready={ready} status={status} subscriptions_left={left}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--waiting", type=int, default=100_000, help="instances waiting on a message")
    parser.add_argument("--repeat", type=int, default=200, help="timed messages")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--others", type=int, default=100, help="bench/engine.py's --others for the completion")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.waiting < args.repeat + args.warmup:
        raise SystemExit("--waiting must be at least --repeat + --warmup")
    t0 = time.perf_counter()
    print(f"# jzflow messages bench: waiting={args.waiting} repeat={args.repeat} warmup={args.warmup}", flush=True)
    completion = engine_bench.run_database("postgres", [args.others], args.repeat, args.warmup)[0]
    with common.database("postgres", suffix="_msgs") as db:
        seeded = seed_waiting(db, args.waiting)
        print(f"seeded {args.waiting} waiting instances in {seeded:.1f}s", flush=True)
        picks = random.Random(20250901).sample(range(args.waiting), args.warmup + args.repeat)
        samples: list[float] = []
        for i, n in enumerate(picks):
            elapsed, out = publish_one(db, n)
            if i in (0, len(picks) - 1):
                check(db, out)
            if i >= args.warmup:
                samples.append(elapsed)
        with db.factory() as session:
            delivered = session.scalar(select(func.count()).select_from(BpmnMessage)
                                       .where(BpmnMessage.status == "delivered"))
            session.rollback()
        if delivered != len(picks):
            raise RuntimeError(f"{delivered} of {len(picks)} messages delivered")
        with db.factory() as session:  # the seeded streams and every delivery's event chain and verify
            report = audit.verify(session)
            session.rollback()
        if not report.ok:
            raise RuntimeError(f"the audit trail does not verify: {report.problems[:3]}")
    msg_ms = common.median_ms(samples)
    print(f"message_ms={msg_ms:.2f} message_p90_ms={common.p90_ms(samples):.2f} "
          f"completion_ms={completion.ours_ms:.2f} (bench/engine.py, others={args.others}) "
          f"detail={json.dumps({'n': len(samples)})}", flush=True)
    print(f"# total {time.perf_counter() - t0:.0f}s", flush=True)
    print(f"msgs_per_s={1000.0 / msg_ms:.1f} ratio={msg_ms / completion.ours_ms:.2f} waiting={args.waiting}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
