"""Whom an actor may pick for 转办 / 委派 / 加签 / 抄送 / 督办改派: the people in their scope, by unit tree, name or pinyin.

The scope is enforced by the operations (engine.tasks.operations) and offered by the picker (web/people):

  admin, or a role that supervises every unit   everyone
  staff (a member of a unit, or a leader)       the members of their units, of those units' parent units and
                                                of the units they lead (with sub-units), and the leader chain:
                                                the heads and responsible leaders of their units and parents,
                                                and 督查 (a role that supervises every unit)
  an actor with no unit (an applicant)          nobody, except on a case they may see:
  anyone, on a case (a task's instance)         also the people of the units handling that case (candidates,
                                                holders, signers past and present, and their units) and the
                                                units and role holders of its process's lanes (steps to come;
                                                never an outside role's lane: applicants never see each other)

Pinyin initials (林志远 → lzy, 曾凡 → zf or cf) and full pinyin (linzhiyuan) find a person too.
"""
from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from pypinyin import Style, pinyin
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import Forbidden, InvalidInput
from engine.org.actors import Actor
from engine.org.area import SUPERVISE_ALL_ROLES, area
from engine.org.models import Membership, OrgUnit, Role, User
from engine.runtime.models import ProcessInstance, ProcessVersion
from engine.tasks import access
from engine.tasks.models import HumanTask, TaskCandidate

MAX_QUERY = 40  # characters of a search
MAX_RESULTS = 20
MAX_READINGS = 8  # initials combinations kept for a name with several readings (曾: zeng / ceng)
MAX_CHOSEN = 100  # people one 抄送 or 加签 may name: each is looked up, checked and told in the request


@dataclass(frozen=True)
class Scope:
    everyone: bool
    user_ids: frozenset[int]

    def covers(self, user_id: int) -> bool:
        return self.everyone or user_id in self.user_ids


@dataclass(frozen=True)
class Person:
    user_id: int
    username: str
    name: str
    units: tuple[str, ...]  # names of the person's units, in tree order ("" none)

    @property
    def unit(self) -> str:
        return "、".join(self.units)

    @property
    def label(self) -> str:
        """Name and unit, as a confirmation names a person: 林志远（发改局）."""
        return f"{self.name}（{self.unit}）" if self.units else self.name


@dataclass(frozen=True)
class Group:
    """One unit of the tree with the people of the scope in it; unit_id None holds people with no unit."""

    unit_id: int | None
    name: str
    depth: int
    people: tuple[Person, ...]


@lru_cache(maxsize=4096)
def initials(name: str) -> tuple[str, ...]:
    """Return the pinyin initials of a name, one string per reading (at most MAX_READINGS): 林志远 → ('lzy',)."""
    letters = [sorted({r[0].lower() for r in readings if r}) or [""]
               for readings in pinyin(name, style=Style.FIRST_LETTER, heteronym=True, errors="default")]
    combos = itertools.islice(itertools.product(*letters), MAX_READINGS)
    return tuple(dict.fromkeys("".join(c) for c in combos))


@lru_cache(maxsize=4096)
def spelled(name: str) -> tuple[str, ...]:
    """Return the full pinyin of a name without tones or spaces, one per reading: 林志远 → ('linzhiyuan',)."""
    syllables = [sorted({r.lower() for r in readings if r}) or [""]
                 for readings in pinyin(name, style=Style.NORMAL, heteronym=True, errors="default")]
    combos = itertools.islice(itertools.product(*syllables), MAX_READINGS)
    return tuple(dict.fromkeys("".join(c) for c in combos))


def _units(session: Session) -> dict[int, OrgUnit]:
    return {u.id: u for u in session.scalars(select(OrgUnit))}


def _ancestors(units: dict[int, OrgUnit], ids: Iterable[int]) -> set[int]:
    found: set[int] = set()
    for unit_id in ids:
        parent = units[unit_id].parent_id if unit_id in units else None
        while parent is not None and parent not in found:
            found.add(parent)
            parent = units[parent].parent_id if parent in units else None
    return found


def _lanes(session: Session, instance_id: int) -> tuple[set[int], set[int]]:
    """Return (unit ids, role ids) of the lanes of the case's process (its route, steps to come included);
    a lane of an outside role (applicants) is left out: they never see each other."""
    raw = session.scalar(select(ProcessVersion.lane_map_json).join(
        ProcessInstance, ProcessInstance.version_id == ProcessVersion.id).where(ProcessInstance.id == instance_id))
    try:
        lanes = json.loads(raw or "{}")
    except ValueError:
        return set(), set()
    units = {int(t["org_unit_id"]) for t in lanes.values() if isinstance(t, dict) and t.get("org_unit_id")}
    roles = {int(t["role_id"]) for t in lanes.values() if isinstance(t, dict) and t.get("role_id")}
    if roles:
        roles -= set(session.scalars(select(Role.id).where(Role.code.in_(access.EXTERNAL_ROLES))))
    return units, roles


