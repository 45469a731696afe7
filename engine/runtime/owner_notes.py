"""Notes to process owners about what a model names wrongly: whom they go to, and how a name from the model is shown.

The names come from the model and its data, so the process owner who drew it could fill the trail and the notes:
a name is shown in printable characters only and cut (`told_name`), an element names at most MAX_TOLD of them (the
rest counted), and a note may carry a key so that it is told once (the outbox's dedupe key, per owner). The notes are
text (pages escape them). Used by the assignment of new tasks (engine.runtime.assignment) and by the escalation
ladder (engine.deadlines.unknown_units).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.org.models import OWNER_ROLE, Membership, Role, User

MAX_TOLD = 10  # unknown names an element's audit event and note name (the rest only counted)
NAME_TOLD_CHARS = 80  # of each (a username is at most 80 characters: a longer name is cut, marked with …)


def owners(session: Session) -> list[int]:
    """The active process owners, else the active administrators: whom a process's problems are told."""
    return list(session.scalars(select(Membership.user_id).join(Role, Role.id == Membership.role_id).join(
        User, User.id == Membership.user_id).where(Role.code == OWNER_ROLE, User.is_active.is_(True)).distinct())) \
        or list(session.scalars(select(User.id).where(User.is_admin.is_(True), User.is_active.is_(True))))


def told_name(name: str) -> str:
    """A name as a note and the trail give it: printable characters only (no line of its own), cut short."""
    shown = "".join(c if c.isprintable() else "\ufffd" for c in name[:NAME_TOLD_CHARS + 1])
    return shown if len(shown) <= NAME_TOLD_CHARS else f"{shown[:NAME_TOLD_CHARS]}…"


def told_keys(key: str, owner: int) -> tuple[str, str]:
    """The outbox keys an owner's note with `key` is kept under: as note_owners queues it now (engine.notify.core adds
    the person and channel), and as it was queued before notes went through it (an upgrade tells nothing twice)."""
    return f"{key}:{owner}:in_app", f"{key}:{owner}"


def note_owners(session: Session, owners: Sequence[int], instance_id: int, text: str, args: Mapping[str, Any],
                key: str | None = None) -> None:
    """An in-app note about a process's problem to each owner, linking to the instance (once per `key` and owner), in
    the words of `text` (engine.notify.texts)."""
    # Imported here: engine.notify imports engine.tasks, whose import reaches engine.deploy, which imports this
    # module (its deploy warnings name what they tell as told_name does): at import time that is a cycle.
    # Within the caps (engine.notify.quota): a model whose every step misnames someone tells them an hour's worth.
    from engine.notify import core
    core.send_many(session, [core.worded(user_id, "process_problem", text, args, link=f"/instances/{instance_id}",
                                         key=key, instance_id=instance_id)
                             for user_id in dict.fromkeys(owners)], channels_=core.IN_APP)


__all__ = ["MAX_TOLD", "NAME_TOLD_CHARS", "note_owners", "owners", "told_keys", "told_name"]
