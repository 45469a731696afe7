"""Deploy BPMN/DMN/form bundles: validate everything first, store a new version only on change."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit
from engine.errors import DeployInvalid, DeployProblem
from engine.org.actors import Actor
from engine.org.models import OrgUnit, Role
from engine.runtime import effects
from engine.runtime.models import ProcessDefinition, ProcessFile, ProcessVersion
from engine.spiff import parser, serializer

DEPLOYABLE_SUFFIXES = (".bpmn", ".dmn", ".json")


@dataclass(frozen=True)
class Deployed:
    key: str
    version: int
    created: bool  # False when the files were unchanged (a no-op)


def read_directory(path: Path) -> dict[str, bytes]:
    """Read every BPMN, DMN and form file under `path`, keyed by path relative to it (or one file)."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    if not path.is_dir():
        raise DeployInvalid([DeployProblem(str(path), "no such file or directory")])
    files: dict[str, bytes] = {}
    for file in sorted(path.rglob("*")):
        if file.is_file() and file.name.lower().endswith(DEPLOYABLE_SUFFIXES):
            rel = file.relative_to(path).as_posix()
            # Forms are referenced by bare file name from the BPMN (SpiffArena's convention).
            files[file.name if file.suffix == ".json" else rel] = file.read_bytes()
    return files


def lane_targets(session: Session) -> dict[str, dict[str, int]]:
    """Map every role and org unit code and name to its id, for lane resolution."""
    targets: dict[str, dict[str, int]] = {}
    for unit in session.execute(select(OrgUnit.id, OrgUnit.code, OrgUnit.name)):
        targets[unit.code] = targets[unit.name] = {"org_unit_id": unit.id}
    for role in session.execute(select(Role.id, Role.code, Role.name)):
        targets.setdefault(role.code, {"role_id": role.id})
        targets.setdefault(role.name, {"role_id": role.id})
    return targets


def bundle_hash(files: Mapping[str, parser.BundleFile], names: list[str]) -> str:
    """Hash file names and contents, so any change to any file makes a new version."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(f"{name}\0{files[name].sha256}\n".encode())
    return digest.hexdigest()


def deploy(session: Session, files: Mapping[str, bytes | str], *, actor: Actor, check_lanes: bool = True) -> list[Deployed]:
    """Validate a bundle and store a new version of each process whose files changed (flushes).

    Raises: DeployInvalid (nothing is stored)
    """
    targets = lane_targets(session)
    bundle = parser.parse_bundle(files, lane_known=(lambda lane: lane in targets) if check_lanes else None,
                                 services=set(effects.load_all()))
    results: list[Deployed] = []
    for key, proc in sorted(bundle.processes.items()):
        names = proc.file_names()
        digest = bundle_hash(bundle.files, names)
        definition = session.scalar(select(ProcessDefinition).where(ProcessDefinition.key == key))
        if definition is not None:
            latest = session.scalar(select(ProcessVersion).where(
                ProcessVersion.definition_id == definition.id, ProcessVersion.version == definition.latest_version))
            if latest is not None and latest.bundle_sha256 == digest:
                results.append(Deployed(key, latest.version, created=False))
                continue
        else:
            definition = ProcessDefinition(key=key, name=proc.name, latest_version=0)
            session.add(definition)
            session.flush()
        definition.latest_version += 1
        definition.name = proc.name
        version = ProcessVersion(
            definition_id=definition.id, version=definition.latest_version, name=proc.name, bundle_sha256=digest,
            spec_json=serializer.dump_specs(*proc.specs),
            lane_map_json=json.dumps({lane: targets[lane] for lane in sorted(proc.lanes) if lane in targets},
                                     ensure_ascii=False),
            deployed_by_id=actor.user_id)
        session.add(version)
        session.flush()
        for name in names:
            f = bundle.files[name]
            session.add(ProcessFile(version_id=version.id, name=name, kind=f.kind, text=f.text, sha256=f.sha256))
        audit.record(session, actor, "process.deploy", stream=f"process:{key}", object_type="process_version",
                     object_id=version.id, after={"key": key, "version": version.version, "sha256": digest,
                                                  "files": {n: bundle.files[n].sha256 for n in names}})
        results.append(Deployed(key, version.version, created=True))
    session.flush()
    return results


def latest_version(session: Session, key: str) -> ProcessVersion | None:
    """Return the newest version of a process, or None."""
    return session.scalar(select(ProcessVersion).join(ProcessDefinition)
                          .where(ProcessDefinition.key == key,
                                 ProcessVersion.version == ProcessDefinition.latest_version))


def file_text(session: Session, version_id: int, name: str) -> str | None:
    """Return the text of one file of a version."""
    return session.scalar(select(ProcessFile.text).where(ProcessFile.version_id == version_id,
                                                         ProcessFile.name == name))


__all__ = ["Deployed", "deploy", "file_text", "latest_version", "read_directory"]
