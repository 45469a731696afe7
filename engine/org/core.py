"""Organisation administration: units, roles, users and their memberships."""
from __future__ import annotations

import re
import unicodedata
from email.headerregistry import Address
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from engine import audit
from engine.db import advisory_lock
from engine.errors import Conflict, Forbidden, InvalidInput, NotFound
from engine.org import tokens
from engine.org.actors import SYSTEM, Actor
from engine.org.models import Membership, OrgUnit, Role, User

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")  # as data/seed/users.yaml has them
MIN_PASSWORD = 8
MAX_PASSWORD = 200
MAX_EMAIL = 200
# Control characters, format characters (bidi overrides, zero-width spaces) and line/paragraph separators: a name
# holding one breaks a line, reverses what follows it or looks like someone else's in every list that shows it.
_HIDDEN = ("Cc", "Cf", "Zl", "Zp")


def plain(text: str) -> bool:
    """Tell whether text (a name from the directory or the identity provider) holds no hidden character."""
    return not any(unicodedata.category(ch) in _HIDDEN for ch in text)


MAX_DISPLAY_NAME = 120  # app_user.display_name
USERNAMES_LOCK = "jzflow:org:usernames"  # held by add_user until the commit
Named = TypeVar("Named", OrgUnit, Role)


def mailbox_or_none(value: str | None) -> str | None:
    """Return value (stripped) when it is one e-mail address as a mail header takes it, else None (blank included).

    A list ("a@x, b@y"), a name with the address, a line break or a second @ would change whom a mail goes to, or make
    it unsendable: those are not kept.
    """
    text = (value or "").strip()
    if not text or len(text) > MAX_EMAIL or "@" not in text:
        return None
    try:
        parsed = Address(addr_spec=text).addr_spec
    except Exception:  # the parser refuses in several ways (ValueError, IndexError, its own defects)
        return None
    return text if parsed == text else None


def display_name_or_none(value: str | None) -> str | None:
    """Return value (stripped) when it can be shown as a person's name, else None (blank included).

    1–120 characters, none of them a control or format character: a bidirectional override (U+202E) or isolate shows
    "\u202e九八七" as 七八九 in every list, a zero-width space makes a second 张伟 the eye cannot tell apart, and an
    escape sequence or a line break rewrites a terminal's or a log's line. Spaces of any width are kept (李\u3000明).
    """
    text = (value or "").strip()
    if not text or len(text) > MAX_DISPLAY_NAME:
        return None
    if any(not ch.isprintable() and unicodedata.category(ch) != "Zs" for ch in text):
        return None
    return text


def check_display_name(value: str | None) -> str:
    """Return value (stripped) as a person's display name.

    Raises: InvalidInput (field "display_name")
    """
    name = display_name_or_none(value)
    if name is None:
        raise InvalidInput(f"姓名（显示名）须为1–{MAX_DISPLAY_NAME}个字符，且不含控制字符或方向控制符 (display_name: "
                           f"1–{MAX_DISPLAY_NAME} characters, no control or bidirectional-override characters)",
                           field="display_name")
    return name


def mailbox(value: str | None) -> str | None:
    """Return value (stripped) as one e-mail address, None when blank.

    Raises: InvalidInput (field "email")
    """
    if value is None or not value.strip():
        return None
    address = mailbox_or_none(value)
    if address is None:
        raise InvalidInput(f"电子邮箱格式不正确，只能填写一个地址 (email: one address, e.g. zhang@example.cn): "
                           f"{value.strip()[:80]!r}", field="email")
    return address


def _label(value: str, limit: int, field: str, what: str) -> str:
    """Return a unit's or role's code or name (stripped) as its column keeps it and every list shows it.

    Raises: InvalidInput naming the field (blank, longer than its column, a control or invisible character)
    """
    text = value.strip()
    if not text or len(text) > limit or not plain(text):
        raise InvalidInput(f"{what}须为1–{limit}个字符，且不含控制字符或不可见字符 ({field}: 1–{limit} characters, "
                           "no control or invisible characters)", field=field)
    return text


