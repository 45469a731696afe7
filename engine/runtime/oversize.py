"""A workflow state over JZFLOW_MAX_STATE_KB at the save: who made it so.

One submission is bounded where it arrives (engine/content_limits.py); several, or a loop whose script appends on
every round, can still grow the state past the limit. The save (engine/runtime/core.py) measures the state it has
just written anyway and asks here only when it is over:

- a person's submission (a task's form, a client's start data, a message published now: `Running.submitted`) that
  with the state saved before passes the limit, or without which the new state would fit, is refused — FormInvalid
  naming its largest fields — and the save writes nothing: the task stays open;
- otherwise a script or an engine step made it so: the instance stops with the incident `state_too_large`, which
  names the element whose data weighs most in the state and the largest data keys.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import FieldError, FormInvalid
from engine.spiff import weight
from engine.spiff.serializer import encoded_size
from engine.spiff.workflow import Workflow

NAMED_FIELDS = 5  # fields a refused submission names at most
NAMED_KEYS = 3  # data keys an incident names


class StateTooLarge(Exception):
    """The serialized state is over JZFLOW_MAX_STATE_KB: not saved, the instance stops."""

    def __init__(self, message: str, bpmn_id: str | None = None) -> None:
        super().__init__(message)
        self.bpmn_id = bpmn_id  # the element whose data weighs most, for the incident


def kb(size: int) -> str:
    return str(-(-size // 1024))


def counted(workflow: Workflow, size: int, limit: int) -> int:
    """Return the size of a state of `size` characters the limit applies to: less what SpiffWorkflow repeats when a
    workflow or a called process ends (weight.end_copies: the last task's data copied into the workflow's own, a
    repetition of what the state holds anyway, at most doubling it). Worked out only for a state over the limit."""
    return size if size <= limit else size - weight.end_copies(workflow)


def refuse_submission(submitted: Mapping[str, Any], size: int, limit: int, *, before: int) -> None:
    """Refuse a submission that makes a state of `size` characters (as counted) pass the limit; else return.

    It does when the state saved `before` (characters) and it together pass the limit, or when the new state would fit
    without it. Names its largest fields, as many as make up what the state is over (at most NAMED_FIELDS).

    Raises: FormInvalid
    """
    fields = sorted(((len(str(k)) + 4 + encoded_size(v), str(k)) for k, v in submitted.items()), reverse=True)
    total = sum(s for s, _k in fields)  # not `weight`: that names the module weighing the state
    if not fields or (before + total <= limit and size - total > limit):
        return
    over = min(size, before + total) - limit  # what its fields must make up
    named: list[tuple[int, str]] = []
    for field in fields:
        named.append(field)
        over -= field[0]
        if over <= 0 or len(named) == NAMED_FIELDS:
            break
    raise FormInvalid([FieldError(key, (
        f"提交的数据过大：此字段约 {kb(s)} KB，提交后流程数据将达 {kb(size)} KB，超过 {kb(limit)} KB 的上限"
        f"（JZFLOW_MAX_STATE_KB），请精简后再提交 (this field is {kb(s)} KB: with it the workflow state would be "
        f"{kb(size)} KB, over the {kb(limit)} KB limit, JZFLOW_MAX_STATE_KB; nothing was saved)"))
        for s, key in named])


def too_large(workflow: Workflow, size: int, limit: int) -> StateTooLarge:
    """Describe a state over the limit: the element whose data weighs most and the largest data keys."""
    weighed = weight.weigh(workflow)
    keys = weighed.keys[:NAMED_KEYS]
    # An element holding little of it did not make it so (a client's start data is the tree root's, no element's).
    top = weighed.elements[0] if weighed.elements and weighed.elements[0].size * 10 >= size else None
    zh = en = ""
    if top is not None:
        label = f"「{top.name}」({top.bpmn_id})" if top.name else top.bpmn_id
        zh += f"；数据最多的元素是 {label}，约 {kb(top.size)} KB"
        en += f"; most of it is the data of element {top.bpmn_id}" + (f" ({top.name})" if top.name else "") + \
            f", {kb(top.size)} KB"
    if keys:
        zh += "；最大的数据项：" + "、".join(f"{k}（约 {kb(s)} KB）" for k, s in keys)
        en += "; largest data keys: " + ", ".join(f"{k} {kb(s)} KB" for k, s in keys)
    return StateTooLarge(
        f"流程数据过大，未保存：{kb(size)} KB，超过 {kb(limit)} KB 的上限（JZFLOW_MAX_STATE_KB）{zh} (workflow state "
        f"of {kb(size)} KB is over the {kb(limit)} KB limit, JZFLOW_MAX_STATE_KB; not saved{en})",
        bpmn_id=top.bpmn_id if top is not None else None)


__all__ = ["NAMED_FIELDS", "NAMED_KEYS", "StateTooLarge", "counted", "kb", "refuse_submission", "too_large"]
