"""Whether a service may act on a project a process names: only on one in reach of the person acting.

The project services of the seven steps (⑦'s call target `open_call`, `project_sign`, `project_start_approval`, a
`start_process` of parallel_approval routed to `routed_start`) take a project code from the process data, which a
person's form feeds — ⑦'s publish form, or the form of any diagram a process owner deploys. The code is acted on
only when the project is in reach of the run's actor (the person whose submission runs the service; those who see
every project reach all; a run of the system's — a timer, a message — acts in the reach of the person who started
the instance, `acting_for`, and only what the system itself started reaches all): the rule of the project pages
(`plan.projects.views.reach_of`). A project out of reach is refused with the words of one not in the library, so
nobody learns that another unit's project is there; the refusal names the field, and the service refuses before it
changes anything.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import runtime
from engine.errors import InvalidInput, OutOfReach, UserNotFound
from engine.org.actors import Actor, actor_for
from engine.org.models import User
from engine.runtime import effects
from engine.runtime.models import ProcessInstance
from engine.tasks.models import HumanTask
from plan.projects.core import INVESTMENT_LIBRARY, ProjectInputInvalid
from plan.projects.models import LibraryMember, Project, ProjectLibrary


class ProjectOutOfReach(ProjectInputInvalid, OutOfReach):
    """A project code not in the library or out of the actor's reach: a field the person submitted comes back to
    them; a code from data they did not submit refuses their completion (engine/runtime/refusal.py), no incident."""

    code = "project_input_invalid"


def out_of_reach(code: str, field: str = "project_code") -> ProjectInputInvalid:
    """The refusal of a project code not in the library or out of the actor's reach (the same words for both)."""
    return ProjectOutOfReach(f"项目“{code}”不在项目库中或不在您的查看范围内 (no such project in your reach)", field=field)


def in_library(session: Session, project: Project, library: str) -> bool:
    """Whether the project belongs to a library (its own, or as a member of another)."""
    lib_id = session.scalar(select(ProjectLibrary.id).where(ProjectLibrary.code == library))
    return lib_id is not None and (project.library_id == lib_id or session.scalar(
        select(LibraryMember.id).where(LibraryMember.project_id == project.id,
                                       LibraryMember.library_id == lib_id)) is not None)


def project_in_reach(session: Session, actor: Actor, code: str, *, field: str = "project_code",
                     library: str | None = None) -> Project:
    """Return the project with this code if the actor may act on it: in their reach, or (`library`) in that library.

    Raises: ProjectInputInvalid naming `field` (no such project, or out of reach: the same words)
    """
    project = session.scalar(select(Project).where(Project.code == code)) if code else None
    if project is None:
        raise out_of_reach(code, field)
    if library is None or not in_library(session, project, library):
        require_reach(session, actor, project, field=field)
    return project


def require_reach(session: Session, actor: Actor, project: Project, *, field: str = "project_code") -> None:
    """Refuse a project (found already) out of the actor's reach, in the words of a code not in the library.

    Raises: ProjectInputInvalid naming `field`
    """
    # The pages' rule reads the dashboard's scope and 督办's area, which import the ledger, which imports this
    # package: read when a service acts, not when plan.projects is imported (tests/architecture/test_imports_alone.py).
    from plan.projects.views import reach_of

    who = acting_for(session, actor)
    if who is None or not reach_of(session, who).sees_project(project):
        raise out_of_reach(project.code, field)


# loop_call's steps whose completion runs a project service on the call's project (project_sign, then
# project_start_approval): only someone who reaches that project can complete them (engine.tasks.fit)
CALL_PROJECT_STEPS = frozenset({"follow_up"})


def call_step_unfit(session: Session, task: HumanTask, actor: Actor) -> str | None:
    """Why the person cannot complete a call's 跟进签约 (its project out of their reach), or None (engine.tasks.fit).

    The project is the one the call's data names at that step (after 挂帅: the appointed unit's lead), as
    project_sign reads it; a step whose data names none (or a project since gone) refuses nobody.
    """
    from plan.projects.views import reach_of  # here: see require_reach

    if task.bpmn_id not in CALL_PROJECT_STEPS:
        return None
    step = runtime.find_task(runtime.load(session, task.instance_id, read_only=True).workflow, task.task_guid)
    call = step.data.get("call") if step is not None else None
    code = str(call.get("project_code") or "") if isinstance(call, dict) else ""
    project = session.scalar(select(Project).where(Project.code == code)) if code else None
    if project is None or reach_of(session, actor).sees_project(project):
        return None
    return (f"此任务办理的项目“{code}”不在{actor.display_name}（{actor.username}）的项目范围内，签约入库和并联审批只能由"
            f"项目责任单位（挂帅单位）的人员办理 (project {code} is out of {actor.username}'s reach: only its "
            "responsible unit signs it and starts its approval)")


