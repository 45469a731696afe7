"""`make run`'s banner (web/run.py) lists the demo logins: each user once, with every role it stands for."""
from __future__ import annotations

from sqlalchemy.orm import Session

from engine import org
from engine.org import directory


def test_each_demo_user_is_listed_once_with_all_the_roles_it_stands_for(session: Session) -> None:
    """wangjianguo, the first with a password of two roles, and admin (first of one and the administrator) were each
    printed twice."""
    for code, name in [("leader", "责任领导"), ("city_leader", "市领导"), ("reviewer", "审批人"), ("auditor", "审计员")]:
        org.add_role(session, code=code, name=name)
    org.add_user(session, username="wangjianguo", display_name="王建国", password="pw-12345678",
                 role_codes=["leader", "city_leader"])
    org.add_user(session, username="lina", display_name="李娜", password="pw-12345678", role_codes=["reviewer"])
    org.add_user(session, username="admin", display_name="管理员", password="pw-12345678", role_codes=["auditor"],
                 is_admin=True)
    org.add_user(session, username="nopass", display_name="无密码", role_codes=["reviewer"])
    session.commit()
    logins, admin = directory.demo_logins(session)
    assert [username for username, _, _ in logins] == ["wangjianguo", "lina", "admin"]
    assert logins[0] == ("wangjianguo", "王建国", "责任领导、市领导")
    assert logins[2] == ("admin", "管理员", "审计员、管理员 (admin)") and admin is None  # already listed
