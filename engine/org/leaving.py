"""停用 (deactivate) a person and hand over their open work (离岗交接) in the same transaction.

The one way a person is deactivated, whoever asks: 管理 → 停用 (the web), `jzflow deactivate-user`, and the directory
sync for a person who left the directory. Their sessions and API tokens stop working at once
(core.deactivate_account); their open tasks go to the successor (接手人) the administrator names, else back to their
candidates or their unit's (engine.tasks.handover), each audited, and the 申请延期 they asked and still pending is
withdrawn (engine.deadlines.requests.withdraw, audited, no notice); and the application's own open items that name
them as the one responsible (the plan: an issue's 责任人, a lead's handler, and the 责任领导 of its open items) go the
same way, through the hooks the application registered in `HANDOVERS` (the engine knows no such item by itself). A unit
whose head (负责人, `leader_id`) or responsible leader (责任领导, `responsible_leader_id`) they are loses that mark, as
the directory sync does when a head leaves it: an appointment is the directory's or the seed's to make again, not the
successor's to inherit (a unit's leaders widen whom they see, engine.org.area), and no item made afterwards in that
unit names them. Two administrators deactivating the same person at once take turns on the person's row: the second
finds them deactivated and their work handed over, and records nothing again.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from engine import audit, extensions, notify
from engine.db import advisory_lock
from engine.deadlines import requests
from engine.errors import Conflict, InvalidInput, NotFound
from engine.org import core
from engine.org.actors import SYSTEM, Actor
from engine.org.models import Membership, OrgUnit, User
from engine.tasks import handover

ADMINS_LOCK = "jzflow:org:admins"  # held by an administrator's 停用: at least one active administrator stays


@dataclass(frozen=True)
class Item:
    """One of the application's items a person was responsible for (an issue, a lead), and who has it now."""

    kind: str  # its audit object type, e.g. ledger_issue
    id: int
    label: str  # its code and title, as shown
    to: str | None  # the username of who is responsible now; None: back to its unit (no one by name)
    duty: str = "handler"  # what they were to it: "handler" (who does it) or "leader" (its 责任领导)


@dataclass(frozen=True)
class Passing:
    """What a hook is told: whose items, who takes them, and whether to change them (False: only say what)."""

    user: User
    unit: OrgUnit | None
    successor: User | None
    actor: Actor
    reason: str
    apply: bool
    # A move (调岗, engine.org.leaving.move): only the items of these units, which the person has left, are handed
    # over (to the unit's head, else back to the unit), and only as their handler; None: a 停用, every item.
    left: frozenset[int] | None = None


# The application's open items a person is responsible for (registered at install, e.g. by plan.app). Each hook is
# called twice in the deactivation's transaction: with apply False it changes nothing and returns what it would hand
# over and what nobody else could take; with apply True it hands them over (each audited on the item's own stream,
# flushed) and returns the same two lists.
HANDOVERS: list[Callable[[Session, Passing], tuple[list[Item], list[Item]]]] = []


@dataclass(frozen=True)
class Leaving:
    """What deactivating a person did."""

    user: User
    unit: OrgUnit | None  # the unit that takes back what nobody else could
    successor: User | None
    handed_over: list[int] = field(default_factory=list)  # the tasks handed over (ids)
    stuck: list[int] = field(default_factory=list)  # tasks nobody else could take, left where they were
    items: list[Item] = field(default_factory=list)  # the application's items handed over (HANDOVERS)
    items_stuck: list[Item] = field(default_factory=list)  # its items nobody else could take, left where they were
    units: list[int] = field(default_factory=list)  # units whose head or responsible leader they were (now none)
    cancelled: list[int] = field(default_factory=list)  # their pending 申请延期, withdrawn (ExtensionRequest ids)


def first_unit(session: Session, user_id: int) -> OrgUnit | None:
    """Return the person's unit (the first by id of those they are a plain member of), or None."""
    unit_id = session.scalar(select(func.min(Membership.org_unit_id)).where(
        Membership.user_id == user_id, Membership.org_unit_id.is_not(None), Membership.role_id.is_(None)))
    return session.get(OrgUnit, unit_id) if unit_id is not None else None


