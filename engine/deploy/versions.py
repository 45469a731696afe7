"""Process versions: who deployed what when and what runs on it, their files, a diff, and moving instances.

Versions never change once deployed. Migrating an instance to a newer version of its process is
an audited use case of its own: `preview` says for each task the instance is at whether it maps
onto the target, `migrate` moves the instances that can move and refuses the others with the
reason (engine/spiff/migration.py has the rules; docs/decisions/0005-instance-migration.md).
"""
from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import runtime
from engine.db import lock_in_order
from engine.deploy import bpmn_diff
from engine.errors import (
    Conflict,
    Forbidden,
    InstanceArchived,
    InstanceBusy,
    InstanceNotFound,
    InvalidInput,
    NotFound,
    ProcessNotFound,
)
from engine.org.actors import Actor
from engine.org.models import OWNER_ROLE, User
from engine.runtime.models import ProcessDefinition, ProcessFile, ProcessInstance, ProcessVersion
from engine.spiff import migration, serializer
from engine.tasks.models import HumanTask, is_open

READER_ROLES = (OWNER_ROLE, "auditor")
MIGRATABLE = ("running", "suspended")
# Instances one call moves: its transaction holds each one's row until it commits (a few seconds for this many).
MAX_MIGRATE = 200
LOCK_WAIT_SECONDS = 10.0  # for an instance other work holds (PostgreSQL), then: busy, try again


class MigrationRefused(Conflict):
    """The instance cannot be moved to the target version safely; nothing was changed."""

    code = "migration_refused"

    def __init__(self, instance_id: int, reasons: list[str]) -> None:
        super().__init__(f"流程实例 {instance_id} 不能迁移 (cannot migrate): " + "; ".join(reasons),
                         instance_id=instance_id, reasons=reasons)
        self.reasons = reasons


# --- who may ------------------------------------------------------------------------------------------

def may_deploy(session: Session, actor: Actor) -> bool:
    """Process owners (流程管理员) and admins deploy and migrate."""
    return actor.is_admin or actor.is_system or OWNER_ROLE in actor.role_codes


def may_read(session: Session, actor: Actor) -> bool:
    """Process owners, auditors and admins see every version, its files and diffs."""
    return actor.is_admin or actor.is_system or bool(actor.role_codes & set(READER_ROLES))


def require_deploy(session: Session, actor: Actor) -> None:
    """Refuse unless the actor is a process owner or an admin.

    Raises: Forbidden
    """
    if not may_deploy(session, actor):
        raise Forbidden("只有流程管理员可以部署和迁移 (process owners only)")


def require_read(session: Session, actor: Actor) -> None:
    """Refuse unless the actor may read process versions.

    Raises: Forbidden
    """
    if not may_read(session, actor):
        raise Forbidden("只有流程管理员和审计人员可以查看流程版本 (process owners and auditors only)")


# --- versions -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcessSummary:
    key: str
    name: str
    latest_version: int
    latest_version_id: int | None
    instances: dict[str, int]  # status → count over every version


@dataclass(frozen=True)
class VersionRow:
    id: int
    key: str
    version: int
    name: str
    deployed_at: datetime
    deployed_by: str | None  # display name; None: the system (CLI deploy)
    bundle_sha256: str
    files: list[str]
    instances: dict[str, int] = field(default_factory=dict)  # status → count

    @property
    def running(self) -> int:
        return sum(self.instances.get(s, 0) for s in ("running", "suspended", "incident"))


def processes(session: Session) -> list[ProcessSummary]:
    """Return every deployed process with its latest version and instance counts, by key."""
    counts: dict[int, dict[str, int]] = {}
    for definition_id, status, n in session.execute(
            select(ProcessInstance.definition_id, ProcessInstance.status, func.count())
            .group_by(ProcessInstance.definition_id, ProcessInstance.status)):
        counts.setdefault(definition_id, {})[status] = n
    latest = {definition_id: version_id for definition_id, version_id in session.execute(
        select(ProcessVersion.definition_id, ProcessVersion.id)
        .join(ProcessDefinition, ProcessDefinition.id == ProcessVersion.definition_id)
        .where(ProcessVersion.version == ProcessDefinition.latest_version))}
    return [ProcessSummary(d.key, d.name, d.latest_version, latest.get(d.id), counts.get(d.id, {}))
            for d in session.scalars(select(ProcessDefinition).order_by(ProcessDefinition.key))]


