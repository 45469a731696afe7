"""One person's notification settings (通知设置): channels per kind, their own webhook, a test, their last deliveries.

Only ever the actor's own: the services take the actor and no user id. A page that saves carries `seen`, the
fingerprint of what it showed (as plan forms do, plan.stale): a save from a page opened before another save (two tabs)
is refused instead of silently undoing it. The person's row is locked while a save compares and writes, so two saves
at once are one after the other. The webhook's address is a secret of its owner (a robot's key is in its query):
audit events and other readers get it masked (`masked`).
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.deadlines.models import NotifyPreference, NotifyWebhook
from engine.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited
from engine.notify import core, outbox
from engine.notify.models import OutboxMessage
from engine.org.actors import Actor
from engine.org.models import User

# The kinds a person may route, as the page names them; "*" is every other kind.
# The kinds a person chooses channels for, each its own line on 通知设置 (the others follow 其他通知): every notice of
# the inbox operations has one (tests/engine/test_notify_settings.py reads engine/tasks for them).
KINDS: dict[str, str] = {"*": "其他通知", "escalation": "督办升级与逾期提醒", "urge": "催办", "reassign": "改派",
                         "extension": "延期申请结果", "task_assigned": "任务交接（转办、加签、移交）",
                         "task_delegated": "任务委派", "task_returned": "委派的任务回到您", "task_ready": "加签完成",
                         "task_sent_back": "任务退回", "task_cancelled": "任务已取消", "cc": "抄送", "meeting": "会议",
                         "report": "报表", "notice_suppressed": "超限通知汇总"}
TEST_INTERVAL = timedelta(minutes=1)  # one 发送测试 a minute per person
RECENT = 20  # deliveries shown
RECENT_SCAN = 5000  # of the newest outbox rows: a person with none is not looked for through all of it


@dataclass(frozen=True)
class Delivery:
    id: int
    channel: str
    title: str
    created_at: datetime
    status: str  # delivered | pending | retrying | failed | dropped


@dataclass(frozen=True)
class Settings:
    channels: dict[str, tuple[str, ...]]  # kind → channels (a kind without a row: "*"'s, else in-app only)
    webhook_url: str  # the owner's own, whole (masked for anyone else)
    flavor: str
    email: str | None
    seen: str
    deliveries: list[Delivery]
    person: str = ""  # whose (to an administrator): display name and username
    language: str | None = None  # their saved language (engine.notify.language), to an administrator; None: not chosen


def _rows(session: Session, user_id: int) -> tuple[dict[str, tuple[str, ...]], NotifyWebhook | None]:
    prefs = {p.kind: tuple(p.channels or ()) for p in session.scalars(
        select(NotifyPreference).where(NotifyPreference.user_id == user_id))}
    hook = session.scalar(select(NotifyWebhook).where(NotifyWebhook.user_id == user_id))
    return prefs, hook


def _version(prefs: Mapping[str, tuple[str, ...]], hook: NotifyWebhook | None) -> str:
    shown = (sorted(prefs.items()), (hook.url, hook.flavor, hook.active) if hook else None)
    return hashlib.sha256(repr(shown).encode()).hexdigest()[:32]


def _status(row: OutboxMessage) -> str:
    if row.delivered_at is not None:
        return "dropped" if (row.last_error or "").startswith("dropped") else "delivered"
    if row.attempts >= outbox.MAX_ATTEMPTS:
        return "failed"
    return "retrying" if row.attempts else "pending"


def deliveries(session: Session, user_id: int) -> list[Delivery]:
    """The person's newest e-mails and webhooks (of the newest RECENT_SCAN outbox rows), newest first."""
    top = session.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1)) or 0
    rows = session.scalars(select(OutboxMessage).where(
        OutboxMessage.id > top - RECENT_SCAN, OutboxMessage.kind.in_(("email", "webhook")),
        OutboxMessage.payload["user_id"].as_integer() == user_id).order_by(OutboxMessage.id.desc()).limit(RECENT))
    found = []
    for row in rows:
        payload = row.payload if isinstance(row.payload, dict) else {}
        body: dict[str, Any] = payload["body"] if isinstance(payload.get("body"), dict) else {}
        title = payload.get("subject") or body.get("title") or (body.get("text") or {}).get("content", "")
        found.append(Delivery(row.id, row.kind, str(title or "").split("\n", 1)[0][:120], row.created_at, _status(row)))
    return found


def view(session: Session, actor: Actor) -> Settings:
    """Return the actor's own notification settings."""
    return _view(session, actor.user_id or -1)


def view_of(session: Session, *, actor: Actor, user_id: int) -> Settings:
    """Return a person's notification settings as an administrator sees them: to read, the webhook masked.

    Raises: Forbidden (not an administrator), NotFound
    """
    if not actor.is_admin:
        raise Forbidden("只有管理员可以查看他人的通知设置 (admins only)")
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"用户不存在 (no such user): {user_id}", user_id=user_id)
    shown = _view(session, user_id)
    return replace(shown, webhook_url=core.masked(shown.webhook_url) or "", seen="",
                   person=f"{user.display_name}（{user.username}）", language=user.language)


