"""`jzflow archive` and `jzflow sync-directory`: housekeeping an operator runs by hand (the beat runs them too);
`jzflow sso-link`: an administrator links an existing account to its owner's 统一身份认证 subject;
`jzflow deactivate-user`: 停用 a person and hand over their open work, as 管理 → 停用 does; `jzflow move-user`,
`set-unit-head`, `reset-password`, `reactivate-user`: what 管理 → 编辑人员 does (engine/cli_people.py)."""
from __future__ import annotations

import json
import sys
from datetime import date, timedelta

import click

from engine import clock, config
from engine.cli import command_session, friendly
from engine.db import make_engine, make_sessionmaker


def _day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"日期格式应为 YYYY-MM-DD (expected YYYY-MM-DD): {value[:40]!r}") from None


@click.command("archive")
@click.option("--dry-run", is_flag=True, help="only count what would move")
@click.option("--before", callback=_day, default=None,
              help="archive instances ended before this day (YYYY-MM-DD, Shanghai); "
                   "default: JZFLOW_ARCHIVE_AFTER_DAYS ago")
@friendly
def archive_cmd(dry_run: bool, before: date | None) -> None:
    """Move long-ended instances to the archive tables (what the beat-scheduled job does)."""
    from engine.archive import core as archive
    settings = config.load()
    if before is not None and before > clock.now().astimezone(clock.SHANGHAI).date() + timedelta(days=1):
        raise click.BadParameter("不能晚于明天 (must not be after tomorrow)", param_hint="--before")
    engine = make_engine(settings.database_url)
    try:
        report = archive.run(make_sessionmaker(engine), after_days=settings.archive_after_days,
                             batch=settings.archive_batch, before=before, dry_run=dry_run)
    finally:
        engine.dispose()
    if report.before is None:
        click.echo("归档已关闭 (archiving is off: JZFLOW_ARCHIVE_AFTER_DAYS=0; give --before to run it once)")
        return
    cut = report.before.astimezone(clock.SHANGHAI).isoformat(timespec="seconds")
    if dry_run:
        click.echo(f"将归档 (would archive) {report.due} 个实例, 结束于 (ended before) {cut}")
        return
    click.echo(f"已归档 (archived) {report.moved} 个实例 in {report.batches} batches, "
               f"结束于 (ended before) {cut}")


@click.command("sync-directory")
@click.option("--dry-run", is_flag=True, help="report what would change, change nothing")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@friendly
def sync_directory(dry_run: bool, as_json: bool) -> None:
    """Sync org units, people, unit heads and leaders from the LDAP directory (JZFLOW_LDAP_*)."""
    from engine.org import ldap_read, ldap_sync
    settings = ldap_read.load_settings()
    snapshot = ldap_read.read(settings)  # before the transaction: a slow directory holds no database lock
    try:
        with command_session() as session:
            report = ldap_sync.sync(session, settings, snapshot, dry_run=dry_run)
            if dry_run:
                session.rollback()
    except ldap_sync.SyncStopped as stopped:
        report = stopped.report
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False) if as_json else "\n".join(report.lines()))
        sys.exit(2)
    click.echo(json.dumps(report.to_dict(), ensure_ascii=False) if as_json else "\n".join(report.lines()))


@click.command("sso-link")
@click.argument("username")
@click.argument("subject", required=False)
@click.option("--unlink", is_flag=True, help="remove the account's link (its owner's next SSO login links it as "
                                             "JZFLOW_OIDC_LINK allows)")
@friendly
def sso_link(username: str, subject: str | None, unlink: bool) -> None:
    """Link the account USERNAME to the identity provider's SUBJECT (the `sub` its owner logs in with; the refusal
    page of their first SSO login shows it). Only that subject logs in to the account from then on."""
    from engine.org import oidc, sso_users
    if unlink == (subject is not None):
        raise click.UsageError("给出统一身份认证标识 SUBJECT，或 --unlink (give SUBJECT, or --unlink)")
    with command_session() as session:
        user = sso_users.link(session, oidc.load_settings(), username=username, subject=subject)
        name = user.username
    if subject is None:
        click.echo(f"已解除关联 (unlinked): {name}")
    else:
        click.echo(f"已关联 (linked): {name} → {subject.strip()}")


@click.command("deactivate-user")
@click.argument("username")
@click.option("--successor", default=None, help="接手人: the username who takes over their open work (else it goes "
                                                "back to its candidates, or to the unit)")
@friendly
def deactivate_user(username: str, successor: str | None) -> None:
    """停用 the account USERNAME: sessions and API tokens stop, and their open tasks and plan items are handed over
    in the same transaction (the same service as 管理 → 停用; refused, changing nothing, on a bad successor or work
    nobody else could take)."""
    from engine.deadlines.models import ExtensionRequest
    from engine.org import leaving
    from engine.org.models import OrgUnit
    with command_session() as session:
        user = leaving.user_named(session, username)
        done = leaving.deactivate_user(session, user_id=user.id, successor=successor, reason="cli: deactivated")
        lines = [f"已停用 (deactivated): {done.user.username}"]
        lines += [f"  待办 (task) {task_id} → {done.successor.username if done.successor else '候选人/单位 (candidates)'}"
                  for task_id in done.handed_over]
        lines += [f"  {item.label} → {item.to or '退回单位 (back to the unit)'}" for item in done.items
                  if item.duty != "leader"]
        lines += [f"  {item.label} 责任领导 (responsible leader) → {item.to or '暂无，请重新指定 (none; name one)'}"
                  for item in done.items if item.duty == "leader"]
        lines += [f"  单位 (unit) {unit.code} {unit.name}: 负责人/责任领导已取消 (no longer its head or leader)"
                  for unit in (session.get(OrgUnit, i) for i in done.units) if unit is not None]
        lines += [f"  未移交，无人可接 (left, nobody else could take it): task {task_id}" for task_id in done.stuck]
        lines += [f"  未移交，无人可接 (left, nobody else could take it): {item.label}" for item in done.items_stuck]
        lines += [f"  延期申请已撤回 (extension request withdrawn): task {request.object_id}"
                  for request in (session.get(ExtensionRequest, i) for i in done.cancelled) if request is not None]
        lines.append(f"共 (total): 待办移交 (tasks handed over) {len(done.handed_over)}; 事项移交 (items handed over) "
                     f"{len(done.items)}; 延期申请撤回 (extension requests withdrawn) {len(done.cancelled)}; "
                     f"单位取消负责人/责任领导 (units without their head or leader) {len(done.units)}")
    click.echo("\n".join(lines))


COMMANDS = [archive_cmd, sync_directory, sso_link, deactivate_user]
