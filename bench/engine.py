"""Benchmark: one user-task completion through jzflow's services against bare SpiffWorkflow.

    python bench/engine.py [--db sqlite|postgres|both] [--others 100,100000] [--repeat N] [--profile]

Ours, timed per completion: new session → engine.tasks.complete(...) → session.commit()
(load, form validation, task.run, engine steps through a script task and a gateway to the next
user task, projection: one human_task completed + one created with its candidate, audit event,
optimistic-lock save, commit). Each completion is on a fresh instance started beforehand.

Bare, timed per completion on the same BPMN in the same process: deserialize_json of the full
serialization (spec included) → data + task.run() on the READY user task → do_engine_steps() →
serialize_json, with SpiffWorkflow's default script engine.

Both are measured interleaved (one of ours, one bare) so machine noise hits both alike. The last
line is the summary: ratio and ours_ms at the smallest --others, growth = ours at the largest /
ours at the smallest. With both databases, one summary line each, PostgreSQL last.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# `python bench/engine.py` puts bench/ first on sys.path, where this file would shadow the engine
# package: put the repository root there instead.
_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "bench":
    sys.path[0] = str(_ROOT)

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from bench import common
from engine import audit, runtime, tasks
from engine.org.actors import Actor
from engine.runtime import forms, hot, instances, projection
from engine.runtime.models import ProcessInstance
from engine.spiff import guards, serializer
from engine.tasks import core as task_core
from engine.tasks.models import HumanTask

WARMUP = 20
TEMPLATE_WEIGHTS = {"at_fill": 0.35, "at_review": 0.35, "completed": 0.30}


# --- bare SpiffWorkflow -----------------------------------------------------------------------

class Bare:
    """The same completion done by a bare SpiffWorkflow app that stores the full serialization."""

    def __init__(self) -> None:
        self.serializer = common.bare_serializer()
        spec, subprocess_specs = common.bare_specs()
        workflow = BpmnWorkflow(spec, subprocess_specs)  # SpiffWorkflow's default script engine
        for task in workflow.get_tasks(state=TaskState.READY):  # as instances.start does
            task.data.update(common.START_DATA, initiator="applicant001")
        workflow.do_engine_steps()
        self.stored: str = self.serializer.serialize_json(workflow)
        self.last = ""
        self.check()

    def complete(self, phases: dict[str, list[float]] | None = None) -> float:
        """Complete the READY user task of a freshly loaded copy; return the seconds it took."""
        t0 = time.perf_counter()
        workflow = self.serializer.deserialize_json(self.stored)
        t1 = time.perf_counter()
        task = workflow.get_tasks(state=TaskState.READY, manual=True)[0]
        task.data.update(common.FILL_FORM)
        task.run()
        t2 = time.perf_counter()
        workflow.do_engine_steps()
        t3 = time.perf_counter()
        self.last = self.serializer.serialize_json(workflow)
        t4 = time.perf_counter()
        if phases is not None:
            for name, seconds in (("deserialize_json", t1 - t0), ("find READY + task.run", t2 - t1),
                                  ("do_engine_steps", t3 - t2), ("serialize_json", t4 - t3)):
                phases[name].append(seconds)
        return t4 - t0

    def check(self) -> None:
        """Make sure the bare run reaches the same place ours does: `review` READY."""
        self.complete()
        workflow = self.serializer.deserialize_json(self.last)
        ready = [t.task_spec.bpmn_id for t in workflow.get_tasks(state=TaskState.READY, manual=True)]
        if ready != ["review"]:
            raise RuntimeError(f"bare run stopped at {ready}, expected ['review']")


class DurableBare:
    """Bare SpiffWorkflow that also keeps its JSON in the same database: read, complete, write, commit.

    The floor for any durable engine: one SELECT of the state, deserialize_json, the completion,
    serialize_json, one UPDATE and a commit, on a fresh row per completion (as ours uses a fresh
    instance), through the same connection pool.
    """

    def __init__(self, db: common.BenchDatabase, count: int, bare: Bare) -> None:
        self.engine = db.engine
        self.serializer = bare.serializer
        with self.engine.begin() as conn:
            # compressed as ours is (migration 0029: lz4 where PostgreSQL has it), so the floor is not set higher
            lz4 = conn.dialect.name == "postgresql" and "lz4" in (conn.scalar(text(
                "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")) or [])
            column = "state TEXT" + (" COMPRESSION lz4" if lz4 else "") + " NOT NULL"
            conn.execute(text(f"CREATE TABLE bare_state (id INTEGER PRIMARY KEY, {column})"))
            conn.execute(text("INSERT INTO bare_state (id, state) VALUES (:id, :state)"),
                         [{"id": i, "state": bare.stored} for i in range(count)])
        self.next = 0

    def complete(self) -> float:
        t0 = time.perf_counter()
        row_id = self.next
        self.next += 1
        with self.engine.begin() as conn:
            stored = conn.execute(text("SELECT state FROM bare_state WHERE id = :id"), {"id": row_id}).scalar_one()
            workflow = self.serializer.deserialize_json(stored)
            task = workflow.get_tasks(state=TaskState.READY, manual=True)[0]
            task.data.update(common.FILL_FORM)
            task.run()
            workflow.do_engine_steps()
            conn.execute(text("UPDATE bare_state SET state = :state WHERE id = :id"),
                         {"state": self.serializer.serialize_json(workflow), "id": row_id})
        return time.perf_counter() - t0


# --- ours ---------------------------------------------------------------------------------------

@dataclass
class Setup:
    db: common.BenchDatabase
    org: common.BenchOrg
    applicant: Actor
    reviewer: Actor
    templates: list[tuple[common.Template, float]]
    seeded: int = 0
    started: int = 0
    task_ids: list[int] = field(default_factory=list)


def prepare(db: common.BenchDatabase) -> Setup:
    """Create the org, deploy the bench process and run one real instance into each template state."""
    with db.factory() as session:
        bench_org = common.setup_org(session)
        common.deploy_bench(session)
        session.commit()
        applicant = common.actor(session, bench_org.username("applicant"))
        reviewer = common.actor(session, bench_org.username("reviewer"))
    ids: dict[str, int] = {}
    with db.factory() as session:
        for name in TEMPLATE_WEIGHTS:
            ids[name] = instances.start(session, process_key=common.PROCESS_KEY, actor=applicant,
                                        data=common.START_DATA, business_key=f"TPL-{name}").id
        session.commit()
        fills = common.open_task_ids(session, [ids["at_review"], ids["completed"]], "fill")
        for instance_id, task_id in fills.items():
            if instance_id == ids["completed"]:
                tasks.claim(session, task_id=task_id, actor=applicant)
            tasks.complete(session, task_id=task_id, actor=applicant, data=common.FILL_FORM)
            session.commit()
        review = common.open_task_ids(session, [ids["completed"]], "review")[ids["completed"]]
        tasks.claim(session, task_id=review, actor=reviewer)
        tasks.complete(session, task_id=review, actor=reviewer, data=common.REVIEW_FORM)
        session.commit()
        templates = [(common.capture_template(session, name, ids[name]), weight)
                     for name, weight in TEMPLATE_WEIGHTS.items()]
    return Setup(db, bench_org, applicant, reviewer, templates)


def grow_to(setup: Setup, others: int) -> common.SeedStats | None:
    """Seed copies of the templates until `others` instances besides the measured ones exist."""
    if others <= setup.seeded:
        return None
    stats = common.seed_copies(setup.db, setup.templates, others - setup.seeded, setup.org, start=setup.seeded)
    setup.seeded = others
    return stats


def start_fresh(setup: Setup, count: int) -> list[int]:
    """Start `count` instances (waiting at `fill`) outside any timing; return their fill task ids."""
    ids: list[int] = []
    with setup.db.factory() as session:
        for i in range(count):
            row = instances.start(session, process_key=common.PROCESS_KEY, actor=setup.applicant,
                                  data=common.START_DATA, business_key=f"BENCH-{setup.started + i:06d}")
            ids.append(row.id)
            if i % 50 == 49:
                session.commit()
        session.commit()
        fills = common.open_task_ids(session, ids, "fill")
    setup.started += count
    return [fills[i] for i in ids]


def complete_ours(setup: Setup, task_id: int) -> tuple[float, tasks.Completion]:
    """Complete `fill` through the services in a new session and commit; return seconds and the result."""
    t0 = time.perf_counter()
    session = setup.db.factory()
    result = tasks.complete(session, task_id=task_id, actor=setup.applicant, data=common.FILL_FORM)
    session.commit()
    elapsed = time.perf_counter() - t0
    session.close()
    return elapsed, result


def check_completion(setup: Setup, result: tasks.Completion) -> None:
    """Make sure a completion did what it should: fill done, review READY with its candidate, audited."""
    if result.status != "running" or result.incident or len(result.next_tasks) != 1:
        raise RuntimeError(f"unexpected completion: {result}")
    with setup.db.factory() as session:
        rows = session.scalars(select(HumanTask).where(HumanTask.instance_id == result.instance_id)
                               .order_by(HumanTask.id)).all()
        states = [(h.bpmn_id, h.state, len(h.candidates)) for h in rows]
        lock = session.scalar(select(ProcessInstance.lock_version).where(ProcessInstance.id == result.instance_id))
        session.rollback()
    if states != [("fill", "completed", 1), ("review", "ready", 1)] or lock != 2:
        raise RuntimeError(f"unexpected projection after completion: {states}, lock_version={lock}")


@dataclass
class Measured:
    kind: str
    others: int
    ours: list[float]
    bare: list[float]
    durable: list[float]
    seed: common.SeedStats | None
    counts: dict[str, int]

    @property
    def ours_ms(self) -> float:
        return common.median_ms(self.ours)

    @property
    def bare_ms(self) -> float:
        return common.median_ms(self.bare)

    @property
    def durable_ms(self) -> float:
        return common.median_ms(self.durable)

    def line(self) -> str:
        seeded = f" seeded_in={self.seed.seconds:.1f}s" if self.seed else ""
        return (f"db={self.kind} others={self.others} n={len(self.ours)} "
                f"ours_ms={self.ours_ms:.2f} ours_p90_ms={common.p90_ms(self.ours):.2f} "
                f"bare_ms={self.bare_ms:.2f} bare_p90_ms={common.p90_ms(self.bare):.2f} "
                f"durable_ms={self.durable_ms:.2f} ratio={self.ours_ms / self.bare_ms:.2f} "
                f"durable_ratio={self.ours_ms / self.durable_ms:.2f} hot_hits={hot.CACHE.hits} "
                f"rows=instances:{self.counts['process_instance']},human_task:{self.counts['human_task']},"
                f"task_candidate:{self.counts['task_candidate']},audit_event:{self.counts['audit_event']}"
                f"{seeded}")


def verify_audit(setup: Setup) -> None:
    """Prove the seeded copies are real: every stream's hash chain verifies."""
    with setup.db.factory() as session:
        report = audit.verify(session)
        session.rollback()
    if not report.ok:
        raise RuntimeError(f"seeded audit trail does not verify: {report.problem}")


