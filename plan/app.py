"""The plan as an engine extension: what Jiaozhou's application adds to the workflow engine.

Installed through the `jzflow.extensions` entry point (setup.cfg), so every process — web, worker,
beat, CLI, tests — gets the same additions the first time the engine asks for them:
- service-task operations of the plan's processes (并联审批, 问题台账, 七步工作法, 项目库);
- ledger issues and projects as objects the deadline sweep watches and escalates;
- its Celery jobs and their beat schedule;
- the `seed` and `demo` commands;
- the handover of a deactivated person's open issues and leads (`plan.handover`), and of the open issues, leads and
  projects whose responsible leader they are (`plan.leader_handover`);
- `start_process` of a project's first approval stage answered with the project's approval (`START_ROUTES`);
- the project code and stage of an approval started for a project fixed on its forms (`engine.tasks.fixed.FIXED`);
- a 七步工作法 period started by hand taken as `start_period` takes it, one instance a month (`CLIENT_START_ROUTES`).
"""
from __future__ import annotations

from celery.schedules import crontab

from engine import extensions
from engine.deadlines import sla, sources
from engine.org import leaving
from engine.runtime import instances
from engine.tasks import fixed
from plan import cli, handover, leader_handover
from plan.investment import periods
from plan.leads import deadlines as lead_deadlines
from plan.ledger import deadlines as ledger_deadlines
from plan.meetings import core as meetings
from plan.projects import approvals, slow_projects
from plan.projects import deadlines as project_deadlines
from plan.reports import schedule as report_schedule

SERVICE_MODULES = ("plan.approval.core", "plan.approval.certificate", "plan.approval.rejection",
                   "plan.approval.receipts", "plan.ledger.core", "plan.leads.core", "plan.investment.core",
                   "plan.projects.core", "plan.projects.approvals")
BEAT = {
    "pending-reports": {"task": "plan.jobs.pending_reports", "schedule": 60.0},
    # 七步工作法: one instance per month; idempotent, so a daily run catches up a missed one.
    "start-investment-period": {"task": "plan.jobs.start_investment_period", "schedule": crontab(hour=8, minute=0)},
    # 对进展缓慢项目自动预警: a ledger issue for each project behind its planned dates (idempotent).
    "flag-slow-projects": {"task": "plan.jobs.flag_slow_projects", "schedule": crontab(hour=7, minute=30)},
    # 周调度、月通报: produced when escalation.yaml's `reports:` says, delivered to the leaders it names.
    "scheduled-reports": {"task": "plan.jobs.scheduled_reports", "schedule": 600.0},
    # 项目推进暨评审会议 (every two weeks): the agenda is built a few days before (escalation.yaml `meetings:`).
    "review-meeting": {"task": "plan.jobs.prepare_review_meeting", "schedule": crontab(hour=7, minute=0)},
}


def install() -> None:
    """Register the plan's additions with the engine (called once per process by `engine.extensions.load`)."""
    for module in SERVICE_MODULES:
        if module not in extensions.service_modules:
            extensions.service_modules.append(module)
    if "plan.jobs" not in extensions.task_modules:
        extensions.task_modules.append("plan.jobs")
    extensions.beat.update(BEAT)
    extensions.commands.extend(c for c in cli.COMMANDS if c not in extensions.commands)
    sources.register(ledger_deadlines.SOURCE)
    sources.register(project_deadlines.SOURCE)
    sources.register(lead_deadlines.SOURCE)
    sla.OTHER_SECTIONS.update((report_schedule.SECTION, meetings.SECTION))
    # start_process of a project's first approval stage (a call on loop_call's old version): one per project
    instances.START_ROUTES[approvals.PROCESS_KEY] = approvals.routed_start
    # an approval started for a project: its project code and stage are fixed on its forms (shown, not editable)
    fixed.FIXED[approvals.PROCESS_KEY] = approvals.fixed_on_form
    # 七步工作法 started by hand (start page, API, CLI): the period's one instance, as the beat job starts it
    instances.CLIENT_START_ROUTES[periods.PROCESS_KEY] = periods.start_by_hand
    # 对进展缓慢项目自动预警 finds its open issue by this key: nobody's start may take it (and silence the warning)
    instances.RESERVED_KEY_PREFIXES[f"{slow_projects.KEY_PREFIX}:"] = "对进展缓慢项目自动预警"
    for hook in (handover.hand_over, leader_handover.hand_over):
        if hook not in leaving.HANDOVERS:
            leaving.HANDOVERS.append(hook)
