"""Load the plan's domain data from the editable YAML files of data/seed (idempotent, all-or-nothing).

The files and their fields are described and checked in `seed_schema`. Everything is read and
validated before anything is written, and the writes run in a savepoint of the caller's transaction,
so an error leaves the session as it was. Rows are matched by code (users by username): new ones are
added, changed ones updated, each change audited; entries removed from the files stay in the database.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from engine import audit, org
from engine.errors import InvalidInput
from engine.org.actors import SYSTEM, Actor
from engine.org.models import Membership, OrgUnit, Role, User
from plan.data.seed_schema import SECTIONS, Seed, SeedProblem, depth, validate
from plan.indicators.models import Industry
from plan.projects.models import ProjectLibrary

SEED_DIR = Path(__file__).resolve().parents[2] / "data" / "seed"


def _check_database(session: Session, seed: Seed, problems: list[SeedProblem]) -> None:
    """Refuse names that rows with another code already hold (names are unique in the database)."""
    names = {"roles": select(Role.name, Role.code), "units": select(OrgUnit.name, OrgUnit.code),
             "libraries": select(ProjectLibrary.name, ProjectLibrary.code),
             "industries": select(Industry.name, Industry.code)}
    for key, query in names.items():
        specs = seed.entries[key]
        taken = {name: code for name, code in session.execute(query)}
        codes = {spec["code"] for spec in specs}
        for spec in specs:
            other = taken.get(spec["name"])
            if other is not None and other not in codes:
                problems.append(SeedProblem(SECTIONS[key].file, None, f"{key} ({spec['code']})", "name",
                                            f"名称已被数据库中的 {other!r} 使用 (the name is taken by {other!r})"))


# --------------------------------------------------------------------------- writing

class _Writer:
    """Adds and updates rows section by section, auditing each change, counting what it did."""

    def __init__(self, session: Session, actor: Actor) -> None:
        self.session, self.actor = session, actor
        self.added: set[tuple[str, int]] = set()
        self.updated: set[tuple[str, int]] = set()
        self.ids: dict[str, dict[str, int]] = {}  # section -> code -> id
        self.codes: dict[str, dict[int, str]] = {}  # section -> id -> code
        self.hashes: dict[str, str] = {}  # password -> hash: hashing is slow on purpose, do it once per password

    def password_hash(self, password: str) -> str:
        if password not in self.hashes:
            self.hashes[password] = generate_password_hash(password)
        return self.hashes[password]

    def rows(self, key: str) -> dict[str, Any]:
        section = SECTIONS[key]
        rows: dict[str, Any] = {getattr(r, section.ident): r for r in self.session.scalars(select(section.model))}
        self.ids[key] = {code: r.id for code, r in rows.items()}
        self.codes[key] = {r.id: code for code, r in rows.items()}
        return rows

    def known(self, key: str, row: Any) -> None:
        code = getattr(row, SECTIONS[key].ident)
        self.ids[key][code], self.codes[key][row.id] = row.id, code
        self.added.add((SECTIONS[key].object_type, row.id))

    def columns(self, key: str, values: dict[str, Any]) -> dict[str, Any]:
        """Model column values for field values (codes of references become ids)."""
        out = {}
        for name, value in values.items():
            f = SECTIONS[key].fields[name]
            if f.column != "":
                out[f.column or name] = self.ids[f.ref][value] if f.ref and value is not None else value
        return out

    def view(self, key: str, row: Any) -> dict[str, Any]:
        out = {}
        for name, f in SECTIONS[key].fields.items():
            if f.column != "":
                value = getattr(row, f.column or name)
                out[name] = self.codes[f.ref].get(value) if f.ref and value is not None else value
        return out

    def add(self, key: str, spec: dict[str, Any]) -> None:
        section = SECTIONS[key]
        row: Any = section.model(**self.columns(key, spec))
        self.session.add(row)
        self.session.flush()
        self.known(key, row)
        audit.record(self.session, self.actor, f"{section.action}.add", stream=f"{section.object_type}:{row.id}",
                     object_type=section.object_type, object_id=row.id,
                     after={k: v for k, v in spec.items() if section.fields[k].column != ""})

    def update(self, key: str, row: Any, before: dict[str, Any], after: dict[str, Any],
               assign: Callable[[], None] | None = None) -> None:
        """Apply and audit the difference between the row's current view and the wanted one, if any."""
        changed = [k for k in after if before.get(k) != after[k]]
        if not changed:
            return
        section = SECTIONS[key]
        if assign is None:
            for name, value in self.columns(key, after).items():
                setattr(row, name, value)
        else:
            assign()
        self.session.flush()
        self.updated.add((section.object_type, row.id))
        audit.record(self.session, self.actor, f"{section.action}.update", stream=f"{section.object_type}:{row.id}",
                     object_type=section.object_type, object_id=row.id,
                     before={k: before.get(k) for k in changed}, after={k: after[k] for k in changed})

    def plain(self, key: str, specs: list[dict[str, Any]]) -> None:
        """Add or update the entries of a section with no side rows (libraries, industries, indicators)."""
        rows = self.rows(key)
        for spec in specs:
            row = rows.get(spec[SECTIONS[key].ident])
            if row is None:
                self.add(key, spec)
            else:
                self.update(key, row, self.view(key, row), spec)

    def memberships(self, user: User, spec: dict[str, Any]) -> None:
        """Update a seeded user's unit and role memberships (roles within a unit are not the seed's)."""
        rows = self.session.scalars(select(Membership).where(Membership.user_id == user.id).order_by(Membership.id)).all()
        current = {"units": [m for m in rows if m.org_unit_id is not None and m.role_id is None],
                   "roles": [m for m in rows if m.role_id is not None and m.org_unit_id is None]}
        column = {"units": "org_unit_id", "roles": "role_id"}
        before = {k: sorted({self.codes[k][getattr(m, column[k])] for m in ms}) for k, ms in current.items()}
        after = {k: sorted(spec[k] or []) for k in current}

        def assign() -> None:
            for k, ms in current.items():
                wanted, have = {self.ids[k][c] for c in after[k]}, set()
                for m in ms:
                    ref = getattr(m, column[k])
                    if ref not in wanted or ref in have:  # left the seed, or a duplicate row
                        self.session.delete(m)
                    have.add(ref)
                for ref in wanted - have:
                    self.session.add(Membership(user_id=user.id, **{column[k]: ref}))
        self.update("users", user, before, after, assign)

    def leaders(self, unit: OrgUnit, spec: dict[str, Any]) -> None:
        """Set a unit's head (负责人, flagged on the membership) and its city leader (市级领导包挂)."""
        members = self.session.scalars(select(Membership).where(Membership.org_unit_id == unit.id,
                                                                Membership.role_id.is_(None))).all()
        names = self.codes["users"]
        before = {"head": names.get(unit.leader_id or 0), "city_leader": names.get(unit.responsible_leader_id or 0),
                  "head_members": sorted(names.get(m.user_id, "") for m in members if m.is_head)}
        after = {"head": spec["head"], "city_leader": spec["city_leader"],
                 "head_members": [spec["head"]] if spec["head"] else []}

        def assign() -> None:
            unit.leader_id = self.ids["users"][spec["head"]] if spec["head"] else None
            unit.responsible_leader_id = self.ids["users"][spec["city_leader"]] if spec["city_leader"] else None
            for m in members:
                m.is_head = m.user_id == unit.leader_id
        self.update("units", unit, before, after, assign)


