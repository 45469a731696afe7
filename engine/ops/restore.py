"""`jzflow restore`: check an archive through and through, then put it back (empty target, or --force).

Refused, before anything is written: an archive that is not one of ours, a file missing, added, or whose
size or SHA-256 differs from the manifest, a manifest whose HMAC does not match under the audit key, an
archive made under another audit key, a schema revision this code does not know (a newer release made
it), a database of the other kind, a target database that holds tables, an instance file that exists
with other content (the last two unless --force). After the database and the files are back, one
line is anchored saying that this database now holds that backup (with the heads the backup's anchors
name), and the schema is migrated if the archive is older than the code: `audit-verify` then passes.
"""
from __future__ import annotations

import hmac
import json
import os
import sqlite3
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import Engine, inspect, text

from engine import config, migrate
from engine.audit import anchor
from engine.db import make_engine
from engine.ops import health
from engine.ops.backup import (
    ANCHORS,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    ArchiveRefused,
    key_fingerprint,
    libpq,
    manifest_mac,
    run_tool,
    sha256_file,
    sqlite_path,
)

MAX_MEMBERS = 100_000


@dataclass(frozen=True)
class RestoreReport:
    dialect: str
    revision: str
    migrated_to: str | None
    events: int
    files: int


def _safe_name(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or name != path.as_posix():
        raise ArchiveRefused(f"archive member {name!r}: not a plain relative path (refused)")
    if path.parts[0] not in ("database", "instance", "anchors") and name != MANIFEST:
        raise ArchiveRefused(f"archive member {name!r}: not part of a jzflow backup")
    return name


def _extract(archive: Path, work: Path) -> None:
    """Unpack regular files only, each name checked (no links, devices, absolute paths or '..')."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            seen: set[str] = set()
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise ArchiveRefused("the archive holds too many files")
                name = _safe_name(member.name)
                if not member.isfile():
                    raise ArchiveRefused(f"archive member {name!r}: not a regular file (refused)")
                if name in seen:
                    raise ArchiveRefused(f"archive member {name!r} appears twice (tampered)")
                seen.add(name)
                source = tar.extractfile(member)
                assert source is not None
                dest = work / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                with source, dest.open("wb") as out:
                    while block := source.read(1 << 20):
                        out.write(block)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveRefused(f"{archive}: not a readable backup archive (corrupt or truncated): {exc}") from None


def _effective_key(settings: config.Settings, work: Path) -> bytes:
    """The audit key in force after the restore: JZFLOW_AUDIT_KEY, the archive's key file, or the instance's."""
    if settings.audit_key:
        return settings.audit_key.encode("utf-8")
    for path in (work / "instance" / "audit.key", settings.instance_dir / "audit.key"):
        if path.is_file():
            return path.read_text(encoding="ascii").strip().encode("ascii")
    raise ArchiveRefused("no audit key: the archive has no key file and none is configured (JZFLOW_AUDIT_KEY)")


def check_archive(archive: Path, work: Path, settings: config.Settings) -> tuple[dict[str, Any], anchor.Anchors]:
    """Unpack and check an archive; return its manifest and its anchors.

    Raises: ArchiveRefused (naming what is wrong)
    """
    _extract(archive, work)
    try:
        manifest = json.loads((work / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ArchiveRefused(f"{archive}: no readable {MANIFEST} (not a jzflow backup, or corrupt)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveRefused(f"{archive}: not a jzflow backup")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArchiveRefused(f"{archive}: backup format {manifest.get('format_version')!r}, this release reads "
                             f"{FORMAT_VERSION} (made by a newer release?)")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ArchiveRefused(f"{archive}: the manifest lists no files (tampered)")
    present = {p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file()} - {MANIFEST}
    if present - set(files):
        raise ArchiveRefused(f"files not in the manifest: {sorted(present - set(files))[:5]} (tampered)")
    for name, meta in sorted(files.items()):
        path = work / _safe_name(name)
        if not path.is_file():
            raise ArchiveRefused(f"{name}: listed in the manifest but missing from the archive (truncated?)")
        if path.stat().st_size != meta.get("size") or sha256_file(path) != meta.get("sha256"):
            raise ArchiveRefused(f"{name}: its checksum does not match the manifest (corrupt or tampered)")
    key = _effective_key(settings, work)
    audit = manifest.get("audit") or {}
    if audit.get("key_fingerprint") != key_fingerprint(key):
        raise ArchiveRefused("the archive was made under another audit key: restore with the original key "
                             "(JZFLOW_AUDIT_KEY), or the restored audit chain cannot be verified")
    if not hmac.compare_digest(str(manifest.get("mac", "")), manifest_mac(manifest, key)):
        raise ArchiveRefused("the manifest's MAC does not match under the audit key (tampered)")
    revision = str((manifest.get("database") or {}).get("revision", ""))
    if revision not in health.known_revisions():
        raise ArchiveRefused(f"the archive's schema revision {revision!r} is unknown to this release: it was made by "
                             "a newer jzflow; restore it with that release")
    archived = anchor.read_file(work / ANCHORS, str((manifest.get("database") or {}).get("scope", "")), key)
    if archived.problems:
        raise ArchiveRefused(f"the archive's anchors do not verify: {archived.problems[0]} (tampered)")
    return manifest, archived


def _user_tables(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [t for t in inspect(conn).get_table_names() if not t.startswith("sqlite_")]


def _restore_sqlite(url: str, copy: Path) -> None:
    target = sqlite_path(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(copy)
    dst = sqlite3.connect(target, timeout=30)
    try:
        src.backup(dst)  # replaces every page of the target, WAL included, under SQLite's own lock
    finally:
        dst.close()
        src.close()


def _restore_postgres(url: str, dump: Path, engine: Engine, force: bool) -> None:
    if force:
        with engine.begin() as conn:  # the schema goes, with every table, trigger and sequence in it
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    libpq_url, env = libpq(url)
    run_tool(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
              f"--dbname={libpq_url}", str(dump)], env, "the database restore")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # pg_restore leaves no column statistics: until autovacuum got round to it, the web processes would plan
        # (and keep, in their prepared statements) as if every table were nearly empty (docs/operations.md)
        conn.execute(text("ANALYZE"))


def _instance_conflicts(work: Path, settings: config.Settings) -> list[str]:
    root = work / "instance"
    conflicts = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
        rel = path.relative_to(root)
        existing = settings.instance_dir / rel
        if existing.exists() and (not existing.is_file() or sha256_file(existing) != sha256_file(path)):
            conflicts.append(rel.as_posix())
    return conflicts


def _write_instance(work: Path, settings: config.Settings) -> int:
    root = work / "instance"
    count = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
        dest = settings.instance_dir / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".restoring")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(path.read_bytes())
        partial.replace(dest)
        count += 1
    return count


def restore(archive: Path, *, force: bool = False, settings: config.Settings | None = None) -> RestoreReport:
    """Restore `archive` into the configured database and instance folder.

    Raises: ArchiveRefused, UpgradeFailed (the archive was restored; upgrading its schema failed)
    """
    settings = settings or config.load()
    if not archive.is_file():
        raise ArchiveRefused(f"{archive}: no such file")
    engine = make_engine(settings.database_url)
    try:
        with tempfile.TemporaryDirectory(prefix="jzflow-restore-") as tmp:
            return _restore(archive, Path(tmp), settings, engine, force)
    finally:
        engine.dispose()


def _restore(archive: Path, work: Path, settings: config.Settings, engine: Engine, force: bool) -> RestoreReport:
    manifest, archived = check_archive(archive, work, settings)
    database = manifest["database"]
    dialect = engine.dialect.name
    if database.get("dialect") != dialect:
        raise ArchiveRefused(f"the archive holds a {database.get('dialect')} database and the configured one is "
                             f"{dialect}: restore into the same kind of database")
    tables = _user_tables(engine)
    if tables and not force:
        raise ArchiveRefused(f"the target database is not empty ({len(tables)} tables): restore into an empty "
                             "database, or pass --force to replace everything in it")
    conflicts = _instance_conflicts(work, settings)
    if conflicts and not force:
        raise ArchiveRefused(f"the instance folder {settings.instance_dir} already holds other versions of "
                             f"{', '.join(conflicts[:5])}: pass --force to replace them")
    # Everything checked: from here on we write.
    dump = work / _check_member(database.get("file"))
    if dialect == "sqlite":
        _restore_sqlite(settings.database_url, dump)
    else:
        _restore_postgres(settings.database_url, dump, engine, force)
    engine.dispose()
    files = _write_instance(work, settings)
    anchor._key.cache_clear()  # the key file may be the archive's now
    anchor.append_restore(anchor.scope_of(engine), str(database.get("scope", "")),
                          {s: [seq, digest] for s, (seq, digest, _at) in archived.heads.items()},
                          [[cp, digest, max_id] for cp, (digest, max_id, _at) in sorted(archived.checkpoints.items())],
                          archive.name)
    revision = str(database["revision"])
    migrated = None
    if frozenset({revision}) != health.code_heads():
        migrate.upgrade_or_explain(settings.database_url)
        migrated = ",".join(sorted(health.code_heads()))
    return RestoreReport(dialect, revision, migrated, int(manifest["audit"].get("events", 0)), files)


def _check_member(name: Any) -> str:
    if not isinstance(name, str) or not name.startswith("database/"):
        raise ArchiveRefused("the manifest names no database file (tampered)")
    return name
