"""Display names of the usernames an instance's data holds (流程数据): one query, bounded, only for real usernames."""
from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.orm import Session

from engine.org import directory
from engine.org.actors import Actor


def test_usernames_among_values_resolve_in_one_query(session: Session, review_org: dict[str, Actor]) -> None:
    statements: list[str] = []
    bind = session.get_bind()

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    values = ["window", "industrial", 6000, None, {"nested": "window"}, "x" * 10_000, "", *[f"u{n}" for n in range(150)]]
    event.listen(bind, "before_cursor_execute", count)
    try:
        names = directory.names_by_username(session, values)
    finally:
        event.remove(bind, "before_cursor_execute", count)
    assert names == {"window": "窗口李四"}  # not a code, a number, a nested value or an oversized string
    assert len(statements) == 1
    assert directory.names_by_username(session, [1, None, ""]) == {}  # nothing to ask: no query
    many = [f"a{n:04}" for n in range(directory.MAX_NAME_LOOKUP * 5)] + ["window"]
    assert directory.names_by_username(session, many) == {}  # bounded: the first 200 asked about, no more
