"""`jzflow migrate` / `init-db` / `restore`: a refused or failed upgrade is one clear paragraph and exit 1, no traceback."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from engine import cli, migrate


def _run(args: list[str], url: str, tmp_path: Path) -> Result:
    env = {"JZFLOW_DATABASE_URL": url, "JZFLOW_INSTANCE_DIR": str(tmp_path / "instance")}
    return CliRunner().invoke(cli.main, args, env=env)


def _failed_cleanly(result: Result) -> str:
    """The command exited 1 on purpose (not an escaped exception) and printed no traceback; return its output."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.output


def test_an_upgrade_refused_for_broken_references_is_one_message_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    migrate.upgrade(f"sqlite:///{path}", "0024")
    with sqlite3.connect(path) as conn:  # foreign keys are off on a plain sqlite3 connection
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.execute("INSERT INTO task_candidate (task_id, user_id) VALUES (424242, NULL)")
    out = _failed_cleanly(_run(["migrate"], f"sqlite:///{path}", tmp_path))
    assert "数据库升级失败 (database upgrade failed)" in out
    assert "broken references" in out or "refused" in out
    assert "task_candidate" in out


def test_a_database_error_names_the_revision_being_applied(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    migrate.upgrade(f"sqlite:///{path}", "0024")
    with sqlite3.connect(path) as conn:  # a table 0025 creates is already there
        conn.execute("CREATE TABLE archive_human_task (id INTEGER PRIMARY KEY)")
    out = _failed_cleanly(_run(["init-db"], f"sqlite:///{path}", tmp_path))
    assert "applying revision 0025 (archive tables" in out
    assert "archive_human_task already exists" in out
    assert len(out.strip().splitlines()) == 1


def test_an_unreachable_database_names_its_host(tmp_path: Path) -> None:
    url = "postgresql+psycopg://jz:secret@127.0.0.1:1/nowhere"
    out = _failed_cleanly(_run(["migrate"], url, tmp_path))
    assert "127.0.0.1" in out
    assert "secret" not in out  # the password is never printed
    assert len(out.strip().splitlines()) == 1


def test_restore_reports_an_upgrade_that_failed_after_the_restore(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.ops import restore

    def failing(_archive: Path, force: bool = False) -> None:
        raise migrate.UpgradeFailed("applying revision 0025: table archive_human_task already exists")

    monkeypatch.setattr(restore, "restore", failing)
    archive = tmp_path / "backup.tar.gz"
    archive.write_bytes(b"")
    out = _failed_cleanly(_run(["restore", str(archive)], f"sqlite:///{tmp_path / 'x.sqlite'}", tmp_path))
    assert "backup.tar.gz" in out and "0025" in out
