"""Deploy BPMN/DMN/form bundles: validate everything first, store a new version only on change.

Deploys of one process key are serialised: the process_definition row is created if new (ON CONFLICT
DO NOTHING, so two first deploys do not collide on its unique key) and locked until the caller
commits, and the next version number is read under that lock. A deploy may name the version its
edit started from (`base_versions`); when someone else deployed since, it is refused with
StaleBaseVersion (HTTP 409) naming who deployed which version when, instead of silently replacing
their edits. Identical content is a no-op whatever its base.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.deploy import references
from engine.errors import Conflict, DeployInvalid, DeployProblem, InvalidInput
from engine.org.actors import Actor
from engine.org.models import OrgUnit, Role, User
from engine.runtime import effects
from engine.runtime.models import ProcessDefinition, ProcessFile, ProcessVersion
from engine.spiff import calls, parser, serializer

DEPLOYABLE_SUFFIXES = (".bpmn", ".dmn", ".json")
STALE_LISTED = 10  # versions named in a StaleBaseVersion message; the details list them all


class StaleBaseVersion(Conflict):
    """Someone deployed the process since the version the edit started from; nothing was stored."""

    code = "stale_base_version"

    def __init__(self, key: str, base: int, base_id: int | None, latest: ProcessVersion,
                 since: list[dict[str, object]]) -> None:
        shown = since[-STALE_LISTED:]
        listed = "；".join(f"v{s['version']} 由 {s['deployed_by']} 于 {s['deployed_at_local']} 部署" for s in shown)
        more = f"（另有 {len(since) - len(shown)} 个更早的版本）" if len(since) > len(shown) else ""
        super().__init__(
            f"流程 {key} 在您编辑期间已有新版本：{listed}{more}。您的修改基于 v{base}，未部署；请查看差异并在"
            f"最新版本 v{latest.version} 上重新修改 (process {key} changed since your base v{base}; "
            f"nothing deployed)", key=key, base_version=base, base_version_id=base_id,
            latest_version=latest.version, latest_version_id=latest.id, since=since)


@dataclass(frozen=True)
class Deployed:
    key: str
    version: int
    created: bool  # False when the files were unchanged (a no-op)
    # What the model names that is not what it should be (engine.deploy.references): deployed all the same.
    warnings: tuple[DeployProblem, ...] = ()


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


def bundle_hash(files: Mapping[str, parser.BundleFile], names: list[str],
                calls: Mapping[str, int] | None = None) -> str:
    """Hash file names and contents, and the deployed versions its call activities bind to (a new one
    makes a new version: redeploying the caller is how it picks up a called process deployed since)."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(f"{name}\0{files[name].sha256}\n".encode())
    for key, version in sorted((calls or {}).items()):
        digest.update(f"call\0{key}\0{version}\n".encode())
    return digest.hexdigest()


def called_resolver(session: Session) -> calls.CalledResolver:
    """Resolve a call activity's process key (and pinned version) to a deployed version with its specs."""
    found: dict[tuple[str, int | None], calls.CalledProcess | None] = {}

    def resolve(key: str, pinned: int | None) -> calls.CalledProcess | None:
        if (key, pinned) not in found:  # many call activities of a bundle often call one process
            found[(key, pinned)] = load(key, pinned)
        return found[(key, pinned)]

    def load(key: str, pinned: int | None) -> calls.CalledProcess | None:
        row = session.execute(
            select(ProcessVersion.version, ProcessVersion.spec_json, ProcessDefinition.latest_version)
            .join(ProcessDefinition, ProcessDefinition.id == ProcessVersion.definition_id)
            .where(ProcessDefinition.key == key,
                   ProcessVersion.version == (pinned if pinned is not None else ProcessDefinition.latest_version))
        ).first()
        if row is None:
            return None
        spec, subs = serializer.load_specs(row.spec_json)
        return calls.CalledProcess(key=key, version=row.version, latest=row.latest_version, spec=spec,
                                   subprocess_specs=subs)
    return resolve


def _locked_definition(session: Session, key: str, name: str) -> ProcessDefinition:
    """Return the process's definition row, created when new, locked until the transaction ends.

    PostgreSQL: FOR UPDATE; a concurrent first deploy's INSERT waits for ours and then does nothing.
    SQLite: every transaction already holds the write lock (BEGIN IMMEDIATE, engine/db.py).
    """
    def locked() -> ProcessDefinition | None:
        return session.scalar(select(ProcessDefinition).where(ProcessDefinition.key == key)
                              .with_for_update().execution_options(populate_existing=True))

    definition = locked()
    if definition is not None:
        return definition
    values = {"key": key, "name": name, "latest_version": 0, "created_at": clock.now()}
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(postgresql.insert(ProcessDefinition).values(values).on_conflict_do_nothing(
            index_elements=["key"]))
    elif dialect == "sqlite":
        session.execute(sqlite.insert(ProcessDefinition).values(values).on_conflict_do_nothing(
            index_elements=["key"]))
    else:  # no portable ON CONFLICT: a savepoint keeps a lost race from spoiling the transaction
        from sqlalchemy.exc import IntegrityError
        try:
            with session.begin_nested():
                session.add(ProcessDefinition(**values))
        except IntegrityError:
            pass
    definition = locked()
    assert definition is not None  # inserted above, or by a transaction that committed first
    return definition