def add_unit(session: Session, *, code: str, name: str, kind: str = "department",
             parent_code: str | None = None, actor: Actor = SYSTEM) -> OrgUnit:
    """Add an org unit (flushes).

    Raises: InvalidInput (code, name), Conflict, NotFound
    """
    code, name = _label(code, 80, "code", "单位代码"), _label(name, 120, "name", "单位名称")
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

    Raises: InvalidInput (code, name), Conflict
    """
    code, name = _label(code, 80, "code", "角色代码"), _label(name, 120, "name", "角色名称")
    if session.scalar(select(Role.id).where((Role.code == code) | (Role.name == name))) is not None:
        raise Conflict(f"角色已存在 (role exists): {code} / {name}", field="code")
    role = Role(code=code, name=name)
    session.add(role)
    session.flush()
    audit.record(session, actor, "org.role.add", stream=f"role:{role.id}", object_type="role", object_id=role.id,
                 after={"code": code, "name": name})
    return role


def _named(session: Session, model: type[Named], codes: list[str] | None, missing: str, field: str) -> list[Named]:
    """Return the units or roles of `codes`, each once, in the order first given (one read).

    Raises: NotFound naming `field` and the first unknown code
    """
    wanted = list(dict.fromkeys(codes or []))
    # A code no unit or role could have is not looked up (NUL bytes, lone surrogates: the database refuses the query).
    askable = [code for code in wanted if len(code) <= 80 and code.isprintable()]
    found = {row.code: row for row in session.scalars(select(model).where(model.code.in_(askable)))} if askable else {}
    for code in wanted:
        if code not in found:
            shown = code[:80] if code[:80].isprintable() else "?"
            raise NotFound(f"{missing}: {shown}", field=field)
    return [found[code] for code in wanted]


def _take_heads(session: Session, user: User, units: list[OrgUnit], actor: Actor) -> None:
    """Make `user` the head (负责人) of each unit, one `org.unit.head` each, as the directory sync records it (flushes).

    The units' rows are locked: two administrators naming two heads of one unit at once take turns, and the second
    is refused rather than getting a membership marked head of a unit that kept the first.

    Raises: Conflict (field is_head) when a unit has a head already
    """
    locked = session.scalars(select(OrgUnit).where(OrgUnit.id.in_([u.id for u in units])).order_by(OrgUnit.id)
                             .with_for_update().execution_options(populate_existing=True)).all()
    for unit in locked:
        if unit.leader_id is not None and unit.leader_id != user.id:
            head = session.get(User, unit.leader_id)
            raise Conflict(f"单位 {unit.name} 已有负责人 {head.display_name if head else unit.leader_id}，不能再设为负责人 "
                           f"(is_head: {unit.code} has a head already)", field="is_head")
    for unit in locked:
        before = {"leader_id": unit.leader_id, "responsible_leader_id": unit.responsible_leader_id}
        unit.leader_id = user.id
        session.flush()
        audit.record(session, actor, "org.unit.head", stream=f"org_unit:{unit.id}", object_type="org_unit",
                     object_id=unit.id, before=before,
                     after={"leader_id": user.id, "responsible_leader_id": unit.responsible_leader_id})


def add_user(session: Session, *, username: str, display_name: str, password: str | None = None,
             unit_codes: list[str] | None = None, role_codes: list[str] | None = None, is_head: bool = False,
             is_admin: bool = False, email: str | None = None, actor: Actor = SYSTEM) -> User:
    """Add a user with memberships: each unit, each role, and each role within each unit (flushes).

    Raises: Conflict, NotFound, InvalidInput
    """
    if not username.strip() or len(username) > 80:
        raise InvalidInput("用户名不能为空且不超过80字符 (username: 1–80 characters)", field="username")
    if not USERNAME.match(username):  # what data/seed allows: it is split on spaces and commas, shown in lists
        raise InvalidInput("用户名只能包含字母、数字、下划线、点和连字符，并以字母或数字开头 "
                           "(username: letters, digits, _ . - only)", field="username")
    display_name = check_display_name(display_name)
    # Whoever adds them (the 管理 page, `jzflow add-user`), within what changing one's own password allows
    if password is not None and not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"密码须为{MIN_PASSWORD}–{MAX_PASSWORD}位 (password: {MIN_PASSWORD}–{MAX_PASSWORD} characters)",
                           field="password")
    email = mailbox(email)
    # Taken whatever its case: "Zhang" beside "zhang" would be two people to the lists and one to whoever reads them.
    # The lock first: two administrators (or first SSO logins) adding it at once each passed the check before the
    # other committed (the unique constraint is on the exact spelling; the same spelling answered a 500). One lock
    # for every name, not one per name: a first directory sync adds thousands in one transaction, past PostgreSQL's
    # lock table; adding people is rare enough to take turns.
    advisory_lock(session, USERNAMES_LOCK)
    if session.scalar(select(User.id).where(func.lower(User.username) == username.lower())) is not None:
        raise Conflict(f"用户已存在（用户名不区分大小写）(user exists, in any case): {username}", field="username")
    user = User(username=username, display_name=display_name, email=email, is_admin=is_admin,
                password_hash=generate_password_hash(password) if password else None)
    session.add(user)
    session.flush()
    # Each once, in the order given: a form that repeats a field (tampered, or sent twice) made a row per repetition
    units = _named(session, OrgUnit, unit_codes, "单位不存在 (no such unit)", "unit")
    roles = _named(session, Role, role_codes, "角色不存在 (no such role)", "role")
    if is_head:
        _take_heads(session, user, units, actor)
    for unit in units:
        session.add(Membership(user_id=user.id, org_unit_id=unit.id, is_head=is_head))
    for role in roles:
        session.add(Membership(user_id=user.id, role_id=role.id))
    session.flush()
    # Never the password or its hash in the audit trail.
    audit.record(session, actor, "org.user.add", stream=f"user:{user.id}", object_type="app_user",
                 object_id=user.id, after={"username": username, "display_name": display_name, "admin": is_admin,
                                           "units": [u.code for u in units], "roles": [r.code for r in roles],
                                           "head": is_head})
    return user


def deactivate_account(session: Session, *, user: User, actor: Actor = SYSTEM) -> User:
    """Deactivate a user's account: they can no longer log in nor use their API tokens (flushes).

    Only through `engine.org.deactivate_user` (engine/org/leaving.py), which also hands over their open tasks and
    has checked the request and locked the user's row.
    """
    if user.is_active:
        user.is_active = False
        user.session_epoch += 1  # every session of theirs ends now, and stays ended if they are reactivated
        session.flush()
        audit.record(session, actor, "org.user.deactivate", stream=f"user:{user.id}", object_type="app_user",
                     object_id=user.id, before={"active": True}, after={"active": False})
    return user


def end_sessions(session: Session, *, user_id: int) -> None:
    """End every login session of a user, on every device, server-side (flushes)."""
    user = session.get(User, user_id)
    if user is not None:
        user.session_epoch += 1
        session.flush()


def log_out(session: Session, *, actor: Actor, address: str | None, single_sign_out: bool) -> None:
    """Log a user out: every session of theirs ends, and the audit trail says when and from where (flushes)."""
    if actor.user_id is None:
        return
    end_sessions(session, user_id=actor.user_id)
    audit.record(session, actor, "auth.logout", stream=f"user:{actor.user_id}", object_type="app_user",
                 object_id=actor.user_id, after={"ip": address, "single_sign_out": single_sign_out})


def change_password(session: Session, *, user_id: int, current: str, new: str, actor: Actor) -> User:
    """Change one's own password after checking the current one; every other session ends (flushes). Leaving a
    temporary password an administrator set, every API token of theirs it held back (tokens.temporary) is revoked.

    Raises: NotFound, Forbidden, InvalidInput
    """
    # Their row locked and read again before the current password is checked: an administrator's reset at the same
    # moment (staffing.reset_password locks it too) is waited for and its password is the one checked, never
    # overwritten by a change that checked the password it replaced.
    user = session.get(User, user_id, with_for_update=True, populate_existing=True)
    if user is None:
        raise NotFound(f"用户不存在 (no such user): {user_id}", field="user")
    if actor.user_id != user.id:
        raise Forbidden("只能修改自己的密码 (you can change only your own password)")
    if not user.password_hash or not check_password_hash(user.password_hash, current):
        raise InvalidInput("当前密码不正确 (current password: wrong)", field="current_password")
    if not MIN_PASSWORD <= len(new) <= MAX_PASSWORD:
        raise InvalidInput(f"新密码须为{MIN_PASSWORD}–{MAX_PASSWORD}位 (new password: {MIN_PASSWORD}–{MAX_PASSWORD} "
                           "characters)", field="new_password")
    if new == current:
        raise InvalidInput("新密码不能与当前密码相同 (new password: same as the current one)", field="new_password")
    # Tokens from before the reset were refused until now; the reset may have followed a compromise, so they do not
    # come back with the change: their holder issues new ones (one made since the reset is none: it revoked them).
    held_back = tokens.temporary(user.username, must_change=user.must_change_password)
    user.password_hash = generate_password_hash(new)
    user.must_change_password = False  # the temporary one an administrator set is changed
    user.session_epoch += 1
    revoked = tokens.revoke_live(session, user.id) if held_back else 0
    session.flush()
    # Never the password or its hash in the audit trail.
    audit.record(session, actor, "org.user.password", stream=f"user:{user.id}", object_type="app_user",
                 object_id=user.id, after={"sessions_ended": True, **({"tokens_revoked": revoked} if revoked else {})})
    return user


def users(session: Session) -> list[tuple[User, list[str], list[str]]]:
    """Return every user with the names of their units and roles, by username."""
    rows = session.execute(select(Membership.user_id, OrgUnit.name, Role.name)
                           .outerjoin(OrgUnit, OrgUnit.id == Membership.org_unit_id)
                           .outerjoin(Role, Role.id == Membership.role_id)).all()
    units: dict[int, list[str]] = {}
    roles: dict[int, list[str]] = {}
    for user_id, unit_name, role_name in rows:
        if unit_name and unit_name not in units.setdefault(user_id, []):
            units[user_id].append(unit_name)
        if role_name and role_name not in roles.setdefault(user_id, []):
            roles[user_id].append(role_name)
    return [(u, units.get(u.id, []), roles.get(u.id, []))
            for u in session.scalars(select(User).order_by(User.username))]


def units(session: Session) -> list[tuple[OrgUnit, User | None, User | None]]:
    """Return every org unit with its leader and its responsible (city) leader, by code."""
    all_units = list(session.scalars(select(OrgUnit).order_by(OrgUnit.kind, OrgUnit.code)))
    ids = {i for u in all_units for i in (u.leader_id, u.responsible_leader_id) if i is not None}
    people = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids or {-1})))}
    return [(u, people.get(u.leader_id) if u.leader_id else None,
             people.get(u.responsible_leader_id) if u.responsible_leader_id else None) for u in all_units]


def roles(session: Session) -> list[Role]:
    """Return every role, by code."""
    return list(session.scalars(select(Role).order_by(Role.code)))
