"""Who sees what of a 评审会议 (least privilege: docs/security.md, “Who may see a meeting”).

The meeting's organisers — whoever records its decisions (`core.may_record`: leaders, city leaders, 招商专员) —
and administrators see every agenda item. Anyone else who reads meetings (those who read reports) sees the items,
and the decisions, of the projects the project pages show them (`plan.projects.views`: `reach_of`,
`Reach.sees_project`, on the project as it is now, not as the agenda recorded it), and of the others only how many
there are. An item links to its project's 项目库 page only for a reader who may open it (`openable`): an organiser's
reach there is their own. A meeting none of whose items they see is theirs only when they attend it (its
`recipients`, told when the agenda was built): otherwise it is not listed, and its page answers as a meeting that
does not exist.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.org.actors import Actor
from plan.meetings.core import decisions, get_meeting, may_record, no_such_meeting
from plan.meetings.models import MeetingDecision, ReviewMeeting
from plan.projects.models import Project
from plan.projects.views import Reach, reach_of

BATCH = 50  # meetings read at a time while the list looks for those the reader may see


@dataclass(frozen=True)
class MeetingView:
    """A meeting as one reader may see it: the agenda items they see, in order, and how many they may not."""

    meeting: ReviewMeeting
    items: tuple[dict[str, Any], ...]
    hidden: int

    @property
    def project_ids(self) -> frozenset[int]:
        return frozenset(int(i["project_id"]) for i in self.items)


def sight_of(session: Session, actor: Actor) -> Reach:
    """Return which agenda projects the actor sees: every one for the organisers and admins, else their reach."""
    return Reach(True) if may_record(session, actor) else reach_of(session, actor)


def _seen(session: Session, reach: Reach, project_ids: Iterable[int]) -> set[int]:
    ids = sorted(set(project_ids))
    if reach.everything or not ids:
        return set(ids)
    return {p.id for p in session.scalars(select(Project).where(Project.id.in_(ids))) if reach.sees_project(p)}


def _views(session: Session, actor: Actor, reach: Reach, rows: Sequence[ReviewMeeting]) -> list[MeetingView]:
    """The views of the meetings the actor may see, in the order given (the others left out)."""
    seen = _seen(session, reach, (int(i["project_id"]) for m in rows for i in m.agenda))
    out = []
    for meeting in rows:
        items = tuple(i for i in meeting.agenda if int(i["project_id"]) in seen)
        hidden = len(meeting.agenda) - len(items)
        if items or not hidden or actor.user_id in (meeting.recipients or []):
            out.append(MeetingView(meeting, items, hidden))
    return out


def visible_meeting(session: Session, actor: Actor, meeting_id: int) -> MeetingView:
    """Return the meeting as the actor may see it.

    Raises: NotFound (also for a meeting they may not see at all: its existence is not told)
    """
    found = _views(session, actor, sight_of(session, actor), [get_meeting(session, meeting_id)])
    if not found:
        raise no_such_meeting(meeting_id)
    return found[0]


def visible_recent(session: Session, actor: Actor, limit: int = 20) -> list[MeetingView]:
    """Return the latest `limit` meetings the actor may see, newest first."""
    reach, offset = sight_of(session, actor), 0
    out: list[MeetingView] = []
    while len(out) < limit:
        rows = list(session.scalars(select(ReviewMeeting).order_by(ReviewMeeting.held_on.desc(), ReviewMeeting.id)
                                    .offset(offset).limit(BATCH)))
        out += _views(session, actor, reach, rows)
        if len(rows) < BATCH:
            break
        offset += BATCH
    return out[:limit]


def openable(session: Session, actor: Actor, view: MeetingView) -> frozenset[int]:
    """The view's agenda projects whose 项目库 page (`plan.projects.views.project_detail`) the actor may open.

    Everyone else who sees an item sees it by that reach, so all of theirs; an organiser sees every item, but opens
    only the projects in their own reach: the agenda links those and shows the others without a link.
    """
    reach = reach_of(session, actor)
    return frozenset(_seen(session, reach, view.project_ids)) if reach.any else frozenset()


def visible_decisions(session: Session, view: MeetingView) -> dict[int, MeetingDecision]:
    """The meeting's decisions on the projects of the view, by project id."""
    return {k: d for k, d in decisions(session, view.meeting.id).items() if k in view.project_ids}


__all__ = ["MeetingView", "openable", "sight_of", "visible_decisions", "visible_meeting", "visible_recent"]
