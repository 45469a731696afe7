"""How many jobs wait in each Celery queue and for how long: Redis (production) or the embedded SQLite broker;
and the embedded broker's clean-up (`purge_taken`).

The age comes from the `jz_sent_at` header every job gets when it is queued (engine.ops.logs); a message
without it (sent by an older release) counts in the depth with age 0.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy import inspect as inspect_schema

from engine.ops.logs import SENT_AT_HEADER

REDIS_PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's Redis transport keeps one list per priority step
REDIS_SEP = "\x06\x16"


_DEPTH = text("SELECT count(*) FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id "
              "WHERE q.name = :name AND m.visible")
_OLDEST = text("SELECT m.payload FROM kombu_message m JOIN kombu_queue q ON q.id = m.queue_id "
               "WHERE q.name = :name AND m.visible ORDER BY m.id LIMIT 1")


@dataclass(frozen=True)
class QueueState:
    name: str
    depth: int
    oldest_seconds: float


def _sent_at(raw: str | bytes | None) -> float | None:
    if not raw:
        return None
    try:
        message = json.loads(raw)
        value = (message.get("headers") or {}).get(SENT_AT_HEADER)
        return float(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


def _age(now: float, sent: float | None) -> float:
    return max(0.0, now - sent) if sent is not None else 0.0


def _redis(url: str, names: Iterable[str], now: float) -> list[QueueState]:
    import redis
    client: Any = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        found = []
        for name in names:
            keys = [name if step == 0 else f"{name}{REDIS_SEP}{step}" for step in REDIS_PRIORITY_STEPS]
            with client.pipeline() as pipe:
                for key in keys:
                    pipe.llen(key)
                    pipe.lindex(key, -1)  # LPUSH in, BRPOP out: the oldest is at the right end
                answers = pipe.execute()
            depth = sum(int(answers[i]) for i in range(0, len(answers), 2))
            sent = [s for s in (_sent_at(answers[i]) for i in range(1, len(answers), 2)) if s is not None]
            found.append(QueueState(name, depth, _age(now, min(sent)) if sent else 0.0))
        return found
    finally:
        client.close()


def _sqla_engine(url: str) -> Engine:
    """The embedded broker's database (its folder is the instance folder, made as the Celery app does)."""
    plain = make_url(url.removeprefix("sqla+"))
    if plain.get_backend_name() == "sqlite" and plain.database and plain.database != ":memory:":
        Path(plain.database).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(plain, connect_args={"timeout": 2})
    return create_engine(plain)


def _sqlalchemy(url: str, names: Iterable[str], now: float) -> list[QueueState]:
    engine = _sqla_engine(url)
    try:
        with engine.connect() as conn:
            tables = set(inspect_schema(conn).get_table_names())
            found = []
            for name in names:
                if "kombu_message" not in tables:
                    found.append(QueueState(name, 0, 0.0))
                    continue
                depth = conn.execute(_DEPTH, {"name": name}).scalar() or 0
                first = conn.execute(_OLDEST, {"name": name}).scalar()
                found.append(QueueState(name, int(depth), _age(now, _sent_at(first))))
            return found
    finally:
        engine.dispose()


_TAKEN = text("DELETE FROM kombu_message WHERE id IN (SELECT id FROM kombu_message WHERE NOT visible LIMIT :n)")


def purge_taken(broker_url: str, *, batch: int = 10_000) -> int:
    """Delete the messages workers took from a SQLAlchemy broker, `batch` rows per transaction; return how many.

    kombu's transport marks a message invisible when a worker takes it and never deletes it (an ack changes nothing
    in the table; a requeue or a warm shutdown's restore writes a new row), so the rows are dead from that moment,
    even while the job runs. Kept, each beat tick left one for good and every poll read past them all.
    """
    engine = _sqla_engine(broker_url)
    deleted = 0
    try:
        if "kombu_message" not in inspect_schema(engine).get_table_names():
            return 0
        while True:
            with engine.begin() as conn:
                n = conn.execute(_TAKEN, {"n": batch}).rowcount
            deleted += n
            if n < batch:
                return deleted
    finally:
        engine.dispose()


def inspect(broker_url: str, names: Iterable[str], *, now: float | None = None) -> list[QueueState]:
    """Return the depth and oldest age of each named queue on the broker (raises if the broker is down)."""
    now = time.time() if now is None else now
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return _redis(broker_url, names, now)
    if broker_url.startswith("sqla+"):
        return _sqlalchemy(broker_url, names, now)
    raise ValueError(f"unsupported broker for queue metrics: {broker_url.split(':', 1)[0]}")


def ping(broker_url: str) -> None:
    """Ask the broker a trivial question (readiness): raises when it cannot answer."""
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        import redis
        client: Any = redis.Redis.from_url(broker_url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
        return
    engine = _sqla_engine(broker_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    finally:
        engine.dispose()
