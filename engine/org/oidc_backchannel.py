"""统一身份认证后台退出: OpenID Connect Back-Channel Logout 1.0.

When a person logs out at the city's identity provider, or is disabled there, the provider POSTs a logout token
to jzflow (server to server) and their jzflow sessions end. The token is a JWT the provider signs with a key of
its key set — the ID tokens' rules (engine/org/oidc.py): an asymmetric algorithm only, never `none` nor an HMAC
keyed with the public key. Accepted only when `iss` is the issuer, `aud` holds our client id, `iat` is at most
MAX_AGE old (and not ahead by more than the leeway), an `exp` has not passed, `events` holds the back-channel
logout event, `sub` and/or `sid` is there, `nonce` is not (an ID token is no logout token) and its `jti` was not
taken before: tokens taken are kept in the database (sso_logout_token) while they could still be accepted, so
every web process sees them — the database, like the login counters (login_guard), not Redis.

What ends: every login through the provider is recorded (sso_session, its id in the browser's session) with the
subject its ID token verified (`sub`) and the provider's session (`sid`) when it names one; a token naming a
recorded sid ends those logins only (when it names a subject too, only logins of that subject). Otherwise every
session of the accounts the token's `sub` logged in to ends (the session epoch, as at logout): found by the
recorded logins, whatever the account's source (a directory-synced account keeps its DN as external_id), and
the account bound to the sub (app_user.sso_subject: made or linked by an SSO login, or linked by an administrator).
API tokens are not sessions: they stay.
A refused token changes nothing and names the claim at fault.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from joserfc import jws
from joserfc.errors import ClaimError, JoseError
from joserfc.jwt import JWTClaimsRegistry
from sqlalchemy import bindparam, delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine import audit
from engine.db import is_postgres
from engine.org import core
from engine.org.actors import SYSTEM, Actor, actor_from, actor_of, with_holdings
from engine.org.models import User
from engine.org.oidc import ALGORITHMS, LEEWAY, Settings, SsoError, decode_signed
from engine.org.sso_models import SsoLogoutToken, SsoSession

EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_AGE = 600          # seconds: a logout token issued longer ago is refused (the provider sends it at once)
MAX_TOKEN = 8192       # characters: a logout token is a few hundred
MAX_ID = 255           # characters of a sid or jti
MAX_SUBJECT = 400      # characters of a sub (app_user.sso_subject)
REFETCH_AFTER = 60.0   # seconds: a key the set lacks fetches it again at most this often (the endpoint is public)
TYPES = ("logout+jwt", "application/logout+jwt", "jwt")


class LogoutRefused(SsoError):
    """A logout token that may not end anything; `claim` names what is wrong with it, and nothing more."""

    code = "invalid_request"
    http_status = 400

    def __init__(self, claim: str) -> None:
        super().__init__(f"退出令牌无效：{claim} (logout token rejected: {claim})", field=claim)
        self.claim = claim


@dataclass(frozen=True)
class LogoutToken:
    """A verified logout token: whom it logs out, and until when its jti has to be remembered."""

    sub: str | None
    sid: str | None
    jti: str
    keep_until: datetime


@dataclass(frozen=True)
class Ended:
    """What a logout token ended: the users, and whether by their recorded provider session."""

    user_ids: tuple[int, ...]
    by_sid: bool


def _header(token: str) -> dict[str, Any]:
    try:
        header = jws.extract_compact(token.encode("ascii")).protected
    except (JoseError, ValueError, UnicodeError, TypeError) as exc:
        raise LogoutRefused("logout_token") from exc
    if not isinstance(header, dict):
        raise LogoutRefused("logout_token")
    return header


def _text(claims: dict[str, Any], name: str, limit: int) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise LogoutRefused(name)
    return value


def verify(settings: Settings, token: object, *, now: datetime) -> LogoutToken:
    """Verify a logout token's signature and claims (Back-Channel Logout 1.0, 2.6); return whom it names.

    Raises: LogoutRefused (naming the claim), SsoError (the provider's keys cannot be fetched)
    """
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
        raise LogoutRefused("logout_token")
    header = _header(token)
    if header.get("alg") not in ALGORITHMS:  # `none`, and HS256 keyed with the public key, never get near a key
        raise LogoutRefused("alg")
    if "typ" in header and str(header["typ"]).lower() not in TYPES:
        raise LogoutRefused("typ")
    try:
        claims = decode_signed(settings, token, refetch_after=REFETCH_AFTER)
    except (ValueError, JoseError) as exc:
        raise LogoutRefused("signature") from exc
    seconds = int(now.timestamp())
    registry = JWTClaimsRegistry(
        now=seconds, leeway=LEEWAY, iss={"essential": True, "value": settings.issuer},
        aud={"essential": True, "value": settings.client_id}, iat={"essential": True}, jti={"essential": True})
    try:
        registry.validate(claims)
    except ClaimError as exc:
        raise LogoutRefused(exc.claim) from exc
    if seconds - claims["iat"] > MAX_AGE:
        raise LogoutRefused("iat")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(EVENT), dict):
        raise LogoutRefused("events")
    if "nonce" in claims:
        raise LogoutRefused("nonce")
    jti = _text(claims, "jti", MAX_ID)
    sub, sid = _text(claims, "sub", MAX_SUBJECT), _text(claims, "sid", MAX_ID)
    if sub is None and sid is None:
        raise LogoutRefused("sub")
    assert jti is not None  # essential above
    # Accepted no later than iat + MAX_AGE: remembered that long (and the leeway), a replay always meets its jti.
    keep_until = datetime.fromtimestamp(int(claims["iat"]) + MAX_AGE + LEEWAY, UTC)
    return LogoutToken(sub=sub, sid=sid, jti=jti, keep_until=keep_until)


def _take(session: Session, settings: Settings, token: LogoutToken, *, now: datetime) -> None:
    """Remember the token's jti (one atomic upsert: the same token sent twice at once is taken once).

    Raises: LogoutRefused ("jti": taken before)
    """
    key = hashlib.sha256(f"{settings.issuer}\n{token.jti}".encode()).hexdigest()
    insert = pg_insert if is_postgres(session) else sqlite_insert
    stmt = insert(SsoLogoutToken).values(key=key, expires_at=token.keep_until)
    taken = session.execute(stmt.on_conflict_do_update(  # a row past its time is a purge not yet run, not a replay
        index_elements=[SsoLogoutToken.key], set_={"expires_at": token.keep_until},
        where=SsoLogoutToken.expires_at <= now).returning(SsoLogoutToken.key)).first()
    if taken is None:
        raise LogoutRefused("jti")


def log_out(session: Session, settings: Settings, token: object, *, now: datetime) -> Ended:
    """End the sessions a logout token names, once per token; audit each person logged out (flushes).

    Raises: LogoutRefused (naming the claim; nothing changed), SsoError (the provider's keys cannot be fetched)
    """
    verified = verify(settings, token, now=now)
    _take(session, settings, verified, now=now)
    if verified.sid is not None:
        named = select(SsoSession).where(SsoSession.sid == verified.sid, SsoSession.expires_at > now)
        if verified.sub is not None:
            named = named.where(SsoSession.sub == verified.sub)
        logins = list(session.scalars(named))
        if logins:  # the provider's session was recorded at login: that login ends, the person's others go on
            open_logins = [login for login in logins if login.ended_at is None]
            for login in open_logins:
                login.ended_at = now
            users = {login.user_id: session.get(User, login.user_id) for login in open_logins}
            _audit(session, [u for u in users.values() if u is not None], sid=verified.sid, sessions=len(open_logins))
            return Ended(user_ids=tuple(sorted(users)), by_sid=True)
    bound: list[User] = []
    if verified.sub is not None:  # a sub alone, or a sid no login recorded: every session of the person
        logged_in = select(SsoSession.user_id).where(SsoSession.sub == verified.sub, SsoSession.expires_at > now)
        bound = list(session.scalars(select(User).where(or_(
            User.id.in_(logged_in), User.sso_subject == verified.sub)).order_by(User.id)))
    for user in bound:
        core.end_sessions(session, user_id=user.id)
    _audit(session, bound, sid=verified.sid, sessions="all")
    return Ended(user_ids=tuple(u.id for u in bound), by_sid=False)


def _audit(session: Session, users: list[User], *, sid: str | None, sessions: int | str) -> None:
    session.flush()
    for user in users:
        audit.record(session, actor_of(session, user) if user.is_active else SYSTEM, "auth.backchannel_logout",
                     stream=f"user:{user.id}", object_type="app_user", object_id=user.id,
                     after={"sid": sid, "sessions": sessions})


def record_login(session: Session, *, user_id: int, sub: str, sid: object, now: datetime, lifetime: timedelta) -> int:
    """Record a login through the provider: its verified subject and the provider's session when the ID token named
    a usable one (else a logout token names it by sub only); return the record's id for the browser's session.
    Flushes."""
    usable = isinstance(sid, str) and bool(sid) and len(sid) <= MAX_ID and sid.isprintable()
    login = SsoSession(user_id=user_id, sub=sub[:MAX_SUBJECT], sid=sid if usable else None, created_at=now,
                       expires_at=now + lifetime)
    session.add(login)
    session.flush()
    return login.id


# Built once: the user, what they hold, and whether the login the browser's session names is theirs and open.
_LOGIN_OPEN = select(SsoSession.id).where(
    SsoSession.id == bindparam("record"), SsoSession.user_id == User.id, SsoSession.ended_at.is_(None),
    SsoSession.expires_at > bindparam("now")).exists().label("login_open")
_USER_LOGIN = with_holdings(select(User, _LOGIN_OPEN)).where(User.id == bindparam("user_id"))


def user_with_login(session: Session, user_id: int, record: object, *, now: datetime
                    ) -> tuple[User, Actor, bool] | None:
    """Return a user by id with its Actor and whether the recorded login a browser's session names (`record`) is
    this user's and has not ended nor expired, in one read (a signed-in request's first, as user_with_actor), or
    None when there is no such user."""
    valid = isinstance(record, int) and not isinstance(record, bool)
    rows = session.execute(_USER_LOGIN, {"user_id": user_id, "record": record if valid else -1, "now": now}).all()
    if not rows:
        return None
    user = rows[0][0]
    return user, actor_from(user, rows), bool(rows[0][1])


def purge(session: Session, *, now: datetime) -> int:
    """Delete the logout tokens and recorded logins past their time; return how many."""
    tokens = session.execute(delete(SsoLogoutToken).where(SsoLogoutToken.expires_at <= now))
    logins = session.execute(delete(SsoSession).where(SsoSession.expires_at <= now))
    return int(tokens.rowcount) + int(logins.rowcount)  # type: ignore[attr-defined]


__all__ = ["EVENT", "Ended", "LogoutRefused", "LogoutToken", "log_out", "purge", "record_login", "user_with_login",
           "verify"]
