"""Settings from the environment (JZFLOW_*), with an embedded default needing no server."""
from __future__ import annotations

import math
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from engine import files


def _instance_dir() -> Path:
    return Path(os.environ.get("JZFLOW_INSTANCE_DIR", Path.cwd() / "instance")).resolve()


@dataclass(frozen=True)
class Settings:
    """What a process of jzflow (web, worker, CLI) needs to know about its surroundings."""

    instance_dir: Path = field(default_factory=_instance_dir)
    database_url: str = ""
    redis_url: str | None = None
    secret_key: str = ""  # empty: the embedded default keeps its own in the instance folder (see secret_key())
    script_time_limit: float = 2.0
    script_fuel: int = 2_000_000
    run_time_limit: float = 10.0  # one engine run (a start, a completion, a timer, a message), scripts included
    max_run_tasks: int = 20_000  # tasks one engine run may complete
    timer_sweep_seconds: float = 30.0
    outbox_seconds: float = 10.0
    outbox_lease_seconds: int = 300  # an e-mail or webhook being sent: counted, and kept from other workers this long
    sweep_batch: int = 100
    timer_max_days: int = 3660
    timer_min_cycle_seconds: int = 60  # shortest interval of a timeCycle: R/PT0S fired on every step, forever
    max_state_kb: int = 2048
    max_multi_instance: int = 500  # instances one multi-instance (or loop) may make
    max_run_starts: int = 100  # instances one engine run may start (those they start as they run included)
    max_open_descendants: int = 1000  # open instances started one from another since one started from outside
    memory_limit_mb: int = 2048
    instance_cache_size: int = 500  # hot-instance cache: workflows kept per process (0: off)
    instance_cache_mb: int = 256  # … and their approximate memory
    state_keep_levels: int = 8  # finished steps kept above the live part of a task tree (the rest is compacted)
    audit_key: str = ""  # empty: a key file in the instance folder, generated on first use (see audit_key())
    audit_anchor: Path | None = None  # None: instance/audit-anchors.log
    audit_seal_seconds: float = 60.0
    trusted_proxies: int = 0
    login_account_failures: int = 10
    login_address_failures: int = 100
    login_window_seconds: int = 900
    log_format: str = "text"  # text | json (one JSON object a line)
    log_level: str = "INFO"
    metrics_token: str = ""  # a bearer token that may read /metrics (empty: none)
    metrics_allow: tuple[str, ...] = ()  # addresses/networks that may read /metrics without the token
    number_rules: str = ""  # JSON {rule name: template} overriding an application's document number rules
    pdf_font: str = ""  # a TrueType CJK font file to embed in PDFs ("path" or "path#index" for a collection)
    verify_address_failures: int = 30  # unknown verification codes one address may try per login window (anonymous)
    verify_user_failures: int = 30  # the same for one signed-in user, wherever they are
    verify_address_ceiling: int = 300  # the same for all signed-in users of one address together
    archive_after_days: int = 365  # ended instances older than this move to the archive tables (0: never)
    archive_batch: int = 100  # instances moved per transaction
    public_url: str = ""  # where users reach the site, for links that leave it (empty: the address a request came to)
    token_max_days: int = 365  # the longest lifetime an API token may be issued with
    # notices (in-app, e-mail, webhook) queued per hour for one process instance, and to one person whatever causes them:
    # past them a BPMN (a loop, a huge multi-instance, a frequent timer) or a person (催办, 抄送 again and again) gets
    # nothing more sent (engine.notify.quota)
    notice_cap_instance_hour: int = 500
    notice_cap_recipient_hour: int = 200

    @cached_property  # asked at every commit that wrote audit events: the join built once per settings
    def anchor_path(self) -> Path:
        """The append-only file where audit seals and stream heads are anchored outside the database."""
        return self.audit_anchor or self.instance_dir / "audit-anchors.log"

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
         "JZFLOW_SWEEP_BATCH", "JZFLOW_TIMER_MAX_DAYS", "JZFLOW_MAX_STATE_KB", "JZFLOW_MEMORY_LIMIT_MB",
         "JZFLOW_MAX_MULTI_INSTANCE", "JZFLOW_RUN_TIME_LIMIT", "JZFLOW_MAX_RUN_TASKS", "JZFLOW_TIMER_MIN_CYCLE_SECONDS",
         "JZFLOW_AUDIT_KEY", "JZFLOW_AUDIT_ANCHOR", "JZFLOW_AUDIT_SEAL_SECONDS",
         "JZFLOW_TRUSTED_PROXIES", "JZFLOW_LOGIN_ACCOUNT_FAILURES", "JZFLOW_LOGIN_ADDRESS_FAILURES",
         "JZFLOW_LOGIN_WINDOW_SECONDS", "JZFLOW_LOG_FORMAT", "JZFLOW_LOG_LEVEL", "JZFLOW_METRICS_TOKEN",
         "JZFLOW_METRICS_ALLOW", "JZFLOW_NUMBER_RULES", "JZFLOW_PDF_FONT", "JZFLOW_VERIFY_ADDRESS_FAILURES",
         "JZFLOW_VERIFY_USER_FAILURES", "JZFLOW_VERIFY_ADDRESS_CEILING",
         "JZFLOW_INSTANCE_CACHE_SIZE", "JZFLOW_INSTANCE_CACHE_MB", "JZFLOW_STATE_KEEP_LEVELS",
         "JZFLOW_ARCHIVE_AFTER_DAYS", "JZFLOW_ARCHIVE_BATCH", "JZFLOW_PUBLIC_URL", "JZFLOW_TOKEN_MAX_DAYS",
         "JZFLOW_MAX_RUN_STARTS", "JZFLOW_MAX_OPEN_DESCENDANTS", "JZFLOW_OUTBOX_LEASE_SECONDS",
         "JZFLOW_NOTICE_CAP_INSTANCE_HOUR", "JZFLOW_NOTICE_CAP_RECIPIENT_HOUR")
