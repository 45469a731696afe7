"""Two single sign-on logins of one person at the same moment (two tabs back from the provider, a phone and a PC).

Each login brings the person's units and roles to the provider's claims: it reads the memberships they have and
adds the missing ones. uq_membership (user, unit, role) holds no NULL, so a unit membership (role NULL) or a role
(unit NULL) added by both logins was stored twice, and the change audited twice. Both logins here read before
either writes (a barrier after the account is found); once the person's row is locked there, the second waits for
the first instead of reaching the barrier, whose short timeout lets the first go on. PostgreSQL only (row locks).
"""
from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import org
from engine.audit.models import AuditEvent
from engine.org import sso_users
from engine.org.models import Membership, OrgUnit, Role, User
from engine.org.oidc import Settings
from tests.web.flows import two_at_once

SSO = Settings(issuer="https://idp.example.cn", client_id="jzflow")
CLAIMS = {"sub": "sub-u0", "preferred_username": "u0", "unit": ["dept", "zrzy"], "roles": ["reviewer"]}
MEET = 2.0


def _person(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        org.add_unit(s, code="dept", name="审批部门")
        org.add_unit(s, code="zrzy", name="自然资源局")
        org.add_role(s, code="reviewer", name="审查员")
        org.add_user(s, username="u0", display_name="用户0", unit_codes=["dept"])
        user = s.scalar(select(User).where(User.username == "u0"))
        assert user is not None
        user.sso_subject, user.source = "sub-u0", "oidc"
        s.commit()


def _both_read_first(monkeypatch: pytest.MonkeyPatch) -> None:
    original, barrier, met = sso_users._account, threading.Barrier(2), set()

    def account(*a: Any, **k: Any) -> Any:
        found = original(*a, **k)
        if threading.get_ident() not in met:  # the first look of each login: both have read before either writes
            met.add(threading.get_ident())
            try:
                barrier.wait(timeout=MEET)
            except threading.BrokenBarrierError:
                pass
        return found
    monkeypatch.setattr(sso_users, "_account", account)


def test_two_logins_at_once_add_each_claimed_unit_and_role_once(pg_factory: sessionmaker[Session],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _person(pg_factory)
    _both_read_first(monkeypatch)

    def login() -> str:
        with pg_factory() as s:
            sso_users.provision(s, SSO, dict(CLAIMS))
            s.commit()
        return "ok"
    assert two_at_once(login, login) == ["ok", "ok"]
    with pg_factory() as s:
        user_id = s.scalar(select(User.id).where(User.username == "u0"))
        zrzy = s.scalar(select(OrgUnit.id).where(OrgUnit.code == "zrzy"))
        reviewer = s.scalar(select(Role.id).where(Role.code == "reviewer"))
        units = s.scalar(select(func.count()).select_from(Membership).where(
            Membership.user_id == user_id, Membership.org_unit_id == zrzy, Membership.role_id.is_(None)))
        roles = s.scalar(select(func.count()).select_from(Membership).where(
            Membership.user_id == user_id, Membership.role_id == reviewer, Membership.org_unit_id.is_(None)))
        audited = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.stream == f"user:{user_id}", AuditEvent.action == "org.user.sso_update"))
    assert (units, roles) == (1, 1), f"zrzy memberships {units}, reviewer memberships {roles}"
    assert audited == 1
