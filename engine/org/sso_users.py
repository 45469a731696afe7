"""The person an ID token vouches for becomes (or updates) a jzflow user: unit and roles from the claims.

Refused, with nothing written: a token without a usable username, an emergency account
(JZFLOW_OIDC_LOCAL_LOGINS: local password only, no provider speaks for it), a unit claim naming no unit here
(the city's directory and jzflow's disagree: an administrator has to add the unit or fix the mapping), a
deactivated account (停用 is jzflow's decision, not the provider's), and an account a first SSO login made, or
bound, for another subject (`sub` names the person at the provider; a username may be reassigned or chosen there).
Roles arrive through JZFLOW_OIDC_ROLE_MAP (provider value → role code); with no map, values that are role codes
here are taken as they are, and unknown ones ignored. A name holding hidden characters (controls, bidi overrides,
zero-width spaces: `core.plain`) is not taken: a new account is named by its username, an existing one keeps its name.
The unit memberships and the roles are brought to what the token says when it says it (an absent claim changes
nothing); with a map, only the roles it maps to are the provider's to take away.

Which account: the one bound to the token's `sub` (app_user.sso_subject), whatever its username claim says now;
else the one its username claim names — refused when that account is bound to another subject, and, when it is
bound to none (made here, or by the directory sync), linked only as JZFLOW_OIDC_LINK allows (oidc.LINK_MODES;
default: only an administrator links it, `link`). A username claim alone never takes an existing account over unless
the deployment said the provider's usernames are to be trusted; else a new account, bound to the subject.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from engine import audit
from engine.db import advisory_lock
from engine.errors import InvalidInput
from engine.org import core, leaving
from engine.org.actors import SYSTEM, Actor, actor_of
from engine.org.models import Membership, OrgUnit, Role, User
from engine.org.oidc import Settings, SsoRefused
from engine.tasks import handover

MAX_CLAIM = 200
MAX_SUBJECT = 400  # characters of a sub (app_user.sso_subject): a longer one is refused, never cut


def _texts(value: Any) -> list[str] | None:
    """Return a claim as a list of strings (a single string, or a list of them); None when absent."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    return [str(v).strip()[:MAX_CLAIM] for v in items if isinstance(v, (str, int)) and str(v).strip()]


def _units(session: Session, names: list[str]) -> list[OrgUnit]:
    units: list[OrgUnit] = []
    for name in names:
        unit = session.scalar(select(OrgUnit).where((OrgUnit.code == name) | (OrgUnit.name == name)))
        if unit is None:
            raise SsoRefused(f"您所在的单位“{name}”尚未在本系统登记，无法登录。请联系系统管理员添加该单位。"
                             f" (unit {name!r} is not known here: nothing was created)", field="unit", unit=name)
        units.append(unit)
    return units


def _roles(session: Session, settings: Settings, values: list[str]) -> list[Role]:
    codes = [settings.role_map[v] for v in values if v in settings.role_map] if settings.role_map else values
    return list(session.scalars(select(Role).where(Role.code.in_(codes or ["-"])).order_by(Role.code)))


