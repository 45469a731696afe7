"""`jzflow backup`: one archive holding a consistent snapshot of the database, the instance folder and the anchors.

The archive (tar.gz) holds `manifest.json`, `database/` (a `pg_dump --format=custom`, one snapshot, or a copy
of the SQLite file by its online backup API), `instance/` (the instance folder's own files: key files,
settings files; not the database, the embedded broker or the beat schedule) and `anchors/audit-anchors.log`.
The manifest lists every file with its size and SHA-256, the schema revision, the database it came from and
a fingerprint of the audit key, and carries an HMAC under the audit key.

The anchor file is copied *before* the database snapshot: an anchor line is written after its transaction
commits, so every head it names is in the snapshot, and `audit-verify` passes on the restored database.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import subprocess  # nosec B404 # pg_dump / pg_restore, fixed argv
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, make_url, select

from engine import clock, config
from engine.audit import anchor
from engine.audit.models import AuditCheckpoint, AuditEvent
from engine.db import make_engine, make_sessionmaker
from engine.files import place_new
from engine.ops import health

FORMAT = "jzflow-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ANCHORS = "anchors/audit-anchors.log"
PG_DUMP = "database/postgresql.dump"
SQLITE_COPY = "database/jzflow.sqlite"
# The instance folder's files that are not data: the embedded broker's queue, beat's schedule, metrics files.
SKIPPED_NAMES = ("broker.sqlite", "celerybeat-schedule")
SKIPPED_DIRS = ("backups", "prometheus", "__pycache__")
KEY_CHECK = b"jzflow-backup-key-check"


class ArchiveRefused(Exception):
    """A backup that cannot be made, or an archive that must not be restored (the message says why)."""


@dataclass(frozen=True)
class BackupReport:
    path: Path
    dialect: str
    revision: str
    events: int
    files: int
    size: int


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def manifest_mac(manifest: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, b"manifest" + canonical(manifest), hashlib.sha256).hexdigest()


def key_fingerprint(key: bytes) -> str:
    """Names the audit key without revealing it (restore refuses an archive made under another key)."""
    return hmac.new(key, KEY_CHECK, hashlib.sha256).hexdigest()[:16]


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection URL for pg_dump/pg_restore (the password goes in PGPASSWORD, not on the command line)."""
    parsed = make_url(url)
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def run_tool(argv: list[str], env: dict[str, str], what: str) -> None:
    """Run pg_dump / pg_restore; a failure names the tool and its message.

    Raises: ArchiveRefused
    """
    if shutil.which(argv[0]) is None:
        raise ArchiveRefused(f"{argv[0]} not found: install the PostgreSQL client tools (same major version as "
                             "the server or newer)")
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603  # nosec B603 # fixed argv
    if result.returncode != 0:
        raise ArchiveRefused(f"{what} failed ({argv[0]} exit {result.returncode}): {result.stderr.strip()[:2000]}")


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ArchiveRefused("an in-memory SQLite database cannot be backed up or restored")
    return Path(database).resolve()


def _copy_sqlite(source: Path, target: Path) -> None:
    """Copy a live SQLite database with its online backup API (a consistent copy while others write)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _revision(engine: Engine) -> str:
    heads = sorted(health.database_revisions(engine))
    if len(heads) != 1:
        raise ArchiveRefused(f"the database has no single schema revision ({heads or 'none'}): run `jzflow migrate`")
    return heads[0]


def instance_files(settings: config.Settings, exclude: set[Path]) -> Iterator[tuple[str, Path]]:
    """The instance folder's own files (relative name, path), sorted; data the archive holds otherwise is left out."""
    root = settings.instance_dir
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_symlink() or not path.is_file() or path.resolve() in exclude:
            continue
        if any(part in SKIPPED_DIRS for part in rel.parts[:-1]):
            continue
        name = rel.name
        if any(name == s or name.startswith(s + "-") or name.startswith(s + ".") for s in SKIPPED_NAMES):
            continue
        if name.startswith("jzflow-backup-") and name.endswith(".tar.gz"):
            continue
        yield rel.as_posix(), path


