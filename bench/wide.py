"""Completion cost in the plan's own wide and long-lived instances, through jzflow's services on PostgreSQL.

    python bench/wide.py [--instances N] [--items N] [--db postgres|sqlite]

bench/engine.py and bench/history.py complete one task of a 4-step process with one open row and a 4 KB state. The
plan's processes are wider: a 并联审批 (bpmn/parallel_approval.bpmn) fans out to every department the DMN
approval_departments names and loops on 补正; a 七步工作法 period (bpmn/investment_loop.bpmn) opens one ④ 认领
child per plan item beside ⑤ ⑥ ⑦. A fresh database (bench/common.py) is migrated, seeded (data/seed: the real org,
its departments and their reviewers) and bpmn/ deployed; then, `--instances` times over, round-robin so that noise
hits every step alike:

(a) **wide approval**: an industrial project of 3.8亿元 at 立项用地规划许可 (the widest rule: 发改, 自然资源, 生态环境,
    应急管理, 水务), submitted, 退回 once, resubmitted, 容缺受理 (a parallel branch), the five departments' reviews
    (two ask 补正), the applicant's 补正 and deferred materials, the two re-reviewing (one asks again), a second 补正,
    the last review, 联合出证: 16 completions, each by the user the inbox would offer it to;
(b) **loop period**: a 七步工作法 period started as beat does, ① ② confirmed, ③ with `--items` plan items (default
    16), every ④ claim, ⑤ a visit raising one ledger issue, ⑥ two leads, ⑦ one call published (the period ends).

Each completion is timed around *new session → engine.tasks.complete(...) → commit* (as bench/engine.py): wall
(`time.perf_counter`) and CPU (`time.process_time`, this process only: the bench's Python work, not PostgreSQL's —
steadier on a machine shared with other tests), and the SQL statements it sent are counted. After it (untimed), the
state's size in the row (UTF-8 bytes) is read, and **bare** is timed in CPU: SpiffWorkflow's serializer restoring that
same state in memory and dumping it again (engine.spiff.serializer over SpiffWorkflow's BpmnWorkflowSerializer; no
database), and the dump alone (what a completion of an instance kept hot in this process pays for its state). A bare
run of the whole path is not feasible: the path's service tasks (受理通知书, review rounds, ledger issues, calls) are
the plan's operators, which need the database; the serializer round trip is the part of a bare engine that follows
the state's size.

Output: one line per step of each path (median over the instances: wall ms, CPU ms, statements, state bytes, bare
ms), then the last line

    wide_ms=<median wall ms of a completion in the approval> loop_ms=<median wall ms of a ④ claim>
    cpu_wide_ms=<the same, CPU> cpu_loop_ms=<…> growth=<CPU of the last 3 claims / the first 3 claims>
    sql=<median statements per completion, both paths> bytes=<the period's state bytes after its last claim>

(on one line). `growth` compares claims with claims (the same step, so only the instance's width and history differ),
on CPU time; a growth near 1 means a claim costs the same whether 1 or 15 were made before it.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "bench":
    sys.path[0] = str(_ROOT)

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from bench import common
from engine import clock, deploy, runtime, tasks
from engine.org.actors import SYSTEM
from engine.runtime import hot, instances
from engine.runtime.models import ProcessInstance, ProcessStateHistory
from engine.spiff import serializer
from engine.tasks.models import HumanTask
from plan import investment as plan
from plan.data import seed
from plan.data.demo_flows import Demo

APPLICANT, WINDOW, LEADER = "shaofang", "maxiaoyan", "wangjianguo"
PROJECT = {"project_code": "XM-BENCH-0001", "project_name": "封装基板材料生产线项目", "project_type": "industrial",
           "investment": 38000, "stage": "land_planning"}
MATERIALS = ["application_form", "business_license", "project_document", "land_documents", "planning_scheme",
             "eia_document", "safety_assessment"]
LOOP_USERS = {"data_officer": "fanwenjuan", "planner": "zengfan", "service_officer": "miaoqing",
              "investment_officer": "tangjian"}
PROFILE: cProfile.Profile | None = None  # --profile: the ④ claims' completions (or --profile-step's)
PROFILE_STEP = "claim_item"


@dataclass
class Sample:
    step: str
    wall: float
    cpu: float
    sql: int
    size: int
    bare: float
    dump: float


@dataclass
class Counter:
    on: bool = False
    count: int = 0

    def __call__(self, *_: Any) -> None:
        if self.on:
            self.count += 1


@dataclass
class Run:
    """One instance of a path: its id, the user to act as for each step, and what it measured."""

    db: common.BenchDatabase
    counter: Counter
    shared: Session  # the look-ups' session (Demo): ended before each step, or SQLite's writer waits on it
    instance_id: int = 0
    samples: list[Sample] = field(default_factory=list)

    def open_tasks(self, bpmn_id: str) -> list[HumanTask]:
        with self.db.factory() as s:
            found = list(s.scalars(select(HumanTask).where(
                HumanTask.instance_id == self.instance_id, HumanTask.bpmn_id == bpmn_id, HumanTask.state == "ready")
                .order_by(HumanTask.id)))
            for task in found:
                _ = list(task.candidates)
            s.expunge_all()
            return found

    def complete(self, bpmn_id: str, username: str, data: dict[str, Any], *, unit_id: int | None = None,
                 label: str | None = None) -> None:
        self.shared.commit()
        found = self.open_tasks(bpmn_id)
        if unit_id is not None:
            found = [t for t in found if any(c.org_unit_id == unit_id for c in t.candidates)]
        if not found:
            raise SystemExit(f"instance {self.instance_id}: no open {bpmn_id} (unit {unit_id})")
        task_id = found[0].id
        with self.db.factory() as s:
            actor = common.actor(s, username)
            s.commit()
        with self.db.factory() as s:
            profiling = PROFILE is not None and (label or bpmn_id).startswith(PROFILE_STEP)
            if profiling:
                PROFILE.enable()  # type: ignore[union-attr]
            self.counter.count, self.counter.on = 0, True
            wall, cpu = time.perf_counter(), time.process_time()
            result = tasks.complete(s, task_id=task_id, actor=actor, data=data)
            s.commit()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            self.counter.on = False
            if profiling:
                PROFILE.disable()  # type: ignore[union-attr]
        if result.incident is not None:
            raise SystemExit(f"instance {self.instance_id}: {bpmn_id} raised an incident: {result.incident}")
        size, bare, dump = self.state_figures()
        self.samples.append(Sample(label or bpmn_id, wall, cpu, self.counter.count, size, bare, dump))

    def state_figures(self) -> tuple[int, float, float]:
        """The state's UTF-8 bytes in the row; a bare serializer round trip of it in memory and its dump alone (medians
        of 3)."""
        with self.db.factory() as s:
            row = s.get(ProcessInstance, self.instance_id)
            assert row is not None
            if not row.state:
                return 0, 0.0, 0.0
            specs, engine = runtime.specs_for(s, row.version_id), runtime.script_engine()
            times, dumps = [], []
            for _ in range(3):
                began = time.process_time()  # CPU: in-memory work only, steadier than the wall on a shared machine
                workflow = serializer.load_state(row.state, specs, engine, version=row.serializer_version)
                loaded = time.process_time()
                serializer.dump_state(workflow)
                times.append(time.process_time() - began)
                dumps.append(time.process_time() - loaded)
            return len(row.state.encode()), statistics.median(times), statistics.median(dumps)


# -- the paths: generators yielding after each completion, so instances advance round-robin ------------------------

def approval_path(run: Run, demo: Demo) -> Iterator[None]:
    run.shared.commit()
    with run.db.factory() as s:
        row = instances.start(s, process_key="parallel_approval", actor=common.actor(s, APPLICANT),
                              data={**PROJECT, "applicant": APPLICANT}, business_key=PROJECT["project_code"],
                              title=f"并联审批 {PROJECT['project_name']}（立项用地规划许可）")
        run.instance_id = row.id
        s.commit()
    application = {**PROJECT, "applicant_unit": "青岛晶联新材料有限公司", "contact_name": "孙晓东",
                   "contact_phone": "13806421002", "materials": MATERIALS}
    run.complete("submit_application", APPLICANT, application)
    yield
    run.complete("window_accept", WINDOW, {"acceptance": "send_back", "window_opinion": "请补充项目备案证明。"},
                 label="window_accept (退回)")
    yield
    run.complete("submit_application", APPLICANT, application, label="submit_application (重新提交)")
    yield
    deadline = (clock.now().astimezone(clock.SHANGHAI).date() + timedelta(days=30)).isoformat()
    run.complete("window_accept", WINDOW, {"acceptance": "accept_deferred", "window_opinion": "主要材料齐全，容缺受理。",
                                           "deferred_materials": ["planning_scheme"],
                                           "commitment_deadline": deadline}, label="window_accept (容缺受理)")
    yield
    rounds = [(("fgj", "approve"), ("yjj", "approve"), ("slj", "approve"), ("zrzyj", "supplement"),
               ("sthjj", "supplement")), (("sthjj", "approve"), ("zrzyj", "supplement")), (("zrzyj", "approve"),)]
    for n, reviews in enumerate(rounds, 1):
        for unit, decision in reviews:
            form = {"review_decision": decision, "review_opinion": "同意。" if decision == "approve" else "材料需补正。",
                    **({"supplement_materials": "请补交经测绘机构确认的红线图。"} if decision == "supplement" else {})}
            run.complete("department_review", demo.reviewer(unit), form, unit_id=demo.unit_id(unit),
                         label=f"department_review (round {n})")
            yield
        if n == 1:
            run.complete("submit_deferred_materials", APPLICANT,
                         {"deferred_supplied": ["planning_scheme"], "deferred_note": "已补交。"})
            yield
        if n < len(rounds):
            run.complete("submit_supplement", APPLICANT,
                         {"supplement_reply": "已按要求补正材料。", "supplement_pledge": True},
                         label=f"submit_supplement (round {n})")
            yield
    run.complete("issue_certificate", WINDOW, {"issued_on": clock.now().astimezone(clock.SHANGHAI).date().isoformat()})
    yield


def loop_path(run: Run, demo: Demo, period: str, items: int) -> Iterator[None]:
    run.shared.commit()
    with run.db.factory() as s:
        run.instance_id = plan.start_period(s, period, SYSTEM).instance_id
        s.commit()
    run.complete("confirm_figures", LOOP_USERS["data_officer"],
                 {"figures_decision": "confirm", "figures_note": f"{period} 指标数据已核对。"})
    yield
    plan_items = [{"title": f"计划任务{i + 1:02d}：招引产业链配套企业", "industry": "", "indicator": ""}
                  for i in range(items)]
    run.complete("review_plan", LOOP_USERS["planner"], {"items": plan_items})
    yield
    finish_by = (clock.now().astimezone(clock.SHANGHAI).date() + timedelta(days=60)).isoformat()
    for n in range(items):
        claim = run.open_tasks("claim_item")[0]
        users = [c.user_id for c in claim.candidates if c.user_id is not None]
        run.complete("claim_item", demo.username(users[0]) if users else LEADER,
                     {"measures": "成立工作专班，按周调度，逐项对接链主企业。", "finish_by": finish_by},
                     label=f"claim_item #{n + 1}")
        yield
    today = clock.now().astimezone(clock.SHANGHAI).date().isoformat()
    run.complete("record_visits", LOOP_USERS["service_officer"], {"visits": [
        {"enterprise": "青岛鲜禾食品有限公司", "visited_on": today, "summary": "企业生产经营正常，二期冷库计划年底开工。",
         "problems": [{"title": "冷链配送车辆市区通行证办理难", "description": "通行证有效期仅一个月，希望延长。",
                       "unit_code": "jtj"}]},
        {"enterprise": "青岛精锐数控机床有限公司", "visited_on": today, "summary": "主体厂房已封顶，企业运行平稳。",
         "problems": []}]})
    yield
    sign = (clock.now().astimezone(clock.SHANGHAI).date() + timedelta(days=90)).isoformat()
    run.complete("source_leads", LOOP_USERS["investment_officer"], {"leads": [
        {"name": "智能家电温控模组生产项目", "enterprise": "青岛睿控电子有限公司", "investment": 16000,
         "project_type": "industrial", "industry": "smart_appliances", "description": "意向落户李哥庄镇。",
         "planned_sign": sign},
        {"name": "低空飞行器维修保障基地", "enterprise": "青岛云翼航空维修有限公司", "investment": 9500,
         "project_type": "service", "industry": "low_altitude_economy", "description": "已与临空经济区初步对接。",
         "planned_sign": sign}]})
    yield
    run.complete("publish_call", LOOP_USERS["investment_officer"], {"call_decision": "publish", "calls": [
        {"call_title": "智能家电产业链核心零部件招商揭榜", "industry": "smart_appliances",
         "description": "招引压缩机电机、变频控制器等核心零部件企业。", "eligible_units": ["tcj", "shz", "lkq", "jdj"],
         "bid_window": "P14D"}], "publish_more": False})
    yield


def round_robin(paths: Sequence[Iterator[None]]) -> None:
    live = list(paths)
    while live:
        for path in list(live):
            try:
                next(path)
            except StopIteration:
                live.remove(path)


# -- report ----------------------------------------------------------------------------------------------------------

def table(title: str, runs: Sequence[Run]) -> list[Sample]:
    """Print one line per step (medians over the runs) and return every sample."""
    print(f"{title}: {len(runs)} instance(s), {len(runs[0].samples)} completions each")
    print(f"  {'#':>3} {'step':<32} {'wall ms':>8} {'cpu ms':>7} {'sql':>4} {'state B':>8} {'bare ms':>8} {'dump ms':>8}")
    for k in range(len(runs[0].samples)):
        at = [r.samples[k] for r in runs]
        print(f"  {k + 1:>3} {at[0].step:<32} {statistics.median(s.wall for s in at) * 1000:8.2f} "
              f"{statistics.median(s.cpu for s in at) * 1000:7.2f} {statistics.median(s.sql for s in at):4.0f} "
              f"{statistics.median(s.size for s in at):8.0f} {statistics.median(s.bare for s in at) * 1000:8.2f} "
              f"{statistics.median(s.dump for s in at) * 1000:8.2f}")
    return [s for r in runs for s in r.samples]


def ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000


@contextmanager
def prepared(kind: str) -> Iterator[tuple[common.BenchDatabase, Demo, Session]]:
    hot.CACHE.clear()
    began = time.perf_counter()
    with common.database(kind) as db, db.factory() as session:
        migrated = time.perf_counter()
        seed.load_seed(session)
        seeded = time.perf_counter()
        deploy.deploy(session, deploy.read_directory(_ROOT / "bpmn"), actor=SYSTEM)
        session.commit()
        print(f"setup: migrate {migrated - began:.1f} s, seed {seeded - migrated:.1f} s, "
              f"deploy bpmn/ {time.perf_counter() - seeded:.1f} s")
        yield db, Demo(session, clock.now()), session


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--instances", type=int, default=5, help="instances of each path, run round-robin (default 5)")
    parser.add_argument("--items", type=int, default=16, help="③ plan items of each period (default 16)")
    parser.add_argument("--profile", action="store_true", help="cProfile's top 30 of the --profile-step completions")
    parser.add_argument("--profile-step", default="claim_item", help="steps whose label starts so (default claim_item)")
    args = parser.parse_args(argv)
    global PROFILE, PROFILE_STEP
    if args.profile:
        PROFILE, PROFILE_STEP = cProfile.Profile(), args.profile_step
    with prepared(args.db) as (db, demo, _):
        counter = Counter()
        event.listen(db.engine, "before_cursor_execute", counter)
        approvals = [Run(db, counter, demo.session) for _ in range(args.instances)]
        round_robin([approval_path(r, demo) for r in approvals])
        current = plan.period_due(clock.now())
        year, month = (int(x) for x in current.split("-"))
        periods = []  # one period per instance: a period has one instance; earlier months back from the current one
        for n in range(args.instances):
            y, m = divmod(year * 12 + month - 1 - n, 12)
            periods.append(f"{y}-{m + 1:02d}")
        loops = [Run(db, counter, demo.session) for _ in range(args.instances)]
        round_robin([loop_path(r, demo, p, args.items) for r, p in zip(loops, periods, strict=True)])
        with db.factory() as s:
            ended = s.scalars(select(ProcessInstance.status).where(
                ProcessInstance.id.in_([r.instance_id for r in approvals + loops]))).all()
            history = s.scalar(select(func.count()).select_from(ProcessStateHistory))
    wide = table("wide approval (parallel_approval, 5 departments, 2 补正 rounds, 容缺)", approvals)
    loop = table(f"loop period (investment_loop, {args.items} plan items)", loops)
    print(f"instances ended: {sorted(set(ended))}; state history rows: {history}; hot hits={hot.CACHE.hits} "
          f"misses={hot.CACHE.misses}; db={args.db}")
    if PROFILE is not None:
        out = io.StringIO()
        pstats.Stats(PROFILE, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(PROFILE, stream=out).sort_stats("tottime").print_stats(20)
        print(out.getvalue())
    claims = [[s for s in r.samples if s.step.startswith("claim_item")] for r in loops]
    first = [s.cpu for c in claims for s in c[:3]]
    last = [s.cpu for c in claims for s in c[-3:]]
    claim_samples = [s for c in claims for s in c]
    bytes_after = statistics.median(c[-1].size for c in claims)
    bare = ms([s.bare for s in wide]), ms([s.bare for s in claim_samples])
    print(f"bare serializer round trip of the same state: wide {bare[0]:.2f} ms, claims {bare[1]:.2f} ms "
          f"(first 3 claims {ms([s.bare for c in claims for s in c[:3]]):.2f}, last 3 "
          f"{ms([s.bare for c in claims for s in c[-3:]]):.2f}); its dump alone (what a completion of a hot instance "
          f"pays): wide {ms([s.dump for s in wide]):.2f} ms, claims {ms([s.dump for s in claim_samples]):.2f} ms")
    print(f"wide_ms={ms([s.wall for s in wide]):.2f} loop_ms={ms([s.wall for s in claim_samples]):.2f} "
          f"cpu_wide_ms={ms([s.cpu for s in wide]):.2f} cpu_loop_ms={ms([s.cpu for s in claim_samples]):.2f} "
          f"growth={statistics.median(last) / statistics.median(first):.2f} "
          f"sql={statistics.median(s.sql for s in wide + loop):.0f} bytes={bytes_after:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
