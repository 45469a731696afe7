"""People and organisation: users, org units (部门/镇街/功能区) with their leaders, roles, memberships."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engine import clock
from engine.orm import Base


class User(Base):
    __tablename__ = "app_user"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped by logout, a password change and deactivation: sessions begun in an earlier epoch end.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    # Where the account comes from: None (made here), "ldap" (directory sync) or "oidc" (first SSO login);
    # the directory's key for it (its DN), and the leader the directory names (manager) — migration 0017.
    source: Mapped[str | None] = mapped_column(String(20))
    external_id: Mapped[str | None] = mapped_column(String(400), index=True)
    # The identity provider's subject (`sub`) this account is bound to, whatever its source: set by its first SSO
    # login (an account it made, or one JZFLOW_OIDC_LINK let it link) or by an administrator (jzflow sso-link);
    # every other subject is refused this account — migration 0034.
    sso_subject: Mapped[str | None] = mapped_column(String(400), unique=True)
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    # Set by an administrator's password reset (engine.org.staffing): the person changes it at their next login;
    # cleared by change_password — migration 0043.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The person's language, "zh-CN" or "en" (engine.notify.language): their pages once logged in, their e-mail and
    # own webhooks; None until they choose (pages follow the browser's cookie, mail is Chinese) — migration 0045.
    language: Mapped[str | None] = mapped_column(String(8))

    memberships: Mapped[list[Membership]] = relationship(back_populates="user", foreign_keys="Membership.user_id")


class OrgUnit(Base):
    """A department, town/street (镇街), zone (上合示范区, 临空经济区) or leadership office."""

    __tablename__ = "org_unit"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(40), default="department")
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True)
    leader_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    # 责任领导 / 市级领导包挂: the city leader responsible for this unit.
    responsible_leader_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    source: Mapped[str | None] = mapped_column(String(20))  # None (made here) or "ldap" (directory sync)
    external_id: Mapped[str | None] = mapped_column(String(400), index=True)  # the directory's DN

    parent: Mapped[OrgUnit | None] = relationship(remote_side=[id])


OWNER_ROLE = "process_owner"  # 流程负责人: deploys processes, and is told of what a process names wrongly


class Role(Base):
    __tablename__ = "role"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)


class Membership(Base):
    """A user in an org unit, optionally with a role there (role scoped to the unit)."""

    __tablename__ = "membership"
    __table_args__ = (
        UniqueConstraint("user_id", "org_unit_id", "role_id", name="uq_membership"),
        # uq_membership holds no NULL: a unit membership (no role) and a role (no unit) once each (migration 0046)
        Index("uq_membership_unit", "user_id", "org_unit_id", unique=True, postgresql_where=text("role_id IS NULL"),
              sqlite_where=text("role_id IS NULL")),
        Index("uq_membership_role", "user_id", "role_id", unique=True, postgresql_where=text("org_unit_id IS NULL"),
              sqlite_where=text("org_unit_id IS NULL")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id"), index=True)
    org_unit_id: Mapped[int | None] = mapped_column(ForeignKey("org_unit.id"), index=True)
    role_id: Mapped[int | None] = mapped_column(ForeignKey("role.id"), index=True)
    is_head: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship(back_populates="memberships", foreign_keys=[user_id])
    org_unit: Mapped[OrgUnit | None] = relationship()
    role: Mapped[Role | None] = relationship()


class LoginFailure(Base):
    """Failed logins of one account ("user:<name>") or one client address ("addr:<ip>") in the current window."""

    __tablename__ = "login_failure"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column()