DEV_SECRET_KEY = "dev-only-secret-change-me"  # noqa: S105  # nosec B105 # refused outside the embedded default

_RAW_KEYS = tuple(os.fsencode(k) for k in _KEYS)  # the keys of os.environ._data on POSIX


def load() -> Settings:
    """Read settings from the environment (cached until a JZFLOW_* variable or, where a path is relative, the cwd
    changes)."""
    env = _environment()
    # os.getcwd() releases the GIL, and settings are read several times a request: only relative paths need it.
    return _load(env, os.getcwd() if _needs_cwd(env) else "")


_INSTANCE_AT, _ANCHOR_AT = _KEYS.index("JZFLOW_INSTANCE_DIR"), _KEYS.index("JZFLOW_AUDIT_ANCHOR")


@lru_cache(maxsize=8)
def _needs_cwd(env: tuple[str | bytes | None, ...]) -> bool:
    """Whether a setting is a path relative to the working directory: the instance folder (unset: ./instance) or
    the audit anchor."""
    instance, anchor = env[_INSTANCE_AT], env[_ANCHOR_AT]
    if not instance or not os.path.isabs(instance):
        return True
    return bool(anchor) and not os.path.isabs(anchor or "")


def _environment() -> tuple[str | bytes | None, ...]:
    """The JZFLOW_* variables as a cache key: read from os.environ's own dict (bytes on POSIX), five times faster.

    Settings are looked up several times per request; os.environ.get encodes and decodes every name.
    """
    raw = getattr(os.environ, "_data", None)
    if os.name != "posix" or not isinstance(raw, dict):
        return tuple(os.environ.get(k) for k in _KEYS)
    return tuple(map(raw.get, _RAW_KEYS))