def provision(session: Session, settings: Settings, claims: dict[str, Any]) -> User:
    """Create or update the user the verified claims describe; return them (flushes).

    Raises: SsoRefused (no username or sub, unknown unit, deactivated user, an account the subject may not take)
    """
    username = str(claims.get(settings.username_claim) or "").strip()
    if not username or len(username) > 80 or not core.USERNAME.match(username):
        raise SsoRefused("统一身份认证未提供可用的用户名，无法登录 (no usable username claim "
                         f"{settings.username_claim!r})", field="username")
    # Emergency accounts are local only: no provider can speak for them, in whatever case it spells them
    if username.lower() in {name.lower() for name in settings.local_logins}:
        raise SsoRefused(f"账号 {username} 为本地应急账号，只能使用本地密码登录 (a local emergency account)",
                         field="username")
    # unusable (blank, too long, a control or bidi-override character): the username for a new account
    display_name = core.display_name_or_none(str(claims.get(settings.name_claim) or "").strip()[:120])
    email_value = claims.get(settings.email_claim)
    email = core.mailbox_or_none(email_value) if isinstance(email_value, str) else None
    unit_names = _texts(claims.get(settings.unit_claim))
    role_values = _texts(claims.get(settings.roles_claim))
    units = _units(session, unit_names or [])  # before anything is written: an unknown unit creates nothing
    roles = _roles(session, settings, role_values) if role_values is not None else None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT or not subject.isprintable():
        raise SsoRefused("统一身份认证未提供可用的用户标识，无法登录 (no usable sub claim)", field="sub")
    user = _account(session, settings, claims, username, subject)
    if user is not None:  # found again under its lock: a login of another subject may have bound it meanwhile
        _lock(session, user)
        user = _account(session, settings, claims, username, subject)
    if user is None:  # a first login: read again under the lock add_user takes, so a login in another tab that adds
        advisory_lock(session, core.USERNAMES_LOCK)  # the account meanwhile is found, not refused as a duplicate
        user = _account(session, settings, claims, username, subject)
    if user is not None and not user.is_active:
        raise SsoRefused("您的账号已停用，无法登录。如有疑问请联系系统管理员。 (account deactivated)", field="username")
    if user is None:
        user = core.add_user(session, username=username, display_name=display_name or username, email=email,
                             unit_codes=[u.code for u in units], role_codes=[r.code for r in roles or []])
        user.source, user.external_id, user.sso_subject = "oidc", subject, subject
        session.flush()
        return user
    before = _state(session, user)
    if user.sso_subject is None and not _bind(session, user, subject):  # its first SSO login, as JZFLOW_OIDC_LINK
        session.refresh(user)  # allowed; a login of the same subject in another tab bound it first and updated it:
        before = _state(session, user)  # its changes are not this login's
    if display_name is not None:  # an unusable name claim changes nothing, as an absent one
        user.display_name = display_name
    if email:
        user.email = email
    if unit_names is not None:
        _set_units(session, user, units)
    if roles is not None:
        # With a role map, the provider manages only the roles it maps to; others an administrator gave stay.
        managed = set(settings.role_map.values()) if settings.role_map else None
        _set_roles(session, user, roles, managed)
    session.flush()
    after = _state(session, user)
    if after != before:
        audit.record(session, actor_of(session, user) if user.is_active else SYSTEM, "org.user.sso_update",
                     stream=f"user:{user.id}", object_type="app_user", object_id=user.id, before=before, after=after)
    return user


def _account(session: Session, settings: Settings, claims: dict[str, Any], username: str, subject: str) -> User | None:
    """Return the account this subject logs in to, None for a new one.

    Raises: SsoRefused (an emergency account; an account bound to another subject, or one the link mode keeps)
    """
    user = session.scalar(select(User).where(User.sso_subject == subject))
    if user is None:  # the same account whatever case the provider spells it in (ASCII: lower() agrees with SQL's)
        user = session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    if user is None:
        return None
    if user.username.lower() in {name.lower() for name in settings.local_logins}:
        raise SsoRefused(f"账号 {user.username} 为本地应急账号，只能使用本地密码登录 (a local emergency account)",
                         field="username")
    if user.sso_subject is not None and user.sso_subject != subject:
        raise SsoRefused(f"账号 {user.username} 已属于统一身份认证中的另一身份，无法登录。请联系系统管理员。"
                         " (the account belongs to another subject: sub differs)", field="sub")
    if user.sso_subject is None and not _may_link(settings, claims, user):
        raise SsoRefused(f"账号 {user.username} 已存在，尚未与统一身份认证关联，无法登录。请联系系统管理员关联，"
                         f"并告知您的统一身份认证标识：{subject[:100]} (the account exists and is not linked to this "
                         "provider subject: an administrator links it with jzflow sso-link)",
                         field="sub", username=user.username)
    return user


def _lock(session: Session, user: User) -> None:
    """Lock the person's row and read it again before their memberships are read (the instances of their open tasks
    first, as 编辑人员 and a 停用 take them; PostgreSQL, SQLite has one writer): a login in another tab at the same
    moment waits, then finds what this one added. Both read the memberships unlocked and added each claimed unit and
    role (uq_membership holds no NULL: a unit's row has no role, a role's no unit), so the person had them twice."""
    handover.lock_instances(session, user.id)
    session.refresh(user, with_for_update={"key_share": True})  # FOR NO KEY UPDATE: a row naming them still goes in


def _may_link(settings: Settings, claims: dict[str, Any], user: User) -> bool:
    """Tell whether a login may bind an unbound existing account, as JZFLOW_OIDC_LINK says (the username matched)."""
    if settings.link == "username":
        return True
    if settings.link == "email":
        asserted = claims.get(settings.email_claim)
        return (claims.get("email_verified") is True and isinstance(asserted, str) and user.email is not None
                and asserted.strip().lower() == user.email.strip().lower())
    return False


def _bind(session: Session, user: User, subject: str) -> bool:
    """Bind an unbound account to a subject in one conditional update (flushes); return False when a login of the same
    subject bound it meanwhile.

    Raises: SsoRefused (another subject's login bound it meanwhile)
    """
    done = session.execute(update(User).where(User.id == user.id, User.sso_subject.is_(None))
                           .values(sso_subject=subject).execution_options(synchronize_session=False))
    session.refresh(user, ["sso_subject"])
    if user.sso_subject != subject:
        raise SsoRefused(f"账号 {user.username} 已属于统一身份认证中的另一身份，无法登录。请联系系统管理员。"
                         " (the account belongs to another subject: sub differs)", field="sub")
    if user.source is None:  # an account made here becomes the provider's (an LDAP one stays the directory's)
        user.source, user.external_id = "oidc", subject
    return bool(done.rowcount)  # type: ignore[attr-defined]