def _audit_counts(engine: Engine) -> tuple[int, int]:
    with make_sessionmaker(engine)() as session:
        events = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
        checkpoints = session.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0
    return int(events), int(checkpoints)


def default_name() -> str:
    return f"jzflow-backup-{clock.now().astimezone(clock.SHANGHAI).strftime('%Y%m%d-%H%M%S')}.tar.gz"


def backup(target: Path, settings: config.Settings | None = None) -> BackupReport:
    """Write a backup archive of the configured database and instance folder to `target` (a file or a folder).

    Raises: ArchiveRefused
    """
    settings = settings or config.load()
    target = target / default_name() if target.is_dir() else target
    if target.exists():
        raise ArchiveRefused(f"{target} already exists: choose a new file name")
    engine = make_engine(settings.database_url)
    try:
        with tempfile.TemporaryDirectory(prefix="jzflow-backup-") as tmp:
            return _backup(Path(tmp), target, settings, engine)
    finally:
        engine.dispose()


def _backup(work: Path, target: Path, settings: config.Settings, engine: Engine) -> BackupReport:
    key = config.audit_key(settings)  # first: a key file made now is in the archive too
    dialect = engine.dialect.name
    scope = anchor.scope_of(engine)
    revision = _revision(engine)
    (work / "anchors").mkdir()
    (work / "database").mkdir()
    # 1. The anchors first: every head they name was committed before the snapshot below begins.
    anchor_copy = work / ANCHORS
    mine = f'"db":{json.dumps(scope, ensure_ascii=False)}'
    anchor_lines = [line for line in _read_lines(settings.anchor_path) if mine in line]
    anchor_copy.write_text("".join(anchor_lines), encoding="utf-8")
    # 2. The database in one snapshot.
    exclude = {settings.anchor_path.resolve(), target.resolve()}
    if dialect == "postgresql":
        dump = work / PG_DUMP
        url, env = libpq(settings.database_url)
        run_tool(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={dump}", url], env,
                 "the database dump")
    elif dialect == "sqlite":
        source = sqlite_path(settings.database_url)
        exclude |= {source, source.with_name(source.name + "-wal"), source.with_name(source.name + "-shm"),
                    source.with_name(source.name + "-journal")}
        dump = work / SQLITE_COPY
        _copy_sqlite(source, dump)
    else:
        raise ArchiveRefused(f"backups of {dialect} databases are not supported (PostgreSQL and SQLite are)")
    if _revision(engine) != revision:
        raise ArchiveRefused("the schema changed while the backup ran (a migration?): run the backup again")
    events, checkpoints = _audit_counts(engine)
    # 3. The instance folder's own files.
    files: dict[str, dict[str, Any]] = {}
    members: list[tuple[str, Path]] = [(ANCHORS, anchor_copy), (dump.relative_to(work).as_posix(), dump)]
    for rel, path in instance_files(settings, exclude):
        members.append((f"instance/{rel}", path))
    for name, path in members:
        files[name] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    manifest: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "created_at": clock.now().isoformat(),
        "database": {"dialect": dialect, "scope": scope, "revision": revision,
                     "file": dump.relative_to(work).as_posix()},
        "audit": {"events": events, "checkpoints": checkpoints, "anchor_lines": len(anchor_lines),
                  "key_fingerprint": key_fingerprint(key),
                  "key_file": not settings.audit_key and "instance/audit.key" in files},
        "files": files,
    }
    manifest["mac"] = manifest_mac(manifest, key)
    (work / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own, made exclusively and owner-only (the archive holds keys): a link planted at a name known
    # beforehand in a shared folder would have received the archive. A crash mid-write leaves only that file.
    fd, partial_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    partial = Path(partial_name)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            tar.add(work / MANIFEST, arcname=MANIFEST)
            for name, path in members:
                tar.add(path, arcname=name)
        if not place_new(partial, target):  # another backup took the name meanwhile: never replaced
            raise ArchiveRefused(f"{target} already exists: choose a new file name")
    finally:
        partial.unlink(missing_ok=True)
    return BackupReport(target, dialect, revision, events, len(members), target.stat().st_size)


def _read_lines(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8") as handle:
            return list(handle)
    except FileNotFoundError:
        return []
