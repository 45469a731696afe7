"""Reading the city's LDAP directory (ldap3): org units, people, unit heads and who each person's leader is.

Everything is read first, page by page (RFC 2696 paged results, so a directory larger than the server's size
limit is read whole), into a `Snapshot`; the database is touched only afterwards, in one transaction
(engine/org/ldap_sync.py). Entries are data, never code: no value read here is put into an LDAP filter or a
DN, and an entry whose username, unit code or name would not be valid in jzflow is left out and reported.

Settings (environment): JZFLOW_LDAP_URL (empty: no directory sync), JZFLOW_LDAP_BIND_DN,
JZFLOW_LDAP_BIND_PASSWORD, JZFLOW_LDAP_BASE_DN, JZFLOW_LDAP_UNIT_FILTER, JZFLOW_LDAP_PERSON_FILTER, the attribute
names JZFLOW_LDAP_UNIT_CODE_ATTR / _UNIT_NAME_ATTR / _HEAD_ATTR / _USERNAME_ATTR / _NAME_ATTR / _EMAIL_ATTR /
_MANAGER_ATTR, JZFLOW_LDAP_PAGE_SIZE, JZFLOW_LDAP_TIMEOUT, JZFLOW_LDAP_MAX_DEACTIVATE_FRACTION,
JZFLOW_LDAP_SYNC_SECONDS (how often beat runs it), JZFLOW_LDAP_CA_FILE and JZFLOW_LDAP_START_TLS. TLS always
verifies the server's certificate.
"""
from __future__ import annotations

import os
import ssl
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

with warnings.catch_warnings():  # ldap3 2.9.1 uses names pyasn1 0.6 deprecates
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3
    from ldap3.core.exceptions import LDAPException
    from ldap3.utils.dn import parse_dn

from engine.errors import EngineError
from engine.org.core import USERNAME, display_name_or_none, mailbox_or_none, plain

MAX_DN = 400  # characters of a normalised DN: what app_user.external_id and org_unit.external_id keep


class DirectoryError(EngineError):
    """The directory could not be read (unreachable, bind refused, bad settings); nothing was changed."""

    code = "directory_unavailable"
    http_status = 503