def case_people(session: Session, instance_id: int) -> tuple[set[int], set[int]]:
    """Return (unit ids, user ids) handling a case: its tasks' candidates, holders, owners and signers, and their
    units; and the units and role holders of the lanes of its process (the steps to come)."""
    tasks = select(HumanTask.id).where(HumanTask.instance_id == instance_id)
    lane_units, lane_roles = _lanes(session, instance_id)
    users: set[int] = set()
    for row in session.execute(select(HumanTask.assignee_id, HumanTask.owner_id, HumanTask.completed_by_id)
                               .where(HumanTask.instance_id == instance_id)):
        users |= {u for u in row if u is not None}
    candidates = list(session.execute(select(TaskCandidate.user_id, TaskCandidate.org_unit_id, TaskCandidate.role_id)
                                      .where(TaskCandidate.task_id.in_(tasks))))
    users |= {c.user_id for c in candidates if c.user_id is not None}
    units = {c.org_unit_id for c in candidates if c.org_unit_id is not None}
    roles = {c.role_id for c in candidates if c.role_id is not None}
    if roles:
        users |= set(session.scalars(select(Membership.user_id).where(Membership.role_id.in_(roles))))
    if users:
        units |= {u for u in session.scalars(select(Membership.org_unit_id).where(
            Membership.user_id.in_(users), Membership.org_unit_id.is_not(None))) if u is not None}
    if lane_roles:
        users |= set(session.scalars(select(Membership.user_id).where(Membership.role_id.in_(lane_roles))))
    return units | lane_units, users


def scope(session: Session, actor: Actor, instance_id: int | None = None) -> Scope:
    """Return whom the actor may pick, on a case (instance) or in general (see the module's table)."""
    if actor.is_admin or actor.is_system:
        return Scope(True, frozenset())
    led = area(session, actor)
    if led.everything:
        return Scope(True, frozenset())
    units = _units(session)
    own = set(actor.org_unit_ids)
    chain = own | _ancestors(units, own)
    member_units = chain | set(led.unit_ids)
    users: set[int] = set()
    for unit_id in chain:
        unit = units.get(unit_id)
        if unit is not None:
            users |= {u for u in (unit.leader_id, unit.responsible_leader_id) if u is not None}
    if instance_id is not None:
        case_units, case_users = case_people(session, instance_id)
        member_units |= case_units
        users |= case_users
    if own or led.unit_ids:  # staff: the chain ends with 督查, who supervise every unit
        users |= set(session.scalars(select(Membership.user_id).join(Role, Role.id == Membership.role_id)
                                     .where(Role.code.in_(SUPERVISE_ALL_ROLES))))
    if member_units:
        users |= set(session.scalars(select(Membership.user_id).where(Membership.org_unit_id.in_(member_units))))
        users |= {u for unit_id in member_units if unit_id in units
                  for u in (units[unit_id].leader_id,) if u is not None}
    if actor.user_id is not None:
        users.discard(actor.user_id)
    return Scope(False, frozenset(users))


def _people(session: Session, found: Scope, actor: Actor) -> list[Person]:
    """The active people of a scope (never the actor), with their units in tree order, by name."""
    query = select(User.id, User.username, User.display_name).where(User.is_active.is_(True))
    if not found.everyone:
        if not found.user_ids:
            return []
        query = query.where(User.id.in_(found.user_ids))
    if actor.user_id is not None:
        query = query.where(User.id != actor.user_id)
    rows = list(session.execute(query))
    units = _units(session)
    order = {unit_id: i for i, unit_id in enumerate(_tree_order(units))}
    member: dict[int, list[int]] = {}
    ids = [r.id for r in rows]
    for chunk in range(0, len(ids), 500):
        for user_id, unit_id in session.execute(select(Membership.user_id, Membership.org_unit_id).where(
                Membership.user_id.in_(ids[chunk:chunk + 500]), Membership.org_unit_id.is_not(None))):
            if unit_id is not None and unit_id not in member.setdefault(user_id, []):
                member[user_id].append(unit_id)
    people = [Person(r.id, r.username, r.display_name,
                     tuple(units[u].name for u in sorted(member.get(r.id, []), key=lambda u: order.get(u, 0))))
              for r in rows]
    return sorted(people, key=lambda p: (spelled(p.name)[0], p.username))


