"""Organisation administration: units, roles, users and their memberships."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from engine.errors import Conflict, InvalidInput, NotFound
from engine.models import Membership, OrgUnit, Role, User
from engine.services import audit
from engine.services.actors import SYSTEM, Actor


def add_unit(session: Session, *, code: str, name: str, kind: str = "department",
             parent_code: str | None = None, actor: Actor = SYSTEM) -> OrgUnit:
    """Add an org unit (flushes).

    Raises: Conflict, NotFound
    """
    if session.scalar(select(OrgUnit.id).where((OrgUnit.code == code) | (OrgUnit.name == name))) is not None:
        raise Conflict(f"单位已存在 (unit exists): {code} / {name}", field="code")
    parent_id = None
    if parent_code:
        parent_id = session.scalar(select(OrgUnit.id).where(OrgUnit.code == parent_code))
        if parent_id is None:
            raise NotFound(f"上级单位不存在 (no parent unit): {parent_code}", field="parent")
    unit = OrgUnit(code=code, name=name, kind=kind, parent_id=parent_id)
    session.add(unit)
    session.flush()
    audit.record(session, actor, "org.unit.add", stream=f"org_unit:{unit.id}", object_type="org_unit",
                 object_id=unit.id, after={"code": code, "name": name, "kind": kind, "parent": parent_code})
    return unit


def add_role(session: Session, *, code: str, name: str, actor: Actor = SYSTEM) -> Role:
    """Add a role (flushes).

    Raises: Conflict
    """
    if session.scalar(select(Role.id).where((Role.code == code) | (Role.name == name))) is not None:
        raise Conflict(f"角色已存在 (role exists): {code} / {name}", field="code")
    role = Role(code=code, name=name)
    session.add(role)
    session.flush()
    audit.record(session, actor, "org.role.add", stream=f"role:{role.id}", object_type="role", object_id=role.id,
                 after={"code": code, "name": name})
    return role


def add_user(session: Session, *, username: str, display_name: str, password: str | None = None,
             unit_codes: list[str] | None = None, role_codes: list[str] | None = None, is_head: bool = False,
             is_admin: bool = False, email: str | None = None, actor: Actor = SYSTEM) -> User:
    """Add a user with memberships: each unit, each role, and each role within each unit (flushes).

    Raises: Conflict, NotFound, InvalidInput
    """
    if not username.strip() or len(username) > 80:
        raise InvalidInput("用户名不能为空且不超过80字符 (username: 1–80 characters)", field="username")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"用户已存在 (user exists): {username}", field="username")
    user = User(username=username, display_name=display_name, email=email, is_admin=is_admin,
                password_hash=generate_password_hash(password) if password else None)
    session.add(user)
    session.flush()
    units = []
    for code in unit_codes or []:
        unit = session.scalar(select(OrgUnit).where(OrgUnit.code == code))
        if unit is None:
            raise NotFound(f"单位不存在 (no such unit): {code}", field="unit")
        units.append(unit)
    roles = []
    for code in role_codes or []:
        role = session.scalar(select(Role).where(Role.code == code))
        if role is None:
            raise NotFound(f"角色不存在 (no such role): {code}", field="role")
        roles.append(role)
    for unit in units:
        session.add(Membership(user_id=user.id, org_unit_id=unit.id, is_head=is_head))
        if is_head and unit.leader_id is None:
            unit.leader_id = user.id
    for role in roles:
        session.add(Membership(user_id=user.id, role_id=role.id))
    session.flush()
    # Never the password or its hash in the audit trail.
    audit.record(session, actor, "org.user.add", stream=f"user:{user.id}", object_type="app_user",
                 object_id=user.id, after={"username": username, "display_name": display_name, "admin": is_admin,
                                           "units": [u.code for u in units], "roles": [r.code for r in roles],
                                           "head": is_head})
    return user
