"""The plan's `jzflow` commands: load its domain data and the demo data set (added by `plan.app.install`)."""
from __future__ import annotations

from pathlib import Path

import click

from engine.cli import command_session, friendly


@click.command()
@click.option("--path", "path", default=None, type=click.Path(path_type=Path),
              help="seed data directory (default: data/seed)")
@friendly
def seed(path: Path | None) -> None:
    """Load the plan's domain data (units, leaders, industries, indicators, libraries); idempotent."""
    from plan.data import seed as seed_service  # the data loaders are heavy; only these commands need them
    with command_session() as session:
        summary = seed_service.load_seed(session, path)
    click.echo(f"种子数据已加载 (seed data loaded): {summary}")


@click.command()
@friendly
def demo() -> None:
    """Load the demo data set (projects, issues, a running investment-loop period, approvals); idempotent."""
    from plan.data import demo as demo_service
    with command_session() as session:
        summary = demo_service.load_demo(session)
    click.echo(f"演示数据已加载 (demo data loaded): {summary}")


COMMANDS = (seed, demo)
