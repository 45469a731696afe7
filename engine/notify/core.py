"""Notifications routed by each user's preferences into the outbox: in-app, e-mail (SMTP), webhook.

A notification is only ever recorded here, in the caller's transaction, as outbox rows (`in_app`,
`email`, `webhook`); engine/jobs.py delivers them after the commit, so nothing is sent for work that
rolled back and nothing is lost while the broker is down. A dedupe key per notification, user and
channel (unique in the outbox) makes a repeated call a no-op.

Preferences: `notify_preference` rows give the channels per kind (`*` for every kind); with none a
user gets in-app only. E-mail goes to `app_user.email`; a webhook to the user's own URL, else to the
group robot of the unit the work belongs to (`Note.unit_id`) when the user is a member of it, else to none: another
unit's robot is no place to post it (`notify_webhook`). Robot webhooks (WeChat Work / DingTalk group robots)
get `{"msgtype": "text", "text": {"content": …}}` (in Chinese: they address a group); plain ones the notification as
JSON, with its text id and arguments. E-mail and a person's own webhook are worded in the person's language
(engine.notify.language). A deactivated person (停用) gets neither e-mail nor webhook: those rows carry the user's id,
and the deliverer drops one whose person was deactivated while it waited.

Delivery settings come from the environment of the process that records the notification:
JZFLOW_SMTP_HOST / JZFLOW_SMTP_PORT / JZFLOW_SMTP_FROM (default 127.0.0.1:25, jzflow@localhost) and
JZFLOW_PUBLIC_URL (the site's address, to make links absolute in e-mail and webhooks).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from engine import audit, clock, config
from engine.deadlines.models import NotifyPreference, NotifyWebhook
from engine.errors import InvalidInput
from engine.notify import language, outbound, quota, texts
from engine.notify.models import OutboxMessage
from engine.org.actors import SYSTEM, Actor
from engine.org.models import Membership, User
from engine.tasks.collab_models import Notification

CHANNELS = ("in_app", "email", "webhook")
DEFAULT_CHANNELS = ("in_app",)
IN_APP = ("in_app",)  # channels_ of notes in-app only whatever the preferences (任务已取消, owner notes)
FLAVORS = ("robot", "json")
LEAVING = frozenset({"email", "webhook"})  # channels that leave the building
KIND_SIZE = 40  # notify_preference.kind
MAX_PREFERENCES = 100  # rows per user: one per kind of notification, with room to spare


@dataclass(frozen=True)
class Note:
    """One notification to one user; `key` identifies it, so recording it twice sends it once."""

    user_id: int
    kind: str  # sla | escalation | urge | reassign | extension | report | …
    title: str
    body: str = ""
    link: str | None = None
    key: str | None = None
    unit_id: int | None = None  # the unit the work belongs to: its group robot is the fallback webhook of its members
    instance_id: int | None = None  # the process instance it is about: counted against its cap (engine.notify.quota)
    params: dict[str, Any] | None = None  # its text id and arguments (engine.notify.texts): the web renders it again


NOTE_ROOM = 2000  # characters of a notice's body and of each argument: a note typed at length is cut (…)


def worded(user_id: int, kind: str, text: str, args: Mapping[str, Any] | None = None, *, words: Sequence[str] = (),
           body_room: int | None = None, **where: Any) -> Note:
    """A notice in the words of `text` (engine.notify.texts): rendered in Chinese as its title and body, and kept as
    the text id and arguments, so the web shows it in its reader's language. `body_room`: the body is cut to that
    many characters (with "…"), the arguments too (a note typed at length goes to e-mail and webhooks as well);
    NOTE_ROOM when not given. `where`: Note's link, key, unit_id, instance_id.
    """
    room = NOTE_ROOM if body_room is None else body_room
    filled = {k: _cut(v, room) if isinstance(v, str) else [_cut(str(i), room) for i in v]
              if isinstance(v, list | tuple) else v for k, v in (args or {}).items()}
    title, body = texts.render(text, filled)
    body = _cut(body, room)
    return Note(user_id=user_id, kind=kind, title=title[:300], body=body, params=texts.params(text, filled, words),
                **where)


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else text[:room] + "…"


def channels_for(session: Session, user_ids: Iterable[int], kind: str) -> dict[int, tuple[str, ...]]:
    """Return each user's channels for a kind: their row for the kind, else for '*', else in-app only."""
    ids = sorted(set(user_ids))
    found: dict[int, dict[str, tuple[str, ...]]] = {}
    for chunk in _chunks(ids):
        for user_id, pref_kind, channels in session.execute(
                select(NotifyPreference.user_id, NotifyPreference.kind, NotifyPreference.channels).where(
                    NotifyPreference.user_id.in_(chunk), NotifyPreference.kind.in_((kind, "*")))):
            found.setdefault(user_id, {})[pref_kind] = tuple(c for c in channels or () if c in CHANNELS)
    return {u: found.get(u, {}).get(kind, found.get(u, {}).get("*", DEFAULT_CHANNELS)) for u in ids}


