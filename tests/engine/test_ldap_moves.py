"""目录同步 of people and units that move (调岗) or go (a unit merged into another), against a real OpenLDAP server
(tests/ldap_server.py, the directory of tests/engine/test_ldap_sync.py), on SQLite and PostgreSQL.
"""
from __future__ import annotations

import ldap3
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import tasks
from engine.audit.models import AuditEvent
from engine.notify.models import OutboxMessage
from engine.org.actors import actor_for
from engine.org.area import area
from engine.tasks.models import HumanTask, TaskCandidate
from tests.engine.test_ldap_sync import HEAD_FG, _linzy_tasks, _sync, _unit, _user, directory  # noqa: F401 (its fixture)
from tests.ldap_server import SUFFIX, Directory, dn_of


def test_a_mover_gives_back_what_they_claimed_from_the_old_unit_and_keeps_what_is_theirs(
        factory: sessionmaker[Session], directory: Directory) -> None:  # noqa: F811
    _sync(factory, directory.settings())
    by_role, by_name = _linzy_tasks(factory)
    with factory() as s:  # a third step, offered to 发改局 and claimed by 林志远 as one of its members
        pool = s.scalars(select(HumanTask).where(HumanTask.state == "ready", HumanTask.assignee_id.is_(None),
                                                 HumanTask.id.not_in([by_role, by_name]))).first()
        assert pool is not None
        pool.candidates.clear()
        pool.candidates.append(TaskCandidate(org_unit_id=_unit(s, "fgj").id))
        s.commit()
        for task_id in (pool.id, by_name):
            tasks.claim(s, task_id=task_id, actor=actor_for(s, "linzy"))
        s.commit()
        pool_id = pool.id
    with directory.admin() as conn:
        conn.modify_dn(dn_of("linzy", "ou=fgj"), "uid=linzy", new_superior=f"ou=zrzy,{SUFFIX}")
    report = _sync(factory, directory.settings())
    assert report.users_moved == ["linzy: fgj → zrzy: 1 项待办退回原单位 (tasks returned)"] and report.tasks_returned == 1
    with factory() as s:
        linzy = _user(s, "linzy")
        back = s.get(HumanTask, pool_id)
        assert back is not None and back.assignee_id is None and back.state == "ready"  # 发改局 can claim it again
        assert s.scalar(select(AuditEvent.after).where(AuditEvent.action == "task.return_to_candidates",
                                                       AuditEvent.object_id == str(pool_id)))["reason"] == \
            "directory: moved"
        for kept in (by_role, by_name):  # a role he still holds, and a step offered to him by name
            task = s.get(HumanTask, kept)
            assert task is not None and task.assignee_id == linzy.id
    assert _sync(factory, directory.settings()).changes == 0


def test_a_unit_gone_from_the_directory_is_reported_once_with_the_work_nobody_can_claim_and_its_head_told(
        factory: sessionmaker[Session], directory: Directory) -> None:  # noqa: F811
    _sync(factory, directory.settings())
    _linzy_tasks(factory)
    with factory() as s:  # a step offered to 自然资源局, nobody's yet
        pool = s.scalars(select(HumanTask).where(HumanTask.state == "ready", HumanTask.assignee_id.is_(None))
                         .order_by(HumanTask.id.desc())).first()
        assert pool is not None
        pool.candidates.clear()
        pool.candidates.append(TaskCandidate(org_unit_id=_unit(s, "zrzy").id))
        s.commit()
        pool_id = pool.id
    with directory.admin() as conn:  # 自然资源局 merged into 发改局: its people move there, the unit goes
        for uid in ("zhaol", "liuq"):
            conn.modify_dn(dn_of(uid, "ou=zrzy"), f"uid={uid}", new_superior=f"ou=fgj,{SUFFIX}")
        conn.delete(f"ou=zrzy,{SUFFIX}")
    report = _sync(factory, directory.settings())
    assert report.units_gone == ["zrzy 自然资源局: 1 项待办仍在该单位，无人可认领 (open tasks still offered to it)"]
    assert any("单位已不在目录中" in line and "zrzy" in line for line in report.lines())
    with factory() as s:
        zrzy, zhaol = _unit(s, "zrzy"), _user(s, "zhaol")
        assert zrzy.source is None and zrzy.leader_id == zhaol.id  # kept, with its head, no longer the directory's
        assert area(s, actor_for(s, "zhaol")).covers(zrzy.id)  # its head still sees the work left there
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "org.unit.directory_update",
                                                   AuditEvent.object_id == str(zrzy.id))
                          .order_by(AuditEvent.id.desc())).first()
        assert event is not None and event.before["source"] == "ldap" and event.after["open_tasks"] == 1
        told = [m.payload for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "in_app"))
                if "zrzy" in str(m.payload.get("title", ""))]
        assert [t["user_id"] for t in told] == [zhaol.id]
        assert s.get(HumanTask, pool_id) is not None
    again = _sync(factory, directory.settings())
    assert again.changes == 0 and not again.units_gone  # once


def test_a_head_who_moves_leaves_the_unit_headless_audited_and_reported_once(
        factory: sessionmaker[Session], directory: Directory) -> None:  # noqa: F811
    _sync(factory, directory.settings())
    with directory.admin() as conn:  # 孙明远, 发改局's head, moves to 自然资源局; the directory names no new head yet
        conn.modify_dn(HEAD_FG, "uid=sunmy", new_superior=f"ou=zrzy,{SUFFIX}")
    report = _sync(factory, directory.settings())
    assert report.users_moved == ["sunmy: fgj → zrzy"]
    assert report.units_headless == ["fgj 发改局: 负责人 sunmy 已调离，该单位暂无负责人 (head moved out: no head until "
                                     "the directory names one)"]
    assert any("单位无负责人" in line and "fgj" in line for line in report.lines())
    with factory() as s:
        fgj, sunmy = _unit(s, "fgj"), _user(s, "sunmy")
        assert fgj.leader_id is None
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "org.unit.head",
                                                    AuditEvent.object_id == str(fgj.id))).all()
        moved = [e for e in events if (e.after or {}).get("reason") == "directory: moved"]
        assert len(moved) == 1 and (moved[0].before or {})["leader_id"] == sunmy.id
        assert (moved[0].after or {})["leader_id"] is None
        assert not area(s, actor_for(s, "sunmy")).covers(fgj.id)  # 督办 of 发改局 no longer reaches him
    again = _sync(factory, directory.settings())
    assert again.changes == 0 and not again.units_headless  # once


def test_a_head_the_directory_still_names_after_the_move_stays_its_head(
        factory: sessionmaker[Session], directory: Directory) -> None:  # noqa: F811
    _sync(factory, directory.settings())
    moved = dn_of("sunmy", "ou=zrzy")
    with directory.admin() as conn:  # the directory moves him and names him 发改局's head still (its word)
        conn.modify_dn(HEAD_FG, "uid=sunmy", new_superior=f"ou=zrzy,{SUFFIX}")
        conn.modify(f"ou=fgj,{SUFFIX}", {"manager": [(ldap3.MODIFY_REPLACE, [moved])]})
    report = _sync(factory, directory.settings())
    assert not report.units_headless
    with factory() as s:
        assert _unit(s, "fgj").leader_id == _user(s, "sunmy").id
    assert _sync(factory, directory.settings()).changes == 0
