"""Deadlines and their lights: policies (data/escalation.yaml), levels green/yellow/red, the ladder's
timeline, what the sweep watches (`deadline_watch`), and where instances wait longest (heat).

A task's deadline comes from its BPMN property `sla` (`5wd`, `2d`, `48h`) or `due`; other watched
objects' deadlines come from the sources an application registers (`engine.deadlines.sources`). The light turns
yellow when at most `yellow.fraction` of the time, or at most `yellow.working_days` working days,
remain (whichever comes first) and red once the deadline has passed.
"""
from __future__ import annotations

import os
import statistics
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine import clock, extensions
from engine.deadlines import calendar, sources
from engine.deadlines.models import DeadlineWatch
from engine.deadlines.objects import Deadline
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask

CONFIG_PATH = Path(__file__).resolve().parents[2] / "data" / "escalation.yaml"
LADDER = ("handler", "unit_head", "responsible_leader", "city_leader")  # levels 1..4
LEVEL_OF = {step: i + 1 for i, step in enumerate(LADDER)}


# -- policies --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Thresholds:
    """Yellow when at most `fraction` of the time or at most `working_days` working days remain."""

    fraction: float = 0.2
    working_days: int = 1


@dataclass(frozen=True)
class Policy:
    yellow: Thresholds = Thresholds()
    remind_on_yellow: bool = True
    ladder: tuple[tuple[str, int], ...] = (("handler", 0), ("unit_head", 1), ("responsible_leader", 3),
                                           ("city_leader", 5))  # (step, working days after the deadline)
    skip: frozenset[str] = frozenset()  # task bpmn ids not watched (their deadline is tracked elsewhere)


@dataclass(frozen=True)
class Policies:
    by_section: Mapping[str, Mapping[str, Policy]] = field(default_factory=dict)
    defaults: Policy = Policy()

    def get(self, object_type: str, key: str | None) -> Policy:
        """Return the policy of a process key (tasks) or of the key a watched object's source gives."""
        section = self.by_section.get(sources.section_of(object_type), {})
        return section.get(key or "", section.get("default", self.defaults))

    def skipped_tasks(self) -> dict[str, frozenset[str]]:
        """Return {process key: task bpmn ids} that are not watched."""
        return {key: p.skip for key, p in self.by_section.get("tasks", {}).items() if p.skip and key != "default"}


