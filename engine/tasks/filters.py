"""What an inbox list is narrowed to (Filter), and the filters a user saves under a name."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit
from engine.errors import InvalidInput, NotFound
from engine.org.actors import Actor
from engine.org.models import User
from engine.tasks.collab_models import SavedFilter

LISTS = ("index", "done", "started", "cc")
DUE_CHOICES = ("overdue", "warn")
MAX_SAVED = 50


@dataclass(frozen=True)
class Filter:
    """What a list is narrowed to: process key, stage (task bpmn id or name), due state, free text."""

    process: str = ""
    stage: str = ""
    due: str = ""  # "" | overdue (due_at < now) | warn (warn_at < now, not yet overdue)
    q: str = ""
    unread: bool = False  # 抄送我的 only

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Filter:
        """Read a filter from request arguments or a saved filter's JSON, ignoring what is not a filter."""
        def text(name: str, size: int) -> str:
            value = values.get(name)
            return str(value).strip()[:size] if value is not None else ""
        due = text("due", 10)
        unread = str(values.get("unread", "")).lower() in ("1", "true", "on", "yes")
        return cls(process=text("process", 120), stage=text("stage", 200), due=due if due in DUE_CHOICES else "",
                   q=text("q", 200), unread=unread)

    def as_query(self) -> dict[str, str]:
        """Return the non-empty fields as URL query arguments."""
        values = {"process": self.process, "stage": self.stage, "due": self.due, "q": self.q,
                  "unread": "1" if self.unread else ""}
        return {k: v for k, v in values.items() if v}

    @property
    def is_empty(self) -> bool:
        return not self.as_query()


NO_FILTER = Filter()  # a whole list, unfiltered



def saved_filters(session: Session, actor: Actor) -> list[SavedFilter]:
    """Return the actor's saved filters by name."""
    return list(session.scalars(select(SavedFilter).where(SavedFilter.user_id == actor.user_id)
                                .order_by(SavedFilter.name, SavedFilter.id)))


def save_filter(session: Session, actor: Actor, *, name: str, list_name: str, flt: Filter) -> SavedFilter:
    """Save a list's filter under a name (the same name replaces it) (flushes).

    Raises: InvalidInput
    """
    name = name.strip()[:100]
    if not name:
        raise InvalidInput("请填写筛选名称 (a name is required)", field="name")
    if not name.isprintable():  # line breaks, escapes, text-direction overrides that make one name look like another
        raise InvalidInput("筛选名称不能含控制字符 (no control characters in the name)", field="name")
    if list_name not in LISTS:
        raise InvalidInput(f"未知列表 (unknown list): {list_name}", field="list")
    if flt.is_empty:
        raise InvalidInput("当前没有筛选条件 (there is no filter to save)", field="filter")
    # One save of a user's filters at a time: a double click made two filters of one name (and every later save of
    # that name failed), and saves at once each counted below the cap. The first of a name, should one be doubled.
    session.execute(select(User.id).where(User.id == actor.user_id).with_for_update(key_share=True))
    row = session.scalar(select(SavedFilter).where(SavedFilter.user_id == actor.user_id, SavedFilter.name == name)
                         .order_by(SavedFilter.id).limit(1))
    if row is None:
        total = session.scalar(select(func.count()).select_from(SavedFilter).where(SavedFilter.user_id == actor.user_id))
        if (total or 0) >= MAX_SAVED:
            raise InvalidInput(f"最多保存{MAX_SAVED}个筛选 (at most {MAX_SAVED} saved filters)", field="name")
        row = SavedFilter(user_id=actor.user_id, name=name, query={})
        session.add(row)
    row.query = {"list": list_name, **flt.as_query()}
    session.flush()
    audit.record(session, actor, "filter.save", stream=f"user:{actor.user_id}", object_type="saved_filter",
                 object_id=row.id, after={"name": name, "query": row.query})
    return row


def delete_filter(session: Session, actor: Actor, filter_id: int) -> None:
    """Delete one of the actor's saved filters (flushes).

    Raises: NotFound (no such filter of this actor)
    """
    # Locked: of two deletes at once (a double click) the second waits, then finds it gone, instead of deleting
    # nothing and recording a second deletion.
    row = session.scalar(select(SavedFilter).where(SavedFilter.id == filter_id, SavedFilter.user_id == actor.user_id)
                         .with_for_update())
    if row is None:
        raise NotFound(f"筛选不存在 (no such saved filter): {filter_id}", filter_id=filter_id)
    session.delete(row)
    session.flush()
    audit.record(session, actor, "filter.delete", stream=f"user:{actor.user_id}", object_type="saved_filter",
                 object_id=filter_id, before={"name": row.name, "query": row.query})


__all__ = ["DUE_CHOICES", "LISTS", "MAX_SAVED", "NO_FILTER", "Filter", "delete_filter", "save_filter", "saved_filters"]
