"""Deployed versions as the engine uses them: parsed specs, lane map and forms, read once per process and cached."""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.db import database_key
from engine.errors import InstanceNotFound
from engine.runtime.models import ProcessDefinition, ProcessFile, ProcessVersion
from engine.spiff import serializer

_SPEC_CACHE_SIZE = 64
# Keyed by database and version id: version ids are only unique within one database.
_spec_cache: OrderedDict[tuple[str, int], VersionInfo] = OrderedDict()
_spec_lock = threading.Lock()


@dataclass(frozen=True)
class VersionInfo:
    """What the engine needs of a deployed version, read once per process (versions never change)."""

    specs: serializer.Specs
    process_key: str
    lane_map: dict[str, dict[str, int]]
    files: dict[str, str]  # form files by name


def version_info(session: Session, version_id: int) -> VersionInfo:
    """Return a version's parsed specs, lane map and forms, loaded once per process and cached."""
    key = (database_key(session), version_id)
    with _spec_lock:
        cached = _spec_cache.get(key)
        if cached is not None:
            _spec_cache.move_to_end(key)
            return cached
    version = session.execute(select(ProcessVersion.spec_json, ProcessVersion.lane_map_json, ProcessDefinition.key)
                              .join(ProcessDefinition, ProcessDefinition.id == ProcessVersion.definition_id)
                              .where(ProcessVersion.id == version_id)).first()
    if version is None:
        raise InstanceNotFound(f"process version {version_id} not found", version_id=version_id)
    files = dict(session.execute(select(ProcessFile.name, ProcessFile.text).where(
        ProcessFile.version_id == version_id, ProcessFile.kind == "form")).all())
    info = VersionInfo(specs=serializer.load_specs(version.spec_json), process_key=version.key,
                       lane_map=json.loads(version.lane_map_json or "{}"), files=files)
    with _spec_lock:
        _spec_cache[key] = info
        while len(_spec_cache) > _SPEC_CACHE_SIZE:
            _spec_cache.popitem(last=False)
    return info


def specs_for(session: Session, version_id: int) -> serializer.Specs:
    """Return a version's parsed specs (cached)."""
    return version_info(session, version_id).specs


__all__ = ["VersionInfo", "_spec_cache", "specs_for", "version_info"]
