"""The demo's 招商线索 (data/demo/leads.yaml), each taken through investment_lead.bpmn as a user would."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from engine import clock
from engine.errors import InvalidInput
from engine.runtime import instances
from plan.data.demo_flows import Demo, Spec, deadline_form, history

FIELDS = ("title", "enterprise", "industry", "investment", "source", "description")


def investment_lead(demo: Demo, spec: Spec, officer: str, where: str) -> Iterator[datetime]:
    """Start one lead and take it through its history."""
    return history(demo, spec, officer, where, _step)


def _step(demo: Demo, spec: Spec, officer: str, step: Spec, iid: int) -> int:
    do, handler = step["do"], step.get("by") or spec["handler"]
    if do == "register":
        fields: dict[str, Any] = {k: spec[k] for k in FIELDS if spec.get(k) is not None}
        fields["unit_code"] = spec["unit"]
        if spec.get("pushed"):
            return instances.start(demo.session, process_key="investment_lead", actor=demo.actor(officer),
                                   data=fields, title=spec["title"]).id
        row = instances.start(demo.session, process_key="investment_lead", actor=demo.actor(officer),
                              title=spec["title"])
        demo.step(row.id, "register_lead", officer, fields)
        return row.id
    if do == "dispatch":
        demo.step(iid, "dispatch", step.get("by", officer),
                  {"unit_code": step.get("unit", spec["unit"]), **deadline_form(demo, step)})
    elif do in ("accept", "return"):
        demo.step(iid, "respond", handler, {"response": do, **({"return_reason": step["reason"]} if do == "return"
                                                               else {})})
    elif do == "contact":
        demo.step(iid, "contact", handler, {
            "contact_date": clock.now().astimezone(clock.SHANGHAI).date().isoformat(), "contact_way": step["way"],
            "summary": step["summary"], "next_step": "again" if step.get("again") else "done"})
    elif do == "project":
        demo.step(iid, "feedback", handler, {"outcome": "project", "project_name": step["name"],
                                             "investment": step["investment"]})
    elif do == "dropped":
        demo.step(iid, "feedback", handler, {"outcome": "dropped", "drop_reason": step["reason"]})
    else:
        raise InvalidInput(f"未知步骤 (unknown step): {do}")
    return iid


def usernames(data: dict[str, Any]) -> set[str]:
    """The seed users the demo's leads act as."""
    names = {data["officer"]}
    for lead in data["leads"]:
        names.add(lead["handler"])
        names |= {step["by"] for step in lead["history"] if step.get("by")}
    return names
