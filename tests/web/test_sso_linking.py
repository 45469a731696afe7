"""Which account a first 统一身份认证 login may take: an existing account is linked to a provider's subject only in a
way the deployment chose (JZFLOW_OIDC_LINK), never because a token says its username.

Hostile: a provider user whose preferred_username equals an existing local or directory (LDAP) account's took that
account over at its first login (a directory account at every login: it was never bound). Now, by default, an
existing account is linked only by an administrator (`jzflow sso-link`); `username` trusts the provider's username
claim, `email` its verified e-mail; and in every mode an account bound to one subject is refused to every other.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import cli
from engine.audit.models import AuditEvent
from engine.org import oidc
from engine.org.models import User
from tests.engine.conftest import at_once
from tests.oidc_provider import Provider, configure
from tests.web.conftest import app_on
from tests.web.test_sso_login import _callback_path, _logged_in, _sign_in, _start, _user

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:authlib.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:oidc_provider_mock.*")]
DN = "uid=zr,ou=people,dc=jiaozhou,dc=gov,dc=cn"


def _app(db_url: str, session: Session, provider: Provider, monkeypatch: pytest.MonkeyPatch,
         **settings: str) -> Iterator[Flask]:
    configure(monkeypatch, provider.issuer, **settings)
    with_directory_account(session)
    yield from app_on(db_url, session)
    oidc.METADATA.clear()


def with_directory_account(session: Session) -> None:
    """zr as the directory sync leaves a person: source "ldap", its DN as external_id, no SSO login yet."""
    zr = session.scalar(select(User).where(User.username == "zr"))
    assert zr is not None
    zr.source, zr.external_id, zr.email = "ldap", DN, "zr@jiaozhou.gov.cn"
    session.commit()


@pytest.fixture
def sso_app(db_url: str, session: Session, review_org: dict[str, Any], provider: Provider,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    yield from _app(db_url, session, provider, monkeypatch)


def _state(app: Flask, username: str) -> tuple[Any, ...]:
    user = _user(app, username)
    assert user is not None
    return user.source, user.external_id, user.sso_subject, user.display_name, user.email


def _events(app: Flask) -> int:
    with app.extensions["jzflow.sessionmaker"]() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEvent)) or 0)


@pytest.mark.parametrize("username", ["fg", "zr"])  # an account made here, one the directory sync made
def test_a_provider_user_naming_an_existing_account_does_not_take_it_over(sso_app: Flask, provider: Provider,
                                                                          username: str) -> None:
    before, events = _state(sso_app, username), _events(sso_app)
    provider.set_user("sub-intruder", {"preferred_username": username.upper(), "name": "冒名者", "unit": "fgj",
                                       "email": "evil@example.cn"})
    intruder = sso_app.test_client()
    for _ in range(2):  # the second login is no different: nothing was bound by the first
        response = _sign_in(intruder, provider, "sub-intruder")
        page = response.get_data(as_text=True)
        assert response.status_code == 403 and not _logged_in(intruder)
        assert "尚未与统一身份认证关联" in page and "sub-intruder" in page  # what to tell the administrator
    assert _state(sso_app, username) == before and _events(sso_app) == events


def test_an_administrator_links_an_existing_account_and_then_only_that_subject_gets_in(
        sso_app: Flask, provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_DATABASE_URL", sso_app.config["DATABASE_URL"])
    result = CliRunner().invoke(cli.main, ["sso-link", "ZR", "sub-zr"])
    assert result.exit_code == 0, result.output
    assert _state(sso_app, "zr")[:3] == ("ldap", DN, "sub-zr")  # still the directory's, now bound to its subject
    with sso_app.extensions["jzflow.sessionmaker"]() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "org.user.sso_link")).one()
        assert event.after == {"sso_subject": "sub-zr"} and event.before == {"sso_subject": None}
    provider.set_user("sub-zr", {"preferred_username": "zr", "name": "自然资源赵六", "unit": "zrzy"})
    owner = sso_app.test_client()
    assert _sign_in(owner, provider, "sub-zr").status_code == 302 and _logged_in(owner)
    provider.set_user("sub-other", {"preferred_username": "zr", "unit": "zrzy"})
    intruder = sso_app.test_client()
    response = _sign_in(intruder, provider, "sub-other")
    assert response.status_code == 403 and "另一身份" in response.get_data(as_text=True) and not _logged_in(intruder)
    # a subject is one account: linking it to a second is refused, as is re-linking a bound account
    assert CliRunner().invoke(cli.main, ["sso-link", "fg", "sub-zr"]).exit_code != 0
    again = CliRunner().invoke(cli.main, ["sso-link", "zr", "sub-new"])
    assert again.exit_code != 0 and "--unlink" in again.output
    assert CliRunner().invoke(cli.main, ["sso-link", "admin", "sub-admin"]).exit_code != 0  # the emergency account
    assert CliRunner().invoke(cli.main, ["sso-link", "zr", "--unlink"]).exit_code == 0
    assert _state(sso_app, "zr")[2] is None


def test_a_bound_subject_keeps_its_account_when_the_provider_renames_it(sso_app: Flask, provider: Provider) -> None:
    provider.set_user("sub-new", {"preferred_username": "newcomer", "name": "新人", "unit": "fgj"})
    assert _sign_in(sso_app.test_client(), provider, "sub-new").status_code == 302
    provider.set_user("sub-new", {"preferred_username": "renamed", "name": "新人", "unit": "fgj"})
    client = sso_app.test_client()
    assert _sign_in(client, provider, "sub-new").status_code == 302 and _logged_in(client)
    assert _user(sso_app, "renamed") is None  # no second account for the same person


@pytest.fixture
def by_username(db_url: str, session: Session, review_org: dict[str, Any], provider: Provider,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    yield from _app(db_url, session, provider, monkeypatch, JZFLOW_OIDC_LINK="username")


def test_trusting_the_username_claim_links_the_first_subject_and_refuses_every_later_one(by_username: Flask,
                                                                                         provider: Provider) -> None:
    provider.set_user("sub-zr", {"preferred_username": "zr", "unit": "zrzy"})
    assert _sign_in(by_username.test_client(), provider, "sub-zr").status_code == 302
    assert _state(by_username, "zr")[:3] == ("ldap", DN, "sub-zr")  # bound, and still the directory's
    provider.set_user("sub-later", {"preferred_username": "zr", "unit": "zrzy"})
    intruder = by_username.test_client()
    assert _sign_in(intruder, provider, "sub-later").status_code == 403 and not _logged_in(intruder)


def test_two_first_logins_at_once_bind_the_account_once(by_username: Flask, provider: Provider) -> None:
    provider.set_user("sub-zr", {"preferred_username": "zr", "unit": "zrzy"})
    provider.set_user("sub-rival", {"preferred_username": "zr", "unit": "zrzy"})
    clients = [by_username.test_client() for _ in range(4)]
    subs = ["sub-zr", "sub-zr", "sub-rival", "sub-rival"]
    paths = [_callback_path(provider.authorize(_start(c), sub)) for c, sub in zip(clients, subs, strict=True)]
    answers = [0] * 4

    def finish(i: int) -> None:
        answers[i] = clients[i].get(paths[i]).status_code

    assert at_once(4, finish) == [None] * 4
    winner = _state(by_username, "zr")[2]
    assert winner in subs
    assert sorted(answers) == [302, 302, 403, 403]  # both tabs of the subject that bound it; neither of the other's
    assert all(_logged_in(c) == (sub == winner) for c, sub in zip(clients, subs, strict=True))
    with by_username.extensions["jzflow.sessionmaker"]() as s:
        bound = s.scalars(select(AuditEvent).where(AuditEvent.action == "org.user.sso_update")).all()
        assert [(e.before["sso_subject"], e.after["sso_subject"]) for e in bound] == [(None, winner)]


@pytest.fixture
def by_email(db_url: str, session: Session, review_org: dict[str, Any], provider: Provider,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    yield from _app(db_url, session, provider, monkeypatch, JZFLOW_OIDC_LINK="email")


@pytest.mark.parametrize("claims", [{"email": "zr@jiaozhou.gov.cn"},  # not said to be verified
                                    {"email": "zr@jiaozhou.gov.cn", "email_verified": "true"},  # a string, not true
                                    {"email": "other@jiaozhou.gov.cn", "email_verified": True},
                                    {"email_verified": True}])
def test_linking_by_e_mail_needs_the_accounts_own_address_verified_by_the_provider(
        by_email: Flask, provider: Provider, claims: dict[str, Any]) -> None:
    before = _state(by_email, "zr")
    provider.set_user("sub-zr", {"preferred_username": "zr", "unit": "zrzy", **claims})
    client = by_email.test_client()
    response = _sign_in(client, provider, "sub-zr")
    assert response.status_code == 403 and "尚未与统一身份认证关联" in response.get_data(as_text=True)
    assert _state(by_email, "zr") == before


def test_linking_by_e_mail_takes_the_verified_address_in_any_case(by_email: Flask, provider: Provider) -> None:
    provider.set_user("sub-zr", {"preferred_username": "zr", "unit": "zrzy", "email": "ZR@Jiaozhou.gov.cn",
                                 "email_verified": True})
    client = by_email.test_client()
    assert _sign_in(client, provider, "sub-zr").status_code == 302 and _logged_in(client)
    assert _state(by_email, "zr")[2] == "sub-zr"


def test_an_unknown_link_mode_stops_the_app_at_start() -> None:
    with pytest.raises(oidc.SsoError, match="JZFLOW_OIDC_LINK"):
        oidc.load_settings({"JZFLOW_OIDC_ISSUER": "https://sso.example.cn", "JZFLOW_OIDC_CLIENT_ID": "jzflow",
                            "JZFLOW_OIDC_LINK": "anyone"})
    assert oidc.load_settings({}).link == "admin"
