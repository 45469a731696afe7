"""编辑人员 (engine.org.staffing): an administrator moves a person (调岗), changes their roles and admin mark, makes
them a unit's head or responsible leader, resets their password, reactivates them. On SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash

from engine import org, tasks
from engine.audit.models import AuditEvent
from engine.errors import Conflict, EngineError, InvalidInput, NotFound
from engine.notify.models import OutboxMessage
from engine.org import leaving, staffing, tokens
from engine.org.actors import actor_for
from engine.org.models import Membership, OrgUnit, User
from engine.org.token_models import ApiToken
from engine.tasks import handover
from engine.tasks.models import HumanTask
from tests.engine.conftest import at_once
from tests.engine.test_moves import _claimed_and_named
from tests.engine.test_task_lost_updates import Meanwhile, meanwhile  # noqa: F401 (its fixture)


def _user(s: Session, username: str) -> User:
    found = s.scalar(select(User).where(User.username == username))
    assert found is not None, username
    return found


def _seen(s: Session, username: str) -> str:
    return staffing.person(s, _user(s, username)).seen


def _events(s: Session, action: str) -> list[AuditEvent]:
    return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


@pytest.mark.usefixtures("review_org")
def test_a_move_changes_units_and_roles_and_is_audited_with_before_and_after(session: Session) -> None:
    admin = actor_for(session, "admin")
    fg = _user(session, "fg")
    done = staffing.set_memberships(session, user_id=fg.id, unit_codes=["zrzy"], role_codes=["leader"],
                                    is_admin=False, seen=_seen(session, "fg"), actor=admin)
    session.commit()
    assert done.units == ["zrzy"] and done.roles == ["leader"]
    [event] = _events(session, "org.user.edit")
    assert event.before == {"units": ["fgj"], "roles": ["reviewer"], "admin": False}
    assert event.after == {"units": ["zrzy"], "roles": ["leader"], "admin": False}


@pytest.mark.usefixtures("review_org")
@pytest.mark.parametrize("units,roles,field", [(["nowhere"], [], "units"), (["fgj"], ["no-role"], "roles"),
                                               (["x\x00y"], [], "units"), (["长" * 100], [], "units")])
def test_an_unknown_unit_or_role_is_named_and_changes_nothing(session: Session, units: list[str], roles: list[str],
                                                              field: str) -> None:
    fg = _user(session, "fg")
    seen = _seen(session, "fg")
    with pytest.raises(NotFound) as refused:
        staffing.set_memberships(session, user_id=fg.id, unit_codes=units, role_codes=roles, is_admin=False,
                                 seen=seen, actor=actor_for(session, "admin"))
    assert refused.value.details.get("field") == field
    session.rollback()
    assert _seen(session, "fg") == seen and not _events(session, "org.user.edit")


@pytest.mark.usefixtures("review_org")
def test_a_stale_form_is_refused_instead_of_overwriting_the_newer_change(session: Session) -> None:
    admin = actor_for(session, "admin")
    fg = _user(session, "fg")
    old = _seen(session, "fg")
    staffing.set_memberships(session, user_id=fg.id, unit_codes=["zrzy"], role_codes=["reviewer"], is_admin=False,
                             seen=old, actor=admin)
    session.commit()
    with pytest.raises(Conflict) as refused:
        staffing.set_memberships(session, user_id=fg.id, unit_codes=["sthj"], role_codes=["reviewer"],
                                 is_admin=False, seen=old, actor=admin)
    assert refused.value.details.get("field") == "seen"
    session.rollback()
    assert staffing.person(session, _user(session, "fg")).units == ["zrzy"]


@pytest.mark.usefixtures("review_org")
@pytest.mark.parametrize("source", ["ldap", "oidc"])
def test_a_directory_managed_person_keeps_units_and_roles_with_a_clear_message(session: Session, source: str) -> None:
    fg = _user(session, "fg")
    fg.source = source
    session.commit()
    with pytest.raises(InvalidInput) as refused:
        staffing.set_memberships(session, user_id=fg.id, unit_codes=["zrzy"], role_codes=["reviewer"],
                                 is_admin=False, seen=_seen(session, "fg"), actor=actor_for(session, "admin"))
    assert refused.value.details.get("field") == "units" and "同步" in refused.value.message
    session.rollback()
    assert staffing.person(session, _user(session, "fg")).units == ["fgj"]


@pytest.mark.usefixtures("review_org")
def test_a_role_held_within_a_unit_is_taken_away_too(session: Session) -> None:
    fg = _user(session, "fg")
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "fgj"))
    leader = session.scalar(select(Membership.role_id).join(User).where(User.username == "boss"))
    assert unit is not None and leader is not None
    session.add(Membership(user_id=fg.id, org_unit_id=unit.id, role_id=leader))  # 领导 within 发改
    session.commit()
    assert "leader" in staffing.person(session, fg).roles
    done = staffing.set_memberships(session, user_id=fg.id, unit_codes=["fgj"], role_codes=["reviewer"],
                                    is_admin=False, seen=_seen(session, "fg"), actor=actor_for(session, "admin"))
    session.commit()
    assert done.roles == ["reviewer"]


@pytest.mark.usefixtures("review_org")
def test_the_last_active_administrator_keeps_the_mark(session: Session) -> None:
    admin = _user(session, "admin")
    with pytest.raises(InvalidInput) as refused:
        staffing.set_memberships(session, user_id=admin.id, unit_codes=[], role_codes=[], is_admin=False,
                                 seen=_seen(session, "admin"), actor=actor_for(session, "admin"))
    assert refused.value.details.get("field") == "is_admin"
    session.rollback()
    assert _user(session, "admin").is_admin


def test_two_administrators_moving_the_same_person_at_once_take_turns(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        for code in ("a", "b", "c"):
            org.add_unit(s, code=code, name=f"单位{code}")
        org.add_user(s, username="root1", display_name="管理员一", is_admin=True)
        org.add_user(s, username="root2", display_name="管理员二", is_admin=True)
        org.add_user(s, username="p", display_name="调岗人", unit_codes=["a"])
        s.commit()
        pid, seen = _user(s, "p").id, _seen(s, "p")

    def work(i: int) -> None:
        with factory() as s:
            staffing.set_memberships(s, user_id=pid, unit_codes=[("b", "c")[i]], role_codes=[], is_admin=False,
                                     seen=seen, actor=actor_for(s, f"root{i + 1}"))
            s.commit()

    outcomes = at_once(2, work)
    assert outcomes.count(None) == 1 and any(isinstance(o, Conflict) for o in outcomes), outcomes
    with factory() as s:
        assert len(staffing.person(s, _user(s, "p")).units) == 1
        assert len(_events(s, "org.user.edit")) == 1


def test_a_move_gives_back_the_old_units_claimed_task(factory: sessionmaker[Session]) -> None:
    claimed, named = _claimed_and_named(factory)
    with factory() as s:
        org.add_user(s, username="root", display_name="管理员", is_admin=True)
        s.commit()
        staffing.set_memberships(s, user_id=_user(s, "u0").id, unit_codes=["zrzy"], role_codes=[], is_admin=False,
                                 seen=_seen(s, "u0"), actor=actor_for(s, "root"))
        s.commit()
        task = s.get(HumanTask, claimed)
        assert task is not None and task.assignee_id is None and task.state == "ready"
        mine = s.get(HumanTask, named)
        assert mine is not None and mine.assignee_id is not None


def test_a_completion_while_the_admin_moves_the_person_is_refused(
        factory: sessionmaker[Session], meanwhile: Meanwhile) -> None:  # noqa: F811
    claimed, _named = _claimed_and_named(factory)
    with factory() as s:
        org.add_user(s, username="root", display_name="管理员", is_admin=True)
        s.commit()
        u0 = actor_for(s, "u0")
    meanwhile.at(handover, "_theirs", lambda s: tasks.complete(s, task_id=claimed, actor=u0, data={}).task,
                 after=True)
    with factory() as s:
        staffing.set_memberships(s, user_id=_user(s, "u0").id, unit_codes=["zrzy"], role_codes=[], is_admin=False,
                                 seen=_seen(s, "u0"), actor=actor_for(s, "root"))
        s.commit()
    outcome = meanwhile.join()
    assert len(outcome) == 1 and isinstance(outcome[0], EngineError), outcome
    with factory() as s:
        task = s.get(HumanTask, claimed)
        assert task is not None and task.assignee_id is None and task.state != "completed"


@pytest.mark.usefixtures("review_org")
def test_head_and_responsible_leader_marks(session: Session) -> None:
    admin = actor_for(session, "admin")
    fg, zr = _user(session, "fg"), _user(session, "zr")
    staffing.set_unit_mark(session, user_id=fg.id, unit_code="fgj", mark="head", on=True,
                           seen=_seen(session, "fg"), actor=admin)
    session.commit()
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "fgj"))
    assert unit is not None and unit.leader_id == fg.id
    assert session.scalar(select(Membership.is_head).where(Membership.user_id == fg.id,
                                                           Membership.org_unit_id == unit.id))
    with pytest.raises(InvalidInput) as not_member:  # the head is a member of the unit
        staffing.set_unit_mark(session, user_id=zr.id, unit_code="fgj", mark="head", on=True,
                               seen=_seen(session, "zr"), actor=admin)
    assert not_member.value.details.get("field") == "unit"
    session.rollback()
    for bad in ("nowhere", "x\x00y", "孤\ud800", "长" * 100):
        with pytest.raises(NotFound) as unknown:
            staffing.set_unit_mark(session, user_id=zr.id, unit_code=bad, mark="leader", on=True,
                                   seen=_seen(session, "zr"), actor=admin)
        assert unknown.value.details.get("field") == "unit"
        session.rollback()
    staffing.set_unit_mark(session, user_id=zr.id, unit_code="fgj", mark="leader", on=True,
                           seen=_seen(session, "zr"), actor=admin)
    staffing.set_unit_mark(session, user_id=fg.id, unit_code="fgj", mark="head", on=False,
                           seen=_seen(session, "fg"), actor=admin)
    session.commit()
    session.refresh(unit)
    assert unit.leader_id is None and unit.responsible_leader_id == zr.id
    assert len(_events(session, "org.unit.head")) == 3


@pytest.mark.usefixtures("review_org")
def test_one_head_per_unit_and_a_move_out_of_the_unit_takes_the_mark(session: Session) -> None:
    admin = actor_for(session, "admin")
    org.add_user(session, username="fg2", display_name="发改二", unit_codes=["fgj"])
    session.commit()
    fg, fg2 = _user(session, "fg"), _user(session, "fg2")
    staffing.set_unit_mark(session, user_id=fg.id, unit_code="fgj", mark="head", on=True,
                           seen=_seen(session, "fg"), actor=admin)
    session.commit()
    with pytest.raises(Conflict):
        staffing.set_unit_mark(session, user_id=fg2.id, unit_code="fgj", mark="head", on=True,
                               seen=_seen(session, "fg2"), actor=admin)
    session.rollback()
    staffing.set_memberships(session, user_id=fg.id, unit_codes=["zrzy"], role_codes=["reviewer"], is_admin=False,
                             seen=_seen(session, "fg"), actor=admin)
    session.commit()
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "fgj"))
    assert unit is not None and unit.leader_id is None


@pytest.mark.usefixtures("review_org")
def test_a_password_reset_ends_sessions_forces_a_change_and_keeps_no_secret(session: Session) -> None:
    fg = _user(session, "fg")
    epoch = fg.session_epoch
    _person, shown, _revoked = staffing.reset_password(session, user_id=fg.id, password=None,
                                                       seen=_seen(session, "fg"), actor=actor_for(session, "admin"))
    session.commit()
    fg = _user(session, "fg")
    assert shown and fg.password_hash and check_password_hash(fg.password_hash, shown)
    assert fg.session_epoch == epoch + 1 and fg.must_change_password
    [event] = _events(session, "org.user.password_reset")
    assert shown not in str(event.before) + str(event.after) and "hash" not in str(event.after)
    org.change_password(session, user_id=fg.id, current=shown, new="my-own-pass-1", actor=actor_for(session, "fg"))
    session.commit()
    assert not _user(session, "fg").must_change_password


@pytest.mark.usefixtures("review_org")
def test_a_password_reset_revokes_the_persons_api_tokens_and_says_how_many(session: Session) -> None:
    """A reset is what an administrator does after a compromise: a token taken with the password stops too."""
    admin = actor_for(session, "admin")
    fg = _user(session, "fg")
    live, spare = tokens.issue(session, fg, "接口", actor=admin), tokens.issue(session, fg, "备用", actor=admin)
    tokens.revoke(session, token_id=session.scalars(select(ApiToken.id).where(
        ApiToken.prefix == spare[:12])).one(), actor=admin)  # revoked before: not counted again
    boss = tokens.issue(session, _user(session, "boss"), "领导", actor=admin)
    session.commit()
    _person, _shown, revoked = staffing.reset_password(session, user_id=fg.id, password=None,
                                                       seen=_seen(session, "fg"), actor=admin)
    session.commit()
    assert revoked == 1
    assert tokens.authenticate(session, live) is None and tokens.authenticate(session, boss) is not None
    [event] = _events(session, "org.user.password_reset")
    assert event.after is not None and event.after["tokens_revoked"] == 1


@pytest.mark.usefixtures("review_org")
def test_no_token_is_issued_while_the_password_is_temporary(session: Session) -> None:
    admin = actor_for(session, "admin")
    fg = _user(session, "fg")
    _person, shown, _revoked = staffing.reset_password(session, user_id=fg.id, password=None,
                                                       seen=_seen(session, "fg"), actor=admin)
    session.commit()
    assert shown
    for actor in (actor_for(session, "fg"), admin):  # the person themself, or an administrator for them
        with pytest.raises(InvalidInput, match="临时密码") as refused:
            tokens.issue(session, _user(session, "fg"), "接口", actor=actor)
        assert refused.value.details.get("field") == "username"
        session.rollback()
    assert session.scalar(select(func.count()).select_from(ApiToken)) == 0
    org.change_password(session, user_id=fg.id, current=shown, new="my-own-pass-1", actor=actor_for(session, "fg"))
    session.commit()
    assert tokens.authenticate(session, tokens.issue(session, _user(session, "fg"), "接口")) is not None


@pytest.mark.parametrize("at", ["_may_manage", "lifetime"])
def test_no_token_outlives_a_reset_made_while_it_was_being_issued(
        factory: sessionmaker[Session], meanwhile: Meanwhile, at: str) -> None:  # noqa: F811
    """A reset at the moment of an issue: before the issue locked the person (`_may_manage`), the issue waits for
    the reset and is refused; after (`lifetime`), the reset waits for the issue and revokes the token it made. Never
    a live token of a person with a temporary password."""
    with factory() as s:
        org.add_user(s, username="root", display_name="管理员", is_admin=True)
        org.add_user(s, username="p", display_name="科员", password="Own-pass-123")
        s.commit()
        pid, seen = _user(s, "p").id, _seen(s, "p")

    def reset(s: Session) -> object:
        return staffing.reset_password(s, user_id=pid, password="Temp-pass-123", seen=seen, actor=actor_for(s, "root"))

    meanwhile.at(tokens, at, reset)
    with factory() as s:
        if at == "_may_manage":
            with pytest.raises(InvalidInput, match="临时密码"):
                tokens.issue(s, _user(s, "p"), "接口", actor=actor_for(s, "p"))
        else:
            tokens.issue(s, _user(s, "p"), "接口", actor=actor_for(s, "p"))
            s.commit()
    assert meanwhile.join() == ["done"]
    with factory() as s:
        assert _user(s, "p").must_change_password
        assert s.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.revoked_at.is_(None))) == 0
        [event] = _events(s, "org.user.password_reset")
        assert event.after is not None and event.after["tokens_revoked"] == (0 if at == "_may_manage" else 1)


@pytest.mark.usefixtures("review_org")
@pytest.mark.parametrize("password", ["short", "长" * 201, "x" * 10_000])
def test_a_password_too_short_or_oversized_changes_nothing(session: Session, password: str) -> None:
    fg = _user(session, "fg")
    before = (fg.password_hash, fg.session_epoch)
    with pytest.raises(InvalidInput) as refused:
        staffing.reset_password(session, user_id=fg.id, password=password, seen=_seen(session, "fg"),
                                actor=actor_for(session, "admin"))
    assert refused.value.details.get("field") == "password"
    session.rollback()
    fg = _user(session, "fg")
    assert (fg.password_hash, fg.session_epoch) == before and not fg.must_change_password


@pytest.mark.usefixtures("review_org")
def test_a_reset_for_a_deactivated_person_is_refused_and_reactivation_keeps_tokens_revoked(session: Session) -> None:
    admin = actor_for(session, "admin")
    fg = _user(session, "fg")
    plaintext = tokens.issue(session, fg, "接口", actor=admin)
    session.commit()
    leaving.deactivate_user(session, user_id=fg.id, actor=admin, refuse_stuck=False)
    session.commit()
    epoch = _user(session, "fg").session_epoch
    with pytest.raises(InvalidInput) as refused:
        staffing.reset_password(session, user_id=fg.id, password="Temp-pass-123", seen=_seen(session, "fg"),
                                actor=admin)
    assert refused.value.details.get("field") == "user"
    session.rollback()
    _person, revoked = staffing.reactivate(session, user_id=fg.id, seen=_seen(session, "fg"), actor=admin)
    session.commit()
    fg = _user(session, "fg")
    assert fg.is_active and fg.session_epoch == epoch and revoked == 1
    assert tokens.authenticate(session, plaintext) is None
    assert session.scalar(select(func.count()).select_from(ApiToken).where(ApiToken.revoked_at.is_(None))) == 0
    assert len(_events(session, "org.user.reactivate")) == 1


@pytest.mark.usefixtures("review_org")
def test_the_cli_moves_marks_resets_and_reactivates(db_url: str, factory: sessionmaker[Session], session: Session,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from engine import cli
    session.close()  # the command's own connection writes (SQLite: one writer at a time)
    monkeypatch.setenv("JZFLOW_DATABASE_URL", db_url)
    runner = CliRunner()
    moved = runner.invoke(cli.main, ["move-user", "fg", "--unit", "zrzy", "--role", "reviewer"])
    assert moved.exit_code == 0 and "zrzy" in moved.output, moved.output
    unknown = runner.invoke(cli.main, ["move-user", "fg", "--unit", "nowhere"])
    assert unknown.exit_code != 0 and "单位不存在" in unknown.output, unknown.output
    assert runner.invoke(cli.main, ["set-unit-head", "fg", "zrzy"]).exit_code == 0
    not_member = runner.invoke(cli.main, ["set-unit-head", "zr", "fgj"])
    assert not_member.exit_code != 0 and "成员" in not_member.output, not_member.output
    reset = runner.invoke(cli.main, ["reset-password", "fg"])
    assert reset.exit_code == 0, reset.output
    shown = reset.output.rsplit(": ", 1)[-1].strip()
    assert runner.invoke(cli.main, ["deactivate-user", "st"]).exit_code == 0
    assert runner.invoke(cli.main, ["reset-password", "st"]).exit_code != 0  # deactivated: 启用 first
    assert runner.invoke(cli.main, ["reactivate-user", "st"]).exit_code == 0
    with factory() as s:
        fg = _user(s, "fg")
        assert fg.password_hash and check_password_hash(fg.password_hash, shown) and fg.must_change_password
        assert staffing.person(s, fg).heads == ["zrzy"] and _user(s, "st").is_active
        assert all(shown not in str(e.after) for e in s.scalars(select(AuditEvent)))



def test_a_deactivation_that_read_a_non_admin_made_admin_meanwhile_is_refused(
        factory: sessionmaker[Session], meanwhile: Meanwhile) -> None:  # noqa: F811
    """Was: 停用 took the administrators' lock only for someone it read as an administrator (is_admin never changed
    after creation); a person made one meanwhile was deactivated outside the lock that keeps one administrator."""
    with factory() as s:
        org.add_user(s, username="root", display_name="管理员", is_admin=True)
        org.add_user(s, username="p", display_name="新管理员")
        s.commit()
        pid, seen = _user(s, "p").id, _seen(s, "p")

    def grant(s: Session) -> object:
        return staffing.set_memberships(s, user_id=pid, unit_codes=[], role_codes=[], is_admin=True, seen=seen,
                                        actor=actor_for(s, "root"))

    meanwhile.at(handover, "lock_instances", grant)
    with factory() as s, pytest.raises(Conflict):
        leaving.deactivate_user(s, user_id=pid, actor=actor_for(s, "root"))
    outcome = meanwhile.join()
    assert len(outcome) == 1 and not isinstance(outcome[0], BaseException), outcome  # the grant went first
    with factory() as s:
        user = _user(s, "p")
        assert user.is_admin and user.is_active


@pytest.mark.usefixtures("review_org")
def test_a_head_moved_by_an_administrator_leaves_the_unit_headless_and_its_leader_told(session: Session) -> None:
    admin = actor_for(session, "admin")
    fg, zr = _user(session, "fg"), _user(session, "zr")
    staffing.set_unit_mark(session, user_id=fg.id, unit_code="fgj", mark="head", on=True,
                           seen=_seen(session, "fg"), actor=admin)
    staffing.set_unit_mark(session, user_id=zr.id, unit_code="fgj", mark="leader", on=True,
                           seen=_seen(session, "zr"), actor=admin)
    session.commit()
    staffing.set_memberships(session, user_id=fg.id, unit_codes=["zrzy"], role_codes=["reviewer"], is_admin=False,
                             seen=_seen(session, "fg"), actor=admin)
    session.commit()
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "fgj"))
    assert unit is not None and unit.leader_id is None and unit.responsible_leader_id == zr.id
    moved = [e for e in _events(session, "org.unit.head") if (e.after or {}).get("reason") == "admin: moved"]
    assert len(moved) == 1 and (moved[0].before or {})["leader_id"] == fg.id
    told = [m.payload for m in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))]
    assert any(t["user_id"] == zr.id and "负责人" in str(t["title"]) for t in told)


def _sso_person(s: Session, monkeypatch: pytest.MonkeyPatch, **env: str) -> User:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    fg = _user(s, "fg")
    fg.source = "oidc"
    s.commit()
    return fg


@pytest.mark.usefixtures("review_org")
def test_an_sso_person_gets_from_the_administrator_the_roles_the_role_map_leaves_to_them(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    # The provider's "approver" is the role reviewer here: reviewer is the provider's to give and take, leader is not
    # (sso_users keeps the roles an administrator gave outside the map), so 编辑人员 gives leader and keeps reviewer.
    fg = _sso_person(session, monkeypatch, JZFLOW_OIDC_ROLE_MAP="approver=reviewer")
    admin = actor_for(session, "admin")
    done = staffing.set_memberships(session, user_id=fg.id, unit_codes=["fgj"], role_codes=["leader", "reviewer"],
                                    is_admin=False, seen=_seen(session, "fg"), actor=admin)
    session.commit()
    assert done.roles == ["leader", "reviewer"]
    assert staffing.held_by_directory(fg) == staffing.Held("统一身份认证", units=True, roles=frozenset({"reviewer"}))
    # the provider's own role stays the provider's: taking it away here is refused, naming roles
    with pytest.raises(InvalidInput) as refused:
        staffing.set_memberships(session, user_id=fg.id, unit_codes=["fgj"], role_codes=["leader"], is_admin=False,
                                 seen=_seen(session, "fg"), actor=admin)
    assert refused.value.details.get("field") == "roles" and "reviewer" in refused.value.message
    session.rollback()
    assert staffing.person(session, _user(session, "fg")).roles == ["leader", "reviewer"]


@pytest.mark.usefixtures("review_org")
def test_an_sso_person_whose_provider_sends_no_roles_or_units_is_staffed_here(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    # A deployment whose provider sends neither claim turns them off: the administrator gives units and roles.
    fg = _sso_person(session, monkeypatch, JZFLOW_OIDC_ROLES_CLAIM="", JZFLOW_OIDC_UNIT_CLAIM="")
    done = staffing.set_memberships(session, user_id=fg.id, unit_codes=["zrzy"], role_codes=["leader"],
                                    is_admin=False, seen=_seen(session, "fg"), actor=actor_for(session, "admin"))
    session.commit()
    assert done.units == ["zrzy"] and done.roles == ["leader"]
    assert staffing.held_by_directory(fg) == staffing.Held("统一身份认证", units=False, roles=frozenset())


@pytest.mark.usefixtures("review_org")
def test_an_sso_person_with_roles_from_the_provider_and_units_from_here(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    fg = _sso_person(session, monkeypatch, JZFLOW_OIDC_UNIT_CLAIM="")
    admin = actor_for(session, "admin")
    done = staffing.set_memberships(session, user_id=fg.id, unit_codes=["zrzy"], role_codes=["reviewer"],
                                    is_admin=False, seen=_seen(session, "fg"), actor=admin)
    session.commit()
    assert done.units == ["zrzy"]
    with pytest.raises(InvalidInput) as refused:  # every role is the provider's: no map names which
        staffing.set_memberships(session, user_id=fg.id, unit_codes=["zrzy"], role_codes=["leader"], is_admin=False,
                                 seen=_seen(session, "fg"), actor=admin)
    assert refused.value.details.get("field") == "roles" and "JZFLOW_OIDC_ROLES_CLAIM" in refused.value.message
    session.rollback()
    assert staffing.person(session, _user(session, "fg")).roles == ["reviewer"]


@pytest.mark.usefixtures("review_org")
def test_a_misconfigured_sign_on_leaves_an_sso_person_as_the_provider_gives_them(
        session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    # settings that do not load (an unknown JZFLOW_OIDC_LINK) say nothing of what the provider sends: all of it stays
    fg = _sso_person(session, monkeypatch, JZFLOW_OIDC_LINK="nonsense", JZFLOW_OIDC_ROLES_CLAIM="")
    assert staffing.held_by_directory(fg) == staffing.Held("统一身份认证", units=True, roles=None)
