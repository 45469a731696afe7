"""`jzflow backup` and `jzflow restore` (engine.cli adds them)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from engine.ops.backup import ArchiveRefused


@click.command("backup")
@click.argument("target", type=click.Path(path_type=Path), default=Path("."))
def backup_command(target: Path) -> None:
    """Back up the database (one snapshot), the instance folder and the audit anchors into one archive.

    TARGET is the archive's file name, or a folder (default: the current one) for jzflow-backup-<time>.tar.gz.
    The archive holds the instance folder's key files: keep it where only operators can read it.
    """
    from engine.ops import backup
    try:
        report = backup.backup(target)
    except ArchiveRefused as exc:
        click.echo(f"备份失败 (backup failed): {exc}", err=True)
        sys.exit(2)
    click.echo(f"已备份 (backed up) {report.path}: {report.dialect} at revision {report.revision}, "
               f"{report.events} audit events, {report.files} files, {report.size} bytes")


@click.command("restore")
@click.argument("archive", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="replace a database that holds tables and instance files that differ")
def restore_command(archive: Path, force: bool) -> None:
    """Restore a backup archive into the configured database and instance folder (stop web and workers first).

    Refuses a corrupt or tampered archive, one made under another audit key or by a newer release, and (without
    --force) a target database that is not empty.
    """
    from engine import migrate
    from engine.ops import restore
    try:
        report = restore.restore(archive, force=force)
    except ArchiveRefused as exc:
        click.echo(f"拒绝恢复 (restore refused): {exc}", err=True)
        sys.exit(2)
    except migrate.UpgradeFailed as exc:
        click.echo(f"已恢复 {archive.name}，但数据库升级失败 (restored {archive.name}, but upgrading its schema "
                   f"failed; fix that and run `jzflow migrate`): {exc}", err=True)
        sys.exit(1)
    migrated = f", migrated to {report.migrated_to}" if report.migrated_to else ""
    click.echo(f"已恢复 (restored) {archive.name}: {report.dialect} at revision {report.revision}{migrated}, "
               f"{report.events} audit events, {report.files} instance files. "
               "Run `jzflow audit-verify` to check the audit chain.")
