"""编辑人员: an administrator's everyday changes to a person — 调岗 (units), roles, 管理员, a unit's head (负责人) or
responsible leader (责任领导), a password reset, 启用 (reactivation).

Each change locks the person's row (after the administrators' lock, and the instances of their open tasks when
their work may move: the order of leaving.deactivate_user), so two administrators on the same person take turns;
each carries `seen`, the version of the person the page showed (`version`), and is refused when the person changed
since (Conflict, field seen) instead of overwriting the newer change. Each is audited with before and after, never a
password. A person whose units and roles come from the directory (LDAP) or single sign-on keeps what those give them
(`held_by_directory`): the next sync or login would undo a change made here. Single sign-on gives what its settings
say it sends: the units with a unit claim, the roles with a roles claim — with JZFLOW_OIDC_ROLE_MAP only the roles it
maps to (sso_users keeps the others an administrator gave) — and the rest is the administrator's to give here.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from engine import audit
from engine.db import advisory_lock
from engine.errors import Conflict, InvalidInput, NotFound
from engine.org import core, leaving, oidc, tokens
from engine.org.actors import Actor
from engine.org.models import Membership, OrgUnit, Role, User
from engine.tasks import handover

MANAGED = {"ldap": "LDAP目录同步", "oidc": "统一身份认证"}  # User.source: who gives this person units and roles


@dataclass(frozen=True)
class Held:
    """What of a person's units and roles their directory gives them (and takes away): not changed here."""

    by: str  # the directory's name, as shown ("" for a person jzflow alone manages)
    units: bool  # their units
    roles: frozenset[str] | None  # the codes of the roles it gives; None: every role


NOTHING_HELD = Held("", units=False, roles=frozenset())


def held_by_directory(user: User) -> Held:
    """Return what the person's directory gives them: LDAP all of it; single sign-on what its claims carry."""
    by = MANAGED.get(user.source or "")
    if by is None:
        return NOTHING_HELD
    if user.source != "oidc":
        return Held(by, units=True, roles=None)
    try:
        settings = oidc.load_settings()
    except oidc.SsoError:  # settings that do not load tell nothing of what the provider sends: all of it stays
        return Held(by, units=True, roles=None)
    if not settings.roles_claim:
        roles: frozenset[str] | None = frozenset()
    else:
        roles = frozenset(settings.role_map.values()) if settings.role_map else None
    return Held(by, units=bool(settings.unit_claim), roles=roles)


def _refuse_held(user: User, was: Person, units: list[str], roles: list[str]) -> None:
    held = held_by_directory(user)
    if held.units and units != was.units:
        raise InvalidInput(f"此人员的单位由{held.by}管理，在此修改会在下次同步或登录时被覆盖，请在目录中修改 "
                           f"(units: managed by {user.source}; the next sync would undo a change made here)",
                           field="units")
    changed = set(roles) ^ set(was.roles)
    theirs = changed if held.roles is None else changed & held.roles
    if theirs:
        hint = ("；若统一身份认证不提供角色，请运维将 JZFLOW_OIDC_ROLES_CLAIM 设为空，"
                "或用 JZFLOW_OIDC_ROLE_MAP 指明由其管理的角色" if user.source == "oidc" and held.roles is None else "")
        raise InvalidInput(f"角色 {'、'.join(sorted(theirs))} 由{held.by}管理，请在目录中修改{hint} "
                           f"(roles: managed by {user.source})", field="roles")


@dataclass(frozen=True)
class Person:
    """What the 编辑人员 page shows of a person, and its version."""

    user: User
    units: list[str]  # codes of the units they are a member of
    roles: list[str]  # codes of their roles
    heads: list[str]  # codes of the units they head (负责人)
    leads: list[str]  # codes of the units they are the responsible leader (责任领导) of
    seen: str


def person_of(session: Session, user_id: int) -> Person:
    """Return what the page shows of the user with that id.

    Raises: NotFound (field user)
    """
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"用户不存在 (no such user): {user_id}", field="user")
    return person(session, user)


def person(session: Session, user: User) -> Person:
    """Return what the page shows of `user` and its version."""
    rows = session.execute(select(OrgUnit.code, Role.code).select_from(Membership)
                           .outerjoin(OrgUnit, OrgUnit.id == Membership.org_unit_id)
                           .outerjoin(Role, Role.id == Membership.role_id)
                           .where(Membership.user_id == user.id)).all()
    units = sorted({u for u, r in rows if u and r is None})
    roles = sorted({r for _, r in rows if r})
    heads = sorted(session.scalars(select(OrgUnit.code).where(OrgUnit.leader_id == user.id)))
    leads = sorted(session.scalars(select(OrgUnit.code).where(OrgUnit.responsible_leader_id == user.id)))
    shown = (user.is_active, user.is_admin, user.must_change_password, units, roles, heads, leads)
    return Person(user, units, roles, heads, leads, hashlib.sha256(repr(shown).encode()).hexdigest()[:32])


