"""项目推进暨评审会议: the biweekly meeting's agenda (built by the beat) and its recorded decisions."""
from plan.meetings.core import (
    OUTCOME_NAMES,
    OUTCOMES,
    close_meeting,
    decision_forms,
    decision_version,
    decisions,
    ensure_meeting,
    get_meeting,
    may_record,
    recent,
    record_decision,
    require_record,
)
from plan.meetings.sight import MeetingView, openable, visible_decisions, visible_meeting, visible_recent

__all__ = ["OUTCOMES", "OUTCOME_NAMES", "MeetingView", "close_meeting", "decision_forms", "decision_version",
           "decisions", "ensure_meeting", "get_meeting", "may_record", "openable", "recent", "record_decision",
           "require_record", "visible_decisions", "visible_meeting", "visible_recent"]
