"""How far instances may start instances from inside their engine runs (start_process, or a service starting one).

A started instance runs at once, inside the run that started it, until it waits. A process whose service tasks each
started the same process made thousands of instances from a single start, stopped only by Python's recursion limit;
with a timer between the generations each ran in a unit of work of its own and nothing stopped it. Three bounds, each
refusing the start before anything of the new instance exists; the instance that tried stops with an incident
`too_many_starts` on its element (what it started before stays started):

- `JZFLOW_MAX_RUN_STARTS` instances per engine run, those the started instances' own runs start included;
- `MAX_START_NESTING`: a run inside a run inside a run … — each level holds a stack of Python frames;
- `JZFLOW_MAX_OPEN_DESCENDANTS` open instances (running, suspended, in incident) descending from one instance started
  from outside (`process_instance.start_root_id`), across units of work. A chain of successors (continue-as-new, an
  approval's next stage), each ending after it starts the next, never comes near it; a lineage that doubles reaches
  it and stops: its instances that try stop in incident, and stay open until someone ends them.

The last is a count, not a lock: units of work of one lineage committing at the same moment may each pass it by what
they start (at most `JZFLOW_MAX_RUN_STARTS`).
"""
from __future__ import annotations

from sqlalchemy import func, select

from engine import config
from engine.runtime.effects import RunContext
from engine.runtime.models import ProcessInstance

OPEN = ("running", "suspended", "incident")
MAX_START_NESTING = 10  # a level holds ~16 Python frames: the default limit of 1,000 is met near 55 deep


class TooManyStarts(Exception):
    """A start from inside an engine run passes a limit: refused, and the instance that tried stops (an incident)."""

    kind = "too_many_starts"


def admit(ctx: RunContext, process_key: str) -> int:
    """Count a start made inside an engine run and return the lineage the new instance joins (its start_root_id).

    Raises: TooManyStarts
    """
    settings = config.load()
    row = ctx.running.row

    def refused(zh: str, en: str) -> TooManyStarts:
        return TooManyStarts(f"实例 {row.id} 启动流程 {process_key}：{zh} (instance {row.id} starting {process_key!r}: "
                             f"{en})")
    if ctx.nesting >= MAX_START_NESTING:
        raise refused(f"被启动的实例在启动它的运行中又启动实例，已嵌套 {MAX_START_NESTING} 层，不再启动",
                      f"instances started inside the runs of the instances that started them, {MAX_START_NESTING} "
                      "deep: past MAX_START_NESTING; let a timer, a task or a message come between")
    if ctx.starts.count >= settings.max_run_starts:
        raise refused(f"一次运行已启动 {ctx.starts.count} 个实例，不再启动",
                      f"this run started {ctx.starts.count} instances, those they started included: past "
                      f"JZFLOW_MAX_RUN_STARTS={settings.max_run_starts}")
    root = row.start_root_id or row.id
    open_now = int(ctx.session.scalar(select(func.count()).select_from(ProcessInstance).where(
        ProcessInstance.start_root_id == root, ProcessInstance.status.in_(OPEN))) or 0)
    if open_now >= settings.max_open_descendants:
        raise refused(f"由实例 {root} 起相继启动、尚未结束的实例已有 {open_now} 个，不再启动",
                      f"{open_now} instances started one from another since instance {root} are still open: past "
                      f"JZFLOW_MAX_OPEN_DESCENDANTS={settings.max_open_descendants}")
    ctx.starts.count += 1
    return root


def room(ctx: RunContext) -> int:
    """Return how many more instances this run may start now (what `admit` would let pass, counted without starting).

    A service that starts one instance per row checks its rows against it first and sends them back as a whole,
    instead of starting what fits and stopping on an incident with the rest unstarted.
    """
    settings = config.load()
    if ctx.nesting >= MAX_START_NESTING:
        return 0
    root = ctx.running.row.start_root_id or ctx.running.row.id
    open_now = int(ctx.session.scalar(select(func.count()).select_from(ProcessInstance).where(
        ProcessInstance.start_root_id == root, ProcessInstance.status.in_(OPEN))) or 0)
    return max(0, min(settings.max_run_starts - ctx.starts.count, settings.max_open_descendants - open_now))


__all__ = ["MAX_START_NESTING", "OPEN", "TooManyStarts", "admit", "room"]