def _rows(session: Session, versions: Sequence[ProcessVersion], key: str) -> list[VersionRow]:
    ids = [v.id for v in versions]
    counts: dict[int, dict[str, int]] = {}
    for version_id, status, n in session.execute(
            select(ProcessInstance.version_id, ProcessInstance.status, func.count())
            .where(ProcessInstance.version_id.in_(ids or [-1]))
            .group_by(ProcessInstance.version_id, ProcessInstance.status)):
        counts.setdefault(version_id, {})[status] = n
    files: dict[int, list[str]] = {}
    for version_id, name in session.execute(select(ProcessFile.version_id, ProcessFile.name)
                                            .where(ProcessFile.version_id.in_(ids or [-1]))
                                            .order_by(ProcessFile.name)):
        files.setdefault(version_id, []).append(name)
    people = {uid: display or username for uid, username, display in session.execute(
        select(User.id, User.username, User.display_name).where(
            User.id.in_([v.deployed_by_id for v in versions if v.deployed_by_id] or [-1])))}
    return [VersionRow(id=v.id, key=key, version=v.version, name=v.name, deployed_at=v.deployed_at,
                       deployed_by=people.get(v.deployed_by_id) if v.deployed_by_id else None,
                       bundle_sha256=v.bundle_sha256, files=files.get(v.id, []), instances=counts.get(v.id, {}))
            for v in versions]


def migratable_on(session: Session, version_id: int, *, limit: int) -> list[ProcessInstance]:
    """Return the running or suspended instances on a version, oldest first, at most `limit`."""
    return list(session.scalars(select(ProcessInstance).where(ProcessInstance.version_id == version_id,
                                                              ProcessInstance.status.in_(MIGRATABLE))
                                .order_by(ProcessInstance.id).limit(limit)))


def versions(session: Session, process_key: str) -> list[VersionRow]:
    """Return a process's versions, newest first, each with its files and instance counts.

    Raises: ProcessNotFound
    """
    definition = session.scalar(select(ProcessDefinition).where(ProcessDefinition.key == process_key))
    if definition is None:
        raise ProcessNotFound(f"流程不存在 (no such process): {process_key}", process_key=process_key)
    rows = session.scalars(select(ProcessVersion).where(ProcessVersion.definition_id == definition.id)
                           .order_by(ProcessVersion.version.desc())).all()
    return _rows(session, rows, definition.key)


def version(session: Session, version_id: int) -> VersionRow:
    """Return one version.

    Raises: NotFound
    """
    row = session.get(ProcessVersion, version_id)
    if row is None:
        raise NotFound(f"流程版本不存在 (no such version): {version_id}", version_id=version_id)
    return _rows(session, [row], row.definition.key)[0]


def files(session: Session, version_id: int) -> dict[str, str]:
    """Return a version's files (BPMN, DMN, forms) by name.

    Raises: NotFound
    """
    version(session, version_id)
    return {name: text for name, text in session.execute(
        select(ProcessFile.name, ProcessFile.text).where(ProcessFile.version_id == version_id).order_by(ProcessFile.name))}


def file_kinds(session: Session, version_id: int) -> dict[str, str]:
    """Return each file's kind (bpmn | dmn | form) by name."""
    return {name: kind for name, kind in session.execute(
        select(ProcessFile.name, ProcessFile.kind).where(ProcessFile.version_id == version_id))}


def zip_of(session: Session, version_id: int) -> bytes:
    """Return a version's files as a zip that `jzflow deploy` takes back (forms under forms/).

    Raises: NotFound
    """
    kinds = file_kinds(session, version_id)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files(session, version_id).items():
            archive.writestr(f"forms/{name}" if kinds.get(name) == "form" else name, text)
    return buffer.getvalue()


def main_bpmn(session: Session, version_id: int) -> tuple[str, str] | None:
    """Return (name, text) of the BPMN file that holds the version's process."""
    row = version(session, version_id)
    texts = files(session, version_id)
    kinds = file_kinds(session, version_id)
    candidates = [n for n in texts if kinds.get(n) == "bpmn"]
    chosen = next((n for n in candidates if f'id="{row.key}"' in texts[n]), candidates[0] if candidates else None)
    return (chosen, texts[chosen]) if chosen else None