def user_named(session: Session, username: str, *, what: str = "用户（username）", field: str = "username",
               lock: bool = False) -> User:
    """Return the account of a username (any case); `lock`: share-locked until the commit (FOR KEY SHARE, as
    engine.tasks.operations.user_named: a 停用 of that person waits for this transaction, or this read for theirs).

    Raises: NotFound naming `field`
    """
    name = username.strip()
    query = select(User).where(func.lower(User.username) == name.lower())
    if lock:
        query = query.with_for_update(read=True, key_share=True).execution_options(populate_existing=True)
    # A name no account could have is not looked up (NUL bytes, surrogates: the database would refuse the query).
    found = session.scalar(query) if len(name) <= 80 and core.USERNAME.match(name) else None
    if found is None:
        shown = name[:80] if core.USERNAME.match(name[:80]) else "?"
        raise NotFound(f"{what}：用户不存在 ({field}: no such user): {shown}", field=field)
    return found


def _unmark_units(session: Session, user: User, actor: Actor, reason: str) -> list[int]:
    """Take the person's head and responsible-leader marks off their units (flushes); one `org.unit.head` each."""
    units = list(session.scalars(select(OrgUnit).where(or_(OrgUnit.leader_id == user.id,
                                                           OrgUnit.responsible_leader_id == user.id))
                                 .order_by(OrgUnit.id).with_for_update().execution_options(populate_existing=True)))
    for unit in units:
        before = {"leader_id": unit.leader_id, "responsible_leader_id": unit.responsible_leader_id}
        if unit.leader_id == user.id:  # as the sync moves the head mark: their membership stays, unmarked
            session.execute(update(Membership).where(Membership.org_unit_id == unit.id, Membership.user_id == user.id,
                                                     Membership.role_id.is_(None)).values(is_head=False))
            unit.leader_id = None
        if unit.responsible_leader_id == user.id:
            unit.responsible_leader_id = None
        session.flush()
        audit.record(session, actor, "org.unit.head", stream=f"org_unit:{unit.id}", object_type="org_unit",
                     object_id=unit.id, before=before, after={"leader_id": unit.leader_id,
                                                              "responsible_leader_id": unit.responsible_leader_id,
                                                              "reason": reason})
    return [u.id for u in units]


def _last_admin(session: Session, user: User) -> bool:
    """Whether no other active administrator than `user` remains (read under ADMINS_LOCK)."""
    return session.scalar(select(User.id).where(User.is_admin.is_(True), User.is_active.is_(True),
                                                User.id != user.id).limit(1)) is None


def _successor(session: Session, username: str | None, user: User) -> User | None:
    if not (username or "").strip():
        return None
    # Locked: a 停用 of the successor at the same time waits, then hands over what this one gives them (unlocked, it
    # read their tasks before, and they kept this work deactivated), or this one waits and finds them deactivated.
    found = user_named(session, username or "", what="接手人（successor）", field="successor", lock=True)
    if found.id == user.id:
        raise InvalidInput("接手人（successor）不能是被停用的本人 (successor: not the person deactivated)",
                           field="successor")
    if not found.is_active:
        raise InvalidInput(f"接手人（successor）已停用: {found.username} (successor: deactivated)", field="successor")
    return found