@dataclass(frozen=True)
class Settings:
    url: str = ""
    bind_dn: str = ""
    bind_password: str = ""
    base_dn: str = ""
    unit_filter: str = "(objectClass=organizationalUnit)"
    person_filter: str = "(objectClass=inetOrgPerson)"
    unit_code_attr: str = "ou"
    unit_name_attr: str = "description"
    head_attr: str = "manager"
    username_attr: str = "uid"
    name_attr: str = "displayName"
    email_attr: str = "mail"
    manager_attr: str = "manager"
    page_size: int = 500
    timeout: float = 30.0
    max_deactivate_fraction: float = 0.2
    sync_seconds: float = 3600.0
    ca_file: str = ""        # CA bundle for ldaps:// and StartTLS (empty: the system's)
    start_tls: bool = False  # upgrade an ldap:// connection with StartTLS before binding

    @property
    def enabled(self) -> bool:
        return bool(self.url)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the JZFLOW_LDAP_* settings.

    Raises: DirectoryError (a URL without a base DN, numbers out of range)
    """
    env = os.environ if env is None else env
    d = Settings()

    def text(name: str, default: str) -> str:
        return env.get(f"JZFLOW_LDAP_{name}", default).strip() or default

    try:
        settings = Settings(
            url=env.get("JZFLOW_LDAP_URL", "").strip(), bind_dn=env.get("JZFLOW_LDAP_BIND_DN", "").strip(),
            bind_password=env.get("JZFLOW_LDAP_BIND_PASSWORD", ""), base_dn=env.get("JZFLOW_LDAP_BASE_DN", "").strip(),
            unit_filter=text("UNIT_FILTER", d.unit_filter), person_filter=text("PERSON_FILTER", d.person_filter),
            unit_code_attr=text("UNIT_CODE_ATTR", d.unit_code_attr), unit_name_attr=text("UNIT_NAME_ATTR", d.unit_name_attr),
            head_attr=text("HEAD_ATTR", d.head_attr), username_attr=text("USERNAME_ATTR", d.username_attr),
            name_attr=text("NAME_ATTR", d.name_attr), email_attr=text("EMAIL_ATTR", d.email_attr),
            manager_attr=text("MANAGER_ATTR", d.manager_attr),
            page_size=int(text("PAGE_SIZE", str(d.page_size))), timeout=float(text("TIMEOUT", str(d.timeout))),
            max_deactivate_fraction=float(text("MAX_DEACTIVATE_FRACTION", str(d.max_deactivate_fraction))),
            sync_seconds=float(text("SYNC_SECONDS", str(d.sync_seconds))),
            ca_file=env.get("JZFLOW_LDAP_CA_FILE", "").strip(),
            start_tls=env.get("JZFLOW_LDAP_START_TLS", "").strip().lower() in ("1", "true", "yes"),
        )
    except ValueError as exc:
        raise DirectoryError(f"目录同步设置中的数字无效 (a JZFLOW_LDAP_* number is invalid): {exc}") from exc
    if settings.enabled and not settings.base_dn:
        raise DirectoryError("未设置 JZFLOW_LDAP_BASE_DN (the directory's base DN is missing)", field="JZFLOW_LDAP_BASE_DN")
    if not 1 <= settings.page_size <= 10_000:
        raise DirectoryError("JZFLOW_LDAP_PAGE_SIZE 须在 1–10000 之间", field="JZFLOW_LDAP_PAGE_SIZE")
    if not 0.0 <= settings.max_deactivate_fraction <= 1.0:
        raise DirectoryError("JZFLOW_LDAP_MAX_DEACTIVATE_FRACTION 须在 0–1 之间",
                             field="JZFLOW_LDAP_MAX_DEACTIVATE_FRACTION")
    return settings


def _rdns(dn: str) -> list[str] | None:
    try:
        parts = parse_dn(dn, escape=True, strip=True)
    except (LDAPException, ValueError, IndexError, TypeError):
        return None
    return [f"{attr.lower()}={value.lower()}" for attr, value, _sep in parts]


def norm(dn: str) -> str:
    """Return a DN in one spelling (names and values lower-cased, values escaped, no spaces around separators)."""
    rdns = _rdns(dn)
    return ",".join(rdns) if rdns is not None else dn.strip().lower()


def ancestors(dn: str) -> list[str]:
    """Return the normalised DNs above this one, nearest first."""
    rdns = _rdns(dn) or []
    return [",".join(rdns[i:]) for i in range(1, len(rdns))]


def _depth(dn: str) -> int:
    return len(_rdns(dn) or [])


@dataclass(frozen=True)
class UnitEntry:
    dn: str          # normalised
    code: str
    name: str
    parent_dn: str   # the nearest enclosing unit's DN, or ""
    head_dn: str     # normalised, or ""


@dataclass(frozen=True)
class PersonEntry:
    dn: str          # normalised
    username: str
    display_name: str
    email: str | None
    unit_dn: str     # the unit the entry sits in, or ""
    manager_dn: str  # normalised, or ""


@dataclass
class Snapshot:
    units: dict[str, UnitEntry] = field(default_factory=dict)
    people: dict[str, PersonEntry] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "DN: reason", for the report


def _first(attrs: Mapping[str, Any], name: str) -> str:
    value = attrs.get(name)
    if isinstance(value, list):
        value = value[0] if value else ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value or "").strip()


def _bad_text(value: str, limit: int) -> bool:
    # controls, and the invisible ones (bidi overrides, zero-width spaces, line separators) that `core.plain` refuses
    return not value or len(value) > limit or not plain(value)


def build(units: list[tuple[str, Mapping[str, Any]]], people: list[tuple[str, Mapping[str, Any]]],
          settings: Settings) -> Snapshot:
    """Turn raw entries (DN, attributes) into a checked snapshot; what is invalid is skipped and reported."""
    snap = Snapshot()
    names: set[str] = set()
    codes: set[str] = set()
    for raw_dn, attrs in sorted(units, key=lambda e: (_depth(e[0]), e[0])):
        dn = norm(raw_dn)
        code = _first(attrs, settings.unit_code_attr)
        name = _first(attrs, settings.unit_name_attr) or code
        if len(dn) > MAX_DN:  # kept as the unit's external_id: stored, it would fail the whole sync
            snap.skipped.append(f"{raw_dn[:200]}…: 单位 {code[:80]} 的 DN 超过 {MAX_DN} 字符 (unit DN too long)")
            continue
        if _bad_text(code, 80) or _bad_text(name, 120):
            snap.skipped.append(f"{raw_dn[:200]}: 单位代码或名称无效 (unit code/name invalid)")
            continue
        if code in codes or name in names:
            snap.skipped.append(f"{raw_dn[:200]}: 单位代码或名称重复 (duplicate unit code/name {code} / {name})")
            continue
        codes.add(code)
        names.add(name)
        up = next((a for a in ancestors(raw_dn) if a in snap.units), "")
        head = _first(attrs, settings.head_attr)
        snap.units[dn] = UnitEntry(dn=dn, code=code, name=name, parent_dn=up, head_dn=norm(head) if head else "")
    usernames: set[str] = set()
    for raw_dn, attrs in sorted(people, key=lambda e: e[0]):
        dn = norm(raw_dn)
        username = _first(attrs, settings.username_attr)
        if len(dn) > MAX_DN:  # kept as the account's external_id: stored, it would fail the whole sync
            snap.skipped.append(f"{raw_dn[:200]}…: 用户 {username[:80]!r} 的 DN 超过 {MAX_DN} 字符 (person DN too long)")
            continue
        if not username or len(username) > 80 or not USERNAME.match(username):
            snap.skipped.append(f"{raw_dn[:200]}: 用户名无效 (username {username[:80]!r} invalid)")
            continue
        if username.lower() in usernames:
            snap.skipped.append(f"{raw_dn[:200]}: 用户名重复 (duplicate username {username})")
            continue
        usernames.add(username.lower())
        display = _first(attrs, settings.name_attr) or _first(attrs, "cn") or username
        # A name jzflow would not accept (core.display_name_or_none: control, bidi override) shows the username instead
        display = (display_name_or_none(display[:120]) or username) if not _bad_text(display, 10_000) else username
        email = _first(attrs, settings.email_attr)
        up = next((a for a in ancestors(raw_dn) if a in snap.units), "")
        manager = _first(attrs, settings.manager_attr)
        snap.people[dn] = PersonEntry(
            dn=dn, username=username, display_name=display,
            email=mailbox_or_none(email) if email and not _bad_text(email, 200) else None,
            unit_dn=up, manager_dn=norm(manager) if manager else "")
    return snap


def _paged(conn: ldap3.Connection, settings: Settings, flt: str, attrs: list[str]) -> Iterator[tuple[str, Any]]:
    for entry in conn.extend.standard.paged_search(settings.base_dn, flt, search_scope=ldap3.SUBTREE,
                                                   attributes=attrs, paged_size=settings.page_size,
                                                   generator=True):
        if entry.get("type") == "searchResEntry":
            yield entry["dn"], entry.get("attributes", {})
    result = conn.result or {}
    if result.get("result", 0) != 0:  # e.g. sizeLimitExceeded: a partial directory must never look like a whole one
        raise DirectoryError(f"目录读取不完整，未作任何更改 (directory search incomplete: {result.get('description')}; "
                             "the server limits how many entries a paged search may return)")


def make_server(settings: Settings) -> ldap3.Server:
    """Return the directory server; TLS (ldaps:// or StartTLS) always verifies the server's certificate."""
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=settings.ca_file or None)
    return ldap3.Server(settings.url, connect_timeout=max(1, int(settings.timeout)), get_info=ldap3.NONE, tls=tls)