# --- diff ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VersionDiff:
    old: VersionRow
    new: VersionRow
    elements: list[bpmn_diff.ElementChange]  # BPMN and DMN elements, by file
    files: list[bpmn_diff.FileChange]


def diff(session: Session, old_version_id: int, new_version_id: int) -> VersionDiff:
    """Compare two versions of one process element by element (and file by file).

    Raises: NotFound, Conflict (versions of different processes)
    """
    old, new = version(session, old_version_id), version(session, new_version_id)
    if old.key != new.key:
        raise Conflict("只能比较同一流程的版本 (compare versions of one process)", old=old.key, new=new.key)
    old_files, new_files = files(session, old.id), files(session, new.id)
    kinds = {**file_kinds(session, old.id), **file_kinds(session, new.id)}
    elements: list[bpmn_diff.ElementChange] = []
    for name in sorted(set(old_files) | set(new_files)):
        if kinds.get(name) in ("bpmn", "dmn") and old_files.get(name) != new_files.get(name):
            elements.extend(bpmn_diff.diff_xml(name, old_files.get(name), new_files.get(name)))
    return VersionDiff(old=old, new=new, elements=elements, files=bpmn_diff.diff_files(old_files, new_files))


# --- migration ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Preview:
    instance_id: int
    title: str
    status: str
    from_version: int
    to_version: int
    tasks: list[migration.LiveTask]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class Report:
    migrated: list[int] = field(default_factory=list)
    refused: dict[int, list[str]] = field(default_factory=dict)


def _target(session: Session, target_version_id: int) -> ProcessVersion:
    target = session.get(ProcessVersion, target_version_id)
    if target is None:
        raise NotFound(f"流程版本不存在 (no such version): {target_version_id}", version_id=target_version_id)
    return target


def _preview(session: Session, running: runtime.Running, target: ProcessVersion) -> tuple[Preview, migration.Check]:
    row = running.row
    current = session.get(ProcessVersion, row.version_id)
    assert current is not None
    label = f"version {target.version}"
    problems: list[str] = []
    if target.definition_id != row.definition_id:
        problems.append(f"{label} belongs to another process ({target.definition.key})")
    elif target.id == current.id:
        problems.append(f"the instance already runs on {label}")
    elif target.version < current.version:
        problems.append(f"{label} is older than the instance's version {current.version}")
    if row.status not in MIGRATABLE:
        problems.append(f"the instance is {row.status}: only running or suspended instances are migrated")
    result = migration.check(running.workflow, runtime.specs_for(session, target.id), label) \
        if target.definition_id == row.definition_id else migration.Check(live=[], problems=[])
    preview = Preview(instance_id=row.id, title=row.title, status=row.status, from_version=current.version,
                      to_version=target.version, tasks=result.live, problems=problems + result.problems)
    return preview, result


def preview(session: Session, instance_id: int, target_version_id: int) -> Preview:
    """Tell for each task the instance is at whether it maps onto the target version, and what forbids the move.

    Raises: InstanceNotFound, NotFound
    """
    running = runtime.load(session, instance_id, read_only=True)  # a look (migration.check only reads the tree)
    preview_, _check = _preview(session, running, _target(session, target_version_id))
    return preview_


def migrate(session: Session, instance_ids: Sequence[int], target_version_id: int, actor: Actor) -> Report:
    """Move each instance that can move safely to the target version; report the others with reasons (flushes).

    At most MAX_MIGRATE instances a call, refused before anything is read. The instances' rows are locked first,
    in id order: the same migration sent twice at once moves each instance once — the second waits, then finds
    them on the target already and says so — and two migrations of overlapping sets never deadlock. One held by
    other work for longer than LOCK_WAIT_SECONDS is named busy and nothing is moved (the page does not hang).

    Raises: Forbidden, NotFound, InvalidInput (too many instances), InstanceBusy, MigrationRefused (a moved state
    that would not load back)
    """
    require_deploy(session, actor)
    wanted = list(dict.fromkeys(instance_ids))
    if len(wanted) > MAX_MIGRATE:
        raise InvalidInput(f"一次最多迁移 {MAX_MIGRATE} 个实例，本次选择了 {len(wanted)} 个，请分批迁移 (at most "
                           f"{MAX_MIGRATE} instances at a time, {len(wanted)} chosen: migrate them in batches)",
                           field="instance", limit=MAX_MIGRATE, chosen=len(wanted))
    target = _target(session, target_version_id)
    busy = lock_in_order(session, ProcessInstance.id, wanted, wait_seconds=LOCK_WAIT_SECONDS)
    if busy:
        raise InstanceBusy(busy[0])
    report = Report()
    for instance_id in wanted:
        try:
            running = runtime.load(session, instance_id)
        except InstanceNotFound:
            report.refused[instance_id] = [f"instance {instance_id} does not exist"]
            continue
        except InstanceArchived as exc:
            report.refused[instance_id] = [exc.message]
            continue
        found, _result = _preview(session, running, target)
        if not found.ok:
            report.refused[instance_id] = found.problems
            continue
        _move(session, running, target, found, actor)
        report.migrated.append(instance_id)
    return report


