"""API tokens for machine clients: issue (plaintext shown once, with an expiry and a scope), authenticate by sha256,
revoke; all audited.

A token's scope, chosen at issue, bounds what it may do on top of its owner's rights: READ lets it read only (the
API answers GET, HEAD and OPTIONS; everything else is refused 403 token_read_only, web/api/blueprint.py), READ_WRITE
lets it do all its owner may. Unchosen, a token is READ: the least power.
"""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from engine import audit, clock, config, direct
from engine.errors import Forbidden, InvalidInput, NotFound, PasswordChangeRequired, TokenExpired, UserNotFound
from engine.org import oidc
from engine.org.actors import Actor, actor_from, actor_of, with_holdings
from engine.org.models import User
from engine.org.token_models import ApiToken

PREFIX = "jzf_"
# Touching last_used_at on every call would write on every GET: once a minute is enough to tell.
TOUCH_INTERVAL = timedelta(minutes=1)
DEFAULT_DAYS = 90  # a token's lifetime unless its issuer chooses another (cut to the maximum)
DAY_CHOICES = (30, 90, 180, 365)  # the lifetimes the token page offers, those within the maximum
LIFETIME_FIELD = "expires_in_days"
READ = "read"
READ_WRITE = "read_write"
SCOPES = (READ, READ_WRITE)
SCOPE_FIELD = "scope"


