"""Timer events: SpiffWorkflow reads the wall clock itself; make it read ours, bound its values, find due times.

SpiffWorkflow 3.2.0 turns the years and months of a duration into days one month at a time, so
``"P999999999Y"`` spins a worker for minutes; a date far away overflows. Durations and dates are
checked against JZFLOW_TIMER_MAX_DAYS at deploy (literals) and whenever SpiffWorkflow parses one at
run time (expressions). A timer expression may also give a ``timedelta``: it is taken as a duration.
A cycle repeats no more often than JZFLOW_TIMER_MIN_CYCLE_SECONDS: a non-interrupting ``"R/PT0S"`` fired on
every completion of its task, forever, and ``"R/PT1S"`` caught up 600 firings in one sweep after ten minutes.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions import timer as spiff_timer
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from engine import clock, config

TIMER_EVENT_TYPES = {"TimerEventDefinition", "TimeDateEventDefinition", "DurationTimerEventDefinition",
                     "CycleTimerEventDefinition"}


class _ClockDateTime(datetime):
    """`datetime` whose now() is engine.clock's, so a frozen clock drives BPMN timers too."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> Any:
        current = clock.now()
        return current.astimezone(tz) if tz is not None else current.astimezone().replace(tzinfo=None)


class TimerOutOfRange(ValueError):
    """A timer duration or date beyond JZFLOW_TIMER_MAX_DAYS, or a cycle under JZFLOW_TIMER_MIN_CYCLE_SECONDS.

    Raised while SpiffWorkflow checks a timer, it carries that `task` (the incident names its element).
    """

    task: Any = None


_DAYS = {"years": 366, "months": 31, "weeks": 7, "days": 1, "hours": 1 / 24, "minutes": 1 / 1440,
         "seconds": 1 / 86400, "microseconds": 1 / 86_400_000_000}
_ORIGINAL: dict[str, Callable[..., Any]] = {}


def check_duration(parsed: dict[str, Any], text: object = "") -> dict[str, Any]:
    """Refuse a parsed duration longer than the configured maximum; return it.

    Raises: TimerOutOfRange
    """
    limit = config.load().timer_max_days
    days = sum(abs(float(v)) * _DAYS.get(k, 1) for k, v in parsed.items() if isinstance(v, (int, float)))
    if days > limit:
        raise TimerOutOfRange(f"timer duration {text or parsed} is longer than {limit} days "
                              "(JZFLOW_TIMER_MAX_DAYS)")
    return parsed


def check_datetime(at: datetime, text: object = "") -> datetime:
    """Refuse a timer date further ahead than the configured maximum; return it.

    Raises: TimerOutOfRange
    """
    limit = config.load().timer_max_days
    if clock.as_utc(at) - clock.now() > timedelta(days=limit):
        raise TimerOutOfRange(f"timer date {text or at.isoformat()} is more than {limit} days ahead "
                              "(JZFLOW_TIMER_MAX_DAYS)")
    return at


def check_cycle(duration: timedelta, text: object = "") -> timedelta:
    """Refuse a cycle interval shorter than the configured minimum; return it.

    Raises: TimerOutOfRange
    """
    least = config.load().timer_min_cycle_seconds
    if duration.total_seconds() < least:
        every = f"{duration.total_seconds():g}"
        raise TimerOutOfRange(f"循环定时器 {text} 每 {every} 秒触发一次，短于下限 {least} 秒 (timer cycle {text} "
                              f"repeats every {every} s, under the minimum of {least} s: "
                              "JZFLOW_TIMER_MIN_CYCLE_SECONDS)")
    return duration


def _parse_iso_duration(expression: Any) -> dict[str, Any]:
    if isinstance(expression, timedelta):  # a timer expression may compute a timedelta
        return check_duration({"days": expression.days, "seconds": expression.seconds,
                               "microseconds": expression.microseconds}, expression)
    if not isinstance(expression, str):
        raise TypeError(f"timer expression gave a {type(expression).__name__}; give an ISO 8601 text "
                        "(\"P5D\") or a timedelta")
    return check_duration(_ORIGINAL["parse_iso_duration"](expression), expression)