def _chunks(ids: Sequence[int], size: int = 900) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def _absolute(link: str | None) -> str:
    if not link:
        return ""
    base = config.load().public_url
    return f"{base}{link}" if base and link.startswith("/") else link


def _smtp() -> dict[str, Any]:
    return {"host": os.environ.get("JZFLOW_SMTP_HOST", "127.0.0.1"), "port": config.whole("JZFLOW_SMTP_PORT", 25, least=1),
            "from": os.environ.get("JZFLOW_SMTP_FROM", "jzflow@localhost")}


Hooks = dict[tuple[int, int | None], tuple[str, str, bool]]  # (user, unit of the work) → (url, flavor, the user's own)


def _webhooks(session: Session, notes: Sequence[Note], user_ids: Sequence[int]) -> Hooks:
    """Return the webhook (url, flavor, own) of each (user, unit of the work): the user's own, else the robot of the unit
    the work belongs to when the user is a member of it; none otherwise (another unit's work is not posted to theirs).
    """
    own: dict[int, tuple[str, str, bool]] = {}
    for chunk in _chunks(list(user_ids)):
        for user_id, url, flavor in session.execute(select(NotifyWebhook.user_id, NotifyWebhook.url, NotifyWebhook.flavor)
                                                    .where(NotifyWebhook.user_id.in_(chunk), NotifyWebhook.active)):
            if user_id is not None:
                own[user_id] = (url, flavor, True)
    hooks = {(n.user_id, n.unit_id): own[n.user_id] for n in notes if n.user_id in own}
    wanted = {(n.user_id, n.unit_id) for n in notes if n.user_id not in own and n.unit_id is not None
              and n.user_id in set(user_ids)}
    for unit_id in sorted({u for _, u in wanted if u is not None}):
        robot = session.execute(select(NotifyWebhook.url, NotifyWebhook.flavor).where(
            NotifyWebhook.org_unit_id == unit_id, NotifyWebhook.active)).first()
        if robot is None:
            continue
        people = [user for user, unit in wanted if unit == unit_id]
        for chunk in _chunks(people):
            for user_id in set(session.scalars(select(Membership.user_id).where(
                    Membership.org_unit_id == unit_id, Membership.user_id.in_(chunk)))):
                hooks[(user_id, unit_id)] = (robot.url, robot.flavor, False)
    return hooks


ROBOT_MAX_BYTES = 2048  # of a group robot's text message, UTF-8: WeChat Work refuses a longer one (errcode 40058)


def _fit(text: str, room: int) -> str:
    """Return `text` cut to `room` bytes of UTF-8, ending in "…" when cut ("" when not even that fits)."""
    if len(text.encode()) <= room:
        return text
    if room < 3:
        return ""
    return text.encode()[:room - 3].decode(errors="ignore") + "…"