def digest(plaintext: str) -> str:
    """Return the sha256 hex of a token: the only form in which it is stored."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def _may_manage(actor: Actor, user_id: int) -> bool:
    return actor.is_admin or actor.is_system or actor.user_id == user_id


def max_days() -> int:
    """Return the longest lifetime a token may be issued with (JZFLOW_TOKEN_MAX_DAYS, default 365)."""
    return config.load().token_max_days


def default_days() -> int:
    """Return the lifetime of a token whose issuer chose none: DEFAULT_DAYS, cut to the maximum."""
    return min(DEFAULT_DAYS, max_days())


def offered_days() -> list[int]:
    """Return the lifetimes to offer on the token page: the usual choices within the maximum, and the default."""
    return sorted({d for d in DAY_CHOICES if d <= max_days()} | {default_days()})


def lifetime(days: int | str | None) -> timedelta:
    """Return the lifetime of a token issued for `days` days (None or blank: the default).

    Raises: InvalidInput (not a whole number of days from 1 to the maximum)
    """
    limit = max_days()
    if days is None or (isinstance(days, str) and not days.strip()):
        return timedelta(days=default_days())
    text = days.strip() if isinstance(days, str) else None
    whole = int(text) if text is not None and text.isascii() and text.isdigit() and len(text) <= 6 else days
    if isinstance(whole, bool) or not isinstance(whole, int) or not 1 <= whole <= limit:
        raise InvalidInput(f"有效期须为 1 到 {limit} 天的整数 ({LIFETIME_FIELD}: a whole number of days, 1–{limit})",
                           field=LIFETIME_FIELD)
    return timedelta(days=whole)


def scope_of(value: str | None) -> str:
    """Return the scope a token is issued with (None or blank: READ, the least power).

    Raises: InvalidInput (not one of SCOPES)
    """
    if value is None or not value.strip():
        return READ
    if value.strip() not in SCOPES:
        raise InvalidInput(f"权限范围须为 {' / '.join(SCOPES)} 之一 ({SCOPE_FIELD}: one of {', '.join(SCOPES)})",
                           field=SCOPE_FIELD)
    return value.strip()


def issue(session: Session, user: User, name: str, *, actor: Actor | None = None,
          days: int | str | None = None, scope: str | None = None) -> str:
    """Create a token for `user`, valid `days` days (None: the default), with `scope` (None: READ), and return its
    plaintext, which is never stored nor shown again (flushes).

    The acting user defaults to `user` themself; only admins may issue tokens for others, and not for another
    admin: a token acts with all of its owner's rights, so that would be an admin acting as another over the API.
    None while the owner's password is a temporary one an administrator set (staffing.reset_password).

    Raises: Forbidden, InvalidInput
    """
    acting = actor if actor is not None else actor_of(session, user)
    if not _may_manage(acting, user.id):
        raise Forbidden("只能为自己创建令牌 (you may only create tokens for yourself)", user_id=user.id)
    if user.is_admin and acting.user_id != user.id:
        raise Forbidden(f"所属用户不能是其他管理员: {user.username}，管理员的令牌只能由本人创建 (username: not another "
                        "administrator — a token acts as its owner; admins issue their own)",
                        field="username", username=user.username)
    # The owner's row locked and read again: a 停用 or a password reset at the same moment (each locks the row too) is
    # waited for and seen; a reset after this lock waits for the issue, and revokes the token it made.
    session.refresh(user, ["is_active", "must_change_password"], with_for_update=True)
    if not user.is_active:
        raise InvalidInput("用户已停用 (the user is deactivated)", field="user")
    if temporary(user.username, must_change=user.must_change_password):
        # An administrator reset the password (after a compromise, perhaps): until its owner has changed it, the
        # temporary password, known to two, must not become a credential that outlives it. Not while single sign-on
        # keeps this person's password from opening a login at all: then it is no way in.
        raise InvalidInput(f"{user.username} 须先修改管理员设置的临时密码，才能创建令牌 (username: change the "
                           "temporary password an administrator set first)", field="username",
                           username=user.username)
    clean = name.strip()
    if not clean or len(clean) > 100:
        raise InvalidInput("令牌名称不能为空且不超过100字符 (name: 1–100 characters)", field="name")
    lasts, chosen = lifetime(days), scope_of(scope)
    plaintext = PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    token = ApiToken(user_id=user.id, name=clean, token_hash=digest(plaintext), prefix=plaintext[:12],
                     created_by_id=acting.user_id, created_at=now, expires_at=now + lasts, scope=chosen)
    session.add(token)
    session.flush()
    # Never the token or its hash in the audit trail: the prefix is enough to tell tokens apart.
    audit.record(session, acting, "api_token.issue", stream=f"user:{user.id}", object_type="api_token",
                 object_id=token.id, after={"name": clean, "prefix": token.prefix, "user": user.username,
                                            "expires_at": token.expires_at.isoformat(), "scope": chosen})
    return plaintext


def temporary(username: str, *, must_change: bool) -> bool:
    """Tell whether a person's password is a temporary one an administrator set that opens a login: no token of theirs
    is issued nor honoured until they change it. Not while single sign-on keeps their password from opening a login
    (oidc.Settings.allows_password): then it is no way in, and their tokens stand."""
    return must_change and oidc.load_settings().allows_password(username)


def owner(session: Session, username: str) -> User:
    """Return the active user a token is to be issued to.

    Raises: UserNotFound
    """
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active:
        raise UserNotFound(f"用户不存在或已停用 (no such active user): {username}", field="username", username=username)
    return user


# Built once: the token, its user and what the user holds, in one read (an API request's first). Columns, not
# entities: an API request needs the Actor only, and loading two entities into the session cost more than the read.
_TOKEN_ACTOR = (with_holdings(select(ApiToken.id.label("token_id"), ApiToken.last_used_at, ApiToken.expires_at,
                                     ApiToken.scope, User.id, User.username, User.display_name, User.is_admin,
                                     User.is_active, User.must_change_password)
                              .join(User, User.id == ApiToken.user_id))
                .where(ApiToken.token_hash == bindparam("token_hash"), ApiToken.revoked_at.is_(None)))
_TOKEN_READ = direct.Prepared(_TOKEN_ACTOR, named=True)
_TOUCH = update(ApiToken).where(ApiToken.id == bindparam("token_id")).values(last_used_at=bindparam("now"))


def authenticate(session: Session, plaintext: str) -> Actor | None:
    """Return the Actor of the active user owning an unrevoked, unexpired token, or None (`authenticate_scoped`).

    Raises: TokenExpired
    """
    found = authenticate_scoped(session, plaintext)
    return found[0] if found is not None else None


def authenticate_scoped(session: Session, plaintext: str) -> tuple[Actor, str] | None:
    """Return the Actor of the active user owning an unrevoked, unexpired token, and the token's scope; or None.
    Notes when it was last used.

    One read: the token, its user and the user's org units and roles. last_used_at is written at most once per
    TOUCH_INTERVAL, in the request's transaction (never for an expired token).

    Raises: TokenExpired (the token is known and live but past its expiry: its holder is told to issue a new one),
    PasswordChangeRequired (its owner's password is a temporary one an administrator set: `temporary`)
    """
    if not plaintext.startswith(PREFIX) or len(plaintext) > 200:
        return None
    # Columns only, on the session's cursor (engine/direct.py): every API request's first statement
    rows: list[Any] = _TOKEN_READ.rows(session, {"token_hash": digest(plaintext)})
    if not rows:
        return None
    first = rows[0]
    if not first.is_active:
        return None
    if temporary(first.username, must_change=first.must_change_password):
        # A token from before the reset (one made since is revoked by it, and none is issued until the change): the
        # reset may follow a compromise, so it stops now, and the change revokes it (core.change_password).
        raise PasswordChangeRequired(
            f"令牌所属用户 {first.username} 的密码已由管理员重置，此令牌不再可用：请先修改密码，再创建新令牌 (the owner's "
            "password was reset by an administrator: this token no longer works; change the password, then issue a new "
            "token)", username=first.username)
    now = clock.now()
    if now >= clock.as_utc(first.expires_at):
        raise TokenExpired("令牌已过期，请创建新令牌 (the token has expired: issue a new one)",
                           expired_at=clock.as_utc(first.expires_at).isoformat())
    if first.last_used_at is None or now - clock.as_utc(first.last_used_at) >= TOUCH_INTERVAL:
        session.execute(_TOUCH, {"token_id": first.token_id, "now": now})
    return actor_from(first, rows), str(first.scope)


def revoke(session: Session, *, token_id: int, actor: Actor) -> ApiToken:
    """Revoke a token for good: the owner or an admin (flushes).

    Raises: NotFound (also for another's token: one's tokens are one's own, as if the others did not exist)
    """
    # Its row locked as it is read: two revocations at once (the owner's and an admin's) revoke and audit it once.
    token = session.get(ApiToken, token_id, with_for_update=True, populate_existing=True)
    if token is None or not _may_manage(actor, token.user_id):
        raise NotFound(f"令牌不存在 (no such token): {token_id}", token_id=token_id)
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        session.flush()
        audit.record(session, actor, "api_token.revoke", stream=f"user:{token.user_id}", object_type="api_token",
                     object_id=token.id, after={"name": token.name, "prefix": token.prefix})
    return token


def revoke_live(session: Session, user_id: int) -> int:
    """Revoke every live token of a user (a password reset, 启用, leaving a temporary password); return how many."""
    return session.execute(update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
                           .values(revoked_at=clock.now())).rowcount or 0  # type: ignore[attr-defined]


def listing(session: Session, actor: Actor, *, user_id: int | None = None) -> Sequence[tuple[ApiToken, User]]:
    """Return tokens with their owners: an admin's view of everyone's (or one user's), others only their own."""
    q = select(ApiToken, User).join(User, User.id == ApiToken.user_id)
    if not (actor.is_admin or actor.is_system):
        q = q.where(ApiToken.user_id == actor.user_id)
    elif user_id is not None:
        q = q.where(ApiToken.user_id == user_id)
    return [(r[0], r[1]) for r in session.execute(q.order_by(ApiToken.revoked_at.is_not(None), ApiToken.id.desc()))]


__all__ = ["READ", "READ_WRITE", "SCOPES", "authenticate", "authenticate_scoped", "default_days", "digest", "issue",
           "lifetime", "listing", "max_days", "offered_days", "owner", "revoke", "revoke_live", "scope_of",
           "temporary"]