def _policy(raw: Any, base: Policy, where: str) -> Policy:
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - {"yellow", "remind_on_yellow", "ladder", "skip"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    yellow = base.yellow
    if "yellow" in raw:
        y = raw["yellow"] or {}
        fraction = float(y.get("fraction", yellow.fraction))
        days = int(y.get("working_days", yellow.working_days))
        if not 0 <= fraction < 1 or days < 0:
            raise ValueError(f"{where}.yellow: fraction must be in [0, 1) and working_days >= 0")
        yellow = Thresholds(fraction, days)
    ladder = base.ladder
    if "ladder" in raw:
        steps = raw["ladder"] or {}
        if not isinstance(steps, Mapping) or set(steps) - set(LADDER):
            raise ValueError(f"{where}.ladder: levels are {', '.join(LADDER)}")
        pairs = []
        for step in LADDER:
            delay = steps.get(step)
            if delay is None:
                continue
            if not isinstance(delay, int) or delay < 0:
                raise ValueError(f"{where}.ladder.{step}: working days after the deadline, a whole number >= 0")
            pairs.append((step, delay))
        ladder = tuple(pairs)
    return Policy(yellow=yellow, remind_on_yellow=bool(raw.get("remind_on_yellow", base.remind_on_yellow)),
                  ladder=ladder, skip=frozenset(str(s) for s in raw.get("skip") or ()))


# Top-level sections of the file that are not deadline policies: an extension reads them itself (e.g.
# whom its scheduled reports go to) and registers their names here so the policy parser leaves them be.
OTHER_SECTIONS: set[str] = set()


def parse_policies(data: Any) -> Policies:
    """Build policies from the YAML's data.

    Raises: ValueError naming the place of a bad entry.
    """
    extensions.load()  # they register their OTHER_SECTIONS
    data = data or {}
    if not isinstance(data, Mapping):
        raise ValueError("escalation.yaml: expected a mapping at the top")
    defaults = _policy(data.get("defaults"), Policy(), "defaults")
    by_section: dict[str, dict[str, Policy]] = {}
    others = ("defaults", "tasks", *OTHER_SECTIONS)
    for section_name in ("tasks", *(str(k) for k in data if k not in others)):
        section = data.get(section_name) or {}
        if not isinstance(section, Mapping):
            raise ValueError(f"{section_name}: expected a mapping")
        base = _policy(section.get("default"), defaults, f"{section_name}.default")
        by_section[section_name] = {"default": base}
        for key, raw in section.items():
            if key != "default":
                by_section[section_name][str(key)] = _policy(raw, base, f"{section_name}.{key}")
    return Policies(by_section=by_section, defaults=defaults)


_cache: dict[tuple[str, float], Policies] = {}
_cache_lock = threading.Lock()


def config_path() -> Path:
    """Return the policy file: JZFLOW_ESCALATION_FILE, else the repository's data/escalation.yaml."""
    return Path(os.environ.get("JZFLOW_ESCALATION_FILE") or CONFIG_PATH)


_CONFIG_TEXT = str(CONFIG_PATH)


def load_policies(path: Path | None = None) -> Policies:
    """Read the policies, again only when the file changed; a missing file means the defaults.

    Asked once per new task: the file is checked by its name as text (building a Path of it each time cost 40 µs,
    most of a completion's deadline work, bench/README.md's twenty-first pass).
    """
    where = str(path) if path is not None else os.environ.get("JZFLOW_ESCALATION_FILE") or _CONFIG_TEXT
    try:
        mtime = os.stat(where).st_mtime
    except FileNotFoundError:
        return Policies()
    key = (where, mtime)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    policies = parse_policies(yaml.safe_load(Path(where).read_text(encoding="utf-8")))
    with _cache_lock:
        _cache.clear()
        _cache[key] = policies
    return policies


# -- lights ----------------------------------------------------------------------------------------

def warn_time(start: datetime, due: datetime, yellow: Thresholds = Thresholds()) -> datetime:
    """Return when the light turns yellow: the last `fraction` of the time or `working_days` before `due`."""
    if due <= start:
        return due
    by_fraction = start + (due - start) * (1 - yellow.fraction)
    by_days = calendar.subtract_working_days(due, yellow.working_days) if yellow.working_days else due
    return max(start, min(by_fraction, by_days))


def task_warn_time(policy_key: str, start: datetime, due: datetime) -> datetime:
    """Return a new human task's warn_at under its policy's thresholds (its escalation profile, else its process)."""
    return warn_time(start, due, load_policies().get("task", policy_key).yellow)


def level(due_at: datetime | None, warn_at: datetime | None, now: datetime | None = None) -> str | None:
    """Return green, yellow or red for a deadline at `now` (None without a deadline); red from the deadline on."""
    if due_at is None:
        return None
    now = now or clock.now()
    if now >= clock.as_utc(due_at):
        return "red"
    if warn_at is not None and now >= clock.as_utc(warn_at):
        return "yellow"
    return "green"


def deadline_of(day: date) -> datetime:
    """Return the end (23:59:59 Asia/Shanghai) of a due date, as UTC."""
    return datetime.combine(day, time(23, 59, 59), tzinfo=clock.SHANGHAI).astimezone(clock.UTC)


@dataclass(frozen=True)
class Milestone:
    """A step of a round and when it is due: a light (level 0) or a rung of the ladder (1..4)."""

    step: str
    level: int
    at: datetime


def milestones(policy: Policy, warn_at: datetime | None, due_at: datetime) -> list[Milestone]:
    """Return the round's steps in the order they happen (yellow, red, then the ladder)."""
    steps = []
    if warn_at is not None and warn_at < due_at:
        steps.append(Milestone("yellow", 0, warn_at))
    steps.append(Milestone("red", 0, due_at))
    for step, delay in policy.ladder:
        at = due_at if delay == 0 else calendar.add_working_days(due_at, delay)
        steps.append(Milestone(step, LEVEL_OF[step], at))
    order = {"yellow": 0, "red": 1, **{s: 2 + i for i, s in enumerate(LADDER)}}
    return sorted(steps, key=lambda m: (m.at, order[m.step]))


# -- what the sweep watches ------------------------------------------------------------------------

def _upsert(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def watch_tasks(session: Session, *, now: datetime, policies: Policies) -> None:
    """Add a watch for every open task with a deadline (one statement), and wake those whose deadline changed."""
    skipped = [and_(HumanTask.process_key == key, HumanTask.bpmn_id.in_(sorted(ids)))
               for key, ids in policies.skipped_tasks().items()]
    watched = and_(HumanTask.state == "ready", HumanTask.kind == "bpmn", HumanTask.due_at.is_not(None),
                   *([~or_(*skipped)] if skipped else []))
    unwatched = ~select(DeadlineWatch.id).where(DeadlineWatch.object_type == "task",
                                                DeadlineWatch.object_id == HumanTask.id).exists()
    source = (select(literal("task"), HumanTask.id, func.coalesce(HumanTask.escalation, HumanTask.process_key),
                     literal(1), HumanTask.created_at,
                     HumanTask.due_at, HumanTask.warn_at, literal("green"), literal(0),
                     func.coalesce(HumanTask.warn_at, HumanTask.due_at), literal(True),
                     literal(now, DeadlineWatch.updated_at.type))
              .where(watched, unwatched))
    # warn_at first: the sweep looks at a new task when it turns yellow (or at once, if it already has).
    columns = ["object_type", "object_id", "policy", "round", "started_at", "due_at", "warn_at", "light", "level",
               "next_at", "active", "updated_at"]
    stmt = _upsert(session)(DeadlineWatch).from_select(columns, source).on_conflict_do_nothing()
    session.execute(stmt)
    session.execute(update(DeadlineWatch).where(DeadlineWatch.object_type == "task", DeadlineWatch.object_id.in_(
        select(HumanTask.id).join(DeadlineWatch, and_(DeadlineWatch.object_type == "task",
                                                      DeadlineWatch.object_id == HumanTask.id))
        .where(watched, or_(DeadlineWatch.active.is_(False), DeadlineWatch.due_at.is_distinct_from(HumanTask.due_at)))))
        .values(next_at=now, active=True).execution_options(synchronize_session=False))
    session.execute(update(DeadlineWatch).where(DeadlineWatch.object_type == "task", DeadlineWatch.next_at.is_(None),
                                                DeadlineWatch.active.is_(True), DeadlineWatch.object_id.in_(
        select(HumanTask.id).where(HumanTask.state != "ready")))
        .values(active=False).execution_options(synchronize_session=False))


def _watch_objects(session: Session, object_type: str, wanted: dict[int, Deadline], *, now: datetime,
                   policies: Policies) -> None:
    existing = {w.object_id: w for w in session.scalars(select(DeadlineWatch).where(
        DeadlineWatch.object_type == object_type, (DeadlineWatch.active.is_(True)) | (DeadlineWatch.object_id.in_(
            list(wanted) or [-1]))))}
    new_rows = []
    for object_id, d in wanted.items():
        watch = existing.get(object_id)
        if watch is None:
            warn = warn_time(d.started_at or now, d.due_at, policies.get(object_type, d.policy).yellow)
            new_rows.append(dict(object_type=object_type, object_id=object_id, policy=d.policy, unit_id=d.unit_id,
                                 round=1, started_at=d.started_at, due_at=d.due_at, warn_at=warn, light="green",
                                 level=0, next_at=min(warn, d.due_at), active=True, updated_at=now))
        elif not watch.active or watch.due_at != d.due_at or watch.unit_id != d.unit_id:
            watch.next_at, watch.active = now, True  # the sweep takes it under its lock and starts a new round
    if new_rows:
        session.execute(_upsert(session)(DeadlineWatch).values(new_rows).on_conflict_do_nothing())
    for object_id, watch in existing.items():
        if object_id not in wanted and watch.active:
            watch.active, watch.next_at = False, None  # closed, or no deadline any more
    session.flush()


def watch_all(session: Session, *, now: datetime, policies: Policies | None = None) -> None:
    """Bring `deadline_watch` up to date with open tasks and every registered source's objects (idempotent; flushes)."""
    policies = policies or load_policies()
    watch_tasks(session, now=now, policies=policies)
    for source in sources.registered():
        _watch_objects(session, source.object_type, source.deadlines(session, None), now=now, policies=policies)


# -- heat: where instances wait longest -------------------------------------------------------------

@dataclass(frozen=True)
class Heat:
    """Waiting time of one BPMN element's human tasks, in seconds (open ones counted up to now)."""

    bpmn_id: str
    count: int
    open: int
    mean: float
    median: float
    max: float


def wait_heat(session: Session, version_id: int, *, now: datetime | None = None, limit: int = 50_000) -> dict[str, Heat]:
    """Return, per BPMN element of a process version, how long its human tasks waited (created → completed)."""
    now = now or clock.now()
    rows = session.execute(select(HumanTask.bpmn_id, HumanTask.created_at, HumanTask.completed_at, HumanTask.state)
                           .join(ProcessInstance, ProcessInstance.id == HumanTask.instance_id)
                           .where(ProcessInstance.version_id == version_id, HumanTask.kind == "bpmn",
                                  HumanTask.state.in_(("ready", "completed", "suspended")))
                           .order_by(HumanTask.id.desc()).limit(limit))
    waits: dict[str, list[float]] = {}
    still_open: dict[str, int] = {}
    for bpmn_id, created, completed, state in rows:
        end = completed if state == "completed" and completed is not None else now
        waits.setdefault(bpmn_id, []).append(max(0.0, (clock.as_utc(end) - clock.as_utc(created)).total_seconds()))
        if state != "completed":
            still_open[bpmn_id] = still_open.get(bpmn_id, 0) + 1
    return {b: Heat(b, len(w), still_open.get(b, 0), statistics.fmean(w), statistics.median(w), max(w))
            for b, w in waits.items()}


__all__ = ["LADDER", "LEVEL_OF", "Deadline", "Heat", "Milestone", "Policies", "Policy", "Thresholds", "deadline_of",
           "level", "load_policies", "milestones", "parse_policies", "task_warn_time", "wait_heat", "warn_time",
           "watch_all"]