def _close(conn: ldap3.Connection) -> None:
    try:
        conn.unbind()
    except LDAPException:
        pass
    sock = getattr(conn, "socket", None)  # ldap3 leaves a socket that never connected open
    if sock is not None:
        sock.close()


def read(settings: Settings) -> Snapshot:
    """Read the whole directory (paged) into a snapshot.

    Raises: DirectoryError
    """
    if not settings.enabled:
        raise DirectoryError("未配置目录服务 (JZFLOW_LDAP_URL is empty)", field="JZFLOW_LDAP_URL")
    server = make_server(settings)
    unit_attrs = sorted({settings.unit_code_attr, settings.unit_name_attr, settings.head_attr})
    person_attrs = sorted({settings.username_attr, settings.name_attr, "cn", settings.email_attr,
                           settings.manager_attr})
    conn = ldap3.Connection(server, user=settings.bind_dn or None, password=settings.bind_password or None,
                            receive_timeout=max(1, int(settings.timeout)), raise_exceptions=True, read_only=True)
    try:
        try:
            conn.open()
            if settings.start_tls:
                conn.start_tls()
            conn.bind()
        except LDAPException as exc:
            raise DirectoryError(f"无法连接或登录目录服务 (cannot bind to the directory): {type(exc).__name__}") from exc
        try:
            units = list(_paged(conn, settings, settings.unit_filter, unit_attrs))
            people = list(_paged(conn, settings, settings.person_filter, person_attrs))
        except LDAPException as exc:
            raise DirectoryError(f"读取目录失败 (directory search failed): {type(exc).__name__}: {str(exc)[:200]}") from exc
    finally:
        _close(conn)
    return build(units, people, settings)
