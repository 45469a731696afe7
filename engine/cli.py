"""The `jzflow` command: database, deployment, instances, tasks, timers, worker and audit."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from engine import clock, config, extensions
from engine.db import make_engine, make_sessionmaker, session_scope
from engine.errors import DeployInvalid, EngineError, InvalidInput
from engine.ops import commands as ops_commands

F = TypeVar("F", bound=Callable[..., Any])
INCIDENT_EXIT = 3  # the command did its work, but the instance stopped with an incident


@contextmanager
def command_session() -> Iterator[Session]:
    engine = make_engine(config.load().database_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def friendly(fn: F) -> F:
    """Turn user mistakes into a message and a non-zero exit code instead of a traceback."""
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DeployInvalid as exc:
            click.echo(f"错误 (error): {exc.message}", err=True)
            sys.exit(2)
        except EngineError as exc:
            click.echo(f"错误 (error) [{exc.code}]: {exc.message}", err=True)
            for item in exc.details.get("fields", []):
                click.echo(f"  {item['field']}: {item['message']}", err=True)
            sys.exit(2)
        except OperationalError as exc:
            click.echo(f"数据库错误 (database error): {exc.orig}", err=True)
            if "no such table" in str(exc.orig) or "does not exist" in str(exc.orig):
                click.echo("提示: 先运行 `jzflow init-db` (hint: run `jzflow init-db` first)", err=True)
            sys.exit(1)
    return wrapper  # type: ignore[return-value]


def _actor(session: Session, username: str) -> Any:
    from engine.org.actors import actor_for
    return actor_for(session, username)


def _base_versions(values: tuple[str, ...]) -> dict[str, int]:
    """Parse `--base-version KEY=N` options.

    Raises: InvalidInput
    """
    bases: dict[str, int] = {}
    for value in values:
        key, sep, number = value.partition("=")
        if not sep or not key.strip() or not number.strip().isdigit():
            raise InvalidInput(f"--base-version 须为 KEY=N，如 parallel_approval=3 (expected KEY=N): {value!r}",
                               field="--base-version")
        bases[key.strip()] = int(number)
    return bases


def _json_arg(value: str | None, name: str) -> dict[str, Any]:
    if not value:
        return {}
    text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{name} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                           field=name) from None
    except (ValueError, RecursionError) as exc:  # a number too long to convert, nesting too deep to decode
        raise InvalidInput(f"{name} is not valid JSON: {str(exc)[:200]}", field=name) from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{name} must be a JSON object", field=name)
    return data


class _Commands(click.Group):
    """The engine's commands plus those the installed extensions add (`engine.extensions.commands`)."""

    def _extend(self) -> None:
        extensions.load()
        for command in extensions.commands:
            if command.name not in self.commands:
                self.add_command(command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._extend()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._extend()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands)
def main() -> None:
    """胶州经济工作流 jzflow — BPMN workflow engine and task system."""


@main.command("init-db")
@friendly
def init_db() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    from engine import migrate
    try:
        migrate.upgrade_or_explain(config.load().database_url)
    except migrate.UpgradeFailed as exc:
        click.echo(f"数据库升级失败 (database upgrade failed): {exc}", err=True)
        sys.exit(1)
    from engine.runtime import orphans
    with command_session() as session:  # what a database from before a release left waiting on closed steps
        repaired = orphans.close_orphans(session)
    if repaired.instances:
        click.echo(f"已关闭已结束任务上遗留的加签任务 {repaired.cosigners} 个、延期申请 {repaired.requests} 个 "
                   f"(closed {repaired.cosigners} co-sign task(s) and {repaired.requests} extension request(s) left "
                   f"waiting on closed steps, in {repaired.instances} instance(s))")
    click.echo("数据库已就绪 (database is up to date)")


main.add_command(init_db, "migrate")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--as", "username", default=None, help="deploying user (default: system)")
@click.option("--no-lane-check", is_flag=True, help="accept lanes that map to no role or org unit")
@click.option("--base-version", "base_versions", multiple=True, metavar="KEY=N",
              help="the version of process KEY these files were edited from (0: a new process); "
                   "refused if someone deployed KEY since. Repeatable.")
@click.option("--translate", is_flag=True,
              help="translate Camunda/Flowable/Activiti assignment, due dates, forms and simple JUEL/FEEL "
                   "expressions into jzflow's terms first, and list each change")
