"""Timer events: SpiffWorkflow reads the wall clock itself; make it read ours, and find due times."""
from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions import timer as spiff_timer
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from engine import clock

TIMER_EVENT_TYPES = {"TimerEventDefinition", "TimeDateEventDefinition", "DurationTimerEventDefinition",
                     "CycleTimerEventDefinition"}


class _ClockDateTime(datetime):
    """`datetime` whose now() is engine.clock's, so a frozen clock drives BPMN timers too."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Any:
        current = clock.now()
        return current.astimezone(tz) if tz is not None else current.astimezone().replace(tzinfo=None)


def install() -> None:
    """Point SpiffWorkflow's timer module at our clock (idempotent)."""
    spiff_timer.datetime = _ClockDateTime


def next_timer_at(workflow: BpmnWorkflow) -> datetime | None:
    """Return the earliest due time of the workflow's waiting timer events, or None."""
    due: datetime | None = None
    for event in workflow.waiting_events():
        if event.event_type not in TIMER_EVENT_TYPES:
            continue
        value = event.value
        if isinstance(value, dict):  # a cycle: {'cycles': n, 'next': iso, 'duration': s}
            value = value.get("next")
        if value is None:
            at = clock.now()  # not evaluated yet: due at once so the sweep sets it up
        else:
            try:
                at = clock.as_utc(TimerEventDefinition.get_datetime(str(value)))
            except Exception:  # unparsable: let the sweep surface it as an incident
                at = clock.now()
        if due is None or at < due:
            due = at
    return due
