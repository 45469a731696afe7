"""Starting a process: its start form and who may start it, read from the start event's properties."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine import content_limits
from engine.org.actors import Actor
from engine.org.models import OrgUnit, Role
from engine.runtime.core import version_info
from engine.runtime.models import ProcessDefinition, ProcessVersion
from engine.spiff import events

START_FORM_PROP = "formJsonSchemaFilename"
START_UI_PROP = "formUiSchemaFilename"
STARTERS_PROP = "starters"  # start-event property: comma-separated usernames, unit or role codes/names
# start-event property: comma-separated start-data keys only another process (start_process) may give, never a
# person through the web, the API or the CLI (e.g. who the applicant is, when the engine decides it)
RESERVED_PROP = "reservedStartData"


@dataclass(frozen=True)
class StartInfo:
    """What starting a version needs: its start form (file names and texts) and who may start it."""

    version: ProcessVersion
    key: str
    form_schema: str | None = None
    form_ui_schema: str | None = None
    schema_text: str | None = None
    ui_text: str | None = None
    starters: tuple[str, ...] = ()
    reserved: tuple[str, ...] = ()
    documentation: str | None = None
    forms: Mapping[str, str] = field(default_factory=dict)  # the version's form files, for a `$ref` between them
    form_problem: str | None = None  # a stored start form past today's limits, named: nothing of it is drawn


def start_info(session: Session, version: ProcessVersion) -> StartInfo:
    """Read the start event's properties (start form, starters) from the version's cached spec."""
    info = version_info(session, version.id)
    spec = info.specs[0]
    props: dict[str, str] = {}
    doc = None
    for start in spec.start.outputs:
        props.update(dict((getattr(start, "extensions", None) or {}).get("properties", {}) or {}))
        doc = doc or getattr(start, "documentation", None)
    schema, ui = props.get(START_FORM_PROP), props.get(START_UI_PROP)
    starters = tuple(s.strip() for s in props.get(STARTERS_PROP, "").split(",") if s.strip())
    reserved = tuple(s.strip() for s in props.get(RESERVED_PROP, "").split(",") if s.strip())
    texts = {name: info.files.get(name) for name in (schema, ui) if name}
    problem = content_limits.first_stored_problem(*texts.items())
    return StartInfo(version=version, key=info.process_key, form_schema=schema, form_ui_schema=ui,
                     schema_text=texts.get(schema) if schema else None, ui_text=texts.get(ui) if ui else None,
                     starters=starters, reserved=reserved, documentation=doc, forms=info.files, form_problem=problem)


def may_start(session: Session, actor: Actor, start: StartInfo) -> bool:
    """Everyone may start a process unless its start event names its `starters`; admins always may."""
    if actor.is_admin or actor.is_system or not start.starters:
        return True
    names = set(start.starters)
    if actor.username in names:
        return True
    if actor.org_unit_ids and session.scalar(select(OrgUnit.id).where(
            OrgUnit.id.in_(actor.org_unit_ids), or_(OrgUnit.code.in_(names), OrgUnit.name.in_(names))).limit(1)):
        return True
    return bool(actor.role_ids and session.scalar(select(Role.id).where(
        Role.id.in_(actor.role_ids), or_(Role.code.in_(names), Role.name.in_(names))).limit(1)))


def startable(session: Session, actor: Actor) -> list[StartInfo]:
    """Return the latest version of every process the actor may start, by name."""
    versions = session.scalars(select(ProcessVersion).join(ProcessDefinition).where(
        ProcessVersion.version == ProcessDefinition.latest_version).order_by(ProcessDefinition.name)).all()
    infos = [start_info(session, v) for v in versions]
    # A process only a message or signal starts is not offered: by hand it would wait for its own start message.
    return [i for i in infos if events.has_none_start(version_info(session, i.version.id).specs)
            and may_start(session, actor, i)]


__all__ = ["RESERVED_PROP", "STARTERS_PROP", "START_FORM_PROP", "START_UI_PROP", "StartInfo", "may_start", "start_info",
           "startable"]