def _locked(session: Session, user_id: int, seen: str | None, *, tasks: bool = False) -> Person:
    """Lock the person's row (their open tasks' instances first when `tasks`) and check the page saw them as they are.

    Raises: NotFound (field user), Conflict (field seen)
    """
    if tasks:
        handover.lock_instances(session, user_id)
    user = session.scalar(select(User).where(User.id == user_id).with_for_update()
                          .execution_options(populate_existing=True))
    if user is None:
        raise NotFound(f"用户不存在 (no such user): {user_id}", field="user")
    now = person(session, user)
    if seen is not None and seen != now.seen:
        raise Conflict("此人员已被他人修改，请刷新页面后重新填写 (seen: the person changed since the page was opened; "
                       "reload)", field="seen")
    return now


def set_memberships(session: Session, *, user_id: int, unit_codes: list[str], role_codes: list[str],
                    is_admin: bool, seen: str | None, actor: Actor) -> Person:
    """调岗 / roles / 管理员: bring the person's units, roles and admin mark to these (flushes).

    What they claimed from the pools of units and roles they leave goes back, and the items of a unit they leave go
    to its head (leaving.move), in this transaction; a unit they leave that they head loses its head (its responsible
    leader told), and their pending 申请延期 on the steps given back is withdrawn. Refused,
    changing nothing: an unknown unit or role (named), units or roles of a directory-managed person, the last active
    administrator losing the mark.

    Raises: NotFound, InvalidInput, Conflict
    """
    advisory_lock(session, leaving.ADMINS_LOCK)  # before any row, as an administrator's 停用
    units = core._named(session, OrgUnit, unit_codes, "单位不存在 (units: no such unit)", "units")
    roles = core._named(session, Role, role_codes, "角色不存在 (roles: no such role)", "roles")
    was = _locked(session, user_id, seen, tasks=True)
    user = was.user
    was_admin = user.is_admin
    wanted_units, wanted_roles = sorted(u.code for u in units), sorted(r.code for r in roles)
    _refuse_held(user, was, wanted_units, wanted_roles)
    if user.is_admin and not is_admin and user.is_active and leaving._last_admin(session, user):
        raise InvalidInput("不能取消最后一位在用的管理员的管理员身份，请先添加另一位管理员 (is_admin: the last active "
                           "administrator)", field="is_admin")
    left = {i for i in session.scalars(select(OrgUnit.id).where(OrgUnit.code.in_(set(was.units) - set(wanted_units))))}
    lost = {i for i in session.scalars(select(Role.id).where(Role.code.in_(set(was.roles) - set(wanted_roles))))}
    if left:
        session.execute(delete(Membership).where(Membership.user_id == user.id, Membership.org_unit_id.in_(left)))
        session.flush()
    if lost:
        session.execute(delete(Membership).where(Membership.user_id == user.id, Membership.role_id.in_(lost)))
    for unit in units:
        if unit.code not in was.units:
            session.add(Membership(user_id=user.id, org_unit_id=unit.id))
    for role in roles:
        if role.code not in was.roles:
            session.add(Membership(user_id=user.id, role_id=role.id))
    user.is_admin = is_admin
    session.flush()
    if left or lost:
        leaving.move(session, user=user, actor=actor, reason="admin: moved", left=left or None, roles=lost or None)
    now = person(session, user)
    if now.seen != was.seen:
        audit.record(session, actor, "org.user.edit", stream=f"user:{user.id}", object_type="app_user",
                     object_id=user.id, before={"units": was.units, "roles": was.roles, "admin": was_admin},
                     after={"units": now.units, "roles": now.roles, "admin": is_admin})
    return now


def _unit(session: Session, code: str) -> OrgUnit:
    code = code.strip()  # a code no unit could have is not looked up (the database refuses NUL bytes, surrogates)
    found = session.scalar(select(OrgUnit).where(OrgUnit.code == code)) if len(code) <= 80 and code.isprintable() \
        else None
    if found is None:
        shown = code[:80] if code[:80].isprintable() else "?"
        raise NotFound(f"单位不存在 (unit: no such unit): {shown}", field="unit")
    return found


