"""What back-channel logout keeps (engine/org/oidc_backchannel.py): a login's provider session, while a session may
last; logout tokens taken, while they could be accepted; both purged by beat afterwards. The protocol itself runs
against the real provider in tests/web/test_sso_backchannel.py."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import jobs
from engine.celery_app import celery
from engine.org import oidc_backchannel
from engine.org.actors import Actor
from engine.org.oidc import Settings
from engine.org.sso_models import SsoLogoutToken, SsoSession

SETTINGS = Settings(issuer="https://idp.example.cn", client_id="jzflow")


def _token(frozen: Any, jti: str = "j-1") -> oidc_backchannel.LogoutToken:
    return oidc_backchannel.LogoutToken(sub="s", sid=None, jti=jti,
                                        keep_until=frozen.now() + timedelta(seconds=oidc_backchannel.MAX_AGE))


def test_every_login_is_recorded_for_its_user_and_subject_until_it_expires(session: Session, frozen: Any,
                                                                            review_org: dict[str, Actor]) -> None:
    user_id, other = review_org["admin"].user_id, review_org["window"].user_id
    assert user_id is not None and other is not None
    for absent in (None, "", 7, "x" * 256):  # no usable sid: recorded all the same, a logout token names it by sub
        bare = oidc_backchannel.record_login(session, user_id=user_id, sub="s-1", sid=absent, now=frozen.now(),
                                             lifetime=timedelta(hours=8))
        assert session.get(SsoSession, bare).sid is None  # type: ignore[union-attr]
    record = oidc_backchannel.record_login(session, user_id=user_id, sub="s-1", sid="sid-1", now=frozen.now(),
                                           lifetime=timedelta(hours=8))
    login = session.get(SsoSession, record)
    assert login is not None and (login.sub, login.sid) == ("s-1", "sid-1")
    found = oidc_backchannel.user_with_login(session, user_id, record, now=frozen.now())
    assert found is not None and found[0].id == user_id and found[1].user_id == user_id and found[2]

    def open_for(user: int, named: object) -> bool | None:
        found = oidc_backchannel.user_with_login(session, user, named, now=frozen.now())
        return None if found is None else found[2]

    for wrong in (str(record), True, None, record + 1):
        assert open_for(user_id, wrong) is False
    assert open_for(other, record) is False  # another person's login
    assert open_for(10**9, record) is None  # no such user
    frozen.advance(timedelta(hours=8))
    assert open_for(user_id, record) is False


def test_records_past_their_time_are_purged_by_beat(session: Session, frozen: Any,
                                                   review_org: dict[str, Actor]) -> None:
    user_id = review_org["admin"].user_id
    assert user_id is not None
    oidc_backchannel.record_login(session, user_id=user_id, sub="s", sid="old", now=frozen.now(),
                                  lifetime=timedelta(hours=8))
    oidc_backchannel._take(session, SETTINGS, _token(frozen, "old"), now=frozen.now())
    frozen.advance(timedelta(hours=9))
    oidc_backchannel.record_login(session, user_id=user_id, sub="s", sid="new", now=frozen.now(),
                                  lifetime=timedelta(hours=8))
    oidc_backchannel._take(session, SETTINGS, _token(frozen, "new"), now=frozen.now())
    assert oidc_backchannel.purge(session, now=frozen.now()) == 2
    session.commit()
    assert session.scalars(select(SsoSession.sid)).all() == ["new"]
    assert session.scalar(select(func.count()).select_from(SsoLogoutToken)) == 1
    assert celery.conf.beat_schedule["purge-sso-records"]["task"] == "engine.jobs.purge_sso_records"
    assert callable(jobs.purge_sso_records)


def test_a_jti_is_taken_once_while_it_could_be_accepted(session: Session, frozen: Any) -> None:
    oidc_backchannel._take(session, SETTINGS, _token(frozen), now=frozen.now())
    with pytest.raises(oidc_backchannel.LogoutRefused, match="jti") as refused:
        oidc_backchannel._take(session, SETTINGS, _token(frozen), now=frozen.now())
    assert refused.value.claim == "jti"
    oidc_backchannel._take(session, Settings(issuer="https://other.example.cn", client_id="x"), _token(frozen),
                           now=frozen.now())  # another issuer's jti is another token
    frozen.advance(timedelta(seconds=oidc_backchannel.MAX_AGE + 1))  # a row the purge has not reached yet
    oidc_backchannel._take(session, SETTINGS, _token(frozen), now=frozen.now())
