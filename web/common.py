"""What every feature blueprint shares: the request's session, the acting user, commit-then-kick."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import Flask, current_app, g, request
from flask import session as cookie_session
from flask_login import UserMixin, current_user
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine import clock, notify
from engine.errors import InvalidInput
from engine.org import idempotency, oidc_backchannel
from engine.org.actors import Actor, actor_of, user_with_actor
from engine.org.models import User
from web.extensions import login_manager
from web.links import nav_allowed

SSO_SESSION = "oidc_session"  # a login's record of the provider's session (web/auth/sso.py): ended by the provider

class LoginUser(UserMixin):  # type: ignore[misc]
    """The flask-login view of a user; the engine sees an Actor.

    The session stores "<id>:<session epoch>": logout, a password change or deactivation bump the
    user's epoch, so every session cookie issued before stops working, on every device.
    """

    def __init__(self, user: User, actor: Actor | None = None) -> None:
        self.user = user
        self.id = str(user.id)
        self.actor = actor  # read with the user when the session cookie loaded it

    def get_id(self) -> str:
        return f"{self.user.id}:{self.user.session_epoch}"

    @property
    def is_active(self) -> bool:
        return bool(self.user.is_active)


def db_session() -> Session:
    """Return the request's database session (the view commits; teardown rolls back the rest)."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["jzflow.sessionmaker"]()
    session: Session = g.db_session
    return session


def current_actor() -> Actor:
    """Return the Actor of the logged-in user (cached for the request)."""
    if "actor" not in g:
        g.actor = current_user.actor or actor_of(db_session(), current_user.user)
    actor: Actor = g.actor
    return actor


def commit() -> None:
    """Commit the request's unit of work, then nudge the outbox job (after the commit, never before).

    Only when the unit of work queued a message: a broker round trip per request costs more than the
    completion itself; beat's schedule still delivers whatever was queued another way.
    """
    session = db_session()
    session.commit()
    if notify.queued(session):
        kick_outbox()


def commit_remembered(pending: tuple[int, str, str], answer: idempotency.Answer) -> idempotency.Answer | None:
    """Commit the request's work with the answer stored under its key (`pending`: user id, key, fingerprint), as an
    API `Idempotency-Key` or a form's `once` asks; return None, or the first answer when a twin sent with the same key
    committed first (then this request's work is undone, and the twin's stands).
    """
    user_id, key, fingerprint = pending
    try:
        idempotency.remember(db_session(), user_id=user_id, key=key, fingerprint=fingerprint, answer=answer)
        commit()
    except IntegrityError:
        db_session().rollback()
        first = idempotency.find(db_session(), user_id=user_id, key=key, fingerprint=fingerprint)
        if first is None:
            raise
        return first
    return None


def kick_outbox() -> None:
    """Ask a worker to deliver the outbox now; if the broker is down, beat's schedule does it later."""
    kick("engine.jobs.deliver_outbox")


def kick(task_name: str, args: list[Any] | None = None) -> None:
    """Send a job without waiting on a broker that is down (beat's sweeps catch up later)."""
    if current_app.config.get("TESTING") or current_app.config.get("JZFLOW_NO_KICK"):
        return
    try:
        from engine.celery_app import celery
        # No connection retries: with the broker down, kombu would otherwise hold the request for seconds.
        options = dict(celery.conf.broker_transport_options or {})
        if str(celery.conf.broker_url or "").startswith("redis"):  # the SQLite broker hands options to create_engine
            options["max_retries"] = 0
        with celery.connection_for_write(transport_options=options) as connection:
            celery.send_task(task_name, args=args or [], retry=False, ignore_result=True, connection=connection)
    except Exception:  # noqa: S110  # nosec B110 # the broker being down must not fail a committed request
        pass


def shanghai(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Format an aware UTC time in Asia/Shanghai."""
    if value is None:
        return ""
    return clock.as_utc(value).astimezone(clock.SHANGHAI).strftime(fmt)


# The main navigation: shown when the endpoint exists (features register their blueprints).
NAV = (
    ("inbox.index", "待办"), ("inbox.done", "已办"), ("inbox.started", "我发起的"), ("inbox.cc", "抄送我的"),
    ("processes.index", "发起流程"), ("instances.index", "流程实例"), ("supervision.index", "督办"),
    ("projects.index", "项目库"), ("ledger.index", "问题台账"),
    ("reports.index", "报表"), ("meetings.index", "评审会议"), ("dashboard.index", "经济运行监测"),
    ("modeller.index", "流程建模"), ("messages.index", "消息与信号"),
    ("audit.index", "审计"), ("notifications.index", "通知"),
    ("admin.index", "管理"),
)


def init_app(app: Flask) -> None:
    """Register the user loader, template filters and globals."""

    @login_manager.user_loader
    def _load(session_id: str) -> LoginUser | None:
        user_id, _, epoch = session_id.partition(":")
        if not user_id.isdigit() or not epoch.isdigit():
            return None  # includes cookies from before sessions carried an epoch
        record = cookie_session.get(SSO_SESSION)  # a single sign-on login the provider may have logged out since
        if record is None:
            found = user_with_actor(db_session(), int(user_id))
        else:  # checked in the same read as the user: a signed-in request stays at one
            with_login = oidc_backchannel.user_with_login(db_session(), int(user_id), record, now=clock.now())
            found = with_login[:2] if with_login is not None and with_login[2] else None
        if found is None or not found[0].is_active or found[0].session_epoch != int(epoch):
            return None
        return LoginUser(*found)

    app.jinja_env.filters["shanghai"] = shanghai

    @app.context_processor
    def _globals() -> dict[str, Any]:
        unread = 0
        if current_user.is_authenticated:
            unread = notify.unread_count(db_session(), current_user.user.id)
        from flask_babel import get_locale
        from flask_babel import gettext as _
        links = [(endpoint, _(label)) for endpoint, label in NAV
                 if endpoint in app.view_functions and (not current_user.is_authenticated or nav_allowed(endpoint))]
        return {"unread_count": unread, "locale": str(get_locale() or "zh"), "nav_links": links}


_LABELS = {"opinion": "意见", "note": "说明", "reason": "理由", "body": "评论", "message": "催办内容",
           "to_username": "用户名"}


def form_text(field: str, size: int = 4000) -> str:
    """A free text of the form, whole: its line breaks read as the browser counted them against the textarea's
    `maxlength` (one, sent as CR LF), and past `size` refused naming the field — never cut (the end of an opinion
    was lost without a word).

    Raises: InvalidInput
    """
    value = request.form.get(field, "").replace("\r\n", "\n").strip()
    if len(value) > size:
        raise InvalidInput(f"{_LABELS.get(field, field)}（{field}）超过 {size} 字，请删减后重新提交 "
                           f"({field} is longer than {size} characters)", field=field, limit=size)
    return value


def due_date_of(value: object) -> date:
    """The day a 申请延期 asks for (YYYY-MM-DD), refused naming `due_date` when missing or not a date.

    Raises: InvalidInput
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInput("请填写延期后的期限 (the new due date is required)", field="due_date")
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput("延期后的期限（due_date）须为日期，如 2026-12-31 (due_date must be a date)",
                           field="due_date") from None
