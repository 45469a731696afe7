"""`jzflow message`, `jzflow signal`, `jzflow message-status`: messages and signals from the command line."""
from __future__ import annotations

import json
from typing import Any

import click

from engine import clock
from engine.cli import _actor, _json_arg, command_session, friendly
from engine.errors import InvalidInput


def _correlations(values: tuple[str, ...]) -> dict[str, Any]:
    """Parse `--correlate KEY=VALUE` options (values are compared as text).

    Raises: InvalidInput
    """
    out: dict[str, Any] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--correlate 须为 KEY=VALUE，如 application_id=A-17 (expected KEY=VALUE): {value!r}",
                               field="--correlate")
        out[key.strip()] = val
    return out


def _show(out: Any) -> None:
    if out.status == "delivered":
        click.echo(f"已送达实例 (delivered to instance) {out.instance_id}  [message {out.id}]")
    elif out.status == "started":
        click.echo(f"已启动实例 (started instance) {out.instance_id}  [message {out.id}]")
    elif out.status == "buffered":
        until = clock.as_utc(out.expires_at).astimezone(clock.SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"暂无实例等待，已暂存至 {until} (nobody waits yet: kept until then)  [message {out.id}]")
    elif out.status == "pending":
        click.echo(f"等待的实例正忙，稍后由后台投递 (the waiting instance is busy: the worker delivers it)  "
                   f"[message {out.id}]")
    elif out.status == "duplicate":
        click.echo(f"重复消息，未再处理 (duplicate message id: not processed again)  [message {out.id}]")
    else:
        click.echo(json.dumps(out.to_dict(), ensure_ascii=False))


@click.command("message")
@click.argument("name")
@click.option("--correlate", "correlate", multiple=True, metavar="KEY=VALUE",
              help="a correlation property's value; repeatable")
@click.option("--business-key", default=None, help="correlate by the waiting instance's business key")
@click.option("--data", default=None, help="the payload as JSON, or @file.json")
@click.option("--ttl", type=int, default=None,
              help="seconds to keep it if nobody waits yet (default JZFLOW_MESSAGE_TTL_SECONDS; 0: refuse)")
@click.option("--id", "message_id", default=None,
              help="the sender's own message id (the --as user's, else the system's): its second one is a duplicate")
@click.option("--as", "username", default=None, help="the sending user (default: system)")
@friendly
def message(name: str, correlate: tuple[str, ...], business_key: str | None, data: str | None, ttl: int | None,
            message_id: str | None, username: str | None) -> None:
    """Send a BPMN message: resume the instance waiting for it, start one, or keep it until its time to live."""
    from engine.org.actors import SYSTEM
    from engine.runtime import messages
    with command_session() as session:
        actor = _actor(session, username) if username else SYSTEM
        out = messages.publish(session, name=name, actor=actor, correlations=_correlations(correlate),
                               business_key=business_key, payload=_json_arg(data, "--data"), ttl=ttl,
                               message_id=message_id)
    _show(out)


@click.command("signal")
@click.argument("name")
@click.option("--data", default=None, help="the payload as JSON, or @file.json")
@click.option("--as", "username", default=None, help="the sending user (default: system)")
@click.option("--deliver/--no-deliver", default=False,
              help="resume the waiting instances in this process now instead of by the worker")
@friendly
def signal(name: str, data: str | None, username: str | None, deliver: bool) -> None:
    """Broadcast a BPMN signal to every instance waiting on it; start the processes it starts."""
    from engine import config
    from engine.db import make_engine, make_sessionmaker
    from engine.jobs_messages import kick, run_signal_deliveries
    from engine.org.actors import SYSTEM
    from engine.runtime import signals
    with command_session() as session:
        actor = _actor(session, username) if username else SYSTEM
        out = signals.broadcast(session, name=name, actor=actor, payload=_json_arg(data, "--data"))
    click.echo(f"信号已广播 (signal broadcast) [{out.id}]: 等待实例 (waiting) {out.waiting}, "
               f"新启动 (started) {list(out.started)}")
    if not deliver:
        kick()
        return
    engine = make_engine(config.load().database_url)
    try:
        resumed, more = run_signal_deliveries(make_sessionmaker(engine), max_seconds=3600)
    finally:
        engine.dispose()
    click.echo(f"已恢复实例 (resumed) {resumed}" + ("，其余由 worker 继续 (the worker does the rest)" if more else ""))


@click.command("message-status")
@click.argument("message_id", type=int)
@friendly
def message_status(message_id: int) -> None:
    """Show what became of a message or signal."""
    from engine.runtime import messages
    with command_session() as session:
        out = messages.describe(session, message_id)
    click.echo(json.dumps(out.to_dict(), ensure_ascii=False))


COMMANDS = (message, signal, message_status)
