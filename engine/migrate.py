"""Run Alembic migrations from code (the CLI, tests and `make run` share this)."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

ROOT = Path(__file__).resolve().parent.parent
HEADS = "jzflow.heads"  # Config.attributes key: the revisions the database is at, kept current by migrations/env.py


class UpgradeFailed(Exception):
    """A schema upgrade was refused or failed; the message says what is wrong, in one paragraph."""


def alembic_config(url: str) -> Config:
    """Return an Alembic config pointing at our migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision`."""
    command.upgrade(alembic_config(url), revision)


def upgrade_or_explain(url: str, revision: str = "head") -> None:
    """Upgrade like `upgrade`; a refusal (RuntimeError from a migration or env.py) or a database error becomes one
    UpgradeFailed naming the database, the revision being applied and what is wrong.

    Raises: UpgradeFailed
    """
    cfg = alembic_config(url)
    where = make_url(url).render_as_string(hide_password=True)
    try:
        command.upgrade(cfg, revision)
    except RuntimeError as exc:
        raise UpgradeFailed(f"{where}: {_applying(cfg, revision)}: {exc}") from exc
    except SQLAlchemyError as exc:
        first = _first_line(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc)
        if HEADS not in cfg.attributes:  # env.py never read the database's revision: it could not connect
            raise UpgradeFailed(f"cannot reach the database {where}: {first}") from exc
        raise UpgradeFailed(f"{where}: {_applying(cfg, revision)}: {first}") from exc


def _applying(cfg: Config, target: str) -> str:
    """Name the revision an upgrade to `target` was applying when it stopped."""
    script = ScriptDirectory.from_config(cfg)
    at: tuple[str, ...] | None = cfg.attributes.get(HEADS)
    pending = list(script.iterate_revisions(target, at or "base")) if at is not None else []  # newest first
    if not pending:
        return f"upgrading to {','.join(script.get_heads()) if target in ('head', 'heads') else target}"
    step = pending[-1]
    title = (step.doc or "").strip().splitlines()
    doc = f" ({title[0].strip()})" if title else ""
    return f"applying revision {step.revision}{doc}"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