def migrate_one(session: Session, instance_id: int, target_version_id: int, actor: Actor) -> Preview:
    """Move one instance to the target version (flushes).

    The instance's row is locked in the load's one read (`lock`, PostgreSQL), before the move rewrites its open task
    rows, as the timer sweep, 终止, a delivery and a submission's first read take it: whichever comes second waits.
    Unlocked, the save's UPDATE came first and the task rows after it, while a submission locks its task's row and
    then updates the instance — each waited for the other until PostgreSQL ended one as a deadlock. What is checked
    is the instance as it is under the lock, not as a preview saw it: one that moved since is moved from where it is
    now, or refused naming why. One held by other work for longer than LOCK_WAIT_SECONDS is named busy and nothing is
    moved, as by `migrate` (the caller does not hang behind a long job).

    Raises: Forbidden, NotFound, InstanceNotFound, InstanceArchived, InstanceBusy, MigrationRefused,
    ConcurrentModification
    """
    require_deploy(session, actor)
    target = _target(session, target_version_id)
    if lock_in_order(session, ProcessInstance.id, [instance_id], wait_seconds=LOCK_WAIT_SECONDS):
        raise InstanceBusy(instance_id)
    running = runtime.load(session, instance_id, lock=True)
    found, _result = _preview(session, running, target)
    if not found.ok:
        raise MigrationRefused(instance_id, found.problems)
    _move(session, running, target, found, actor)
    return found


def _move(session: Session, running: runtime.Running, target: ProcessVersion, found: Preview, actor: Actor) -> None:
    specs = runtime.specs_for(session, target.id)
    migration.apply(running.workflow, specs)
    # Round trip through the target's specs: what is saved must load again exactly.
    state = serializer.dump_state(running.workflow)
    running.workflow = serializer.load_state(state, specs, runtime.script_engine())
    if serializer.dump_state(running.workflow) != state:  # never seen; refuse rather than store a state that drifts
        raise MigrationRefused(running.row.id, [f"the moved state does not load back unchanged on version "
                                                f"{target.version}"])
    before = {"version": found.from_version, "version_id": running.row.version_id}
    running.row.version_id = target.id
    runtime.save(session, running)
    _refresh_open_tasks(session, running)
    runtime.record(session, running, actor, "instance.migrate", before=before,
                   after={"version": target.version, "version_id": target.id,
                          "tasks": [{"bpmn_id": t.bpmn_id, "state": t.state} for t in found.tasks]})


def _refresh_open_tasks(session: Session, running: runtime.Running) -> None:
    """Open tasks keep their holder and deadline; their form, instructions and name follow the new version."""
    for human in session.scalars(select(HumanTask).where(HumanTask.instance_id == running.row.id,
                                                         HumanTask.kind == "bpmn",
                                                         is_open(HumanTask.state))):
        task = runtime.find_task(running.workflow, human.task_guid)
        if task is None:
            continue
        props: dict[str, str] = dict(task.task_spec.extensions.get("properties", {}) or {})
        human.form_schema = props.get("formJsonSchemaFilename")
        human.form_ui_schema = props.get("formUiSchemaFilename")
        human.instructions = task.task_spec.extensions.get("instructionsForEndUser")
        human.sla = props.get("sla")
        human.lane = task.task_spec.lane
    session.flush()


__all__ = ["MAX_MIGRATE", "MigrationRefused", "Preview", "ProcessSummary", "Report", "VersionDiff", "VersionRow", "diff",
           "files", "main_bpmn", "may_deploy", "may_read", "migrate", "migrate_one", "preview", "processes",
           "require_deploy", "require_read", "version", "versions", "zip_of"]