def deactivate_user(session: Session, *, user_id: int, actor: Actor = SYSTEM, successor: str | None = None,
                    reason: str = "deactivated", refuse_stuck: bool = True) -> Leaving:
    """Deactivate a user and hand over their open tasks (flushes; the caller commits).

    `successor`: the username of who receives the tasks they hold (optional). `refuse_stuck`: refuse, changing
    nothing, when a task would be left with nobody who could take it and no successor is named (the directory sync
    passes False). Deactivating a person already deactivated hands over what they still hold, and nothing else.

    The application's items the person is responsible for go the same way, through `HANDOVERS`; those nobody else
    could take are refused like tasks (`refuse_stuck`), else left and listed in `items_stuck`. The units they head or
    are the responsible leader of lose that mark (`units`), before the hooks hand over what they lead.

    Raises: NotFound, InvalidInput (field user, or successor)
    """
    # An administrator's 停用 first takes the administrators' lock (before any row: two administrators deactivating
    # each other at once each held the other's row and deadlocked, or on SQLite left no administrator at all).
    admin = bool(session.scalar(select(User.is_admin).where(User.id == user_id)))
    if admin:
        advisory_lock(session, ADMINS_LOCK)
    # The instances of their open tasks first (share-locked, id order: after a migration or the sweep holding one),
    handover.lock_instances(session, user_id)
    # then their row, locked: a second deactivation at the same time waits here, then reads it deactivated.
    user = session.scalar(select(User).where(User.id == user_id).with_for_update()
                          .execution_options(populate_existing=True))
    if user is None:
        raise NotFound(f"用户不存在 (no such user): {user_id}", field="user")
    if user.is_admin and not admin:  # made an administrator (编辑人员, under the lock) since it was read above
        raise Conflict("此人刚被设为管理员，请刷新页面后重试 (user: made an administrator meanwhile; try again)",
                       field="user")
    if actor.user_id == user.id:
        raise InvalidInput("不能停用自己 (you cannot deactivate yourself)", field="user")
    if user.is_admin and user.is_active and _last_admin(session, user):
        raise InvalidInput("不能停用最后一位在用的管理员，请先添加另一位管理员 (user: the last active administrator; "
                           "add another administrator first)", field="user")
    taker = _successor(session, successor, user)
    unit = first_unit(session, user.id)
    extensions.load()
    stuck = [i for hook in HANDOVERS for i in hook(session, Passing(user, unit, taker, actor, reason, False))[1]]
    if stuck and refuse_stuck:  # before anything changes
        shown = "、".join(i.label.split()[0] for i in stuck[:10])
        raise InvalidInput(f"有 {len(stuck)} 项事项除此人外无人可负责（{shown}），请指定接手人 (successor: {len(stuck)} "
                           "open items have no one else to take them; name a successor)", field="successor",
                           items=[f"{i.kind}:{i.id}" for i in stuck])
    # Their pending 申请延期 withdrawn, before their steps go (whoever takes one asks for themselves): the request
    # rows locked before the task rows, as a leader deciding one at the same moment takes them (decide_extension).
    cancelled = requests.withdraw(session, user=user, task_ids=None, actor=actor, reason=reason, tell=False)
    done = handover.hand_over(session, user_id=user.id, unit_id=unit.id if unit else None, actor=actor,
                              reason=reason, successor=taker, refuse_stuck=refuse_stuck)
    units = _unmark_units(session, user, actor, reason)  # before the hooks: the ladder they consult skips them
    items: list[Item] = []
    stuck = []
    for hook in HANDOVERS:
        given, left = hook(session, Passing(user, unit, taker, actor, reason, True))
        items += given
        stuck += left
    core.deactivate_account(session, user=user, actor=actor)
    return Leaving(user=user, unit=unit, successor=taker, handed_over=done.touched, stuck=done.stuck, items=items,
                   items_stuck=stuck, units=units, cancelled=cancelled)


@dataclass(frozen=True)
class Moving:
    """What a move (调岗) did."""

    tasks: list[int]  # the tasks given back to the pools of the units and roles they left (ids)
    items: list[Item]  # the application's items of the units they left, handed back (HANDOVERS)
    headless: list[OrgUnit]  # the units they left that they headed: no head now
    cancelled: list[int]  # their pending 申请延期 on the tasks given back, cancelled (ExtensionRequest ids)