def robot_text(title: str, body: str, link: str) -> str:
    """A group robot's text: the title, as much of the body as fits in ROBOT_MAX_BYTES, and the link (the way in, kept
    whole unless it alone does not fit)."""
    tail = _fit(link, ROBOT_MAX_BYTES // 2)
    head = _fit(title, ROBOT_MAX_BYTES - len(tail.encode()) - 2)
    room = ROBOT_MAX_BYTES - len(head.encode()) - len(tail.encode()) - 2 * bool(head) - bool(tail)
    return "\n".join(part for part in (head, _fit(body, max(room, 0)), tail) if part)


def webhook_body(note: Note, flavor: str, lang: str | None = None) -> dict[str, Any]:
    """Return the JSON a webhook receives: a robot's text message (Chinese: a robot addresses a group), or the
    notification itself, worded in `lang` (the person's, for their own webhook; Chinese for a unit's), with its text
    id, arguments and fixed words (engine.notify.texts; null and empty for a notice without them)."""
    link = _absolute(note.link)
    if flavor == "robot":
        return {"msgtype": "text", "text": {"content": robot_text(note.title, note.body, link)}}
    title, body = language.worded(note.title, note.body, note.params, lang)
    params = note.params or {}
    return {"kind": note.kind, "title": title, "body": body, "link": link, "user_id": note.user_id,
            "text_id": params.get("text"), "args": params.get("args"), "words": params.get("words", []),
            "language": lang or language.DEFAULT}


def send_many(session: Session, notes: Sequence[Note], *, channels_: Sequence[str] | None = None,
              capped: bool = True) -> int:
    """Record notifications as outbox rows on each user's channels (flushes); return how many rows were added.

    The one way a notice is made (tests/engine/test_notice_shape.py): each fresh one is counted against the hourly
    caps of its person and its instance (engine.notify.quota) and dropped past them. `channels_`: these channels for
    every note, whatever the preferences (in-app only; a test of one's settings). `capped=False`: the caps' own note
    to the process owners only.

    Raises: IntegrityError when another unit of work queued the same key since it was looked for (a caller that may
    meet one in a race holds a savepoint).
    """
    if not notes:
        return 0
    user_ids = sorted({n.user_id for n in notes})
    channels: dict[tuple[int, str], tuple[str, ...]] = {}
    for kind in {n.kind for n in notes}:
        of_kind = [n.user_id for n in notes if n.kind == kind]
        chosen_ = ({u: tuple(channels_) for u in of_kind} if channels_ is not None  # no preference read
                   else channels_for(session, of_kind, kind))
        for user_id, chosen in chosen_.items():
            channels[(user_id, kind)] = chosen
    wanted = {c for chosen in channels.values() for c in chosen}
    emails: dict[int, str] = {}
    chosen_language: dict[int, str | None] = {}  # of each person told outside the building: their mail's words
    present = user_ids
    if wanted & LEAVING:  # a person deactivated (停用) is told nothing outside the building about work no longer theirs
        present = [u for chunk in _chunks(user_ids) for u in session.scalars(
            select(User.id).where(User.id.in_(chunk), User.is_active.is_(True)))]
    if wanted & LEAVING:
        for chunk in _chunks(present):
            for user_id, email, lang in session.execute(
                    select(User.id, User.email, User.language).where(User.id.in_(chunk))):
                chosen_language[user_id] = lang
                if email and "email" in wanted:
                    emails[user_id] = email
    hooks = _webhooks(session, notes, present) if "webhook" in wanted else {}
    smtp = _smtp() if emails else {}
    rows: list[tuple[int, OutboxMessage]] = []  # (index of its note, row)
    for index, note in enumerate(notes):
        for channel in channels.get((note.user_id, note.kind), DEFAULT_CHANNELS):
            key = f"{note.key}:{note.user_id}:{channel}"[:200] if note.key else None
            if channel == "in_app":
                payload: dict[str, Any] = {"user_id": note.user_id, "kind": note.kind, "title": note.title,
                                           "body": note.body, "link": note.link}
                if note.params is not None:
                    payload["params"] = note.params
            elif channel == "email" and note.user_id in emails:  # in the person's language (engine.notify.language)
                subject, body = language.worded(note.title, note.body, note.params, chosen_language.get(note.user_id))
                text = "\n\n".join(part for part in (body, _absolute(note.link)) if part)
                payload = {"to": emails[note.user_id], "subject": subject, "text": text or subject, **smtp,
                           "user_id": note.user_id}
            elif channel == "webhook" and (note.user_id, note.unit_id) in hooks:
                url, flavor, own = hooks[(note.user_id, note.unit_id)]
                lang = chosen_language.get(note.user_id) if own else None  # a unit's webhook reads Chinese
                payload = {"url": url, "body": webhook_body(note, flavor, lang), "user_id": note.user_id}
            else:
                continue  # no address for this channel: the other channels still go
            rows.append((index, OutboxMessage(kind=channel, payload=audit.jsonable(payload), dedupe_key=key,
                                              created_at=clock.now(), available_at=clock.now())))
    keys = [r.dedupe_key for _, r in rows if r.dedupe_key]
    seen: set[str] = set()
    for i in range(0, len(keys), 900):
        seen.update(session.scalars(select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.in_(keys[i:i + 900]))))
    fresh: list[tuple[int, OutboxMessage]] = []
    taken = set(seen)
    for index, row in rows:
        if row.dedupe_key is not None:
            if row.dedupe_key in taken:
                continue
            taken.add(row.dedupe_key)
        fresh.append((index, row))
    if capped:
        told = sorted({index for index, _ in fresh})  # each a new notice: counted against the caps (engine.notify.quota)
        admitted = {i for i, ok in zip(told, quota.admit(session, [(notes[i].user_id, notes[i].instance_id)
                                                                   for i in told]), strict=True) if ok}
        fresh = [(index, row) for index, row in fresh if index in admitted]
    session.add_all([row for _, row in fresh])
    session.flush()
    return len(fresh)


def send(session: Session, note: Note, *, channels_: Sequence[str] | None = None) -> int:
    """Record one notification as send_many does (flushes); return how many outbox rows were added."""
    return send_many(session, [note], channels_=channels_)


# -- preferences -----------------------------------------------------------------------------------