def set_unit_mark(session: Session, *, user_id: int, unit_code: str, mark: str, on: bool, seen: str | None,
                  actor: Actor) -> Person:
    """Make the person the head (`mark` "head", 负责人) or the responsible leader ("leader", 责任领导) of a unit, or
    take it away (flushes); one `org.unit.head` event. One head per unit: a unit with another head is refused (take
    theirs away first). The head is an active member of the unit; the responsible leader an active person.

    Raises: NotFound, InvalidInput, Conflict
    """
    if mark not in ("head", "leader"):
        raise InvalidInput("mark: head 或 leader (mark: head or leader)", field="mark")
    was = _locked(session, user_id, seen)
    user = was.user
    unit = _unit(session, unit_code)
    if on and not user.is_active:
        raise InvalidInput(f"{user.username} 已停用，不能设为负责人或责任领导 (user: deactivated)", field="user")
    if mark == "head":
        if user.source in MANAGED or unit.source == "ldap":
            raise InvalidInput(f"单位负责人由{MANAGED.get(user.source or 'ldap', 'LDAP目录同步')}管理，请在目录中修改 "
                               "(unit: its head is managed by the directory)", field="unit")
        if on:
            if unit.code not in was.units:
                raise InvalidInput(f"{user.username} 不是 {unit.name} 的成员，不能设为负责人 (unit: the head must be a "
                                   "member of the unit)", field="unit")
            core._take_heads(session, user, [unit], actor)
        elif unit.leader_id == user.id:
            leaving.unhead(session, user, {unit.id}, actor, "admin: head removed")
        session.execute(update(Membership).where(Membership.org_unit_id == unit.id, Membership.user_id == user.id,
                                                 Membership.role_id.is_(None)).values(is_head=on))
    else:
        locked = session.scalar(select(OrgUnit).where(OrgUnit.id == unit.id).with_for_update()
                                .execution_options(populate_existing=True))
        assert locked is not None
        target = user.id if on else None
        if on and locked.responsible_leader_id not in (None, user.id):
            raise Conflict(f"单位 {locked.name} 已有责任领导，请先取消 (unit: {locked.code} has a responsible leader "
                           "already)", field="unit")
        if locked.responsible_leader_id == user.id or on:
            before = {"leader_id": locked.leader_id, "responsible_leader_id": locked.responsible_leader_id}
            locked.responsible_leader_id = target
            session.flush()
            audit.record(session, actor, "org.unit.head", stream=f"org_unit:{locked.id}", object_type="org_unit",
                         object_id=locked.id, before=before,
                         after={"leader_id": locked.leader_id, "responsible_leader_id": target})
    session.flush()
    return person(session, user)


MAX_GENERATED = 16


def reset_password(session: Session, *, user_id: int, password: str | None, seen: str | None,
                   actor: Actor) -> tuple[Person, str | None, int]:
    """Set a temporary password (or generate one, returned once: never stored in clear nor audited); every session
    of the person ends, every API token of theirs is revoked (a reset is what follows a compromise: a token taken
    with the password stops too), and they change it at their next login (flushes). Not for a deactivated person
    (启用 first). Returns the person, the generated password (None if one was given) and how many tokens were revoked.

    Raises: NotFound, InvalidInput (field password, user), Conflict
    """
    generated = None
    if not password:  # none given: one is generated
        generated = password = secrets.token_urlsafe(12)[:MAX_GENERATED]
    if not core.MIN_PASSWORD <= len(password) <= core.MAX_PASSWORD:
        raise InvalidInput(f"临时密码须为{core.MIN_PASSWORD}–{core.MAX_PASSWORD}位 (password: {core.MIN_PASSWORD}–"
                           f"{core.MAX_PASSWORD} characters)", field="password")
    was = _locked(session, user_id, seen)
    user = was.user
    if actor.user_id == user.id:
        raise InvalidInput("自己的密码请在“修改密码”中修改 (user: change your own password on the password page)",
                           field="user")
    if not user.is_active:
        raise InvalidInput(f"{user.username} 已停用，请先启用再重置密码 (user: deactivated; reactivate first)",
                           field="user")
    must_change = user.must_change_password
    user.password_hash = generate_password_hash(password)
    user.session_epoch += 1
    user.must_change_password = True
    revoked = tokens.revoke_live(session, user.id)
    session.flush()
    # Never the password or its hash in the audit trail.
    audit.record(session, actor, "org.user.password_reset", stream=f"user:{user.id}", object_type="app_user",
                 object_id=user.id, before={"must_change": must_change},
                 after={"sessions_ended": True, "generated": generated is not None, "must_change": True,
                        "tokens_revoked": revoked})
    return person(session, user), generated, revoked


def reactivate(session: Session, *, user_id: int, seen: str | None, actor: Actor) -> tuple[Person, int]:
    """启用 a deactivated person (flushes): they can log in again; sessions begun before stay ended (their epoch was
    bumped at the 停用) and the API tokens they had stay revoked (revoked now, if they were not). Returns the person
    and how many tokens were revoked now.

    Raises: NotFound, Conflict
    """
    was = _locked(session, user_id, seen)
    user = was.user
    if user.is_active:
        return was, 0
    revoked = tokens.revoke_live(session, user.id)
    user.is_active = True
    session.flush()
    audit.record(session, actor, "org.user.reactivate", stream=f"user:{user.id}", object_type="app_user",
                 object_id=user.id, before={"active": False}, after={"active": True, "tokens_revoked": revoked})
    return person(session, user), revoked