def unhead(session: Session, user: User, unit_ids: set[int], actor: Actor, reason: str) -> list[OrgUnit]:
    """Take the head mark (负责人) of these units off the person (flushes); one `org.unit.head` each, with `reason`.

    Their membership, if they have one still, stays, unmarked. Returns the units that had them as head.
    """
    units = list(session.scalars(select(OrgUnit).where(OrgUnit.id.in_(unit_ids or {-1}), OrgUnit.leader_id == user.id)
                                 .order_by(OrgUnit.id).with_for_update().execution_options(populate_existing=True)))
    for unit in units:
        before = {"leader_id": unit.leader_id, "responsible_leader_id": unit.responsible_leader_id}
        session.execute(update(Membership).where(Membership.org_unit_id == unit.id, Membership.user_id == user.id,
                                                 Membership.role_id.is_(None)).values(is_head=False))
        unit.leader_id = None
        session.flush()
        audit.record(session, actor, "org.unit.head", stream=f"org_unit:{unit.id}", object_type="org_unit",
                     object_id=unit.id, before=before, after={"leader_id": None,
                                                              "responsible_leader_id": unit.responsible_leader_id,
                                                              "reason": reason})
    return units


def tell_headless(session: Session, unit: OrgUnit, user: User) -> None:
    """Tell the unit's responsible leader (责任领导), if active, that its head moved out and it has none now: the
    deadline ladder and 督办 skip the empty rung, so a head is to be named (by the directory, or 编辑人员)."""
    leader = session.get(User, unit.responsible_leader_id) if unit.responsible_leader_id is not None else None
    if leader is None or not leader.is_active or leader.id == user.id:
        return
    notify.send(session, notify.worded(
        leader.id, "directory", "headless", {"unit": unit.name, "who": user.display_name or user.username,
                                             "code": unit.code}, link="/supervision", unit_id=unit.id))


def move(session: Session, *, user: User, actor: Actor, reason: str, left: set[int] | None = None,
         roles: set[int] | None = None, tell: bool = True, heads: set[int] | None = None) -> Moving:
    """调岗: the person stays active; the work they held as a member of the units (`left`) or roles (`roles`) they no
    longer have goes back (flushes). Called once their memberships are what they are now (编辑人员, the directory
    sync, single sign-on's claims).

    A unit they left that they headed loses its head mark (`headless`, audited with `reason`; its responsible leader
    told, unless `tell` is False: the directory sync reports it instead, once it has read the directory's heads);
    `heads`: only these of the units left (the directory sync keeps the marks of a unit gone from the directory).
    Tasks they claimed from those pools go back to the pools (engine.tasks.handover.give_back), and the 申请延期 they
    asked on them and still pending is cancelled (engine.deadlines.requests.withdraw: the colleague who takes the
    step asks for themselves; they are told). Their row is locked first (requests.lock_person: a request of theirs
    at the same moment is asked before, and withdrawn, or refused after), then their pending requests' rows before
    the steps' rows (a
    leader granting one at the same moment takes the request's, then the step's: the other way round, PostgreSQL
    ended one as a deadlock); the application's items of those units whose 责任人 they are go to the
    unit's head, else back to the unit (the `HANDOVERS` hooks, told `Passing.left`). What was given to them by name,
    and the 责任领导 marks (appointments, not memberships), stay.
    """
    marked = left if heads is None else (left or set()) & heads
    headless = unhead(session, user, marked, actor, reason) if marked else []
    if tell:
        for unit in headless:
            tell_headless(session, unit, user)
    if left or roles:  # their requests' rows before their steps' (give_back), as a leader granting one takes them
        handover.lock_instances(session, user.id)  # as a 停用: the instances, the person, the requests, the steps
        requests.lock_person(session, user)  # a request of theirs now waits, then is refused (requests.asker)
        requests.lock_pending(session, user=user)
    tasks = handover.give_back(session, user=user, actor=actor, reason=reason, left=left, roles=roles)
    cancelled = requests.withdraw(session, user=user, task_ids=tasks, actor=actor, reason=reason)
    items: list[Item] = []
    if left:
        extensions.load()
        passing = Passing(user, None, None, actor, reason, True, left=frozenset(left))
        for hook in HANDOVERS:
            items += hook(session, passing)[0]
    return Moving(tasks, items, headless, cancelled)