@lru_cache(maxsize=8)
def _load(_env: tuple[str | bytes | None, ...], _cwd: str) -> Settings:
    instance = _instance_dir()
    url = os.environ.get("JZFLOW_DATABASE_URL") or f"sqlite:///{instance / 'jzflow.sqlite'}"
    return Settings(
        instance_dir=instance,
        database_url=url,
        redis_url=os.environ.get("JZFLOW_REDIS_URL") or None,
        secret_key=os.environ.get("JZFLOW_SECRET_KEY", ""),
        script_time_limit=number("JZFLOW_SCRIPT_TIME_LIMIT", 2.0, positive=True),
        script_fuel=whole("JZFLOW_SCRIPT_FUEL", 2_000_000, least=1),
        run_time_limit=number("JZFLOW_RUN_TIME_LIMIT", 10.0, positive=True),
        max_run_tasks=whole("JZFLOW_MAX_RUN_TASKS", 20_000, least=1),
        timer_sweep_seconds=number("JZFLOW_TIMER_SWEEP_SECONDS", 30.0, positive=True),
        outbox_seconds=number("JZFLOW_OUTBOX_SECONDS", 10.0, positive=True),
        outbox_lease_seconds=whole("JZFLOW_OUTBOX_LEASE_SECONDS", 300, least=1),
        sweep_batch=whole("JZFLOW_SWEEP_BATCH", 100, least=1),
        timer_max_days=whole("JZFLOW_TIMER_MAX_DAYS", 3660, least=1),
        timer_min_cycle_seconds=whole("JZFLOW_TIMER_MIN_CYCLE_SECONDS", 60, least=1),
        max_state_kb=whole("JZFLOW_MAX_STATE_KB", 2048, least=1),
        max_multi_instance=whole("JZFLOW_MAX_MULTI_INSTANCE", 500, least=1),
        max_run_starts=whole("JZFLOW_MAX_RUN_STARTS", 100, least=1),
        max_open_descendants=whole("JZFLOW_MAX_OPEN_DESCENDANTS", 1000, least=1),
        memory_limit_mb=whole("JZFLOW_MEMORY_LIMIT_MB", 2048),
        instance_cache_size=whole("JZFLOW_INSTANCE_CACHE_SIZE", 500),
        instance_cache_mb=whole("JZFLOW_INSTANCE_CACHE_MB", 256),
        state_keep_levels=whole("JZFLOW_STATE_KEEP_LEVELS", 8),
        audit_key=os.environ.get("JZFLOW_AUDIT_KEY", ""),
        audit_anchor=Path(anchor).resolve() if (anchor := os.environ.get("JZFLOW_AUDIT_ANCHOR")) else None,
        audit_seal_seconds=number("JZFLOW_AUDIT_SEAL_SECONDS", 60.0, positive=True),
        trusted_proxies=whole("JZFLOW_TRUSTED_PROXIES", 0),
        login_account_failures=whole("JZFLOW_LOGIN_ACCOUNT_FAILURES", 10, least=1),
        login_address_failures=whole("JZFLOW_LOGIN_ADDRESS_FAILURES", 100, least=1),
        login_window_seconds=whole("JZFLOW_LOGIN_WINDOW_SECONDS", 900, least=1),
        log_format="json" if os.environ.get("JZFLOW_LOG_FORMAT", "text").strip().lower() == "json" else "text",
        log_level=os.environ.get("JZFLOW_LOG_LEVEL", "INFO").strip().upper() or "INFO",
        metrics_token=os.environ.get("JZFLOW_METRICS_TOKEN", "").strip(),
        metrics_allow=tuple(p.strip() for p in os.environ.get("JZFLOW_METRICS_ALLOW", "").split(",") if p.strip()),
        number_rules=os.environ.get("JZFLOW_NUMBER_RULES", ""),
        pdf_font=os.environ.get("JZFLOW_PDF_FONT", ""),
        verify_address_failures=whole("JZFLOW_VERIFY_ADDRESS_FAILURES", 30, least=1),
        verify_user_failures=whole("JZFLOW_VERIFY_USER_FAILURES", 30, least=1),
        verify_address_ceiling=whole("JZFLOW_VERIFY_ADDRESS_CEILING", 300, least=1),
        archive_after_days=whole("JZFLOW_ARCHIVE_AFTER_DAYS", 365),
        archive_batch=whole("JZFLOW_ARCHIVE_BATCH", 100, least=1),
        public_url=_public_url(os.environ.get("JZFLOW_PUBLIC_URL", "")),
        token_max_days=whole("JZFLOW_TOKEN_MAX_DAYS", 365, least=1),
        notice_cap_instance_hour=whole("JZFLOW_NOTICE_CAP_INSTANCE_HOUR", 500, least=1),
        notice_cap_recipient_hour=whole("JZFLOW_NOTICE_CAP_RECIPIENT_HOUR", 200, least=1),
    )


T = TypeVar("T")


class SettingInvalid(ValueError):
    """A JZFLOW_* variable holds a value the setting cannot take (the message names the variable)."""


