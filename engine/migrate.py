"""Run Alembic migrations from code (the CLI, tests and `make run` share this)."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from engine.db import make_engine

ROOT = Path(__file__).resolve().parent.parent


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
    """Upgrade like `upgrade`; a refusal (a RuntimeError from a migration or migrations/env.py) or a database error
    becomes one UpgradeFailed naming the database, the revision being applied and what is wrong.

    Raises: UpgradeFailed
    """
    where = make_url(url).render_as_string(hide_password=True)
    engine = make_engine(url)
    try:
        engine.connect().close()
    except SQLAlchemyError as exc:
        raise UpgradeFailed(f"cannot reach the database {where}: {_first_line(exc)}") from exc
    finally:
        engine.dispose()
    cfg = alembic_config(url)
    try:
        command.upgrade(cfg, revision)
    except RuntimeError as exc:
        raise UpgradeFailed(f"{where}: {_applying(cfg, exc, revision)}: {exc}") from exc
    except SQLAlchemyError as exc:
        raise UpgradeFailed(f"{where}: {_applying(cfg, exc, revision)}: {_first_line(exc)}") from exc


def _applying(cfg: Config, exc: BaseException, target: str) -> str:
    """Name the revision whose script raised `exc` (its frame is on the traceback), else the upgrade's target."""
    script = ScriptDirectory.from_config(cfg)
    revision = None
    tb = exc.__traceback__
    while tb is not None:
        found = tb.tb_frame.f_globals
        if "down_revision" in found and isinstance(found.get("revision"), str):
            revision = found["revision"]
        tb = tb.tb_next
    if revision is None:
        return f"upgrading to {','.join(script.get_heads()) if target in ('head', 'heads') else target}"
    title = (getattr(script.get_revision(revision), "doc", "") or "").strip().splitlines()
    return f"applying revision {revision}" + (f" ({title[0].strip()})" if title else "")


def _first_line(exc: SQLAlchemyError) -> str:
    """The database's own message, first line (a DBAPIError's str() adds the SQL and a link)."""
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__
