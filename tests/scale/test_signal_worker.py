"""A signal to 300 waiting instances through a real worker on PostgreSQL and Redis, SIGKILLed midway.

Each instance is resumed in its own transaction that also marks its `signal_delivery` row done, so the
worker killed in the middle of a batch leaves the rest pending, a new worker's job finishes them, and no
instance is resumed twice (one signal.deliver audit event and resumed == 1 each).
Size: JZFLOW_SIGNAL_INSTANCES (default 300; 1000 for the bigger run). The time is the deliveries (one
transaction each, about 8 ms on an idle 2-core machine) and two worker starts; starting the instances is
about 3 ms each. 300: about 10 s here, well under a minute on a loaded machine.
"""
from __future__ import annotations

import os

import pytest
from sqlalchemy import func, select

from engine import audit
from engine.audit.models import AuditEvent
from engine.db import session_scope
from engine.org.actors import SYSTEM
from engine.runtime import instances, signals
from engine.runtime.message_models import SignalDelivery
from engine.tasks.models import HumanTask
from tests.engine.test_messages import resumed_count
from tests.scale import test_worker as scale

pytestmark = pytest.mark.scale
N = int(os.environ.get("JZFLOW_SIGNAL_INSTANCES", "300"))
JOB = "engine.jobs_messages.deliver_signals"
redis_db, redis_url, stack = scale.redis_db, scale.redis_url, scale.stack  # the scale path's fixtures


def test_a_signal_to_many_instances_survives_a_worker_kill(stack: scale.Stack) -> None:
    stack.deploy("messages")
    with session_scope(stack.factory) as session:
        ids = [instances.start(session, process_key="sig_wait", actor=SYSTEM, data={"resumed": 0}).id
               for _ in range(N)]
    with session_scope(stack.factory) as session:
        out = signals.broadcast(session, name="plan_revised", actor=SYSTEM, payload={"revision": 7})
    assert out.waiting == N

    def done() -> int:
        return stack.count(select(func.count()).select_from(SignalDelivery).where(SignalDelivery.state == "done"))

    first = stack.start_worker()
    stack.send(JOB)
    first.wait_until(lambda: done() >= N // 5, 120, what=f"{N // 5} deliveries")
    first.kill()  # SIGKILL mid-batch: main process and pool child
    midway = done()
    assert N // 5 <= midway <= N - N // 5, f"not killed midway: {midway} of {N} resumed before the kill"
    assert f"Task {JOB}[" in first.log_tail(10_000), "the killed worker never ran the job"

    second = stack.start_worker()
    stack.send(JOB)  # the killed job's message waits out Redis' visibility timeout; beat would send this
    second.wait_until(lambda: done() == N, 180, what=f"all {N} deliveries")

    with session_scope(stack.factory) as session:
        per_instance = dict(session.execute(
            select(AuditEvent.object_id, func.count()).where(AuditEvent.action == "signal.deliver")
            .group_by(AuditEvent.object_id)).all())
        twice = {k: v for k, v in per_instance.items() if v != 1}
        assert set(per_instance) == {str(i) for i in ids} and not twice, (twice, stack.workers.tails())
        after = session.scalar(select(func.count()).select_from(HumanTask).where(
            HumanTask.bpmn_id == "after", HumanTask.state == "ready"))
        assert after == N  # each resumed once: one task after the catch (the script counts once per resume)
        for instance_id in ids[:: max(1, N // 50)]:  # a sample of the workflows themselves
            assert resumed_count(session, instance_id) == 1, instance_id
        pending = session.scalar(select(func.count()).select_from(SignalDelivery)
                                 .where(SignalDelivery.state != "done"))
        assert pending == 0
        report = audit.verify(session)
        assert report.ok, report.problem
    print(f"\nsignal to {N} instances: {midway} resumed before the kill, the rest after")