def whole(name: str, default: int, *, least: int = 0, env: Mapping[str, str] | None = None) -> int:
    """An integer JZFLOW_* setting read now; unset or empty: the default.

    Raises: SettingInvalid
    """
    value = _given(name, env, int, "须为整数 (must be a whole number)")
    if value is None:
        return default
    if value < least:
        raise SettingInvalid(f"{name}={value}: 不能小于 {least} (must be at least {least})")
    return value


def number(name: str, default: float, *, positive: bool = False, env: Mapping[str, str] | None = None) -> float:
    """A number JZFLOW_* setting (seconds) read now; unset or empty: the default.

    Raises: SettingInvalid
    """
    value = _given(name, env, float, "须为数字 (must be a number)")
    if value is None:
        return default
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise SettingInvalid(f"{name}={value!r}: 须为{'正' if positive else '非负'}数 (must be "
                             f"{'greater than 0' if positive else 'at least 0'})")
    return value


def _given(name: str, env: Mapping[str, str] | None, convert: Callable[[str], T], says: str) -> T | None:
    """The variable's value converted, None when unset or empty.

    Raises: SettingInvalid (`says` what it must be)
    """
    raw = (os.environ if env is None else env).get(name, "").strip()
    if not raw:
        return None
    try:
        return convert(raw)
    except ValueError:
        raise SettingInvalid(f"{name}={raw!r}: {says}") from None


def _public_url(raw: str) -> str:
    """JZFLOW_PUBLIC_URL (where users reach the site: a proxy may add a path) without the trailing slash ("" unset).

    Raises: SettingInvalid
    """
    raw = raw.strip()
    if not raw:
        return ""
    parts = urlsplit(raw)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or out of range
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password \
            or parts.query or parts.fragment or any(ch <= " " or ch in "\\\"'<>" for ch in raw) or not port_ok:
        raise SettingInvalid(f"JZFLOW_PUBLIC_URL={raw!r}: 须为站点地址，如 https://jzflow.jiaozhou.gov.cn "
                             f"(scheme and host, an optional port and path; no query or user)")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


MIN_KEPT_SECRET = 32  # characters: a key file holding less was cut short or made by mistake


def _kept_secret(path: Path) -> str:
    """Return the secret kept in `path`, creating it (owner-only) on first use.

    Processes starting together on a fresh instance folder (the web processes and the worker of `make run`) each
    write a whole key into a file of their own and link it into place: the first link wins, and the others read
    the winner's, whole. (A file made empty first and written afterwards gave a process that looked in between an
    empty key.)

    Raises: InsecureConfiguration (the file holds an empty or too short key: it is left for the administrator)
    """
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, made = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # owner-only (0600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(32) + "\n")
        files.place_new(Path(made), path)  # not placed: another process won the race, and its key is read below
    finally:
        Path(made).unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    value = path.read_text(encoding="ascii").strip()
    if len(value) < MIN_KEPT_SECRET:
        raise InsecureConfiguration(f"{path} holds an empty or too short key ({len(value)} characters, at least "
                                    f"{MIN_KEPT_SECRET}): restore it from the backup, or remove it to make a new one")
    return value


class InsecureConfiguration(RuntimeError):
    """A setting that must not be left at its development value outside the embedded default."""


def secret_key(settings: Settings, database_url: str | None = None) -> str:
    """Return the Flask secret: JZFLOW_SECRET_KEY, or the embedded default's own key file.

    Raises: InsecureConfiguration (a server database without a real secret key)
    """
    url = database_url or settings.database_url
    if settings.secret_key and settings.secret_key != DEV_SECRET_KEY:
        return settings.secret_key
    if url.startswith("sqlite"):
        return _kept_secret(settings.instance_dir / "secret.key")
    raise InsecureConfiguration("JZFLOW_SECRET_KEY must be set to a long random value (not the development key) "
                                "when the database is not the embedded SQLite default")


def audit_key(settings: Settings) -> bytes:
    """Return the key of the audit chain: JZFLOW_AUDIT_KEY, else a key file in the instance folder.

    The key never goes into the database: whoever can rewrite the tables cannot recompute the chain.
    """
    if settings.audit_key:
        return settings.audit_key.encode("utf-8")
    return _kept_secret(settings.instance_dir / "audit.key").encode("ascii")
