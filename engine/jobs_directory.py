"""The directory sync job (目录同步): beat runs it every JZFLOW_LDAP_SYNC_SECONDS when JZFLOW_LDAP_URL is set."""
from __future__ import annotations

import logging
from typing import Any

from engine.celery_app import celery
from engine.db import session_scope
from engine.jobs import session_factory
from engine.org import ldap_read, ldap_sync

log = logging.getLogger(__name__)


@celery.task(acks_late=True)  # type: ignore[untyped-decorator]
def sync_directory() -> dict[str, Any]:
    """Read the directory, then apply it in one transaction; a stopped or failed sync changes nothing."""
    settings = ldap_read.load_settings()
    if not settings.enabled:
        return {"skipped": "JZFLOW_LDAP_URL is not set"}
    snapshot = ldap_read.read(settings)
    try:
        with session_scope(session_factory()) as session:
            report = ldap_sync.sync(session, settings, snapshot)
    except ldap_sync.SyncStopped as stopped:
        log.error("directory sync stopped by the safety brake: %s", stopped.message)
        return stopped.report.to_dict()
    for line in report.lines()[:1]:
        log.info("%s", line)
    return report.to_dict()