def _check_base_keys(keys: set[str], base_versions: Mapping[str, int]) -> None:
    for key, base in base_versions.items():
        if key not in keys:
            raise InvalidInput(f"基础版本指向的流程不在所部署的文件中 (base version names a process not in the "
                               f"files): {key}", field="base_version", key=key)
        if isinstance(base, bool) or not isinstance(base, int) or base < 0:
            raise InvalidInput(f"基础版本须为非负整数 (base version must be an integer >= 0): {key}={base!r}",
                               field="base_version", key=key)


def _check_base(session: Session, definition: ProcessDefinition, base: int, latest: ProcessVersion | None) -> None:
    """Refuse a deploy whose edit started from an older version than the latest (flushes nothing).

    Raises: StaleBaseVersion, InvalidInput (a base newer than the latest version)
    """
    current = latest.version if latest is not None else 0
    if base > current:
        raise InvalidInput(f"基础版本不存在 (no such base version): {definition.key} v{base}, latest is v{current}",
                           field="base_version", key=definition.key)
    if base == current or latest is None:
        return
    rows = session.execute(
        select(ProcessVersion.id, ProcessVersion.version, ProcessVersion.deployed_at, User.display_name, User.username)
        .outerjoin(User, User.id == ProcessVersion.deployed_by_id)
        .where(ProcessVersion.definition_id == definition.id, ProcessVersion.version >= base)
        .order_by(ProcessVersion.version)).all()
    base_id = next((r.id for r in rows if r.version == base), None)
    since: list[dict[str, object]] = []
    for r in rows:
        if r.version == base:
            continue
        at = clock.as_utc(r.deployed_at)
        since.append({"version": r.version, "version_id": r.id,
                      "deployed_by": (r.display_name or r.username) if r.username else "系统 (system)",
                      "deployed_at": at.isoformat(), "deployed_at_local": f"{at.astimezone(clock.SHANGHAI):%Y-%m-%d %H:%M}"})
    raise StaleBaseVersion(definition.key, base, base_id, latest, since)


def deploy(session: Session, files: Mapping[str, bytes | str], *, actor: Actor, check_lanes: bool = True,
           base_versions: Mapping[str, int] | None = None) -> list[Deployed]:
    """Validate a bundle and store a new version of each process whose files changed (flushes).

    `base_versions` maps a process key to the version its edit started from (0: a new process);
    processes not in it are deployed whatever was deployed meanwhile.

    Each result carries the warnings about names its model quotes (`references`): they never refuse a deploy.

    Raises: DeployInvalid, InvalidInput, StaleBaseVersion (nothing is stored once the caller rolls back)
    """
    targets = lane_targets(session)
    bundle = parser.parse_bundle(files, lane_known=(lambda lane: lane in targets) if check_lanes else None,
                                 services=set(effects.load_all()), called=called_resolver(session))
    bases = dict(base_versions or {})
    _check_base_keys(set(bundle.processes), bases)
    warned = references.check(session, bundle.processes)
    results: list[Deployed] = []
    for key, proc in sorted(bundle.processes.items()):  # one lock order for every deploy: no deadlocks
        names = proc.file_names()
        digest = bundle_hash(bundle.files, names, proc.calls)
        definition = _locked_definition(session, key, proc.name)
        latest = session.scalar(select(ProcessVersion).where(
            ProcessVersion.definition_id == definition.id, ProcessVersion.version == definition.latest_version))
        if latest is not None and latest.bundle_sha256 == digest:
            # the same edit, whoever stored it first; its warnings still hold (or no longer: a unit made since)
            results.append(Deployed(key, latest.version, created=False, warnings=tuple(warned[key])))
            continue
        if key in bases:
            _check_base(session, definition, bases[key], latest)
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
                                                  "files": {n: bundle.files[n].sha256 for n in names},
                                                  **({"calls": proc.calls} if proc.calls else {})})
        results.append(Deployed(key, version.version, created=True, warnings=tuple(warned[key])))
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


__all__ = ["Deployed", "StaleBaseVersion", "deploy", "file_text", "latest_version", "read_directory"]
