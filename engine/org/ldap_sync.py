"""Directory sync (目录同步): bring units, people, unit heads and leaders in line with the city's LDAP directory.

One call, one transaction: the caller commits (or, for a dry run, rolls back — the report is the same either
way, because a dry run does every step). Syncs are serialised (a PostgreSQL advisory lock; SQLite's writer
lock, every transaction beginning IMMEDIATE) and read the database only once they hold it, so a second sync
running at the same time finds the first one's work done and changes nothing twice.

Only what the directory manages is touched: units and users with `source = "ldap"` (a unit or user already
here with the same code or username is adopted on the first sync — except administrators and the accounts kept
for password login, JZFLOW_OIDC_LOCAL_LOGINS, which the directory never takes over). A person who is no longer
in the directory is deactivated, their open tasks go back to their unit's candidates (audited), and their
leader (their manager, else the unit's head, else its responsible leader) is told. Reactivation is left to an
administrator. Safety brake: a sync that would deactivate more than JZFLOW_LDAP_MAX_DEACTIVATE_FRACTION of the
directory's active users (a wrong base DN, a half-empty directory) stops before changing anything and says so.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from engine import audit, notify
from engine.db import is_postgres
from engine.errors import EngineError
from engine.org import core, leaving
from engine.org.actors import SYSTEM, Actor
from engine.org.ldap_read import PersonEntry, Settings, Snapshot, UnitEntry
from engine.org.models import Membership, OrgUnit, User
from engine.tasks.models import OPEN_STATES, HumanTask, TaskCandidate

SOURCE = "ldap"
LOCK_KEY = 0x6A7A_6469_7273  # "jzdirs": the advisory lock every directory sync takes


@dataclass
class Report:
    """What a sync changed (or, dry run, would change)."""

    dry_run: bool = False
    units_added: list[str] = field(default_factory=list)
    units_updated: list[str] = field(default_factory=list)
    units_gone: list[str] = field(default_factory=list)  # no longer in the directory: kept, no longer the directory's
    units_headless: list[str] = field(default_factory=list)  # their head moved out and the directory names no other
    users_added: list[str] = field(default_factory=list)
    users_updated: list[str] = field(default_factory=list)
    users_moved: list[str] = field(default_factory=list)
    users_deactivated: list[str] = field(default_factory=list)
    tasks_returned: int = 0
    skipped: list[str] = field(default_factory=list)
    stopped: str | None = None

    @property
    def changes(self) -> int:
        return sum(len(x) for x in (self.units_added, self.units_updated, self.units_gone, self.units_headless,
                                    self.users_added,
                                    self.users_updated, self.users_moved, self.users_deactivated))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changes": self.changes}

    def lines(self) -> list[str]:
        """Return the report as text, one line per change."""
        head = "目录同步（演练，未保存）" if self.dry_run else "目录同步"
        out = [f"{head} (directory sync{' dry run' if self.dry_run else ''}): "
               f"新增单位 {len(self.units_added)}, 更新单位 {len(self.units_updated)}, 新增人员 {len(self.users_added)}, "
               f"更新人员 {len(self.users_updated)}, 调动 {len(self.users_moved)}, 停用 {len(self.users_deactivated)}, "
               f"退回待办 {self.tasks_returned}, 跳过 {len(self.skipped)}"]
        for label, items in (("+ 单位 (unit added)", self.units_added), ("~ 单位 (unit updated)", self.units_updated),
                             ("! 单位已不在目录中 (unit gone from the directory)", self.units_gone),
                             ("! 单位无负责人 (unit without a head)", self.units_headless),
                             ("+ 人员 (added)", self.users_added), ("~ 人员 (updated)", self.users_updated),
                             ("> 调动 (moved)", self.users_moved), ("- 停用 (deactivated)", self.users_deactivated),
                             ("! 跳过 (skipped)", self.skipped)):
            out += [f"  {label}: {item}" for item in items]
        if self.stopped:
            out.append(f"已停止 (stopped): {self.stopped}")
        return out


class SyncStopped(EngineError):
    """The safety brake: the sync would deactivate too many people; nothing was changed."""

    code = "directory_sync_stopped"
    http_status = 409

    def __init__(self, message: str, report: Report) -> None:
        super().__init__(message)
        self.report = report


def _lock(session: Session) -> None:
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    # SQLite: the session's transaction began IMMEDIATE (engine/db.py), so it already holds the writer lock.


def _local_logins() -> tuple[str, ...]:
    value = os.environ.get("JZFLOW_OIDC_LOCAL_LOGINS", "admin")
    return tuple(v.strip() for v in value.replace(";", ",").split(",") if v.strip())


def sync(session: Session, settings: Settings, snap: Snapshot, *, dry_run: bool = False,
         actor: Actor = SYSTEM) -> Report:
    """Apply the directory snapshot (flushes; the caller commits, or rolls back for a dry run).

    Raises: SyncStopped (the safety brake)
    """
    _lock(session)
    report = Report(dry_run=dry_run, skipped=list(snap.skipped))
    users = list(session.scalars(select(User)))
    by_dn = {u.external_id: u for u in users if u.source == SOURCE and u.external_id}
    by_name = {u.username.lower(): u for u in users}
    names = {p.username.lower() for p in snap.people.values()}
    # A person is matched by username (a move changes their DN), else by DN (a renamed uid at the same entry).
    leavers = [u for u in users if u.source == SOURCE and u.is_active and u.username.lower() not in names
               and u.external_id not in snap.people]
    active = sum(1 for u in users if u.source == SOURCE and u.is_active)
    if leavers and len(leavers) > settings.max_deactivate_fraction * active:
        report.users_deactivated = sorted(u.username for u in leavers)
        report.stopped = (f"将停用 {len(leavers)}/{active} 名目录用户，超过上限 {settings.max_deactivate_fraction:.0%}，"
                          f"同步已停止，未作任何更改 (would deactivate {len(leavers)} of {active} directory users, more "
                          f"than JZFLOW_LDAP_MAX_DEACTIVATE_FRACTION={settings.max_deactivate_fraction}: stopped, "
                          "nothing changed)")
        raise SyncStopped(report.stopped, report)
    units = _sync_units(session, snap, report, actor)
    headless: list[tuple[OrgUnit, User]] = []
    people = _sync_people(session, snap, units, by_dn, by_name, report, actor, headless)
    _sync_leaders(session, snap, units, people, report, actor)
    _units_headless(session, headless, report)
    _units_gone(session, snap, report, actor)
    for user in sorted(leavers, key=lambda u: u.username):
        _leave(session, user, report, actor)
    if report.changes:
        audit.record(session, actor, "org.directory.sync", stream="directory", object_type="directory",
                     object_id="ldap", after={k: v for k, v in report.to_dict().items() if k != "skipped"})
    session.flush()
    return report


def _sync_units(session: Session, snap: Snapshot, report: Report, actor: Actor) -> dict[str, OrgUnit]:
    existing = list(session.scalars(select(OrgUnit)))
    by_dn = {u.external_id: u for u in existing if u.source == SOURCE and u.external_id}
    by_code = {u.code: u for u in existing}
    by_name = {u.name: u for u in existing}
    done: dict[str, OrgUnit] = {}
    for entry in snap.units.values():  # parents before children (ldap_read.build sorts by depth)
        unit = by_dn.get(entry.dn) or by_code.get(entry.code)
        if unit is not None and unit.source == SOURCE and unit.external_id not in (None, entry.dn):
            report.skipped.append(f"{entry.dn}: 单位代码 {entry.code} 已属于目录中另一单位 (code taken)")
            continue
        holder = by_name.get(entry.name)
        if holder is not None and holder is not unit:
            report.skipped.append(f"{entry.dn}: 单位名称“{entry.name}”已被其他单位使用 (name taken)")
            continue
        parent_id = done[entry.parent_dn].id if entry.parent_dn in done else None
        if unit is None:
            unit = core.add_unit(session, code=entry.code, name=entry.name, actor=actor)
            unit.parent_id, unit.source, unit.external_id = parent_id, SOURCE, entry.dn
            report.units_added.append(f"{entry.code} {entry.name}")
        else:
            before = {"code": unit.code, "name": unit.name, "parent_id": unit.parent_id}
            if unit.name != entry.name:
                by_name.pop(unit.name, None)
            unit.code, unit.name, unit.parent_id = entry.code, entry.name, parent_id
            unit.source, unit.external_id = SOURCE, entry.dn
            after = {"code": unit.code, "name": unit.name, "parent_id": unit.parent_id}
            if after != before:
                audit.record(session, actor, "org.unit.directory_update", stream=f"org_unit:{unit.id}",
                             object_type="org_unit", object_id=unit.id, before=before, after=after)
                report.units_updated.append(f"{entry.code} {entry.name}")
        by_code[unit.code], by_name[unit.name], done[entry.dn] = unit, unit, unit
        session.flush()
    return done


def _sync_people(session: Session, snap: Snapshot, units: dict[str, OrgUnit], by_dn: dict[str, User],
                 by_name: dict[str, User], report: Report, actor: Actor,
                 headless: list[tuple[OrgUnit, User]]) -> dict[str, User]:
    kept_local = {name.lower() for name in _local_logins()}  # in any case, as SSO and password logins name them
    names = {p.username.lower() for p in snap.people.values()}
    plain: dict[int, set[int]] = {}  # each user's unit memberships, read once (not a query per person)
    for user_id, unit_id in session.execute(select(Membership.user_id, Membership.org_unit_id).where(
            Membership.org_unit_id.is_not(None), Membership.role_id.is_(None))):
        if unit_id is not None:
            plain.setdefault(user_id, set()).add(unit_id)
    done: dict[str, User] = {}
    codes = {u.id: u.code for u in units.values()}
    for entry in snap.people.values():
        user = by_name.get(entry.username.lower())
        if user is None and (renamed := by_dn.get(entry.dn)) is not None and renamed.username.lower() not in names:
            user = renamed
        if user is not None and user.source != SOURCE and (user.is_admin or user.username.lower() in kept_local):
            report.skipped.append(f"{entry.dn}: 本地账号 {user.username} 不由目录管理 (local account kept)")
            continue
        unit = units.get(entry.unit_dn)
        if user is None:
            user = core.add_user(session, username=entry.username, display_name=entry.display_name,
                                 email=entry.email, unit_codes=[unit.code] if unit else [], actor=actor)
            user.source, user.external_id = SOURCE, entry.dn
            report.users_added.append(f"{entry.username} {entry.display_name}" + (f" ({unit.code})" if unit else ""))
        else:
            _update_person(session, user, entry, unit, codes, plain.get(user.id, set()), report, actor, headless)
        done[entry.dn] = user
        session.flush()
    return done


def _update_person(session: Session, user: User, entry: PersonEntry, unit: OrgUnit | None, codes: dict[int, str],
                   have: set[int], report: Report, actor: Actor, headless: list[tuple[OrgUnit, User]]) -> None:
    before = {"display_name": user.display_name, "email": user.email, "username": user.username}
    user.display_name, user.email, user.username = entry.display_name, entry.email, entry.username
    user.source, user.external_id = SOURCE, entry.dn
    after = {"display_name": user.display_name, "email": user.email, "username": user.username}
    if after != before:
        audit.record(session, actor, "org.user.directory_update", stream=f"user:{user.id}", object_type="app_user",
                     object_id=user.id, before=before, after=after)
        report.users_updated.append(f"{user.username} {user.display_name}")
    wanted = {unit.id} if unit is not None else set()
    if have != wanted:
        session.execute(delete(Membership).where(Membership.user_id == user.id, Membership.role_id.is_(None),
                                                 Membership.org_unit_id.in_(have - wanted or {-1})))
        for unit_id in wanted - have:
            session.add(Membership(user_id=user.id, org_unit_id=unit_id))
        session.flush()  # 调岗: what they held as a member of a unit they left goes back to it
        # the head mark of a unit gone from the directory stays (_units_gone): someone still sees the work left there
        moving = leaving.move(session, user=user, left=have - wanted, actor=actor, reason="directory: moved",
                              tell=False, heads=set(codes))
        returned, items = moving.tasks, moving.items
        for left in moving.headless:  # reported (and its responsible leader told) once the directory's heads are read
            headless.append((left, user))
        report.tasks_returned += len(returned)
        old = ",".join(sorted(codes.get(i, str(i)) for i in have)) or "-"
        new = unit.code if unit is not None else "-"
        audit.record(session, actor, "org.user.move", stream=f"user:{user.id}", object_type="app_user",
                     object_id=user.id, before={"units": sorted(have)}, after={"units": sorted(wanted)})
        report.users_moved.append(f"{user.username}: {old} → {new}"
                                  + (f": {len(returned)} 项待办退回原单位 (tasks returned)" if returned else "")
                                  + (f"; {len(items)} 项问题/线索交回原单位 (items handed back)" if items else ""))


def _sync_leaders(session: Session, snap: Snapshot, units: dict[str, OrgUnit], people: dict[str, User],
                  report: Report, actor: Actor) -> None:
    for entry in snap.people.values():  # the leader chain: each person's manager
        user = people.get(entry.dn)
        if user is None:
            continue
        manager = people.get(entry.manager_dn)
        manager_id = manager.id if manager is not None and manager.id != user.id else None
        if user.manager_id != manager_id:
            audit.record(session, actor, "org.user.manager", stream=f"user:{user.id}", object_type="app_user",
                         object_id=user.id, before={"manager_id": user.manager_id}, after={"manager_id": manager_id})
            if f"{user.username} {user.display_name}" not in report.users_updated:
                report.users_updated.append(f"{user.username} {user.display_name}")
            user.manager_id = manager_id
    for uentry in snap.units.values():  # heads (负责人) and, above them, the responsible leader (责任领导)
        unit = units.get(uentry.dn)
        if unit is None:
            continue
        _sync_head(session, uentry, unit, people, report, actor)
    session.flush()


def _sync_head(session: Session, entry: UnitEntry, unit: OrgUnit, people: dict[str, User], report: Report,
               actor: Actor) -> None:
    head = people.get(entry.head_dn)
    leader_id = head.id if head is not None else None
    responsible_id = head.manager_id if head is not None else None
    if (unit.leader_id, unit.responsible_leader_id) == (leader_id, responsible_id):
        return
    before = {"leader_id": unit.leader_id, "responsible_leader_id": unit.responsible_leader_id}
    # The old head stays a member (if the directory still has them here); only the head mark moves.
    session.execute(update(Membership).where(Membership.org_unit_id == unit.id, Membership.is_head.is_(True),
                                             Membership.role_id.is_(None)).values(is_head=False))
    if head is not None:  # marked where they are a member; a head from outside the unit leads it without joining it
        session.execute(update(Membership).where(Membership.org_unit_id == unit.id, Membership.user_id == head.id,
                                                 Membership.role_id.is_(None)).values(is_head=True))
    unit.leader_id, unit.responsible_leader_id = leader_id, responsible_id
    audit.record(session, actor, "org.unit.head", stream=f"org_unit:{unit.id}", object_type="org_unit",
                 object_id=unit.id, before=before, after={"leader_id": leader_id, "responsible_leader_id": responsible_id})
    label = f"{unit.code} {unit.name}"
    if label not in report.units_updated and label not in [a for a in report.units_added]:
        report.units_updated.append(label)


def _units_headless(session: Session, headless: list[tuple[OrgUnit, User]], report: Report) -> None:
    """A unit whose head moved out in this sync (leaving.move took the mark off, audited) and to which the directory
    names no head: reported as `units_gone` are, once (the next sync finds no mark to take), and its responsible
    leader, if the directory left it one, told. A head the directory still names, them or another, is its head."""
    for unit, user in headless:
        if unit.leader_id is not None:
            continue
        report.units_headless.append(f"{unit.code} {unit.name}: 负责人 {user.username} 已调离，该单位暂无负责人 "
                                     "(head moved out: no head until the directory names one)")
        leaving.tell_headless(session, unit, user)


def _units_gone(session: Session, snap: Snapshot, report: Report, actor: Actor) -> None:
    """A unit the directory no longer has (merged, or its ou renamed) is kept with its work, no longer the directory's.

    Nobody is a member of it after the sync, so the steps still offered to it could be claimed by nobody: the report
    names it with how many, once (the unit leaves the directory's care, audited), and its head, else its responsible
    leader, is told to have them moved. Its marks stay: the directory does not say who takes its work over.
    """
    seen = set(snap.units)
    for unit in session.scalars(select(OrgUnit).where(OrgUnit.source == SOURCE).order_by(OrgUnit.id)):
        if unit.external_id in seen:
            continue
        before = {"source": unit.source, "external_id": unit.external_id}
        unit.source = None
        offered = session.scalar(select(func.count(func.distinct(HumanTask.id))).join(
            TaskCandidate, TaskCandidate.task_id == HumanTask.id).where(
            TaskCandidate.org_unit_id == unit.id, HumanTask.state.in_(OPEN_STATES), HumanTask.assignee_id.is_(None))) or 0
        audit.record(session, actor, "org.unit.directory_update", stream=f"org_unit:{unit.id}", object_type="org_unit",
                     object_id=unit.id, before=before, after={"source": None, "external_id": unit.external_id,
                                                              "open_tasks": offered})
        report.units_gone.append(f"{unit.code} {unit.name}" + (f": {offered} 项待办仍在该单位，无人可认领 (open tasks "
                                                               "still offered to it)" if offered else ""))
        told = next((u for u in (session.get(User, i) for i in (unit.leader_id, unit.responsible_leader_id)
                                 if i is not None) if u is not None and u.is_active), None)
        if offered and told is not None:
            notify.send(session, notify.worded(
                told.id, "directory", "unit_gone", {"unit": unit.name, "count": offered, "code": unit.code},
                link="/inbox", key=f"directory-unit-gone:{unit.id}"))


def _leave(session: Session, user: User, report: Report, actor: Actor) -> None:
    unit = leaving.first_unit(session, user.id)
    leader_id = user.manager_id
    if leader_id is None and unit is not None:
        leader_id = unit.leader_id if unit.leader_id != user.id else unit.responsible_leader_id
    # The same service as 管理 → 停用: deactivated, their open tasks back to their unit's candidates (audited).
    done = leaving.deactivate_user(session, user_id=user.id, actor=actor, reason="directory: left", refuse_stuck=False)
    returned = done.handed_over
    report.tasks_returned += len(returned)
    left = "、".join(i.label.split()[0] for i in done.items_stuck)
    led = [i for i in done.items if i.duty == "leader"]
    handled = len(done.items) - len(led)
    report.users_deactivated.append(f"{user.username} {user.display_name}" + (f" ({unit.code})" if unit else "")
                                    + (f": {len(returned)} 项待办退回单位 (tasks returned)" if returned else "")
                                    + (f"; {handled} 项问题/线索已移交 (items handed over)" if handled else "")
                                    + (f"; {len(led)} 项责任领导已移交 (items led handed over)" if led else "")
                                    + (f"; 无人可接，仍在其名下 (left, nobody else could take them): {left}"
                                       if left else ""))
    leader = session.get(User, leader_id) if leader_id is not None and leader_id != user.id else None
    if leader is not None and leader.is_active:
        text = ("leaver_idle" if not returned else "leaver_returned" if unit else "leaver_returned_nounit")
        notify.send(session, notify.worded(
            leader.id, "directory", text, {"who": user.display_name, "username": user.username, "count": len(returned),
                                           **({"unit": unit.name} if unit else {})},
            link="/inbox", key=f"directory-leaver:{user.id}:{user.session_epoch}"))
