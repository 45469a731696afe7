"""The name per-process caches give a database: the engine's URL without its password, rendered once per engine."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from engine.db import database_key, make_engine


def test_one_engine_one_rendering_and_each_database_its_own(tmp_path: Path) -> None:
    first, second = make_engine(f"sqlite:///{tmp_path / 'a.sqlite'}"), make_engine(f"sqlite:///{tmp_path / 'b.sqlite'}")
    try:
        with Session(first) as one, Session(first) as again, Session(second) as other:
            key = database_key(one)
            assert key == f"sqlite:///{tmp_path / 'a.sqlite'}"
            assert database_key(again) is key  # kept, not built again (str(url) makes a new text each time)
            assert database_key(other) == f"sqlite:///{tmp_path / 'b.sqlite'}"
    finally:
        first.dispose()
        second.dispose()


def test_the_password_is_not_part_of_the_name() -> None:
    engine = make_engine("postgresql+psycopg://jz:s3cret-pw@db.example:5433/jzflow")  # not connected
    try:
        with Session(engine) as session:
            key = database_key(session)
        assert "s3cret-pw" not in key
        assert key == "postgresql+psycopg://jz:***@db.example:5433/jzflow"
    finally:
        engine.dispose()