# 台账管理员: they register and dispatch every unit's issues (问题台账), so an issue they register may be about any project
LEDGER_ROLE = "ledger_officer"


def issue_project(session: Session, actor: Actor, code: str, *, field: str = "project_code") -> Project:
    """Return the project an issue registered by the actor may be about (its 关联项目编号): any project for a
    台账管理员; for anyone else (a 服务专员's visit, ⑤) what ⑦'s call may aim at — a project of the 招商引资项目 library
    (its leads are everyone's work) or one in the actor's reach. Another unit's project would have the issue put on
    that unit's project page and in its 问题台账, and the answer would tell that the code exists.

    Raises: ProjectInputInvalid naming `field` (no such project, or out of reach: the same words)
    """
    if LEDGER_ROLE not in actor.role_codes:
        return project_in_reach(session, actor, code, field=field, library=INVESTMENT_LIBRARY)
    project = session.scalar(select(Project).where(Project.code == code)) if code else None
    if project is None:
        raise out_of_reach(code, field)
    return project


def _starter(session: Session) -> User | None:
    """The active person who started the instance the service runs in, if any (none outside an engine run)."""
    run = effects.current()
    if run is None or run.session is not session or run.running.row.started_by_id is None:
        return None
    user = session.get(User, run.running.row.started_by_id)
    return user if user is not None and user.is_active else None


def issue_reporter(session: Session, actor: Actor, name: str) -> int | None:
    """Return the user id of the reporter (登记人) an issue registered by the actor may name: the person acting
    (`acting_for`: in a run of the system's, the person behind it) or the instance's own (active) starter; for a
    台账管理员 registering for someone, or the system itself (对进展缓慢项目自动预警), any active user they name. No name,
    or the system naming itself: nobody.

    The reporter holds 回访 and is shown as the person who raised the issue: a diagram's expression naming anyone
    handed a handler the confirmation of his own fix, or showed a leader raising what he never raised.

    Raises: InvalidInput naming `reporter` (a form's field comes back; a diagram's value stops it with an incident)
    """
    if not name:
        return None
    try:
        who = acting_for(session, actor)
    except UserNotFound:
        who = None
    if who is not None and name == who.username:
        return who.user_id  # None for the system's own run (no user: nobody holds 回访 but the lane)
    starter = _starter(session)
    if starter is not None and name == starter.username:
        return starter.id  # the instance's 发起人 (issue_ledger's `initiator`), its 登记 改派'd to someone else
    if who is not None and (who.is_system or LEDGER_ROLE in who.role_codes):
        user_id = session.scalar(select(User.id).where(User.username == name, User.is_active.is_(True)))
        if user_id is not None:
            return user_id
        raise InvalidInput(f"登记人 reporter“{name}”不是在职用户 (ledger_register: reporter {name!r} is no active user)",
                           field="reporter")
    raise InvalidInput(f"登记人 reporter 只能是办理人本人（{who.username if who else '无人'}），台账管理员可代在职人员登记 "
                       f"(ledger_register: reporter {name!r} must be the person acting, or an active user a ledger "
                       "officer names)", field="reporter")


def acting_for(session: Session, actor: Actor) -> Actor | None:
    """Whose reach a service acts in: the actor's; in a run of the system's (a timer, the outbox delivering a message
    or a signal) inside an instance a person started, that person's — the instance's starter, else the starter of
    the lineage it was started in (`start_root_id`); None (nobody's) for one an instance's throw started with no
    person behind it (`start_hops`). Before, a timer or a message between a process owner's diagram's start and its
    service made the run the system's, which reaches every project. Only what the system itself started (the CLI,
    a message from outside) keeps the system's reach.

    Raises: UserNotFound (the person who started it has left: nobody's reach)
    """
    run = effects.current()
    if not actor.is_system or run is None or run.session is not session:
        return actor
    row = run.running.row
    root = session.get(ProcessInstance, row.start_root_id) if row.start_root_id is not None else None
    starter_id = row.started_by_id or (root.started_by_id if root is not None else None)
    starter = session.get(User, starter_id) if starter_id is not None else None
    if starter is not None:
        return actor_for(session, starter.username)
    return None if row.start_hops or (root is not None and root.start_hops) else actor


__all__ = ["CALL_PROJECT_STEPS", "LEDGER_ROLE", "ProjectOutOfReach", "acting_for", "call_step_unfit", "in_library",
           "issue_project", "issue_reporter", "out_of_reach", "project_in_reach", "require_reach"]
