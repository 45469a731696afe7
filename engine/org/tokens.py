"""API tokens for machine clients: issue (plaintext shown once), authenticate by sha256, revoke; all audited."""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.errors import Forbidden, InvalidInput, NotFound, UserNotFound
from engine.org.actors import Actor, actor_from, actor_of, with_holdings
from engine.org.models import User
from engine.org.token_models import ApiToken

PREFIX = "jzf_"
# Touching last_used_at on every call would write on every GET: once a minute is enough to tell.
TOUCH_INTERVAL = timedelta(minutes=1)


def digest(plaintext: str) -> str:
    """Return the sha256 hex of a token: the only form in which it is stored."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def _may_manage(actor: Actor, user_id: int) -> bool:
    return actor.is_admin or actor.is_system or actor.user_id == user_id


def issue(session: Session, user: User, name: str, *, actor: Actor | None = None) -> str:
    """Create a token for `user` and return its plaintext, which is never stored nor shown again (flushes).

    The acting user defaults to `user` themself; only admins may issue tokens for others.

    Raises: Forbidden, InvalidInput
    """
    acting = actor if actor is not None else actor_of(session, user)
    if not _may_manage(acting, user.id):
        raise Forbidden("只能为自己创建令牌 (you may only create tokens for yourself)", user_id=user.id)
    if not user.is_active:
        raise InvalidInput("用户已停用 (the user is deactivated)", field="user")
    clean = name.strip()
    if not clean or len(clean) > 100:
        raise InvalidInput("令牌名称不能为空且不超过100字符 (name: 1–100 characters)", field="name")
    plaintext = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=clean, token_hash=digest(plaintext), prefix=plaintext[:12],
                     created_by_id=acting.user_id, created_at=clock.now())
    session.add(token)
    session.flush()
    # Never the token or its hash in the audit trail: the prefix is enough to tell tokens apart.
    audit.record(session, acting, "api_token.issue", stream=f"user:{user.id}", object_type="api_token",
                 object_id=token.id, after={"name": clean, "prefix": token.prefix, "user": user.username})
    return plaintext


def owner(session: Session, username: str) -> User:
    """Return the active user a token is to be issued to.

    Raises: UserNotFound
    """
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active:
        raise UserNotFound(f"用户不存在或已停用: {username}", field="username", username=username)
    return user


def user_id_of(session: Session, plaintext: str) -> int | None:
    """Return the id of the user owning an unrevoked token, or None (a read: last_used_at is left alone)."""
    return session.scalar(select(ApiToken.user_id).where(ApiToken.token_hash == digest(plaintext),
                                                         ApiToken.revoked_at.is_(None)))


# Built once: the token, its user and what the user holds, in one read (an API request's first). Columns, not
# entities: an API request needs the Actor only, and loading two entities into the session cost more than the read.
_TOKEN_ACTOR = (with_holdings(select(ApiToken.id.label("token_id"), ApiToken.last_used_at, User.id, User.username,
                                     User.display_name, User.is_admin, User.is_active)
                              .join(User, User.id == ApiToken.user_id))
                .where(ApiToken.token_hash == bindparam("token_hash"), ApiToken.revoked_at.is_(None)))
_TOUCH = update(ApiToken).where(ApiToken.id == bindparam("token_id")).values(last_used_at=bindparam("now"))


def authenticate(session: Session, plaintext: str) -> Actor | None:
    """Return the Actor of the active user owning an unrevoked token, or None; notes when it was last used.

    One read: the token, its user and the user's org units and roles. last_used_at is written at most once per
    TOUCH_INTERVAL, in the request's transaction.
    """
    if not plaintext.startswith(PREFIX) or len(plaintext) > 200:
        return None
    # Through the session's connection: columns only, so the ORM's layer of session.execute adds nothing but its cost
    rows = session.connection().execute(_TOKEN_ACTOR, {"token_hash": digest(plaintext)}).all()
    if not rows:
        return None
    first = rows[0]
    if not first.is_active:
        return None
    now = clock.now()
    if first.last_used_at is None or now - clock.as_utc(first.last_used_at) >= TOUCH_INTERVAL:
        session.execute(_TOUCH, {"token_id": first.token_id, "now": now})
    return actor_from(first, rows)


def revoke(session: Session, *, token_id: int, actor: Actor) -> ApiToken:
    """Revoke a token for good: the owner or an admin (flushes).

    Raises: NotFound, Forbidden
    """
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"令牌不存在 (no such token): {token_id}", token_id=token_id)
    if not _may_manage(actor, token.user_id):
        raise Forbidden("只能吊销自己的令牌 (you may only revoke your own tokens)", token_id=token_id)
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        session.flush()
        audit.record(session, actor, "api_token.revoke", stream=f"user:{token.user_id}", object_type="api_token",
                     object_id=token.id, after={"name": token.name, "prefix": token.prefix})
    return token


def listing(session: Session, actor: Actor, *, user_id: int | None = None) -> Sequence[tuple[ApiToken, User]]:
    """Return tokens with their owners: an admin's view of everyone's (or one user's), others only their own."""
    q = select(ApiToken, User).join(User, User.id == ApiToken.user_id)
    if not (actor.is_admin or actor.is_system):
        q = q.where(ApiToken.user_id == actor.user_id)
    elif user_id is not None:
        q = q.where(ApiToken.user_id == user_id)
    return [(r[0], r[1]) for r in session.execute(q.order_by(ApiToken.revoked_at.is_not(None), ApiToken.id.desc()))]


__all__ = ["authenticate", "digest", "issue", "listing", "owner", "revoke"]
