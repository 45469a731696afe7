"""Deployed process definitions and versions, and running instances."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, cast, literal, select, text
from sqlalchemy.orm import Mapped, aliased, mapped_column, relationship

from engine import clock
from engine.archive.mirror import mirror, table_of
from engine.orm import Base

_HAS_ROOT = text("start_root_id IS NOT NULL")


class ProcessDefinition(Base):
    __tablename__ = "process_definition"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)  # the BPMN process id
    name: Mapped[str] = mapped_column(String(200))
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class ProcessVersion(Base):
    """One deployed version: its files and the serialized spec, stored once."""

    __tablename__ = "process_version"
    __table_args__ = (UniqueConstraint("definition_id", "version", name="uq_process_version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("process_definition.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    # sha256 over the names and hashes of every file in the bundle: unchanged files → no new version.
    bundle_sha256: Mapped[str] = mapped_column(String(64), index=True)
    spec_json: Mapped[str] = mapped_column(Text)  # serialized spec + subprocess specs
    lane_map_json: Mapped[str] = mapped_column(Text, default="{}")  # lane name → candidate groups
    deployed_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    deployed_at: Mapped[datetime] = mapped_column(default=clock.now)

    definition: Mapped[ProcessDefinition] = relationship()
    files: Mapped[list[ProcessFile]] = relationship(back_populates="version", order_by="ProcessFile.name")


class ProcessFile(Base):
    """A BPMN, DMN or form file of a version, verbatim, with its sha256."""

    __tablename__ = "process_file"
    __table_args__ = (UniqueConstraint("version_id", "name", name="uq_process_file"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("process_version.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(20))  # bpmn | dmn | form
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))

    version: Mapped[ProcessVersion] = relationship(back_populates="files")


class ProcessInstance(Base):
    """A running or ended workflow; `state` is the serialized workflow without its spec."""

    __tablename__ = "process_instance"
    __table_args__ = (
        Index("ix_process_instance_due_timer", "status", "next_timer_at"),
        Index("ix_process_instance_business_key", "definition_id", "business_key"),
        Index("ix_process_instance_ended", "status", "ended_at"),  # the archiver's scan (migration 0025)
        Index("ix_process_instance_start_root", "start_root_id", "status", postgresql_where=_HAS_ROOT,
              sqlite_where=_HAS_ROOT),  # a lineage's open instances (migration 0037)
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("process_definition.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("process_version.id"), index=True)
    business_key: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(String(300), default="")
    # running | suspended | incident | completed | terminated
    status: Mapped[str] = mapped_column(String(20), default="running")
    state: Mapped[str] = mapped_column(Text)  # TEXT, never JSONB: key order matters to SpiffWorkflow 3.2.0
    serializer_version: Mapped[str] = mapped_column(String(20))
    lock_version: Mapped[int] = mapped_column(Integer, default=0)
    next_timer_at: Mapped[datetime | None] = mapped_column()
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now)
    ended_at: Mapped[datetime | None] = mapped_column()
    # Set when the archiver moved the heavy parts (state, steps, history) to the archive tables: read-only since.
    archived_at: Mapped[datetime | None] = mapped_column()
    # 0, or how many instances in a row started each other through thrown messages and signals to start this one
    start_hops: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The instance at the head of the line of instances that started this one from inside their engine runs (a service
    # task: start_process), or NULL for one started from outside: how many of a lineage are open is bounded.
    start_root_id: Mapped[int | None] = mapped_column(Integer)

    version: Mapped[ProcessVersion] = relationship()
    definition: Mapped[ProcessDefinition] = relationship()


INSTANCE_STREAM = literal("instance:") + cast(ProcessInstance.id, String)  # an instance's audit stream, in SQL
# A read that locks the instance's row and had to wait for it gets the row as committed, but its other rows from its
# snapshot: this column tells it so (the row's lock_version against the snapshot's), and it reads again, the lock held.
_SNAPSHOT = aliased(ProcessInstance, name="snapshot")
INSTANCE_MOVED = (ProcessInstance.lock_version != select(_SNAPSHOT.lock_version)
                  .where(_SNAPSHOT.id == ProcessInstance.id).scalar_subquery()).label("moved")


class Incident(Base):
    """An engine error (script, expression, budget) that stopped an instance until someone acts."""

    __tablename__ = "incident"
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), index=True)
    bpmn_id: Mapped[str | None] = mapped_column(String(200))
    # script_error | budget_exceeded | engine_error | expression_error | timer_error | state_too_large |
    # out_of_memory | tree_too_deep | too_many_instances | run_too_long | message_too_large | too_many_messages |
    # too_many_starts
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    resolved_at: Mapped[datetime | None] = mapped_column()


class ProcessStateHistory(Base):
    """Finished earlier rounds of an instance's task tree, compacted out of its live state (serialised tasks)."""

    __tablename__ = "process_state_history"
    __table_args__ = ({"sqlite_autoincrement": True},)  # archived rounds keep their ids (migration 0026)
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), index=True)
    lock_version: Mapped[int] = mapped_column(Integer)  # the save that compacted them
    serializer_version: Mapped[str] = mapped_column(String(20))
    tasks: Mapped[str] = mapped_column(Text)  # TEXT, as the state: {"root", "new_root", "tasks", "subprocesses"}
    created_at: Mapped[datetime] = mapped_column(default=clock.now)


class ArchivedState(Base):
    """An archived instance's serialized workflow (process_instance.state is emptied when it moves here)."""

    __tablename__ = "archive_instance_state"
    instance_id: Mapped[int] = mapped_column(ForeignKey("process_instance.id"), primary_key=True,
                                             autoincrement=False)
    state: Mapped[str] = mapped_column(Text)
    serializer_version: Mapped[str] = mapped_column(String(20))
    archived_at: Mapped[datetime] = mapped_column(default=clock.now)


# Archived history rounds of long-ended instances (engine/archive): the same columns, ids kept.
archived_history = mirror(table_of(ProcessStateHistory), "archive_process_state_history",
                          {"instance_id": "process_instance.id"}, "instance_id")