def set_preference(session: Session, *, user_id: int, kind: str = "*", channels: Sequence[str],
                   actor: Actor = SYSTEM) -> NotifyPreference:
    """Choose the channels of a kind of notification for a user (flushes, audited).

    Raises: InvalidInput for an unknown channel, a kind the table cannot hold, one kind more than MAX_PREFERENCES.
    """
    bad = [c for c in channels if c not in CHANNELS]
    if bad:
        raise InvalidInput(f"未知的通知渠道 (unknown channel): {', '.join(bad)}", field="channels")
    if not kind or len(kind) > KIND_SIZE or not kind.isprintable():
        raise InvalidInput(f"通知类型须为 1–{KIND_SIZE} 个可见字符 (a kind of 1–{KIND_SIZE} printable characters)",
                           field="kind")
    pref = session.scalar(select(NotifyPreference).where(NotifyPreference.user_id == user_id,
                                                         NotifyPreference.kind == kind))
    before = list(pref.channels) if pref else None
    if pref is None and (session.scalar(select(func.count()).select_from(NotifyPreference).where(
            NotifyPreference.user_id == user_id)) or 0) >= MAX_PREFERENCES:
        raise InvalidInput(f"每人最多{MAX_PREFERENCES}项通知偏好 (at most {MAX_PREFERENCES} preferences)", field="kind")
    if pref is None:
        pref = NotifyPreference(user_id=user_id, kind=kind, channels=list(dict.fromkeys(channels)))
        session.add(pref)
    else:
        pref.channels = list(dict.fromkeys(channels))
    session.flush()
    audit.record(session, actor, "notify.preference", stream=f"user:{user_id}", object_type="app_user",
                 object_id=user_id, before={"kind": kind, "channels": before},
                 after={"kind": kind, "channels": pref.channels})
    return pref


def check_webhook(url: str) -> None:
    """Refuse a webhook address that is not http(s), too long, or internal (outbound.Refused), as it is saved.

    Raises: InvalidInput (field url)
    """
    if not url.startswith(("http://", "https://")) or len(url) > 500:
        raise InvalidInput("Webhook 地址须为 http(s) 网址，最长 500 个字符 (an http or https URL of at most 500 characters)",
                           field="url")
    outbound.check(url, strict=False)  # no loopback/private/link-local target (checked again at send time)


def masked(url: str | None) -> str | None:
    """Show a webhook's address without its secrets: scheme, host and the start of the path; no query, no key."""
    if not url:
        return url
    parts = urlsplit(url)
    path = parts.path if len(parts.path) <= 12 else f"{parts.path[:12]}…"
    return f"{parts.scheme}://{parts.hostname or ''}{path}" + ("?…" if parts.query else "")


def set_webhook(session: Session, *, url: str, user_id: int | None = None, org_unit_id: int | None = None,
                flavor: str = "robot", actor: Actor = SYSTEM) -> NotifyWebhook:
    """Set the webhook of a user or of an org unit (flushes, audited).

    Raises: InvalidInput for a URL that is not http(s), an internal address (outbound.Refused), an unknown flavor.
    """
    if (user_id is None) == (org_unit_id is None):
        raise InvalidInput("须指定用户或单位之一 (a user or a unit)", field="owner")
    check_webhook(url)
    if flavor not in FLAVORS:
        raise InvalidInput(f"格式须为 {'/'.join(FLAVORS)} (flavor)", field="flavor")
    owner = NotifyWebhook.user_id == user_id if user_id is not None else NotifyWebhook.org_unit_id == org_unit_id
    hook = session.scalar(select(NotifyWebhook).where(owner))
    if hook is None:
        hook = NotifyWebhook(user_id=user_id, org_unit_id=org_unit_id, url=url, flavor=flavor)
        session.add(hook)
    else:
        hook.url, hook.flavor, hook.active = url, flavor, True
    session.flush()
    stream = f"user:{user_id}" if user_id is not None else f"org_unit:{org_unit_id}"
    audit.record(session, actor, "notify.webhook", stream=stream, object_type="notify_webhook", object_id=hook.id,
                 after={"url": masked(url), "flavor": flavor})  # a robot's key is in its query: never in the trail
    return hook


def unread_count(session: Session, user_id: int) -> int:
    """Count a user's unread in-app notifications."""
    return int(session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == user_id, Notification.read_at.is_(None))) or 0)


def mark_read(session: Session, user_id: int, ids: Sequence[int] | None = None) -> int:
    """Mark a user's notifications read (all, or these); return how many (flushes)."""
    stmt = update(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
    if ids is not None:
        stmt = stmt.where(Notification.id.in_(list(ids) or [-1]))
    result = session.execute(stmt.values(read_at=clock.now()).execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


__all__ = ["CHANNELS", "IN_APP", "MAX_PREFERENCES", "Note", "channels_for", "check_webhook", "mark_read", "masked", "send",
           "send_many", "set_preference", "set_webhook", "unread_count", "webhook_body", "worded"]