def _apply(session: Session, seed: Seed, actor: Actor) -> _Writer:
    w = _Writer(session, actor)
    roles = w.rows("roles")
    for spec in seed.entries["roles"]:
        if spec["code"] in roles:
            w.update("roles", roles[spec["code"]], w.view("roles", roles[spec["code"]]), spec)
        else:
            w.known("roles", org.add_role(session, code=spec["code"], name=spec["name"], actor=actor))
    units = w.rows("units")
    parents = {u["code"]: u["parent"] for u in seed.entries["units"]}
    for spec in sorted(seed.entries["units"], key=lambda u: depth(parents, u["code"]) or 0):  # parents first
        if spec["code"] in units:
            row = units[spec["code"]]
            w.update("units", row, w.view("units", row), {k: spec[k] for k in ("code", "name", "kind", "parent")})
        else:
            units[spec["code"]] = unit = org.add_unit(session, code=spec["code"], name=spec["name"],
                                                      kind=spec["kind"], parent_code=spec["parent"], actor=actor)
            w.known("units", unit)
    users = w.rows("users")
    for spec in seed.entries["users"]:
        user = users.get(spec["username"])
        if user is None:
            users[spec["username"]] = user = org.add_user(
                session, username=spec["username"], display_name=spec["name"], unit_codes=spec["units"],
                role_codes=spec["roles"], is_admin=spec["admin"], email=spec["email"], actor=actor)
            password = spec["password"] or seed.default_password
            # Set on creation only, never reset by a later load (people change their passwords).
            user.password_hash = w.password_hash(password) if password else None
            w.known("users", user)
        else:
            w.update("users", user, w.view("users", user), {k: spec[k] for k in w.view("users", user)})
            w.memberships(user, spec)
    for spec in seed.entries["units"]:  # once the users exist
        w.leaders(units[spec["code"]], spec)
    for key in ("libraries", "industries"):
        w.plain(key, seed.entries[key])
    w.plain("indicators", sorted(seed.entries["indicators"], key=lambda e: e["parent"] is not None))  # parents first
    return w


# --------------------------------------------------------------------------- entry point

def load_seed(session: Session, path: Path | None = None, *, actor: Actor = SYSTEM) -> str:
    """Load or update the seed data of a directory (default: the repository's data/seed); return a summary.

    Flushes, never commits. Raises: InvalidInput (naming file, line, entry and field; nothing is changed)
    """
    seed, problems = validate(path or SEED_DIR)
    if not problems:
        _check_database(session, seed, problems)
    if problems:
        listed = "\n".join(f"  {p}" for p in problems[:50])
        more = f"\n  … 另有 (and) {len(problems) - 50} 处 (more)" if len(problems) > 50 else ""
        first = problems[0]
        raise InvalidInput(f"种子数据有误，未作任何修改 (invalid seed data, nothing changed): "
                           f"{len(problems)} 处问题 (problem(s)):\n{listed}{more}",
                           file=first.file, line=first.line, entry=first.entry, field=first.field,
                           problems=[vars(p) for p in problems])
    try:
        with session.begin_nested():  # all or nothing, inside the caller's transaction
            w = _apply(session, seed, actor)
    except IntegrityError as exc:
        raise InvalidInput(f"种子数据与数据库冲突，未作任何修改 (seed data conflicts with the database, "
                           f"nothing changed): {exc.orig}") from None
    counts = {key: len(specs) for key, specs in seed.entries.items()}
    updated = len(w.updated - w.added)
    return (f"{counts['roles']} 角色 roles, {counts['units']} 单位 units, {counts['users']} 用户 users, "
            f"{counts['libraries']} 项目库 libraries, {counts['industries']} 产业 industries, "
            f"{counts['indicators']} 指标 indicators — 新增 added {len(w.added)}, 更新 updated {updated}, "
            f"未变 unchanged {sum(counts.values()) - len(w.added) - updated}")


__all__ = ["SEED_DIR", "load_seed"]