@friendly
def deploy(paths: tuple[Path, ...], username: str | None, no_lane_check: bool, base_versions: tuple[str, ...],
           translate: bool) -> None:
    """Validate and deploy BPMN/DMN/form files or directories."""
    from engine import deploy as deploy_service
    from engine.org.actors import SYSTEM
    bases = _base_versions(base_versions)
    files: dict[str, bytes | str] = {}
    for path in paths:
        files.update(deploy_service.read_directory(path))
    if translate:
        translation = deploy_service.translate_bundle(files)
        files = translation.files
        click.echo(f"已转换 {len(translation.report)} 处 (translated {len(translation.report)} item(s)):")
        for item in translation.report:
            click.echo(f"  {item}")
        for item in translation.kept:
            click.echo(f"  未转换 (not translated) {item}", err=True)
    with command_session() as session:
        actor = _actor(session, username) if username else SYSTEM
        results = deploy_service.deploy(session, files, actor=actor, check_lanes=not no_lane_check,
                                        base_versions=bases)
    for r in results:
        state = "新版本 (new version)" if r.created else "未变化 (unchanged)"
        click.echo(f"{r.key}: v{r.version} {state}")
        for warning in r.warnings:  # deployed all the same: a unit or user may be created after the deploy
            click.echo(f"  警告 (warning) {warning}", err=True)


@main.command()
@click.argument("process_key")
@click.option("--as", "username", required=True, help="the user starting the process")
@click.option("--data", default=None, help="initial data as JSON, or @file.json")
@click.option("--business-key", default=None)
@click.option("--title", default=None)
@friendly
def start(process_key: str, username: str, data: str | None, business_key: str | None, title: str | None) -> None:
    """Start an instance of the latest version of a process."""
    from engine.runtime import instances, timeline
    given = _json_arg(data, "--data")  # read before the database is: a bad file changes nothing
    with command_session() as session:
        row = instances.start(session, process_key=process_key, actor=_actor(session, username),
                              data=given, business_key=business_key, title=title, from_client=True)
        click.echo(f"实例 (instance) {row.id}: {row.status}")
        found = timeline.incidents(session, row.id) if row.status == "incident" else []
        incident = found[0].message if found else None
    if incident is not None:  # after the commit: the incident is recorded, the command still fails
        click.echo(f"流程故障 (incident): {incident}", err=True)
        sys.exit(INCIDENT_EXIT)


@main.command()
@click.option("--as", "username", required=True, help="whose inbox")
@click.option("--limit", default=50, show_default=True)
@friendly
def tasks(username: str, limit: int) -> None:
    """List a user's inbox (待办): their tasks and the ones they may claim."""
    from engine import tasks as task_service
    with command_session() as session:
        actor = _actor(session, username)
        rows = task_service.open_tasks(session, actor, limit=limit)
        if not rows:
            click.echo("没有待办 (no open tasks)")
        for t in rows:
            due = t.due_at.astimezone(clock.SHANGHAI).strftime("%Y-%m-%d %H:%M") if t.due_at else "-"
            who = "我 (mine)" if t.assignee_id == actor.user_id else "可认领 (claimable)"
            click.echo(f"{t.id}\t实例{t.instance_id}\t{t.process_key}\t{t.name}\t截止 {due}\t{who}")


@main.command()
@click.argument("task_id", type=int)
@click.option("--as", "username", required=True)
@friendly
def claim(task_id: int, username: str) -> None:
    """Claim a task (认领)."""
    from engine import tasks as task_service
    with command_session() as session:
        task_service.claim(session, task_id=task_id, actor=_actor(session, username))
    click.echo(f"已认领 (claimed) {task_id}")


@main.command()
@click.argument("task_id", type=int)
@click.option("--as", "username", required=True)
@friendly
def unclaim(task_id: int, username: str) -> None:
    """Give a claimed task back (取消认领)."""
    from engine import tasks as task_service
    with command_session() as session:
        task_service.unclaim(session, task_id=task_id, actor=_actor(session, username))
    click.echo(f"已取消认领 (unclaimed) {task_id}")


@main.command()
@click.argument("task_id", type=int)
@click.option("--as", "username", required=True)
@click.option("--data", default=None, help="form data as JSON, or @file.json")
@friendly
def complete(task_id: int, username: str, data: str | None) -> None:
    """Complete a task with form data (提交)."""
    from engine import tasks as task_service
    with command_session() as session:
        result = task_service.complete(session, task_id=task_id, actor=_actor(session, username),
                                       data=_json_arg(data, "--data"))
    click.echo(f"已提交 (completed); 实例 (instance) {result.instance_id}: {result.status}")
    if result.incident:
        click.echo(f"流程故障 (incident): {result.incident}", err=True)
        sys.exit(INCIDENT_EXIT)


@main.command("fire-timers")
@friendly
def fire_timers() -> None:
    """Fire every due BPMN timer now (what the beat-scheduled sweep does)."""
    from engine import jobs
    engine = make_engine(config.load().database_url)
    try:
        fired = jobs.run_timer_sweep(make_sessionmaker(engine), batch=config.load().sweep_batch)
    finally:
        engine.dispose()
    click.echo(f"已触发 (fired) {fired}")


