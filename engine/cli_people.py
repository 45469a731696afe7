"""`jzflow move-user`, `set-unit-head`, `reset-password`, `reactivate-user`: what 管理 → 编辑人员 does, for an
operator at the server (the same services, engine.org.staffing; the actor is the system). Each reads the person and
changes them in one transaction, their row locked: the web's `seen` is the version read at the start.
`revoke-reset-tokens`: once after an upgrade, the API tokens that resets made before resets revoked them left live
(engine.org.reset_tokens)."""
from __future__ import annotations

import click

from engine.cli import command_session, friendly


@click.command("move-user")
@click.argument("username")
@click.option("--unit", "units", multiple=True, help="org unit code (repeatable): the units they are in from now on")
@click.option("--role", "roles", multiple=True, help="role code (repeatable): the roles they have from now on")
@click.option("--admin/--no-admin", default=None, help="grant or take the administrator mark (default: as it is)")
@friendly
def move_user(username: str, units: tuple[str, ...], roles: tuple[str, ...], admin: bool | None) -> None:
    """调岗: set the units and roles of USERNAME (the ones not given are left); what they claimed from the pools of the
    units and roles they leave goes back, the old unit's issues and leads go to its head."""
    from engine.org import leaving, staffing
    from engine.org.actors import SYSTEM
    with command_session() as session:
        user = leaving.user_named(session, username)
        was = staffing.person(session, user)
        done = staffing.set_memberships(session, user_id=user.id, unit_codes=list(units), role_codes=list(roles),
                                        is_admin=user.is_admin if admin is None else admin, seen=was.seen,
                                        actor=SYSTEM)
        line = (f"已保存 (saved) {done.user.username}: 单位 (units) {', '.join(done.units) or '-'}; "
                f"角色 (roles) {', '.join(done.roles) or '-'}; 管理员 (admin) {'是' if done.user.is_admin else '否'}")
    click.echo(line)


@click.command("set-unit-head")
@click.argument("username")
@click.argument("unit")
@click.option("--leader", is_flag=True, help="the unit's responsible leader (责任领导) instead of its head (负责人)")
@click.option("--remove", is_flag=True, help="take the mark away")
@friendly
def set_unit_head(username: str, unit: str, leader: bool, remove: bool) -> None:
    """Make USERNAME the head (负责人) of UNIT (a code), or its 责任领导 with --leader; --remove takes it away."""
    from engine.org import leaving, staffing
    from engine.org.actors import SYSTEM
    with command_session() as session:
        user = leaving.user_named(session, username)
        staffing.set_unit_mark(session, user_id=user.id, unit_code=unit, mark="leader" if leader else "head",
                               on=not remove, seen=staffing.person(session, user).seen, actor=SYSTEM)
        name = user.username
    what = "责任领导 (responsible leader)" if leader else "负责人 (head)"
    click.echo(f"{'已取消' if remove else '已设为'} {unit.strip()[:80]} {what}: {name}")


@click.command("reset-password")
@click.argument("username")
@friendly
def reset_password(username: str) -> None:
    """Give USERNAME a generated temporary password (printed once, never logged): every session of theirs ends, their
    API tokens are revoked, and they change it at their next login. To set one of your choice, use 管理 → 编辑人员
    (a command line is kept in the shell's history)."""
    from engine.org import leaving, staffing
    from engine.org.actors import SYSTEM
    with command_session() as session:
        user = leaving.user_named(session, username)
        _done, generated, revoked = staffing.reset_password(session, user_id=user.id, password=None,
                                                            seen=staffing.person(session, user).seen, actor=SYSTEM)
        name = user.username
    click.echo(f"已重置 (reset) {name}; 吊销令牌 (tokens revoked): {revoked}; "
               f"临时密码 (temporary password, shown once): {generated}")


@click.command("reactivate-user")
@click.argument("username")
@friendly
def reactivate_user(username: str) -> None:
    """启用 USERNAME again: earlier sessions stay ended and earlier API tokens stay revoked."""
    from engine.org import leaving, staffing
    from engine.org.actors import SYSTEM
    with command_session() as session:
        user = leaving.user_named(session, username)
        _done, revoked = staffing.reactivate(session, user_id=user.id, seen=staffing.person(session, user).seen,
                                             actor=SYSTEM)
        name = user.username
    click.echo(f"已启用 (reactivated) {name}; 吊销令牌 (tokens revoked): {revoked}")


@click.command("revoke-reset-tokens")
@click.option("--dry-run", is_flag=True, help="only list the tokens, revoke nothing")
@friendly
def revoke_reset_tokens(dry_run: bool) -> None:
    """Revoke the live API tokens an administrator's password reset (重置密码) made before resets revoked tokens left
    behind: those made before the reset, and those made while its temporary password was in force (audit trail:
    org.user.password_reset, org.user.password). Each revocation is audited; a second run finds nothing."""
    from engine.org import reset_tokens
    from engine.org.actors import SYSTEM
    with command_session() as session:
        found = reset_tokens.find(session) if dry_run else reset_tokens.revoke(session, actor=SYSTEM)
    for f in found:
        click.echo(f"{f.username}\t{f.prefix}…\t{f.name}\t创建 (created) {f.created_at:%Y-%m-%d %H:%M}\t"
                   f"重置 (reset) {f.reset_at:%Y-%m-%d %H:%M}")
    verb = "将吊销 (would revoke)" if dry_run else "已吊销 (revoked)"
    click.echo(f"{verb} {len(found)} 个令牌 (tokens)")


COMMANDS = [move_user, set_unit_head, reset_password, reactivate_user, revoke_reset_tokens]
