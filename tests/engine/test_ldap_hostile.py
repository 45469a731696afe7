"""目录同步 against hostile directory entries: what one entry holds must never stop the sync for everyone.

A sync is one transaction: an entry the database cannot store (a DN longer than the column that keeps it) failed
the whole sync on PostgreSQL, so nobody who had left was deactivated until someone found and fixed the entry.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.org import ldap_read, ldap_sync
from engine.org.models import OrgUnit, User
from tests.ldap_server import SUFFIX, Directory, dn_of, person, running, unit

SEED = (
    unit("fgj", "发改局")
    + person("sunmy", "孙明远", unit_path="ou=fgj")
    + person("linzy", "林志远", unit_path="ou=fgj")
    + person("chenx", "陈曦", unit_path="ou=fgj")
    + person("zhaol", "赵磊", unit_path="ou=fgj")
    + person("liuq", "刘琪", unit_path="ou=fgj")
)


@pytest.fixture
def directory() -> Iterator[Directory]:
    with running(SEED) as d:
        yield d


def _sync(factory: sessionmaker[Session], settings: ldap_read.Settings) -> ldap_sync.Report:
    snap = ldap_read.read(settings)
    with factory() as session:
        report = ldap_sync.sync(session, settings, snap)
        session.commit()
        return report


def test_an_entry_whose_dn_is_too_long_to_keep_is_skipped_and_the_sync_goes_on(
        factory: sessionmaker[Session], directory: Directory) -> None:
    _sync(factory, directory.settings())
    deep = ",".join(f"ou={letter * 120}" for letter in "dcba")  # four levels of 120 characters: a 500-character DN
    with directory.admin() as conn:
        conn.delete(dn_of("linzy", "ou=fgj"))  # left: the sync has to deactivate him
        for level in range(4, 0, -1):
            path = deep.split(",", level - 1)[-1]
            code = path.split(",")[0][3:]
            assert conn.add(f"{path},ou=fgj,{SUFFIX}", ["organizationalUnit"], {"ou": code}), conn.result
        assert conn.add(f"ou=deep,{deep},ou=fgj,{SUFFIX}", ["organizationalUnit"], {"ou": "deep", "description": "深单位"})
        assert conn.add(f"uid=longdn,{deep},ou=fgj,{SUFFIX}", ["inetOrgPerson"],
                        {"uid": "longdn", "cn": "长", "sn": "x"}), conn.result
    report = _sync(factory, directory.settings())
    skipped = "\n".join(report.skipped)
    assert "longdn" in skipped and "deep" in skipped and "DN" in skipped
    assert [line.split()[0] for line in report.users_deactivated] == ["linzy"]
    with factory() as s:
        assert s.scalar(select(User).where(User.username == "longdn")) is None
        assert s.scalar(select(OrgUnit).where(OrgUnit.code == "deep")) is None
        linzy = s.scalar(select(User).where(User.username == "linzy"))
        assert linzy is not None and not linzy.is_active


@pytest.mark.parametrize("hidden", ["\u202e", "\u200b", "\u2028", "\x85", "\ufeff"])
def test_names_with_hidden_characters_are_refused_as_control_characters_are(hidden: str) -> None:
    settings = ldap_read.Settings(url="ldap://x", base_dn=SUFFIX)
    base = f"ou=fgj,{SUFFIX}"
    snap = ldap_read.build(
        [(base, {"ou": ["fgj"], "description": ["发改局"]}),
         (f"ou=bad,{base}", {"ou": ["bad"], "description": [f"综合{hidden}科"]})],
        [(f"uid=zhangsan,{base}", {"uid": ["zhangsan"], "displayName": [f"张{hidden}三"],
                                   "mail": [f"zs{hidden}@example.cn"]})],
        settings)
    assert [u.code for u in snap.units.values()] == ["fgj"] and any("bad" in line for line in snap.skipped)
    person = next(iter(snap.people.values()))
    assert person.display_name == "zhangsan" and person.email is None