def link(session: Session, settings: Settings, *, username: str, subject: str | None, actor: Actor = SYSTEM) -> User:
    """Bind an account to the provider's subject (None: unbind it), as an administrator does; audited (flushes).

    Raises: InvalidInput (no such account, an emergency account, a subject bound to another account, an account
    bound to another subject: unbind it first; a blank or overlong subject)
    """
    user = session.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))
    if user is None:
        raise InvalidInput(f"用户不存在: {username[:80]} (username: no such account)", field="username")
    if user.username.lower() in {name.lower() for name in settings.local_logins}:
        raise InvalidInput(f"账号 {user.username} 为本地应急账号，不能与统一身份认证关联 (username: an emergency "
                           "account, JZFLOW_OIDC_LOCAL_LOGINS)", field="username")
    if subject is not None:
        subject = subject.strip()
        if not subject or len(subject) > MAX_SUBJECT or not subject.isprintable():
            raise InvalidInput(f"统一身份认证标识须为 1 到 {MAX_SUBJECT} 个可打印字符 (subject: 1–{MAX_SUBJECT} "
                               "printable characters)", field="subject")
        holder = session.scalar(select(User.username).where(User.sso_subject == subject, User.id != user.id))
        if holder is not None:
            raise InvalidInput(f"该统一身份认证标识已关联账号 {holder} (subject: already linked to {holder})",
                               field="subject", username=holder)
        if user.sso_subject not in (None, subject):
            raise InvalidInput(f"账号 {user.username} 已关联另一统一身份认证标识，请先解除关联 (--unlink) "
                               "(username: linked to another subject; unlink it first)", field="username")
    before = user.sso_subject
    if before != subject:
        user.sso_subject = subject
        session.flush()
        audit.record(session, actor, "org.user.sso_link", stream=f"user:{user.id}", object_type="app_user",
                     object_id=user.id, before={"sso_subject": before}, after={"sso_subject": subject})
    return user


def _state(session: Session, user: User) -> dict[str, Any]:
    rows = session.execute(select(OrgUnit.code, Role.code).select_from(Membership)
                           .outerjoin(OrgUnit, OrgUnit.id == Membership.org_unit_id)
                           .outerjoin(Role, Role.id == Membership.role_id)
                           .where(Membership.user_id == user.id)).all()
    return {"display_name": user.display_name, "email": user.email, "source": user.source,
            "sso_subject": user.sso_subject,
            "units": sorted({u for u, _ in rows if u}), "roles": sorted({r for _, r in rows if r})}


def _set_units(session: Session, user: User, units: list[OrgUnit]) -> None:
    """Bring the person's units to the claim's; what they claimed from the pool of a unit they left goes back, and a
    unit they left that they headed loses its head (调岗, leaving.move)."""
    wanted = {u.id for u in units}
    have = set(session.scalars(select(Membership.org_unit_id).where(
        Membership.user_id == user.id, Membership.org_unit_id.is_not(None), Membership.role_id.is_(None))))
    gone = have - wanted
    if gone:
        session.execute(delete(Membership).where(Membership.user_id == user.id,
                                                 Membership.org_unit_id.in_(gone), Membership.role_id.is_(None)))
    for unit_id in sorted(wanted - have):
        session.add(Membership(user_id=user.id, org_unit_id=unit_id))
    if gone:
        session.flush()
        leaving.move(session, user=user, left={i for i in gone if i is not None}, actor=SYSTEM, reason="sso: moved")


def _set_roles(session: Session, user: User, roles: list[Role], managed: set[str] | None) -> None:
    wanted = {r.id for r in roles}
    have = set(session.scalars(select(Membership.role_id).where(
        Membership.user_id == user.id, Membership.role_id.is_not(None), Membership.org_unit_id.is_(None))))
    gone = have - wanted
    if managed is not None:
        gone &= set(session.scalars(select(Role.id).where(Role.code.in_(managed or {"-"}))))
    if gone:
        session.execute(delete(Membership).where(Membership.user_id == user.id,
                                                 Membership.role_id.in_(gone), Membership.org_unit_id.is_(None)))
        session.flush()  # what they claimed from that role's pool goes back to it
        leaving.move(session, user=user, roles={i for i in gone if i is not None}, actor=SYSTEM,
                     reason="sso: role removed")
    for role_id in sorted(wanted - have):
        session.add(Membership(user_id=user.id, role_id=role_id))
