"""An instance loaded for one unit of work: its row, its workflow and what this unit of work did to them."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db import is_postgres
from engine.runtime.models import Incident, ProcessInstance
from engine.spiff.workflow import Task, Workflow
from engine.tasks.models import HumanTask


@dataclass(frozen=True)
class Completing:
    """The person's step a unit of work completes: its row is marked completed and its `task.complete` event written
    only after the engine run, so what the run prints of the instance (the 审批单 issued at 联合出证) adds it itself."""

    task: HumanTask
    data: Mapping[str, Any]
    events_before: int  # the transaction's audit events not yet written when the step was submitted


@dataclass
class Running:
    """An instance loaded for one unit of work."""

    row: ProcessInstance
    workflow: Workflow
    lock_version: int
    incident: Incident | None = None
    completed_by: dict[str, int | None] = field(default_factory=dict)  # task guid → user id
    created_tasks: list[HumanTask] = field(default_factory=list)  # projection rows added by this unit of work
    # co-signers (加签) cancelled with the rows this unit of work's saves closed: id, state it had (runtime.linked)
    closed_cosigners: list[tuple[int, str]] = field(default_factory=list)
    # the rows this unit of work's saves cancelled whose people are not told yet: steps the engine closed and co-signers
    # who had been asked to sign them (runtime.linked.tell, with the unit of work's audit event)
    untold: list[int] = field(default_factory=list)
    # The instance's open bpmn rows by guid, when the caller read them with the rest in this transaction
    # (a completion does): the projection then need not read them again. None: read them.
    open_rows: dict[str, HumanTask] | None = None
    # While save() builds its audit event: the settled workflow's READY user tasks and next timer, which save has
    # walked for the row and the projection anyway (waiting_summary takes them from here). None otherwise.
    settled: tuple[list[Task], datetime | None] | None = None
    # What a person submits in this unit of work (a task's form, a client's start data): a state over the limit that
    # would fit without it refuses the submission and writes nothing (engine/runtime/oversize.py). None otherwise.
    submitted: Mapping[str, Any] | None = None
    # The fields a person submits now and may correct (their form's and what they sent): a service that refuses one of
    # them (InvalidInput naming it) in this unit of work's engine steps refuses the submission and nothing is kept
    # (engine/runtime/refusal.py). None: nobody to send back to (a timer, a message, a held submission): an incident.
    refusable: frozenset[str] | None = None
    # The person's step this unit of work completes (tasks.completion.finish), None for any other unit of work.
    completing: Completing | None = None


def lock_instance(session: Session, instance_id: int) -> None:
    """Lock an instance's row (FOR UPDATE, PostgreSQL) before its unit of work reads it and touches its task rows.

    One order for every writer: the instance first, then its tasks (the timer sweep's take_due, a submission's first
    read, FOR KEY SHARE). The save's statement updates the instance and then the rows it closes; a submission's locks
    its task and then the instance, so the two, unlocked before, each waited for the other (a deadlock, ended after a
    second). Now this waits for a submission under way, or the submission's read waits for this unit of work.
    """
    if is_postgres(session):
        session.execute(select(ProcessInstance.id).where(ProcessInstance.id == instance_id).with_for_update())


__all__ = ["Completing", "Running", "lock_instance"]