def _view(session: Session, user_id: int) -> Settings:
    prefs, hook = _rows(session, user_id)
    default = prefs.get("*", core.DEFAULT_CHANNELS)
    channels = {kind: prefs.get(kind, default) for kind in KINDS}
    own = hook if hook is not None and hook.active else None
    return Settings(channels=channels, webhook_url=own.url if own else "", flavor=own.flavor if own else "robot",
                    email=session.scalar(select(User.email).where(User.id == user_id)), seen=_version(prefs, hook),
                    deliveries=deliveries(session, user_id))


def save(session: Session, *, actor: Actor, channels: Mapping[str, Sequence[str]], webhook_url: str, flavor: str,
         seen: str) -> None:
    """Save the actor's channels per kind and their webhook (flushes; each change audited, the address masked).

    Raises: Conflict (field seen: saved since the page was opened), InvalidInput naming the field (channels_<kind>,
    webhook_url, flavor)
    """
    user_id = actor.user_id
    if user_id is None:
        raise InvalidInput("只有登录用户有通知设置 (only a signed-in person has notification settings)", field="user")
    session.scalar(select(User.id).where(User.id == user_id).with_for_update())  # two saves: one after the other
    prefs, hook = _rows(session, user_id)
    if not seen or seen != _version(prefs, hook):
        raise Conflict("通知设置已在其他页面修改，请刷新页面后重新填写 (changed since the page was opened; reload)",
                       field="seen")
    for kind in channels:
        if kind not in KINDS:
            raise InvalidInput(f"未知的通知类型 (unknown kind): {kind[:40]}", field="kind")
    for kind, chosen in channels.items():
        bad = [c for c in chosen if c not in core.CHANNELS]
        if bad:
            raise InvalidInput(f"{KINDS[kind]}：未知的通知渠道 (unknown channel for {kind}): "
                               f"{', '.join(c[:20] for c in bad)}",
                               field=f"channels_{kind}")
    url = webhook_url.strip()
    if flavor not in core.FLAVORS:
        raise InvalidInput(f"Webhook 格式须为 {'/'.join(core.FLAVORS)} (flavor)", field="flavor")
    if url:
        try:
            core.check_webhook(url)
        except InvalidInput as exc:
            raise InvalidInput(f"Webhook 地址（webhook_url）：{exc.message}", field="webhook_url") from None
    for kind, chosen in channels.items():  # a kind shown as it was and sent back unchanged keeps following "*"
        shown = prefs.get(kind, core.DEFAULT_CHANNELS if kind == "*" else prefs.get("*", core.DEFAULT_CHANNELS))
        if tuple(dict.fromkeys(chosen)) != tuple(shown):
            core.set_preference(session, user_id=user_id, kind=kind, channels=list(chosen), actor=actor)
    now = (hook.url, hook.flavor) if hook is not None and hook.active else None
    if url and now != (url, flavor):
        core.set_webhook(session, user_id=user_id, url=url, flavor=flavor, actor=actor)
    elif not url and now is not None and hook is not None:
        hook.active = False
        session.flush()
        audit.record(session, actor, "notify.webhook_removed", stream=f"user:{user_id}", object_type="notify_webhook",
                     object_id=hook.id, before={"url": core.masked(hook.url), "flavor": hook.flavor})


def send_test(session: Session, *, actor: Actor) -> int:
    """Queue a test notice to the actor on every channel they have an address for (flushes); return how many.

    Delivered by the outbox after the commit like any other (the page never fetches the webhook itself).

    Raises: RateLimited (one a minute)
    """
    user_id = actor.user_id
    if user_id is None:
        raise InvalidInput("只有登录用户有通知设置 (only a signed-in person has notification settings)", field="user")
    session.scalar(select(User.id).where(User.id == user_id).with_for_update())  # two clicks: one after the other
    prefix = f"notify_test:{user_id}:"
    last = session.scalar(select(OutboxMessage.created_at).where(
        OutboxMessage.dedupe_key.startswith(prefix, autoescape=True)).order_by(OutboxMessage.id.desc()).limit(1))
    now = clock.now()
    if last is not None and clock.as_utc(last) > now - TEST_INTERVAL:
        raise RateLimited("发送测试过于频繁，请一分钟后再试 (one test a minute)", field="test")
    note = core.worded(user_id, "notify_test", "notify_test", link="/notifications/settings",
                       key=f"{prefix}{now:%Y%m%d%H%M%S}")
    return core.send_many(session, [note], channels_=core.CHANNELS)


__all__ = ["KINDS", "Delivery", "Settings", "deliveries", "save", "send_test", "view", "view_of"]
