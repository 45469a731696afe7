"""The Alembic migrations produce exactly the schema the models describe, on SQLite and PostgreSQL; a migration
that changes a key keeps and refuses what it should, both ways."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, bindparam, delete, insert, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, migrate
from engine.errors import TokenExpired
from engine.org import tokens
from engine.org.actors import Actor
from engine.org.token_models import ApiToken
from engine.orm import UTCDateTime
from engine.runtime.message_models import BpmnMessage
from plan.schema import Base


def test_migrations_match_models(db_engine: Engine) -> None:
    with db_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_0030_keeps_message_ids_per_sender_and_downgrades_only_when_the_old_key_holds(
        db_url: str, factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor]) -> None:
    session.close()
    admin, window = review_org["admin"].user_id, review_org["window"].user_id

    def add(by: int | None, message_id: str = "m-1") -> bool:
        with factory() as s:
            # the columns 0029 has (a later column, bpmn_message.reason of 0039, is not there after the downgrade)
            try:
                s.execute(insert(BpmnMessage).values(kind="message", name="withdraw", message_id=message_id,
                                                     payload="{}", status="buffered", created_by_id=by))
                s.commit()
            except IntegrityError:
                return False
            return True

    assert [add(admin), add(window), add(None)] == [True, True, True]  # three senders, one id each
    assert [add(admin), add(None)] == [False, False]  # a sender's second: the user's and the system's
    with pytest.raises(RuntimeError, match="downgrade refused, nothing changed: 1 message ids"):
        command.downgrade(migrate.alembic_config(db_url), "0029")
    assert _revision(factory) == _head(db_url) and add(window) is False  # nothing changed, the head's too
    with factory() as s:
        s.execute(delete(BpmnMessage).where(or_(BpmnMessage.created_by_id != admin,
                                                BpmnMessage.created_by_id.is_(None))))
        s.commit()
    command.downgrade(migrate.alembic_config(db_url), "0029")
    assert _revision(factory) == "0029"
    assert [add(window), add(None), add(admin, "m-2")] == [False, False, True]  # the old key: one id per name
    migrate.upgrade(db_url)
    assert [add(window), add(None), add(admin)] == [True, True, False]


def _head(db_url: str) -> str | None:
    from alembic.script import ScriptDirectory
    return ScriptDirectory.from_config(migrate.alembic_config(db_url)).get_current_head()


def _revision(factory: sessionmaker[Session]) -> str | None:
    with factory() as s:
        return s.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()


def test_0031_counts_existing_instances_as_started_from_outside(db_url: str, factory: sessionmaker[Session],
                                                                 session: Session) -> None:
    session.close()
    command.downgrade(migrate.alembic_config(db_url), "0030")
    migrate.upgrade(db_url)
    assert _revision(factory) == _head(db_url)
    with factory() as s:  # the column is back with its default for rows written without it
        assert s.execute(text("SELECT count(*) FROM process_instance WHERE start_hops <> 0")).scalar_one() == 0


def test_0032_gives_existing_tokens_the_default_lifetime_from_the_migration(
        db_url: str, factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor]) -> None:
    session.close()
    command.downgrade(migrate.alembic_config(db_url), "0031")
    plaintext = tokens.PREFIX + "old-token-from-before-expiry"
    with factory() as s:  # a token as 0031 knew it: no expiry
        s.execute(text("INSERT INTO api_token (user_id, name, token_hash, prefix, created_at) "
                       "VALUES (:user, 'old', :hash, 'jzf_old', :at)").bindparams(bindparam("at", type_=UTCDateTime())),
                  {"user": review_org["fg"].user_id, "hash": tokens.digest(plaintext),
                   "at": datetime(2025, 1, 1, 8, 0, tzinfo=UTC)})
        s.commit()
    migrated_at = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
    clock.freeze(migrated_at)
    migrate.upgrade(db_url)
    assert _revision(factory) == _head(db_url)
    with factory() as s:
        token = s.scalar(select(ApiToken).where(ApiToken.token_hash == tokens.digest(plaintext)))
        assert token is not None and clock.as_utc(token.expires_at) == migrated_at + timedelta(days=90)
        assert tokens.authenticate(s, plaintext) == review_org["fg"]  # nothing breaks on the day of the upgrade
        clock.advance(timedelta(days=90))
        with pytest.raises(TokenExpired):
            tokens.authenticate(s, plaintext)


def test_0034_keeps_the_subject_of_accounts_sso_made_and_binds_no_other(
        db_url: str, factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor]) -> None:
    session.close()
    command.downgrade(migrate.alembic_config(db_url), "0033")
    with factory() as s:  # as 0033 left them: an SSO-made account, its renamed twin, a directory one, a local one
        for username, source, external_id in (("sso1", "oidc", "sub-1"), ("sso1b", "oidc", "sub-1"),
                                              ("dir1", "ldap", "uid=dir1,dc=jz"), ("sso2", "oidc", "sub-2")):
            s.execute(text("INSERT INTO app_user (username, display_name, is_active, is_admin, session_epoch, "
                           "created_at, source, external_id) VALUES (:u, :u, true, false, 0, :at, :s, :e)")
                      .bindparams(bindparam("at", type_=UTCDateTime())),
                      {"u": username, "s": source, "e": external_id, "at": datetime(2025, 1, 1, tzinfo=UTC)})
        s.commit()
    migrate.upgrade(db_url)
    assert _revision(factory) == _head(db_url)
    with factory() as s:
        bound = dict(s.execute(text("SELECT username, sso_subject FROM app_user WHERE sso_subject IS NOT NULL")).all())
        assert bound == {"sso1": "sub-1", "sso2": "sub-2"}  # the first of the twins; no directory or local account


def test_0035_gives_existing_tokens_the_power_they_had_read_write(
        db_url: str, factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor]) -> None:
    session.close()
    command.downgrade(migrate.alembic_config(db_url), "0034")
    plaintext = tokens.PREFIX + "old-token-from-before-scopes"
    insert = text("INSERT INTO api_token (user_id, name, token_hash, prefix, created_at, expires_at) "
                  "VALUES (:user, :name, :hash, 'jzf_old', :at, :until)").bindparams(
        bindparam("at", type_=UTCDateTime()), bindparam("until", type_=UTCDateTime()))
    now = clock.now()
    with factory() as s:  # a token as 0034 knew it: no scope
        s.execute(insert, {"user": review_org["fg"].user_id, "name": "old", "hash": tokens.digest(plaintext),
                           "at": now, "until": now + timedelta(days=30)})
        s.commit()
    migrate.upgrade(db_url)
    assert _revision(factory) == _head(db_url)
    with factory() as s:
        assert tokens.authenticate_scoped(s, plaintext) == (review_org["fg"], tokens.READ_WRITE)
        # the old code, still running during the upgrade, issues a token without naming a scope: it can do what it did
        s.execute(insert, {"user": review_org["fg"].user_id, "name": "during", "hash": tokens.digest(plaintext + "2"),
                           "at": now, "until": now + timedelta(days=30)})
        assert s.scalar(select(ApiToken.scope).where(ApiToken.name == "during")) == tokens.READ_WRITE


def test_0043_gives_existing_accounts_no_forced_change_and_downgrades(
        db_url: str, factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor]) -> None:
    session.close()
    command.downgrade(migrate.alembic_config(db_url), "0042")
    migrate.upgrade(db_url)
    assert _revision(factory) == _head(db_url)
    with factory() as s:
        assert s.scalar(text("SELECT count(*) FROM app_user WHERE must_change_password")) == 0
        assert s.scalar(text("SELECT count(*) FROM app_user")) >= 7
    command.downgrade(migrate.alembic_config(db_url), "0042")
    migrate.upgrade(db_url)


def test_0044_leaves_existing_notifications_without_params_and_downgrades(
        db_url: str, factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor]) -> None:
    session.close()
    command.downgrade(migrate.alembic_config(db_url), "0043")
    with factory() as s:  # a notice delivered before 0044: its words only as rendered in Chinese
        s.execute(text("INSERT INTO notification (user_id, kind, title, body, created_at) "
                       "VALUES (:user, 'cc', '张三抄送给您', '知悉', :at)"),
                  {"user": review_org["fg"].user_id, "at": clock.now()})
        s.commit()
    migrate.upgrade(db_url)
    assert _revision(factory) == _head(db_url)
    with factory() as s:
        assert s.execute(text("SELECT title, params FROM notification")).all() == [("张三抄送给您", None)]
    command.downgrade(migrate.alembic_config(db_url), "0043")
    migrate.upgrade(db_url)
    assert _revision(factory) == _head(db_url)


def test_0045_gives_existing_accounts_no_language_and_downgrades_with_one_chosen(
        db_url: str, factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor]) -> None:
    session.close()
    command.downgrade(migrate.alembic_config(db_url), "0044")
    with factory() as s:
        assert "language" not in list(s.execute(text("SELECT * FROM app_user")).keys())
    migrate.upgrade(db_url)
    assert _revision(factory) == _head(db_url)
    with factory() as s:  # nobody has chosen: pages follow the browser's cookie, mail is Chinese
        assert s.scalar(text("SELECT count(*) FROM app_user WHERE language IS NOT NULL")) == 0
        s.execute(text("UPDATE app_user SET language = 'en' WHERE id = :id"), {"id": review_org["fg"].user_id})
        s.commit()
    command.downgrade(migrate.alembic_config(db_url), "0044")  # a chosen language is dropped with its column
    migrate.upgrade(db_url)
    assert _revision(factory) == _head(db_url)
    with factory() as s:
        assert s.scalar(text("SELECT count(*) FROM app_user WHERE language IS NOT NULL")) == 0


def test_0046_folds_a_membership_stored_twice_into_one_and_refuses_another_copy(
        db_url: str, factory: sessionmaker[Session], session: Session, review_org: dict[str, Actor]) -> None:
    session.close()
    command.downgrade(migrate.alembic_config(db_url), "0045")
    fg = review_org["fg"].user_id
    with factory() as s:  # two logins at once stored 发改 and 审批部门 twice (uq_membership holds no NULL)
        unit = s.scalar(text("SELECT org_unit_id FROM membership WHERE user_id = :u AND role_id IS NULL"), {"u": fg})
        role = s.scalar(text("SELECT role_id FROM membership WHERE user_id = :u AND org_unit_id IS NULL"), {"u": fg})
        s.execute(text("INSERT INTO membership (user_id, org_unit_id, role_id, is_head) VALUES (:u, :o, NULL, :t)"),
                  {"u": fg, "o": unit, "t": True})
        s.execute(text("INSERT INTO membership (user_id, org_unit_id, role_id, is_head) VALUES (:u, NULL, :r, :f)"),
                  {"u": fg, "r": role, "f": False})
        s.commit()
    migrate.upgrade(db_url)
    assert _revision(factory) == _head(db_url)
    with factory() as s:
        rows = s.execute(text("SELECT org_unit_id, role_id, is_head FROM membership WHERE user_id = :u "
                              "ORDER BY id"), {"u": fg}).all()
        assert [(o, r) for o, r, _h in rows] == [(unit, None), (None, role)]
        assert bool(rows[0][2])  # a head in one copy: the kept row is the head's
        with pytest.raises(IntegrityError):
            s.execute(text("INSERT INTO membership (user_id, org_unit_id, role_id, is_head) "
                           "VALUES (:u, :o, NULL, :f)"), {"u": fg, "o": unit, "f": False})
        s.rollback()
    command.downgrade(migrate.alembic_config(db_url), "0045")
    migrate.upgrade(db_url)
    assert _revision(factory) == _head(db_url)