def _tree_order(units: dict[int, OrgUnit]) -> list[int]:
    children: dict[int | None, list[OrgUnit]] = {}
    for unit in units.values():
        parent = unit.parent_id if unit.parent_id in units else None
        children.setdefault(parent, []).append(unit)
    ordered: list[int] = []
    todo = sorted(children.get(None, []), key=lambda u: u.id, reverse=True)
    while todo:
        unit = todo.pop()
        ordered.append(unit.id)
        todo += sorted(children.get(unit.id, []), key=lambda u: u.id, reverse=True)
    return ordered


def _depth(units: dict[int, OrgUnit], unit_id: int) -> int:
    depth, seen, parent = 0, {unit_id}, units[unit_id].parent_id
    while parent is not None and parent in units and parent not in seen:
        seen.add(parent)
        depth += 1
        parent = units[parent].parent_id
    return depth


def tree(session: Session, actor: Actor, instance_id: int | None = None) -> list[Group]:
    """Return the actor's scope as the unit tree (units in tree order, people by pinyin), then those with no unit."""
    people = _people(session, scope(session, actor, instance_id), actor)
    units = _units(session)
    by_name = {u.name: u.id for u in units.values()}
    grouped: dict[int | None, list[Person]] = {}
    for person in people:
        for name in person.units or ("",):
            grouped.setdefault(by_name.get(name), []).append(person)
    groups = [Group(unit_id, units[unit_id].name, _depth(units, unit_id), tuple(grouped[unit_id]))
              for unit_id in _tree_order(units) if unit_id in grouped]
    if None in grouped:
        groups.append(Group(None, "", 0, tuple(grouped[None])))
    return groups


def _rank(person: Person, q: str) -> int | None:
    """How well a query matches a person (lower is better), or None."""
    if any(i.startswith(q) for i in initials(person.name)) or person.name.startswith(q):
        return 0
    if any(s.startswith(q) for s in spelled(person.name)) or person.username.lower().startswith(q):
        return 1
    if q in person.name or any(q in i for i in initials(person.name)) or any(q in s for s in spelled(person.name)):
        return 2
    if q in person.username.lower() or any(q in unit for unit in person.units):
        return 3
    return None


def search(session: Session, actor: Actor, q: str, instance_id: int | None = None,
           limit: int = MAX_RESULTS) -> list[Person]:
    """Return the people of the actor's scope matching a name, pinyin initials, full pinyin, username or unit."""
    text = "".join(q.split()).lower()[:MAX_QUERY]
    people = _people(session, scope(session, actor, instance_id), actor)
    if not text:
        return people[:limit]
    ranked = [(rank, i, p) for i, p in enumerate(people) if (rank := _rank(p, text)) is not None]
    return [p for _rank_, _i, p in sorted(ranked, key=lambda r: (r[0], r[1]))][:limit]


def person(session: Session, user: User) -> Person:
    """Return a user as the picker shows them (name and units)."""
    units = _units(session)
    order = {unit_id: i for i, unit_id in enumerate(_tree_order(units))}
    ids = sorted({u for u in session.scalars(select(Membership.org_unit_id).where(
        Membership.user_id == user.id, Membership.org_unit_id.is_not(None))) if u is not None},
        key=lambda u: order.get(u, 0))
    return Person(user.id, user.username, user.display_name, tuple(units[u].name for u in ids if u in units))


def require_in_scope(session: Session, actor: Actor, user: User, *, field: str, what: str,
                     instance_id: int | None = None) -> None:
    """Refuse to hand work to (or copy) someone outside the actor's scope, naming the field.

    Raises: Forbidden
    """
    if scope(session, actor, instance_id).covers(user.id):
        return
    raise Forbidden(f"{what}（{field}）：{user.username} 不在您可选择的人员范围内"
                    "（本单位、上级单位、领导及承办本事项的单位）"
                    f" ({what}: {user.username} is outside the people you may choose)", field=field,
                    username=user.username)


def require_few(usernames: Iterable[str], *, field: str, what: str) -> None:
    """Refuse a choice of more than MAX_CHOSEN people, naming the field and how many were chosen.

    Raises: InvalidInput
    """
    count = len(set(usernames))
    if count > MAX_CHOSEN:
        raise InvalidInput(f"{what}一次最多 {MAX_CHOSEN} 人，本次选择了 {count} 人 ({what}: at most {MAX_CHOSEN} "
                           f"people at a time, {count} chosen)", field=field, limit=MAX_CHOSEN, chosen=count)


def labels(session: Session, usernames: Iterable[str]) -> list[str]:
    """Return 姓名（单位） for each username that exists, in order."""
    names = list(dict.fromkeys(usernames))
    if not names:
        return []
    users = {u.username: u for u in session.scalars(select(User).where(User.username.in_(names[:50])))}
    return [person(session, users[n]).label for n in names if n in users]


__all__ = ["MAX_CHOSEN", "Group", "Person", "Scope", "case_people", "initials", "labels", "person", "require_few",
           "require_in_scope", "scope", "search", "spelled", "tree"]
