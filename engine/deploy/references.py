"""What a model names by quoted text, checked against the organisation at deploy: warnings, never refusals.

A user task's `escalationUnit` that is no unit, and an `assignee` that is a unit or a role rather than a username,
would be passed over when the task runs (the unit head's rung passes to the rung above; the task goes to its
candidates, its lane or the initiator). Units and users may be created after the deploy, so the deploy goes ahead and
its result carries these warnings, pinned to the file, the element and the line, in the process owner's words (a
catalogue template, as `DeployProblem.said`). A name given by an expression over the data is known only when it runs
(engine.runtime.assignment tells the process owners then).

The model is the process owner's text: names are shown as `assignment.told_name` shows them (printable, cut), at most
`assignment.MAX_TOLD` per element, at most MAX_WARNINGS warnings per process (the rest counted), and at most
MAX_LOOKED_UP distinct names are looked up (the elements past them are counted as not checked).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import DeployProblem
from engine.org.models import OrgUnit, Role, User
from engine.runtime.owner_notes import MAX_TOLD, told_name
from engine.spiff.parser import NamedIn, ParsedProcess

MAX_WARNINGS = 50  # per process; the rest are counted in one more line
MAX_LOOKED_UP = 10_000  # distinct names looked up per deploy
NAME_COLUMN_CHARS = 120  # the longest unit, role or user name a row can hold: a longer one names nobody
CHUNK = 400

ESCALATION_UNIT_UNKNOWN = ("元素 %(element)s 的 escalationUnit '%(name)s' 不是任何单位：逾期升级时将跳过单位负责人一级，"
                           "升至上一级。请先创建该单位，或改用已有单位的代码或名称")
ASSIGNEE_NOT_A_USER = ("元素 %(element)s 的 assignee '%(name)s' 是单位/角色而不是用户名；请用 candidates（候选人表达式）"
                       "指定单位或角色，assignee 只写用户名")
# more names than a warning lists (MAX_TOLD): the count is the template's, worded in the reader's language
ESCALATION_UNIT_UNKNOWN_MORE = ("元素 %(element)s 的 escalationUnit '%(name)s' 等 %(count)s 个都不是任何单位：逾期升级时将"
                                "跳过单位负责人一级，升至上一级。请先创建该单位，或改用已有单位的代码或名称")
ASSIGNEE_NOT_A_USER_MORE = ("元素 %(element)s 的 assignee '%(name)s' 等 %(count)s 个是单位/角色而不是用户名；请用 candidates"
                            "（候选人表达式）指定单位或角色，assignee 只写用户名")
MORE_WARNINGS = "另有 %(count)s 处警告未列出"
NOT_CHECKED = "名称过多，另有 %(count)s 个元素的 assignee 或 escalationUnit 未检查"
_MORE = {ESCALATION_UNIT_UNKNOWN: ESCALATION_UNIT_UNKNOWN_MORE, ASSIGNEE_NOT_A_USER: ASSIGNEE_NOT_A_USER_MORE}


def _found(session: Session, names: Sequence[str]) -> tuple[set[str], set[str], set[str]]:
    """Return which names are a unit's code or name, a role's code or name, a user's name."""
    units: set[str] = set()
    roles: set[str] = set()
    users: set[str] = set()
    for i in range(0, len(names), CHUNK):
        chunk = names[i:i + CHUNK]
        units.update(session.scalars(select(OrgUnit.code).where(OrgUnit.code.in_(chunk))))
        units.update(session.scalars(select(OrgUnit.name).where(OrgUnit.name.in_(chunk))))
        roles.update(session.scalars(select(Role.code).where(Role.code.in_(chunk))))
        roles.update(session.scalars(select(Role.name).where(Role.name.in_(chunk))))
        users.update(session.scalars(select(User.username).where(User.username.in_(chunk))))
    return units, roles, users


def _warning(named: NamedIn, template: str, names: Sequence[str]) -> DeployProblem:
    listed = "', '".join(told_name(n) for n in names[:MAX_TOLD])
    if len(names) > MAX_TOLD:  # how many in all: the `_MORE` template's words, not the name field's
        return DeployProblem.said(named.file, _MORE[template], element_id=named.element_id, line=named.line,
                                  element=told_name(named.element_id or ""), name=listed, count=len(names))
    return DeployProblem.said(named.file, template, element_id=named.element_id, line=named.line,
                              element=told_name(named.element_id or ""), name=listed)


def _budgeted(processes: Mapping[str, ParsedProcess]) -> tuple[list[str], dict[str, int]]:
    """The distinct names to look up, in document order, within MAX_LOOKED_UP; per process, the elements past it."""
    names: dict[str, None] = {}
    past: dict[str, int] = {}
    for key, proc in sorted(processes.items()):
        for named in proc.named:
            fresh = [n for n in named.names if n not in names and len(n) <= NAME_COLUMN_CHARS]
            if len(names) + len(fresh) > MAX_LOOKED_UP:
                past[key] = past.get(key, 0) + 1
                continue
            names.update(dict.fromkeys(fresh))
    return list(names), past


def check(session: Session, processes: Mapping[str, ParsedProcess]) -> dict[str, list[DeployProblem]]:
    """Return each process's warnings about the names its model quotes (none: an empty list)."""
    names, past = _budgeted(processes)
    units, roles, users = _found(session, names)
    looked_up = set(names)
    found: dict[str, list[DeployProblem]] = {}
    for key, proc in sorted(processes.items()):
        warnings: list[DeployProblem] = []
        for named in proc.named:
            if not all(n in looked_up or len(n) > NAME_COLUMN_CHARS for n in named.names):
                continue  # past the budget: counted below
            if named.prop == "escalationUnit" and not any(n in units for n in named.names):
                warnings.append(_warning(named, ESCALATION_UNIT_UNKNOWN, named.names))
            elif named.prop == "assignee":
                wrong = [n for n in named.names if n not in users and (n in units or n in roles)]
                if wrong:
                    warnings.append(_warning(named, ASSIGNEE_NOT_A_USER, wrong))
        found[key] = _bounded(warnings, proc.named, past.get(key, 0))
    return found


def _bounded(warnings: list[DeployProblem], named: Iterable[NamedIn], past: int) -> list[DeployProblem]:
    file = next((n.file for n in named), "")
    shown = warnings[:MAX_WARNINGS]
    if len(warnings) > MAX_WARNINGS:
        shown.append(DeployProblem.said(file, MORE_WARNINGS, count=len(warnings) - MAX_WARNINGS))
    if past:
        shown.append(DeployProblem.said(file, NOT_CHECKED, count=past))
    return shown


__all__ = ["ASSIGNEE_NOT_A_USER", "ASSIGNEE_NOT_A_USER_MORE", "ESCALATION_UNIT_UNKNOWN", "ESCALATION_UNIT_UNKNOWN_MORE",
           "MAX_LOOKED_UP", "MAX_WARNINGS", "MORE_WARNINGS", "NOT_CHECKED", "check"]