def _parse_time_or_duration(expression: Any) -> Any:
    if isinstance(expression, timedelta):
        return _parse_iso_duration(expression)
    if not isinstance(expression, str):
        raise TypeError(f"timer expression gave a {type(expression).__name__}; give an ISO 8601 text")
    value = _ORIGINAL["parse_time_or_duration"](expression)
    return check_datetime(value, expression) if isinstance(value, datetime) else value


def _parse_iso_recurring_interval(expression: Any) -> tuple[int, datetime, timedelta]:
    if not isinstance(expression, str):
        raise TypeError(f"timer cycle expression gave a {type(expression).__name__}; give an ISO 8601 text "
                        "(\"R/PT1H\")")
    cycles, start, duration = _ORIGINAL["parse_iso_recurring_interval"](expression)
    return cycles, start, check_cycle(duration, expression)


def _naming_the_task(check: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Wrap a timer's check so that a value out of range names the timer event it came from."""

    def checked(definition: Any, my_task: Any) -> Any:
        try:
            return check(definition, my_task)
        except TimerOutOfRange as exc:
            if exc.task is None:
                exc.task = my_task
                bpmn_id = getattr(my_task.task_spec, "bpmn_id", None) or my_task.task_spec.name
                exc.args = (f"定时器 {bpmn_id} (timer event {bpmn_id}): {exc}",)
            raise

    checked.jzflow_wrapped = True  # type: ignore[attr-defined]
    return checked


def install() -> None:
    """Point SpiffWorkflow's timer module at our clock and bound its durations, dates and cycles (idempotent)."""
    spiff_timer.datetime = _ClockDateTime
    for name, patched in (("parse_iso_duration", _parse_iso_duration),
                          ("parse_time_or_duration", _parse_time_or_duration),
                          ("parse_iso_recurring_interval", _parse_iso_recurring_interval)):
        _ORIGINAL.setdefault(name, getattr(TimerEventDefinition, name))
        setattr(TimerEventDefinition, name, staticmethod(patched))
    for cls, method in ((spiff_timer.TimeDateEventDefinition, "has_fired"),
                        (spiff_timer.DurationTimerEventDefinition, "has_fired"),
                        (spiff_timer.CycleTimerEventDefinition, "cycle_complete")):
        if not getattr(getattr(cls, method), "jzflow_wrapped", False):
            setattr(cls, method, _naming_the_task(getattr(cls, method)))


def _due_at(event_type: str, value: object) -> datetime:
    """Read a waiting timer's value the way SpiffWorkflow reads it when it checks the timer."""
    if event_type == "TimeDateEventDefinition":
        # A date SpiffWorkflow accepts, e.g. a week date "2030-w01-1T09:00:00+08:00" (parse_iso_week), which
        # datetime.fromisoformat refuses: read alike, or the sweep takes it for due and fires it over and over.
        at = TimerEventDefinition.parse_time_or_duration(str(value))
        if not isinstance(at, datetime):
            raise TypeError(f"timer date {value!r} is not a date")
        return clock.as_utc(at)
    return clock.as_utc(TimerEventDefinition.get_datetime(str(value)))


def next_timer_at(workflow: BpmnWorkflow) -> datetime | None:
    """Return the earliest due time of the workflow's waiting timer events, or None.

    A value that cannot be read is due now: SpiffWorkflow reads it with the same functions when the sweep
    refreshes the timers, fails alike, and the instance stops with an incident. Raising here instead would fail
    the save of every start and completion of the instance with a traceback.
    """
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
                at = _due_at(event.event_type, value)
            except Exception:  # unreadable: the sweep surfaces it as an incident (see above)
                at = clock.now()
        if due is None or at < due:
            due = at
    return due
