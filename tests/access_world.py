"""The situations of the task access table (engine/tasks/task_access.py): one per relation to a task.

Shared by the engine test (every cell through the services) and the web test (every cell through the
JSON API). Each situation is a fresh instance of three_steps (fill → review → sign_off) whose review
task the actor stands in one relation to; the review also carries a co-signer added after its holder
who has not signed yet, so 减签 has somebody to remove.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, deploy, org, tasks
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.org.models import User
from engine.runtime import instances
from engine.tasks import operations, sendback, taskview
from engine.tasks.models import HumanTask, TaskCandidate
from engine.tasks.task_access import Op, Rel
from tests.engine.test_operations import THREE_STEPS

# relation → (who acts, what they are to the task; None: nothing)
ACTORS: dict[str, str] = {"holder": "fg", "owner": "fg", "delegate": "zr", "candidate": "st", "cosigner": "boss",
                          "leader": "head", "admin": "admin", "viewer": "applicant", "stranger": "stranger"}
RELATIONS: dict[str, frozenset[Rel]] = {name: frozenset({Rel(name)}) for name in ACTORS if name != "stranger"}
RELATIONS["stranger"] = frozenset()


def prepare(session: Session) -> None:
    """Deploy three_steps and add the people review_org lacks: a unit head of 发改, a co-signer, a stranger."""
    deploy.deploy(session, {"three_steps.bpmn": THREE_STEPS.encode()}, actor=SYSTEM)
    org.add_user(session, username="head", display_name="发改局长", unit_codes=["fgj"], is_head=True)
    org.add_user(session, username="cs", display_name="加签人", unit_codes=["zj"])
    org.add_user(session, username="stranger", display_name="无关人员")
    session.commit()


@dataclass(frozen=True)
class Situation:
    relation: str
    actor: str
    task_id: int  # the task the operations are asked of (the co-signer's own task for "cosigner")
    parent_id: int  # the review task
    removable_id: int  # a co-signer of the review who has not signed (减签)


def build(session: Session, relation: str) -> Situation:
    """Start a fresh instance and put the review task in the state the relation needs (commits)."""
    who = {name: actor_for(session, name) for name in ("applicant", "fg")}
    row = instances.start(session, process_key="three_steps", actor=who["applicant"])
    fill = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == "fill"))
    assert fill is not None
    tasks.complete(session, task_id=fill.id, actor=who["applicant"], data={"project": "胶州湾新材料项目"})
    review = session.scalar(select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.bpmn_id == "review",
                                                    HumanTask.state == "ready"))
    assert review is not None
    cs = session.scalar(select(User.id).where(User.username == "cs"))
    removable = HumanTask(instance_id=row.id, task_guid=f"cosign-{row.id}-cs", bpmn_id="review",
                          name="加签: 部门审查", process_key="three_steps", kind="cosign", parent_task_id=review.id,
                          cosign_position="after", state="pending", assignee_id=cs, owner_id=who["fg"].user_id,
                          created_at=clock.now())
    removable.candidates.append(TaskCandidate(user_id=cs))
    session.add(removable)
    session.flush()
    task_id = review.id
    if relation != "candidate":
        tasks.claim(session, task_id=review.id, actor=who["fg"])
    if relation in ("owner", "delegate"):
        operations.delegate(session, task_id=review.id, actor=who["fg"], to_username="zr")
    if relation == "cosigner":
        [cosign] = operations.add_cosigners(session, task_id=review.id, actor=who["fg"], usernames=["boss"],
                                            position="before")
        task_id = cosign.id
    session.commit()
    return Situation(relation, ACTORS[relation], task_id, review.id, removable.id)


Call = Callable[[Session, Actor, Situation], Any]
# Every operation of the table, through its service ...
SERVICE: dict[Op, Call] = {
    Op.VIEW: lambda s, a, x: taskview.get_visible(s, a, x.task_id),
    Op.CLAIM: lambda s, a, x: tasks.claim(s, task_id=x.task_id, actor=a),
    Op.UNCLAIM: lambda s, a, x: tasks.unclaim(s, task_id=x.task_id, actor=a),
    Op.COMPLETE: lambda s, a, x: tasks.complete(s, task_id=x.task_id, actor=a, data={}, opinion="同意"),
    Op.RESOLVE: lambda s, a, x: operations.resolve_delegation(s, task_id=x.task_id, actor=a, opinion="建议同意"),
    Op.TRANSFER: lambda s, a, x: operations.transfer(s, task_id=x.task_id, actor=a, to_username="head"),
    Op.DELEGATE: lambda s, a, x: operations.delegate(s, task_id=x.task_id, actor=a, to_username="head"),
    Op.ADD_COSIGNER: lambda s, a, x: operations.add_cosigners(s, task_id=x.task_id, actor=a, usernames=["head"],
                                                              position="before"),
    Op.REMOVE_COSIGNER: lambda s, a, x: operations.remove_cosigner(s, cosign_task_id=x.removable_id, actor=a),
    Op.SEND_BACK: lambda s, a, x: sendback.send_back(s, task_id=x.task_id, actor=a, reason="材料不全"),
    Op.URGE: lambda s, a, x: operations.urge(s, task_id=x.task_id, actor=a, message="请尽快办理"),
}
# ... and through the JSON API: (path, body)
API: dict[Op, Callable[[Situation], tuple[str, str, dict[str, Any]]]] = {
    Op.VIEW: lambda x: ("GET", f"/api/tasks/{x.task_id}", {}),
    Op.CLAIM: lambda x: ("POST", f"/api/tasks/{x.task_id}/claim", {}),
    Op.UNCLAIM: lambda x: ("POST", f"/api/tasks/{x.task_id}/unclaim", {}),
    Op.COMPLETE: lambda x: ("POST", f"/api/tasks/{x.task_id}/complete", {"data": {}, "opinion": "同意"}),
    Op.RESOLVE: lambda x: ("POST", f"/api/tasks/{x.task_id}/resolve", {"opinion": "建议同意"}),
    Op.TRANSFER: lambda x: ("POST", f"/api/tasks/{x.task_id}/transfer", {"to_username": "head"}),
    Op.DELEGATE: lambda x: ("POST", f"/api/tasks/{x.task_id}/delegate", {"to_username": "head"}),
    Op.ADD_COSIGNER: lambda x: ("POST", f"/api/tasks/{x.task_id}/cosigners",
                                {"usernames": ["head"], "position": "before"}),
    Op.REMOVE_COSIGNER: lambda x: ("POST", f"/api/tasks/{x.parent_id}/cosigners/{x.removable_id}/remove", {}),
    Op.SEND_BACK: lambda x: ("POST", f"/api/tasks/{x.task_id}/send-back", {"reason": "材料不全"}),
    Op.URGE: lambda x: ("POST", f"/api/tasks/{x.task_id}/urge", {"message": "请尽快办理"}),
}
