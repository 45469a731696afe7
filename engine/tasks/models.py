"""The human_task projection: what the inbox reads, so it never deserializes a workflow."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, ForeignKey, Index, Integer, String, Text, literal_column, text
from sqlalchemy.orm import InstrumentedAttribute, Mapped, mapped_column, relationship

from engine import clock
from engine.archive.mirror import mirror, table_of
from engine.orm import Base

OPEN_STATES = ("ready", "suspended")  # a step still to be done (uq_human_task_guid_open's states)


def is_open(state: InstrumentedAttribute[str] | ColumnElement[str]) -> ColumnElement[bool]:
    """`state IN ('ready', 'suspended')` with the states written into the SQL, not bound.

    PostgreSQL then proves uq_human_task_guid_open's predicate in every plan, a prepared statement's generic one
    included, and reads an instance's open rows from that index. With bound states it read them from
    ix_human_task_guid: every row the instance ever had, so a looping instance's steps cost more with each round.
    """
    return state.in_([literal_column(f"'{s}'") for s in OPEN_STATES])


def _filled(column: str) -> dict[str, Any]:
    """An index's options to hold only the rows whose `column` is filled: a column most rows leave empty and that
    is only looked up by a value (the lookup's `column = x` implies the predicate, so the planner uses it)."""
    where = text(f"{column} IS NOT NULL")
    return {"postgresql_where": where, "sqlite_where": where}


class HumanTask(Base):
    __tablename__ = "human_task"
    __table_args__ = (
        # One open row per SpiffWorkflow task; a step reopened by 退回 / 撤回 keeps its earlier rows (migration 0012).
        Index("uq_human_task_guid_open", "instance_id", "task_guid", unique=True,
              sqlite_where=text("state IN ('ready', 'suspended')"),
              postgresql_where=text("state IN ('ready', 'suspended')")),
        Index("ix_human_task_guid", "instance_id", "task_guid"),
        # 待办 pages on (due_at, id) per assignee (NULL = claimable): with id in the key the scan is
        # index-only and already in page order (migration 0005).
        Index("ix_human_task_assignee_open", "assignee_id", "state", "due_at", "id"),
        Index("ix_human_task_state_due", "state", "due_at"),
        # 已办, newest first; an open task (no finisher yet) takes no entry (migration 0029)
        Index("ix_human_task_done", "completed_by_id", "completed_at", "id", **_filled("completed_by_id")),
        Index("ix_human_task_parent_task_id", "parent_task_id", **_filled("parent_task_id")),  # a co-signer's parent
        # SQLite: never reuse an id, archived steps keep theirs (migration 0026)
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    # no index of its own: ix_human_task_guid (instance_id, task_guid) serves it (migration 0028)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"))
    task_guid: Mapped[str] = mapped_column(String(36))
    bpmn_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(300))
    process_key: Mapped[str] = mapped_column(String(120))
    lane: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20), default="ready")  # ready|completed|cancelled
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    form_schema: Mapped[str | None] = mapped_column(String(255))  # file name in the version
    form_ui_schema: Mapped[str | None] = mapped_column(String(255))
    priority: Mapped[int] = mapped_column(Integer, default=50)
    sla: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    due_at: Mapped[datetime | None] = mapped_column()
    warn_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    instructions: Mapped[str | None] = mapped_column(Text)
    # bpmn: backed by a SpiffWorkflow task; cosign: an ad-hoc co-signer task (加签) on parent_task_id
    kind: Mapped[str] = mapped_column(String(20), default="bpmn")
    parent_task_id: Mapped[int | None] = mapped_column(ForeignKey("human_task.id"))
    # cosign: before | after (加签 before or after the parent's holder); delegation: pending | resolved
    cosign_position: Mapped[str | None] = mapped_column(String(10))
    delegation_state: Mapped[str | None] = mapped_column(String(10))
    # A parent held back for co-signers after its holder: the holder's submission, applied when they are done.
    pending_data: Mapped[Any | None] = mapped_column(JSON)
    blocked: Mapped[bool] = mapped_column(default=False)  # waiting for co-signers (before or after)
    # The task's escalation profile (a `tasks:` key of data/escalation.yaml); None: its process's.
    escalation: Mapped[str | None] = mapped_column(String(120))
    # The unit the escalation ladder climbs from (property escalationUnit); None: the handler's first unit.
    escalation_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))
    # The name escalationUnit gave when it is no unit, as told (printable, cut): the unit head's rung passes up.
    escalation_unit_unknown: Mapped[str | None] = mapped_column(String(100))

    @property
    def escalation_policy(self) -> str:
        """Return the key the deadline sweep looks its policy up by."""
        return self.escalation or self.process_key

    candidates: Mapped[list[TaskCandidate]] = relationship(back_populates="task", cascade="all, delete-orphan",
                                                           foreign_keys="TaskCandidate.task_id")


class TaskCandidate(Base):
    """Who may claim a task: a user, or every member of an org unit or holder of a role."""

    __tablename__ = "task_candidate"
    __table_args__ = (
        # A candidate names one of user, unit or role: each index holds only the rows naming one (migration 0029).
        Index("ix_task_candidate_user_id", "user_id", **_filled("user_id")),
        Index("ix_task_candidate_org_unit_id", "org_unit_id", **_filled("org_unit_id")),
        Index("ix_task_candidate_role_id", "role_id", **_filled("role_id")),
        {"sqlite_autoincrement": True},  # archived candidates keep their ids (migration 0026)
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("human_task.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"))
    role_id: Mapped[int | None] = mapped_column(ForeignKey("role.id"))

    task: Mapped[HumanTask] = relationship(back_populates="candidates")


# Archived steps of long-ended instances (engine/archive): the same columns, ids kept, no foreign keys to users.
archived_tasks = mirror(table_of(HumanTask), "archive_human_task", {"instance_id": "process_instance.id"}, "instance_id")
archived_candidates = mirror(table_of(TaskCandidate), "archive_task_candidate", {"task_id": "archive_human_task.id"},
                             "task_id")