def run_database(kind: str, sizes: Sequence[int], repeat: int, warmup: int) -> list[Measured]:
    """Measure every --others size on one database kind, printing a detail line per size.

    Each size gets its own database, seeded beforehand, and the completions are interleaved
    round by round (one per size, one bare), so machine noise hits every size and bare alike:
    growth compares like with like even on a busy machine.
    """
    with ExitStack() as stack:
        setups: list[Setup] = []
        seeds: list[common.SeedStats | None] = []
        for n, size in enumerate(sizes):
            db = stack.enter_context(common.database(kind, suffix="" if n == 0 else f"_{size}"))
            setup = prepare(db)
            seeds.append(grow_to(setup, size))
            if n == 0:
                verify_audit(setup)
            setup.task_ids = start_fresh(setup, warmup + repeat)
            setups.append(setup)
        bare = Bare()
        durable = DurableBare(setups[0].db, warmup + repeat, bare)
        ours: list[list[float]] = [[] for _ in setups]
        bare_samples: list[float] = []
        durable_samples: list[float] = []
        gc.collect()
        lanes = len(setups) + 2  # the last two lanes are bare in memory and bare durable
        for i in range(warmup + repeat):
            for lane in ((i + k) % lanes for k in range(lanes)):  # rotate who goes first
                if lane >= len(setups):
                    elapsed = bare.complete() if lane == len(setups) else durable.complete()
                    if i >= warmup:
                        (bare_samples if lane == len(setups) else durable_samples).append(elapsed)
                    continue
                setup = setups[lane]
                elapsed, result = complete_ours(setup, setup.task_ids[i])
                if i in (0, warmup + repeat - 1):
                    check_completion(setup, result)
                if i >= warmup:
                    ours[lane].append(elapsed)
        results = [Measured(kind, size, ours[n], bare_samples, durable_samples, seeds[n],
                            common.table_counts(setups[n].db))
                   for n, size in enumerate(sizes)]
    for measured in results:
        print(measured.line(), flush=True)
    return results