@main.command("audit-verify")
@friendly
def audit_verify() -> None:
    """Verify the audit hash chains and checkpoints; exit 1 naming the first broken row."""
    from engine import audit
    with command_session() as session:
        report = audit.verify(session)
    if report.ok:
        click.echo(f"审计链完好 (audit chain intact): {report.events} events, {report.streams} streams, "
                   f"{report.checkpoints} checkpoints, {report.anchors} anchors")
        return
    click.echo(f"审计链损坏 (audit chain BROKEN): {report.problem}", err=True)
    for problem in report.problems[1:]:
        click.echo(f"  {problem}", err=True)
    sys.exit(1)


@main.command("audit-seal")
@friendly
def audit_seal() -> None:
    """Seal all audit stream heads into a checkpoint."""
    from engine import audit
    with command_session() as session:
        cp = audit.seal(session)
    click.echo(f"checkpoint {cp.id}" if cp else "无变化 (nothing new to seal)")


def _lifecycle(action: str) -> Callable[..., None]:
    @click.argument("instance_id", type=int)
    @click.option("--as", "username", required=True)
    @friendly
    def command(instance_id: int, username: str) -> None:
        from engine.runtime import instances
        with command_session() as session:
            row = getattr(instances, action)(session, instance_id=instance_id, actor=_actor(session, username))
        click.echo(f"实例 (instance) {row.id}: {row.status}")
    command.__doc__ = f"{action.capitalize()} an instance (admins)."
    return command


for _action in ("suspend", "resume", "terminate"):
    main.command(_action)(_lifecycle(_action))


@main.command("add-unit")
@click.argument("code")
@click.argument("name")
@click.option("--kind", default="department", show_default=True)
@click.option("--parent", default=None, help="parent unit code")
@friendly
def add_unit(code: str, name: str, kind: str, parent: str | None) -> None:
    """Add an org unit (部门/镇街/功能区)."""
    from engine import org
    with command_session() as session:
        org.add_unit(session, code=code, name=name, kind=kind, parent_code=parent)
    click.echo(f"已添加单位 (unit added) {code}")


@main.command("add-role")
@click.argument("code")
@click.argument("name")
@friendly
def add_role(code: str, name: str) -> None:
    """Add a role."""
    from engine import org
    with command_session() as session:
        org.add_role(session, code=code, name=name)
    click.echo(f"已添加角色 (role added) {code}")


@main.command("add-user")
@click.argument("username")
@click.option("--name", "display_name", required=True)
@click.option("--password", default=None)
@click.option("--unit", "units", multiple=True, help="org unit code (repeatable)")
@click.option("--role", "roles", multiple=True, help="role code (repeatable)")
@click.option("--head", is_flag=True, help="the user heads the given units")
@click.option("--admin", is_flag=True)
@friendly
def add_user(username: str, display_name: str, password: str | None, units: tuple[str, ...],
             roles: tuple[str, ...], head: bool, admin: bool) -> None:
    """Add a user with memberships in units and roles."""
    from engine import org
    with command_session() as session:
        org.add_user(session, username=username, display_name=display_name, password=password,
                     unit_codes=list(units), role_codes=list(roles), is_head=head, is_admin=admin)
    click.echo(f"已添加用户 (user added) {username}")


@main.command()
@click.option("--beat/--no-beat", default=True, show_default=True, help="also run the beat scheduler")
@click.option("--concurrency", default=2, show_default=True)
def worker(beat: bool, concurrency: int) -> None:
    """Run a Celery worker (with beat by default) on the configured broker."""
    from engine.celery_app import celery
    argv = ["worker", "--loglevel=INFO", f"--concurrency={concurrency}"]
    if beat:
        argv.append("--beat")
    celery.worker_main(argv)


@main.command()
def beat() -> None:
    """Run the Celery beat scheduler alone."""
    from engine.celery_app import celery
    celery.start(["beat", "--loglevel=INFO"])


main.add_command(ops_commands.backup_command)
main.add_command(ops_commands.restore_command)


@main.command("list-processes")
@friendly
def list_processes() -> None:
    """List deployed processes and their latest versions."""
    from engine.runtime.models import ProcessDefinition
    with command_session() as session:
        for d in session.scalars(select(ProcessDefinition).order_by(ProcessDefinition.key)):
            click.echo(f"{d.key}\tv{d.latest_version}\t{d.name}")


from engine.cli_admin import COMMANDS as _ADMIN_COMMANDS  # noqa: E402  # they use this module's helpers
from engine.cli_messages import COMMANDS as _MESSAGE_COMMANDS  # noqa: E402
from engine.cli_people import COMMANDS as _PEOPLE_COMMANDS  # noqa: E402

for _command in (*_ADMIN_COMMANDS, *_MESSAGE_COMMANDS, *_PEOPLE_COMMANDS):
    main.add_command(_command)


if __name__ == "__main__":
    main()
