"""Declarative base and column helpers shared by every model."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.orm.attributes import instance_state

from engine import clock

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, also on SQLite (which stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = clock.as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return clock.as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012 (SQLAlchemy reads it from the class)


def as_loaded(session: Session, obj: Any, ident: int) -> None:
    """Enter an object whose attributes hold its row as stored (filled in without change events) in the session as
    a row just loaded, the way the ORM's own loading does: no cascade, no events (Session.add and
    make_transient_to_detached cost as much as a Core read saved over the ORM's, bench/README.md, seventeenth pass).

    The caller makes sure the session holds no object of that row yet (a second one would replace it in the identity
    map).
    """
    state = instance_state(obj)
    key = state.mapper.identity_key_from_primary_key((ident,))
    state._commit_all(state.dict)  # what it was given so far is what the row holds: nothing for a flush
    state.key = key
    state.identity_token = key[2]
    state.session_id = session.hash_key
    session.identity_map._add_unpresent(state, key)  # the loader's own way in