def summary(results: Sequence[Measured]) -> str:
    """The summary line: ratio and ms at the smallest size, growth from the smallest to the largest."""
    first, last = results[0], results[-1]
    growth = f"{last.ours_ms / first.ours_ms:.2f}" if len(results) > 1 else "n/a"
    return (f"ratio={first.ours_ms / first.bare_ms:.2f} durable_ratio={first.ours_ms / first.durable_ms:.2f} "
            f"ours_ms={first.ours_ms:.2f} bare_ms={first.bare_ms:.2f} growth={growth} db={first.kind}")


# --- profile ------------------------------------------------------------------------------------

# (module, attribute, label, depth): wrapped for the phase breakdown; depth 1 is inside the phase above.
PHASES: tuple[tuple[Any, str, str, int], ...] = (
    (task_core, "get_open_to_complete", "first read: task, candidates, instance row, open rows, audit head", 0),
    (forms, "validate", "form validation (jsonschema)", 0),
    (runtime, "load", "runtime.load", 0),
    (serializer, "load_state", "state JSON -> workflow (run_deep)", 1),
    (runtime, "complete_user_task", "task.run (run_deep)", 0),
    (runtime, "run", "runtime.run: do_engine_steps (run_deep) + check_depth", 0),
    (runtime, "save", "runtime.save", 0),
    (serializer, "dump_state", "workflow -> state JSON (run_deep)", 1),
    (projection, "plan", "projection.plan (in memory)", 1),
    (projection, "write_postgres", "projection.write_postgres: state + projection, one statement", 1),
    (runtime, "record", "runtime.record", 0),
    (runtime, "waiting_summary", "waiting_summary (tree walks)", 1),
    (audit, "record", "audit.record (chained and inserted at commit)", 1),
)


