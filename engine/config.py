"""Settings from the environment (JZFLOW_*), with an embedded default needing no server."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path


def _instance_dir() -> Path:
    return Path(os.environ.get("JZFLOW_INSTANCE_DIR", Path.cwd() / "instance")).resolve()


@dataclass(frozen=True)
class Settings:
    """What a process of jzflow (web, worker, CLI) needs to know about its surroundings."""

    instance_dir: Path = field(default_factory=_instance_dir)
    database_url: str = ""
    redis_url: str | None = None
    secret_key: str = "dev-only-secret-change-me"  # noqa: S105 (development default, overridden by env)
    script_time_limit: float = 2.0
    script_fuel: int = 2_000_000
    timer_sweep_seconds: float = 30.0
    outbox_seconds: float = 10.0
    sweep_batch: int = 100
    timer_max_days: int = 3660
    max_state_kb: int = 2048
    memory_limit_mb: int = 2048

    @property
    def broker_url(self) -> str:
        """Redis when configured, else a SQLite-file broker that needs no server."""
        if self.redis_url:
            return self.redis_url
        return f"sqla+sqlite:///{self.instance_dir / 'broker.sqlite'}"

    @property
    def is_embedded(self) -> bool:
        return self.database_url.startswith("sqlite")


_KEYS = ("JZFLOW_INSTANCE_DIR", "JZFLOW_DATABASE_URL", "JZFLOW_REDIS_URL", "JZFLOW_SECRET_KEY",
         "JZFLOW_SCRIPT_TIME_LIMIT", "JZFLOW_SCRIPT_FUEL", "JZFLOW_TIMER_SWEEP_SECONDS", "JZFLOW_OUTBOX_SECONDS",
         "JZFLOW_SWEEP_BATCH", "JZFLOW_TIMER_MAX_DAYS", "JZFLOW_MAX_STATE_KB", "JZFLOW_MEMORY_LIMIT_MB")


def load() -> Settings:
    """Read settings from the environment (cached until a JZFLOW_* variable or the cwd changes)."""
    return _load(tuple(os.environ.get(k) for k in _KEYS), os.getcwd())


@lru_cache(maxsize=8)
def _load(_env: tuple[str | None, ...], _cwd: str) -> Settings:
    instance = _instance_dir()
    url = os.environ.get("JZFLOW_DATABASE_URL") or f"sqlite:///{instance / 'jzflow.sqlite'}"
    return Settings(
        instance_dir=instance,
        database_url=url,
        redis_url=os.environ.get("JZFLOW_REDIS_URL") or None,
        secret_key=os.environ.get("JZFLOW_SECRET_KEY", "dev-only-secret-change-me"),
        script_time_limit=float(os.environ.get("JZFLOW_SCRIPT_TIME_LIMIT", "2.0")),
        script_fuel=int(os.environ.get("JZFLOW_SCRIPT_FUEL", "2000000")),
        timer_sweep_seconds=float(os.environ.get("JZFLOW_TIMER_SWEEP_SECONDS", "30")),
        outbox_seconds=float(os.environ.get("JZFLOW_OUTBOX_SECONDS", "10")),
        sweep_batch=int(os.environ.get("JZFLOW_SWEEP_BATCH", "100")),
        timer_max_days=int(os.environ.get("JZFLOW_TIMER_MAX_DAYS", "3660")),
        max_state_kb=int(os.environ.get("JZFLOW_MAX_STATE_KB", "2048")),
        memory_limit_mb=int(os.environ.get("JZFLOW_MEMORY_LIMIT_MB", "2048")),
    )
