"""目录同步 against a real OpenLDAP server (tests/ldap_server.py), on SQLite and PostgreSQL.

The directory: 市政府 (head 王建国, the city leader), 发改局 (head 孙明远, managed by 王建国) with its 综合科
(head 陈曦), 自然资源局 (head 赵磊). Hostile: injection-looking entries, a directory larger than the server's
size limit (paging), a sync that fails halfway, two syncs at once, the safety brake.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ldap3
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import deploy, org, tasks
from engine.audit.models import AuditEvent
from engine.notify.models import OutboxMessage
from engine.org import core, ldap_read, ldap_sync
from engine.org.actors import SYSTEM, actor_for
from engine.org.models import Membership, OrgUnit, User
from engine.runtime import instances
from engine.tasks.models import HumanTask, TaskCandidate
from tests.conftest import FIXTURES
from tests.engine.conftest import at_once
from tests.ldap_server import READER_DN, READER_PW, SUFFIX, Directory, dn_of, person, running, unit

CITY = dn_of("wangjg", "ou=szf")
HEAD_FG = dn_of("sunmy", "ou=fgj")
SEED = (
    unit("szf", "市政府", head=CITY)
    + unit("fgj", "发改局", head=HEAD_FG)
    + unit("zhk", "综合科", under="ou=fgj", head=dn_of("chenx", "ou=zhk,ou=fgj"))
    + unit("zrzy", "自然资源局", head=dn_of("zhaol", "ou=zrzy"))
    + person("wangjg", "王建国", unit_path="ou=szf")
    + person("sunmy", "孙明远", unit_path="ou=fgj", manager=CITY, mail="sunmy@jiaozhou.gov.cn")
    + person("linzy", "林志远", unit_path="ou=fgj", manager=HEAD_FG)
    + person("chenx", "陈曦", unit_path="ou=zhk,ou=fgj", manager=dn_of("linzy", "ou=fgj"))
    + person("zhaol", "赵磊", unit_path="ou=zrzy", manager=CITY)
    + person("liuq", "刘琪", unit_path="ou=zrzy", manager=dn_of("zhaol", "ou=zrzy"))
)


@pytest.fixture
def directory() -> Iterator[Directory]:
    with running(SEED) as d:
        yield d


def _sync(factory: sessionmaker[Session], settings: ldap_read.Settings, *, dry_run: bool = False) -> ldap_sync.Report:
    snap = ldap_read.read(settings)
    with factory() as session:
        report = ldap_sync.sync(session, settings, snap, dry_run=dry_run)
        if dry_run:
            session.rollback()
        else:
            session.commit()
        return report


def _state(factory: sessionmaker[Session]) -> dict[str, Any]:
    """Everything a sync may touch, comparable."""
    with factory() as s:
        users = sorted((u.username, u.display_name, u.email, u.is_active, u.source, u.manager_id)
                       for u in s.scalars(select(User)))
        units = sorted((u.code, u.name, u.parent_id, u.leader_id, u.responsible_leader_id)
                       for u in s.scalars(select(OrgUnit)))
        members = sorted((m.user_id, m.org_unit_id or 0, m.role_id or 0, m.is_head) for m in s.scalars(select(Membership)))
        return {"users": users, "units": units, "members": members,
                "audit": s.scalar(select(func.count()).select_from(AuditEvent)),
                "outbox": s.scalar(select(func.count()).select_from(OutboxMessage))}


def _user(s: Session, username: str) -> User:
    user = s.scalar(select(User).where(User.username == username))
    assert user is not None, username
    return user


def _unit(s: Session, code: str) -> OrgUnit:
    found = s.scalar(select(OrgUnit).where(OrgUnit.code == code))
    assert found is not None, code
    return found


def _units_of(s: Session, username: str) -> set[str]:
    return set(s.scalars(select(OrgUnit.code).join(Membership, Membership.org_unit_id == OrgUnit.id)
                         .where(Membership.user_id == _user(s, username).id, Membership.role_id.is_(None))))


def test_first_sync_builds_units_people_heads_and_the_leader_chain_and_a_second_changes_nothing(
        factory: sessionmaker[Session], directory: Directory) -> None:
    report = _sync(factory, directory.settings())
    assert len(report.units_added) == 4 and len(report.users_added) == 6 and not report.users_deactivated
    assert not report.skipped and report.changes >= 10
    with factory() as s:
        fgj, zhk, szf = _unit(s, "fgj"), _unit(s, "zhk"), _unit(s, "szf")
        assert fgj.name == "发改局" and zhk.parent_id == fgj.id and fgj.parent_id is None
        assert fgj.leader_id == _user(s, "sunmy").id and fgj.responsible_leader_id == _user(s, "wangjg").id
        assert szf.leader_id == _user(s, "wangjg").id and szf.responsible_leader_id is None
        assert zhk.leader_id == _user(s, "chenx").id and zhk.responsible_leader_id == _user(s, "linzy").id
        linzy = _user(s, "linzy")
        assert linzy.manager_id == _user(s, "sunmy").id and linzy.source == "ldap"
        assert linzy.external_id == dn_of("linzy", "ou=fgj").lower() and linzy.password_hash is None
        assert _units_of(s, "chenx") == {"zhk"} and _user(s, "sunmy").email == "sunmy@jiaozhou.gov.cn"
        head = s.scalar(select(Membership).where(Membership.user_id == _user(s, "sunmy").id,
                                                 Membership.org_unit_id == fgj.id))
        assert head is not None and head.is_head
    before = _state(factory)
    again = _sync(factory, directory.settings())
    assert again.changes == 0 and _state(factory) == before, again.lines()


def test_a_dry_run_reports_the_same_changes_and_saves_none(factory: sessionmaker[Session],
                                                           directory: Directory) -> None:
    before = _state(factory)
    dry = _sync(factory, directory.settings(), dry_run=True)
    assert _state(factory) == before
    real = _sync(factory, directory.settings())
    assert dry.dry_run and (dry.units_added, dry.users_added) == (real.units_added, real.users_added)
    assert "演练" in dry.lines()[0]


def test_a_move_is_reported_and_keeps_the_account(factory: sessionmaker[Session], directory: Directory) -> None:
    _sync(factory, directory.settings())
    with factory() as s:
        old_id = _user(s, "linzy").id
    with directory.admin() as conn:
        conn.modify_dn(dn_of("linzy", "ou=fgj"), "uid=linzy", new_superior=f"ou=zrzy,{SUFFIX}")
        conn.modify(dn_of("liuq", "ou=zrzy"), {"displayName": [(ldap3.MODIFY_REPLACE, ["刘琪(新)"])]})
        conn.modify(f"ou=fgj,{SUFFIX}", {"manager": [(ldap3.MODIFY_REPLACE, [dn_of("linzy", "ou=zrzy")])]})
    report = _sync(factory, directory.settings())  # 林志远 moves to 自然资源局 and, from there, heads 发改局
    assert report.users_moved == ["linzy: fgj → zrzy"] and not report.users_added and not report.users_deactivated
    assert any(line.startswith("liuq") for line in report.users_updated)
    with factory() as s:
        assert _user(s, "linzy").id == old_id and _units_of(s, "linzy") == {"zrzy"}
        assert _user(s, "liuq").display_name == "刘琪(新)"
        fgj = _unit(s, "fgj")
        assert fgj.leader_id == old_id and fgj.responsible_leader_id == _user(s, "sunmy").id  # his manager
        assert _units_of(s, "sunmy") == {"fgj"}  # the old head stays a member, no longer marked head
        assert not s.scalar(select(Membership.is_head).where(Membership.user_id == _user(s, "sunmy").id))
    assert _sync(factory, directory.settings()).changes == 0  # stable: nothing oscillates
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "org.user.move")) == 1


def _linzy_tasks(factory: sessionmaker[Session]) -> tuple[int, int]:
    """Two real tasks of the siblings process: one claimed by 林志远 (the lane 审批部门 is a role he has), one
    offered to him alone by name (no other candidate)."""
    with factory() as s:
        role = org.add_role(s, code="reviewer", name="审批部门")
        s.add(Membership(user_id=_user(s, "linzy").id, role_id=role.id))
        deploy.deploy(s, deploy.read_directory(FIXTURES / "concurrency"), actor=SYSTEM, check_lanes=False)
        s.commit()
        actor = actor_for(s, "linzy")
        instances.start(s, process_key="siblings", actor=actor)
        ready = list(s.scalars(select(HumanTask).where(HumanTask.state == "ready").order_by(HumanTask.id)))
        assert len(ready) >= 2
        tasks.claim(s, task_id=ready[0].id, actor=actor)
        ready[1].candidates.clear()
        ready[1].candidates.append(TaskCandidate(user_id=_user(s, "linzy").id))
        s.commit()
        return ready[0].id, ready[1].id


def test_a_leaver_is_deactivated_their_tasks_go_back_to_their_unit_and_their_leader_is_told(
        factory: sessionmaker[Session], directory: Directory) -> None:
    _sync(factory, directory.settings())
    claimed, by_name = _linzy_tasks(factory)
    with directory.admin() as conn:
        conn.delete(dn_of("linzy", "ou=fgj"))
    report = _sync(factory, directory.settings())
    assert [line.split()[0] for line in report.users_deactivated] == ["linzy"] and report.tasks_returned == 2
    with factory() as s:
        linzy = _user(s, "linzy")
        assert not linzy.is_active and linzy.session_epoch >= 1
        fgj = _unit(s, "fgj")
        for task_id in (claimed, by_name):
            task = s.get(HumanTask, task_id)
            assert task is not None and task.assignee_id is None and task.state == "ready"
            assert s.scalar(select(AuditEvent.action).where(AuditEvent.object_type == "human_task",
                                                            AuditEvent.object_id == str(task_id))
                            .order_by(AuditEvent.id.desc()).limit(1)) == "task.return_to_candidates"
        units = {c.org_unit_id for c in s.scalars(select(TaskCandidate).where(TaskCandidate.task_id == by_name))}
        assert units == {None, fgj.id}  # nobody else could claim it: his unit (发改局) can now
        others = {c.role_id for c in s.scalars(select(TaskCandidate).where(TaskCandidate.task_id == claimed))}
        assert others and None not in others  # the lane's candidates (a role) take the claimed one back
        told = [m.payload for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
                if "linzy" in str(m.payload.get("title", ""))]
        assert len(told) == 1 and told[0]["user_id"] == _user(s, "sunmy").id  # his manager, 孙明远
        assert "2 项待办" in told[0]["body"]
    assert _sync(factory, directory.settings()).changes == 0  # and it stays done


def test_injection_looking_entries_are_data_or_skipped_and_local_admins_are_never_taken_over(
        factory: sessionmaker[Session], directory: Directory) -> None:
    with factory() as s:
        org.add_user(s, username="admin", display_name="管理员", password="local-Passw0rd!", is_admin=True)
        s.commit()
    with directory.admin() as conn:
        base = f"ou=fgj,{SUFFIX}"
        conn.add(f"uid=x)(uid=*,{base}", ["inetOrgPerson"], {"uid": "x)(uid=*", "cn": "x", "sn": "x"})
        conn.add(f"cn=evil\\,ou=admin\\+uid=root,{base}", ["inetOrgPerson"],
                 {"uid": "evil", "cn": "evil,ou=admin+uid=root", "sn": "e", "displayName": "<script>alert(1)</script>"})
        conn.add(f"uid=admin,{base}", ["inetOrgPerson"], {"uid": "admin", "cn": "冒充", "sn": "冒"})
        conn.add(f"ou=bad\\0Aunit,{SUFFIX}", ["organizationalUnit"], {"ou": "bad\nunit"})
    report = _sync(factory, directory.settings())
    skipped = "\n".join(report.skipped)
    assert "x)(uid=*" in skipped and "admin" in skipped and "bad" in skipped
    with factory() as s:
        admin = _user(s, "admin")
        assert admin.source is None and admin.display_name == "管理员" and admin.is_admin and admin.password_hash
        evil = _user(s, "evil")
        assert evil.display_name == "<script>alert(1)</script>" and _units_of(s, "evil") == {"fgj"}
        assert s.scalar(select(func.count()).select_from(User).where(User.username.like("x)%"))) == 0


def test_an_emergency_account_is_never_taken_over_whatever_case_the_setting_spells_it(
        factory: sessionmaker[Session], directory: Directory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JZFLOW_OIDC_LOCAL_LOGINS", "admin, DUTY")
    with factory() as s:
        org.add_user(s, username="duty", display_name="值班账号", password="local-Passw0rd!")
        s.commit()
    with directory.admin() as conn:
        conn.add(f"uid=duty,ou=fgj,{SUFFIX}", ["inetOrgPerson"], {"uid": "duty", "cn": "冒充", "sn": "冒"})
    report = _sync(factory, directory.settings())
    assert any("duty" in line for line in report.skipped)
    with factory() as s:
        duty = _user(s, "duty")
        assert duty.source is None and duty.display_name == "值班账号" and _units_of(s, "duty") == set()


def test_a_directory_larger_than_the_server_size_limit_is_read_whole_by_pages(factory: sessionmaker[Session]) -> None:
    many = "".join(person(f"p{i:04d}", f"人员{i}", unit_path="ou=big") for i in range(230))
    with running(unit("big", "大单位") + many, size_limit=50) as d:
        reader = ldap3.Connection(ldap3.Server(d.url), user=READER_DN, password=READER_PW, auto_bind=True,
                                  raise_exceptions=True)
        reader.search(SUFFIX, "(objectClass=inetOrgPerson)", attributes=["uid"])  # unpaged: cut at the limit
        assert reader.result["description"] == "sizeLimitExceeded" and len(reader.entries) == 50
        reader.unbind()
        report = _sync(factory, d.settings(page_size=40))
    assert len(report.users_added) == 230
    with running(unit("big", "大单位") + many, size_limit=50, paged_total="100") as d:  # a server that stops paging
        before = _state(factory)
        with pytest.raises(ldap_read.DirectoryError, match="不完整"):
            _sync(factory, d.settings(page_size=40))
        assert _state(factory) == before  # a partial read never syncs (nor deactivates the missing)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Membership).join(OrgUnit, OrgUnit.id == Membership.org_unit_id)
                        .where(OrgUnit.code == "big")) == 230


def test_a_sync_that_fails_halfway_changes_nothing(factory: sessionmaker[Session], directory: Directory,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    before = _state(factory)
    calls = {"n": 0}
    real_add_user = core.add_user

    def failing_add_user(*args: Any, **kwargs: Any) -> User:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("the database went away")
        return real_add_user(*args, **kwargs)

    monkeypatch.setattr(ldap_sync.core, "add_user", failing_add_user)
    with pytest.raises(RuntimeError):
        _sync(factory, directory.settings())
    assert calls["n"] == 4 and _state(factory) == before
    monkeypatch.undo()
    assert len(_sync(factory, directory.settings()).users_added) == 6


def test_two_syncs_at_once_apply_once(factory: sessionmaker[Session], directory: Directory) -> None:
    settings = directory.settings()
    snaps = [ldap_read.read(settings), ldap_read.read(settings)]
    reports: list[ldap_sync.Report | None] = [None, None]

    def run(i: int) -> None:
        with factory() as session:
            reports[i] = ldap_sync.sync(session, settings, snaps[i])
            session.commit()

    assert at_once(2, run) == [None, None]
    added = sorted(len(r.users_added) for r in reports if r is not None)
    assert added == [0, 6]
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 6
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "org.user.add")) == 6


def test_the_safety_brake_stops_a_sync_that_would_deactivate_too_many(factory: sessionmaker[Session],
                                                                       directory: Directory) -> None:
    _sync(factory, directory.settings())
    before = _state(factory)
    wrong_base = directory.settings(base_dn=f"ou=zrzy,{SUFFIX}")  # a mistyped base DN: most people "left"
    with pytest.raises(ldap_sync.SyncStopped) as stopped:
        _sync(factory, wrong_base)
    assert "同步已停止" in stopped.value.message and len(stopped.value.report.users_deactivated) == 4
    assert _state(factory) == before
    assert len(_sync(factory, directory.settings(base_dn=f"ou=zrzy,{SUFFIX}", max_deactivate_fraction=1.0))
               .users_deactivated) == 4  # an operator who means it raises the limit


def test_the_command_reports_and_a_dry_run_saves_nothing(db_url: str, factory: sessionmaker[Session],
                                                        directory: Directory, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.cli import main
    monkeypatch.setenv("JZFLOW_DATABASE_URL", db_url)
    for key, value in (("URL", directory.url), ("BIND_DN", f"cn=jzflow-reader,{SUFFIX}"), ("BASE_DN", SUFFIX),
                       ("BIND_PASSWORD", "reader-test-secret")):
        monkeypatch.setenv(f"JZFLOW_LDAP_{key}", value)
    before = _state(factory)
    dry = CliRunner().invoke(main, ["sync-directory", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "演练" in dry.output and "+ 人员 (added): linzy 林志远 (fgj)" in dry.output and _state(factory) == before
    real = CliRunner().invoke(main, ["sync-directory"])
    assert real.exit_code == 0 and "新增人员 6" in real.output
    monkeypatch.setenv("JZFLOW_LDAP_BASE_DN", f"ou=zrzy,{SUFFIX}")
    braked = CliRunner().invoke(main, ["sync-directory"])
    assert braked.exit_code == 2 and "同步已停止" in braked.output
    monkeypatch.setenv("JZFLOW_LDAP_URL", "ldap://127.0.0.1:1")
    down = CliRunner().invoke(main, ["sync-directory"])
    assert down.exit_code == 2 and "目录服务" in down.output


def test_beat_schedules_the_job_and_the_job_syncs(db_url: str, factory: sessionmaker[Session], directory: Directory,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import jobs, jobs_directory
    from engine.celery_app import make_celery
    assert "sync-directory" not in make_celery().conf.beat_schedule  # no directory configured: no job
    monkeypatch.setenv("JZFLOW_DATABASE_URL", db_url)
    for key, value in (("URL", directory.url), ("BIND_DN", READER_DN), ("BASE_DN", SUFFIX),
                       ("BIND_PASSWORD", READER_PW), ("SYNC_SECONDS", "900")):
        monkeypatch.setenv(f"JZFLOW_LDAP_{key}", value)
    entry = make_celery().conf.beat_schedule["sync-directory"]
    assert entry == {"task": "engine.jobs_directory.sync_directory", "schedule": 900.0}
    jobs.session_factory.cache_clear()
    try:
        result = jobs_directory.sync_directory()
        assert result["changes"] >= 10 and len(result["users_added"]) == 6
        assert jobs_directory.sync_directory()["changes"] == 0
    finally:
        jobs.session_factory().kw["bind"].dispose()  # the job's own engine, on this test's database
        jobs.session_factory.cache_clear()
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(User).where(User.source == "ldap")) == 6


def test_settings_are_checked_and_tls_always_verifies_the_server() -> None:
    import ssl
    settings = ldap_read.load_settings({"JZFLOW_LDAP_URL": "ldaps://ldap.example.cn", "JZFLOW_LDAP_BASE_DN": SUFFIX,
                                        "JZFLOW_LDAP_START_TLS": "1", "JZFLOW_LDAP_PAGE_SIZE": "200"})
    assert settings.enabled and settings.start_tls and settings.page_size == 200
    server = ldap_read.make_server(settings)
    assert server.ssl and server.tls.validate == ssl.CERT_REQUIRED
    with pytest.raises(ldap_read.DirectoryError, match="BASE_DN"):
        ldap_read.load_settings({"JZFLOW_LDAP_URL": "ldap://x"})
    with pytest.raises(ldap_read.DirectoryError, match="FRACTION"):
        ldap_read.load_settings({"JZFLOW_LDAP_MAX_DEACTIVATE_FRACTION": "2"})
    with pytest.raises(ldap_read.DirectoryError, match="数字无效"):
        ldap_read.load_settings({"JZFLOW_LDAP_PAGE_SIZE": "lots"})
    assert not ldap_read.load_settings({}).enabled