@contextmanager
def phase_timers(current: dict[str, float]) -> Iterator[None]:
    """Wrap the PHASES functions so each call adds its duration to current[label]."""
    originals = []

    def wrap(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                current[label] = current.get(label, 0.0) + time.perf_counter() - t0
        return timed

    for module, name, label, _depth in PHASES:
        original = getattr(module, name, None)
        if original is None:  # renamed in engine/: that phase just reads 0
            continue
        originals.append((module, name, original))
        setattr(module, name, wrap(original, label))
    try:
        yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


@dataclass
class SqlLog:
    count: int = 0
    seconds: float = 0.0
    statements: list[str] | None = None


@contextmanager
def sql_log(setup: Setup, log: SqlLog) -> Iterator[None]:
    """Count SQL statements and the time spent executing them (driver + server)."""
    started: list[float] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        started.append(time.perf_counter())
        log.count += 1
        if log.statements is not None:
            log.statements.append(" ".join(statement.split())[:110])

    def after(*args: Any) -> None:
        log.seconds += time.perf_counter() - started.pop()

    event.listen(setup.db.engine, "before_cursor_execute", before)
    event.listen(setup.db.engine, "after_cursor_execute", after)
    try:
        yield
    finally:
        event.remove(setup.db.engine, "before_cursor_execute", before)
        event.remove(setup.db.engine, "after_cursor_execute", after)


def _timed_completion(setup: Setup, task_id: int, current: dict[str, float]) -> None:
    """One completion of ours with phase timers; adds "_total" and "session.commit()" to current."""
    with phase_timers(current):
        t0 = time.perf_counter()
        session = setup.db.factory()
        tasks.complete(session, task_id=task_id, actor=setup.applicant, data=common.FILL_FORM)
        t1 = time.perf_counter()
        session.commit()
        t2 = time.perf_counter()
        session.close()
    current["session.commit()"] = t2 - t1
    current["_total"] = t2 - t0


def profile(kind: str, others: int, repeat: int, warmup: int) -> None:
    """Print a phase breakdown of ours and bare, the SQL ours sends, run_deep's cost and cProfile's top 25."""
    with common.database(kind) as db:
        setup = prepare(db)
        bare = Bare()
        grow_to(setup, others)
        task_ids = start_fresh(setup, warmup + 3 * repeat)
        for task_id in task_ids[:warmup]:
            complete_ours(setup, task_id)
            bare.complete()
        phase_ids = task_ids[warmup:warmup + repeat]
        ab_ids = task_ids[warmup + repeat:warmup + 2 * repeat]
        profiled_ids = task_ids[warmup + 2 * repeat:]

        # 1. Phase breakdown (real run_deep thread hops), interleaved with bare's phases.
        per_phase: dict[str, list[float]] = defaultdict(list)
        bare_phases: dict[str, list[float]] = defaultdict(list)
        sql = SqlLog()
        statements: list[str] = []
        for i, task_id in enumerate(phase_ids):
            current: dict[str, float] = {}
            log = SqlLog(statements=[] if i == 0 else None)
            with sql_log(setup, log):
                _timed_completion(setup, task_id, current)
            top = sum(current.get(label, 0.0) for _m, _n, label, depth in PHASES if depth == 0)
            current["_rest"] = current["_total"] - top - current["session.commit()"]
            for label, seconds in current.items():
                per_phase[label].append(seconds)
            for label in (label for _m, _n, label, _d in PHASES if label not in current):
                per_phase[label].append(0.0)
            sql.count += log.count
            sql.seconds += log.seconds
            statements = log.statements or statements
            bare_phases["_total"].append(bare.complete(bare_phases))

        total_ms = common.median_ms(per_phase["_total"])
        print(f"\n== profile db={kind} others={others} n={repeat}: ours {total_ms:.2f} ms, "
              f"bare {common.median_ms(bare_phases['_total']):.2f} ms (medians; every row is a median)")
        print("ours: new session -> tasks.complete -> commit")
        rows = [(label, depth) for _m, _n, label, depth in PHASES] + [("session.commit()", 0), ("_rest", 0)]
        for label, depth in rows:
            ms = common.median_ms(per_phase[label])
            name = "rest: new session, connection checkout (pre-ping), the rest" if label == "_rest" else label
            print(f"  {'  ' * depth}{name:<{60 - 2 * depth}} {ms:6.2f} ms {100 * ms / total_ms:5.1f}%")
        print(f"  SQL: {sql.count / repeat:.1f} statements per completion, {1000 * sql.seconds / repeat:.2f} ms "
              "in cursor.execute (mean, driver + server)")
        for statement in statements:
            print(f"    {statement}")
        print("bare: deserialize_json -> task.run -> do_engine_steps -> serialize_json")
        for name, samples in bare_phases.items():
            if name != "_total":
                print(f"  {name:<60} {common.median_ms(samples):6.2f} ms")

        # 2. What the four run_deep thread hops cost: the same completion with run_deep inlined, interleaved.
        normal: list[float] = []
        inlined: list[float] = []
        for i, task_id in enumerate(ab_ids):
            guards._in_deep_worker.active = i % 2 == 1  # run_deep's own "already deep" shortcut
            try:
                (inlined if i % 2 else normal).append(complete_ours(setup, task_id)[0])
            finally:
                guards._in_deep_worker.active = False
        print(f"run_deep: ours {common.median_ms(normal):.2f} ms as is, {common.median_ms(inlined):.2f} ms with "
              "run_deep calling directly (4 thread hops per completion: load_state, task.run, "
              "do_engine_steps, dump_state)")
        with db.factory() as session:
            row = session.scalar(select(ProcessInstance).where(ProcessInstance.id == result_instance(session)))
            spec_len = len(row.version.spec_json) if row else 0
            state_len = len(row.state) if row else 0
            session.rollback()
        print(f"sizes: state {state_len} chars (an instance at review), spec_json {spec_len} chars "
              f"(parsed once per process), bare stored JSON {len(bare.stored)} chars")

        # 3. cProfile, run_deep inlined so the worker-thread work shows up in this thread's profile.
        profiler = cProfile.Profile()
        guards._in_deep_worker.active = True
        try:
            for task_id in profiled_ids:
                profiler.enable()
                session = db.factory()
                tasks.complete(session, task_id=task_id, actor=setup.applicant, data=common.FILL_FORM)
                session.commit()
                profiler.disable()
                session.close()
        finally:
            guards._in_deep_worker.active = False
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        print(f"\ncProfile of ours, {len(profiled_ids)} completions (run_deep inlined), top 25 by cumulative time:")
        print(_trim_pstats(out.getvalue()))


def result_instance(session: Session) -> int | None:
    """Return the newest instance that is waiting at review (a measured one)."""
    return session.scalar(select(HumanTask.instance_id).where(HumanTask.bpmn_id == "review",
                                                              HumanTask.state == "ready")
                          .order_by(HumanTask.id.desc()).limit(1))


def _trim_pstats(text: str) -> str:
    """Drop pstats' preamble and shorten site-packages paths."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    site = str(Path(guards.__file__).resolve().parents[2])
    out = []
    for line in lines[start:]:
        line = line.replace(site + "/", "")
        line = line.replace(str(Path(sys.prefix) / "lib"), "<venv>/lib")
        out.append(line)
    return "\n".join(out).rstrip()


# --- CLI ---------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--others", default="100,100000",
                        help="comma-separated numbers of other instances in the database (default 100,100000)")
    parser.add_argument("--repeat", type=int, default=200, help="timed completions per configuration")
    parser.add_argument("--warmup", type=int, default=WARMUP, help="untimed completions first (default 20)")
    parser.add_argument("--profile", action="store_true",
                        help="print a phase breakdown and cProfile's top 25 (at the smallest --others)")
    args = parser.parse_args(argv)
    args.sizes = sorted({int(x.replace("_", "")) for x in args.others.split(",") if x.strip()})
    if not args.sizes or args.repeat < 1:
        parser.error("--others needs at least one size and --repeat must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]  # PostgreSQL last
    if args.profile:
        for kind in kinds:
            profile(kind, args.sizes[0], args.repeat, args.warmup)
        return 0
    t0 = time.perf_counter()
    print(f"# jzflow engine bench: repeat={args.repeat} warmup={args.warmup} others={args.sizes} "
          f"python={sys.version.split()[0]}", flush=True)
    results = {kind: run_database(kind, args.sizes, args.repeat, args.warmup) for kind in kinds}
    print(f"# total {time.perf_counter() - t0:.0f}s", flush=True)
    for kind in kinds:
        print(summary(results[kind]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
