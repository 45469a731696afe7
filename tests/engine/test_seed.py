"""The plan's domain data loads from data/seed: complete, idempotent, audited, all-or-nothing on bad input."""
from __future__ import annotations

import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash

from engine import audit, cli
from engine.audit.models import AuditEvent
from engine.errors import InvalidInput
from engine.org.models import Membership, OrgUnit, Role, User
from plan.data.seed import SEED_DIR, load_seed
from plan.indicators.models import Indicator, Industry
from plan.projects.models import ProjectLibrary

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "docs" / "decisions" / "0001-process-contracts.md"


def _contract_codes() -> tuple[set[str], set[str]]:
    """The role codes and org unit codes that docs/decisions/0001 makes binding."""
    text = CONTRACTS.read_text(encoding="utf-8")
    roles = set(re.findall(r"^\| ([a-z_]+) \| ", text, re.M)) - {"code"}
    units_part = text.split("## Org unit codes", 1)[1].split("##", 1)[0]
    units = set(re.findall(r"\b([a-z]{2,5}) [\u4e00-\u9fff]", units_part))
    return roles, units


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    """An editable copy of data/seed."""
    return Path(shutil.copytree(SEED_DIR, tmp_path / "seed"))


def _edit(seed_dir: Path, name: str, old: str, new: str) -> None:
    path = seed_dir / name
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def _count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _snapshot(session: Session) -> dict[str, int]:
    return {m.__name__: _count(session, m)
            for m in (AuditEvent, Indicator, Industry, Membership, OrgUnit, ProjectLibrary, Role, User)}


def test_seed_loads_the_units_people_industries_indicators_and_libraries(session: Session) -> None:
    summary = load_seed(session)
    session.commit()
    assert summary.startswith("13 角色 roles, 32 单位 units, 71 用户 users, 4 项目库 libraries, 22 产业 industries, "
                              "66 指标 indicators")

    roles, unit_codes = _contract_codes()
    assert set(session.scalars(select(Role.code))) == roles
    units = {u.code: u for u in session.scalars(select(OrgUnit))}
    assert set(units) == unit_codes
    kinds = [u.kind for u in units.values()]
    assert (kinds.count("department"), kinds.count("zone"), kinds.count("street"), kinds.count("town")) == (18, 2, 8, 4)
    assert units["shz"].name == "上合示范区" and units["lkq"].name == "临空经济区"

    city_leaders = set(session.scalars(select(User.id).join(Membership, Membership.user_id == User.id)
                                       .join(Role, Role.id == Membership.role_id).where(Role.code == "city_leader")))
    for unit in units.values():
        assert unit.leader_id is not None and unit.responsible_leader_id in city_leaders, unit.code
        heads = session.scalars(select(Membership.user_id).where(Membership.org_unit_id == unit.id,
                                                                 Membership.is_head.is_(True))).all()
        assert heads == [unit.leader_id], unit.code

    admins = session.scalars(select(User).where(User.is_admin.is_(True))).all()
    assert [u.username for u in admins] == ["admin"]
    password = yaml.safe_load((SEED_DIR / "users.yaml").read_text(encoding="utf-8"))["default_password"]
    reviewer = session.scalar(select(User).where(User.username == "luocheng"))
    assert reviewer is not None and reviewer.password_hash and check_password_hash(reviewer.password_hash, password)

    categories = list(session.scalars(select(Industry.category)))
    assert (categories.count("focus"), categories.count("key"), categories.count("layout")) == (5, 11, 6)
    assert set(session.scalars(select(ProjectLibrary.name))) == {"重点项目", "招商引资项目", "政府投资项目",
                                                                 "土地资源集约利用类项目"}
    indicators = {i.code: i for i in session.scalars(select(Indicator))}
    assert indicators["gdp_growth"].target == Decimal("5.6") and indicators["gdp_growth"].unit == "%"
    assert indicators["projects_signed"].target == 200 and indicators["projects_signed"].cumulative
    assert indicators["scale_smart_appliances"].industry is not None
    assert indicators["scale_smart_appliances"].industry.name == "智能家电"
    listed = yaml.safe_load((SEED_DIR / "indicators.yaml").read_text(encoding="utf-8"))["indicators"]
    assert {e["code"]: Decimal(str(e["target"])) for e in listed} == {c: i.target for c, i in indicators.items()}

    # One add event per row, one leader event per unit; the chains verify.
    actions = list(session.scalars(select(AuditEvent.action)))
    assert actions.count("org.unit.add") == actions.count("org.unit.update") == 32
    assert actions.count("plan.indicator.add") == 66 and actions.count("plan.industry.add") == 22
    assert audit.verify(session).ok


def test_loading_twice_changes_nothing(session: Session) -> None:
    load_seed(session)
    session.commit()
    before = _snapshot(session)
    summary = load_seed(session)
    session.commit()
    assert _snapshot(session) == before
    assert "新增 added 0, 更新 updated 0, 未变 unchanged 208" in summary


def _entry(code: str) -> str:
    """"indicators #n (code)": how a problem names the indicator entry of that code."""
    listed = yaml.safe_load((SEED_DIR / "indicators.yaml").read_text(encoding="utf-8"))["indicators"]
    return f"indicators #{[e['code'] for e in listed].index(code) + 1} ({code})"


BAD = [  # file, old text, new text, entry, field
    ("indicators.yaml", "    target: 3\n    target_high: 5\n", "    target: 3\n    target_high: 3\n",
     _entry("aerospace_leading_firms"), "target_high"),
    ("indicators.yaml", "    parent: agri_chains_on_target\n  - code: agri_chain_yellow",
     "    parent: agri_chain_white_output_growth\n  - code: agri_chain_yellow", _entry("agri_chain_red_output_growth"),
     "parent"),
    ("indicators.yaml", "    parent: agri_chains_on_target\n  - code: agri_chain_yellow",
     "    parent: agri_chain_red_output_growth\n  - code: agri_chain_yellow", _entry("agri_chain_red_output_growth"),
     "parent"),
    ("indicators.yaml", "    parent: agri_chains_on_target\n  - code: agri_chain_yellow",
     "    parent: no_such_indicator\n  - code: agri_chain_yellow", _entry("agri_chain_red_output_growth"), "parent"),
    ("indicators.yaml", "    also_quoted:\n      - plan_line: 91\n", "    also_quoted:\n      - plan_line: zero\n",
     _entry("vc_institutions_new"), "also_quoted"),
    ("indicators.yaml", "    also_quoted:\n      - plan_line: 91\n        plan_text:",
     "    also_quoted:\n      - plan_line: 91\n        plan_txt:", _entry("vc_institutions_new"), "also_quoted"),
    ("indicators.yaml", "    target: 5.6\n", "    target: abc\n", "indicators #1 (gdp_growth)", "target"),
    ("indicators.yaml", "    target: 5.6\n", "    traget: 5.6\n", "indicators #1 (gdp_growth)", "traget"),
    ("indicators.yaml", "    responsible_unit: tjj\n    source: 统计局\n    plan_line: 10\n",
     "    responsible_unit: tjjj\n    source: 统计局\n    plan_line: 10\n", "indicators #1 (gdp_growth)",
     "responsible_unit"),
    ("indicators.yaml", "    kind: growth_rate\n    unit: \"%\"\n    target: 5.6\n",
     "    kind: growth_rate\n    unit: \"个\"\n    target: 5.6\n", "indicators #1 (gdp_growth)", "unit"),
    ("users.yaml", "{username: luocheng, name: 罗成, units: [zrzyj]", "{username: luocheng, name: 罗成, units: [zrzy]",
     "users", "units"),
    ("users.yaml", "{username: luocheng,", "{username: linzhiyuan,", "users", "username"),
    ("org.yaml", "    kind: zone\n    head: konglingjun\n", "    kind: district\n    head: konglingjun\n",
     "units #19 (shz)", "kind"),
    ("org.yaml", "    head: sunmingyuan\n", "    head: nobody\n", "units #1 (fgj)", "head"),
    ("industries.yaml", "    plan_line: 45\n", "    plan_line: zero\n", "industries #1 (smart_appliances)", "plan_line"),
    ("industries.yaml", "    scale_target: 500\n    lead_unit: gxj\n  - code: new_energy",
     "    scale_target: 500.123\n    lead_unit: gxj\n  - code: new_energy", "industries #1 (smart_appliances)",
     "scale_target"),
    ("libraries.yaml", "{code: land, name: 土地资源集约利用类项目}", "{code: land, name: 重点项目}", "libraries #4 (land)",
     "name"),
]


@pytest.mark.parametrize(("name", "old", "new", "entry", "field"), BAD, ids=[f"{b[0]}-{b[4]}" for b in BAD])
def test_a_bad_entry_is_named_and_nothing_is_stored(session: Session, seed_dir: Path, name: str, old: str, new: str,
                                                    entry: str, field: str) -> None:
    _edit(seed_dir, name, old, new)
    with pytest.raises(InvalidInput) as caught:
        load_seed(session, seed_dir)
    first = caught.value.details["problems"][0]
    text = (seed_dir / name).read_text(encoding="utf-8")
    before, lines = text[:text.rindex(new)], new.splitlines()  # a duplicate is reported where it repeats
    line = before.count("\n") + 1 + next(i for i, t in enumerate(lines) if f"{field}:" in t)
    assert (first["file"], first["line"], first["field"]) == (name, line, field), caught.value.message
    assert first["entry"].startswith(entry)
    assert f"{name}:{line} {first['entry']} 字段 (field) {field}: " in caught.value.message
    assert caught.value.details["field"] == field and caught.value.details["file"] == name
    session.commit()
    assert _snapshot(session) == dict.fromkeys(_snapshot(session), 0)


def test_a_yaml_syntax_error_names_the_file_and_line(session: Session, seed_dir: Path) -> None:
    _edit(seed_dir, "libraries.yaml", "{code: government, name: 政府投资项目}\n", "{code: government, name: 政府投资项目\n")
    with pytest.raises(InvalidInput, match=r"libraries\.yaml:\d+: YAML 格式错误 \(syntax error\)"):
        load_seed(session, seed_dir)
    (seed_dir / "industries.yaml").unlink()
    with pytest.raises(InvalidInput, match=r"industries\.yaml: 文件不存在 \(file missing\)"):
        load_seed(session, seed_dir)
    assert _count(session, AuditEvent) == 0


def test_duplicate_keys_in_an_entry_are_refused(session: Session, seed_dir: Path) -> None:
    _edit(seed_dir, "indicators.yaml", "    target: 5.6\n", "    target: 5.6\n    target: 6\n")
    text = (seed_dir / "indicators.yaml").read_text(encoding="utf-8")
    line = text[:text.index("    target: 6\n")].count("\n") + 1
    with pytest.raises(InvalidInput, match=rf"indicators\.yaml:{line}: .*\(duplicate key\) 'target'"):
        load_seed(session, seed_dir)


def test_an_edit_updates_the_row_and_is_audited(session: Session, seed_dir: Path) -> None:
    load_seed(session)
    session.commit()
    events = _count(session, AuditEvent)
    _edit(seed_dir, "indicators.yaml", "    target: 5.6\n", "    target: 6.1\n")
    _edit(seed_dir, "industries.yaml", "    scale_target: 30\n    lead_unit: lkq\n",
          "    scale_target: 30\n    lead_unit: tcj\n")
    _edit(seed_dir, "org.yaml", "    head: sunmingyuan\n    city_leader: wangjianguo\n",
          "    head: linzhiyuan\n    city_leader: lizhenhua\n")
    _edit(seed_dir, "users.yaml", "units: [shz], roles: [investment_officer, service_officer]}",
          "units: [lkq], roles: [investment_officer]}")

    summary = load_seed(session, seed_dir)
    session.commit()
    assert "新增 added 0, 更新 updated 4, 未变 unchanged 204" in summary
    gdp = session.scalar(select(Indicator).where(Indicator.code == "gdp_growth"))
    assert gdp is not None and gdp.target == Decimal("6.1")
    change = session.scalar(select(AuditEvent).where(AuditEvent.action == "plan.indicator.update"))
    assert change is not None and change.before == {"target": "5.6000"} and change.after == {"target": "6.1"}
    low_altitude = session.scalar(select(Industry).where(Industry.code == "low_altitude_economy"))
    tcj = session.scalar(select(OrgUnit).where(OrgUnit.code == "tcj"))
    assert low_altitude is not None and tcj is not None and low_altitude.lead_unit_id == tcj.id

    users = {u.username: u for u in session.scalars(select(User))}
    fgj = session.scalar(select(OrgUnit).where(OrgUnit.code == "fgj"))
    assert fgj is not None and fgj.leader_id == users["linzhiyuan"].id
    assert fgj.responsible_leader_id == users["lizhenhua"].id
    heads = session.scalars(select(Membership.user_id).where(Membership.org_unit_id == fgj.id,
                                                             Membership.is_head.is_(True))).all()
    assert heads == [users["linzhiyuan"].id]  # the old head stays a member, no longer the head
    unit_change = session.scalars(select(AuditEvent).where(AuditEvent.action == "org.unit.update")
                                  .order_by(AuditEvent.id.desc())).first()
    assert unit_change is not None and unit_change.after["head"] == "linzhiyuan"

    memberships = session.execute(select(OrgUnit.code, Role.code).select_from(Membership)
                                  .outerjoin(OrgUnit, OrgUnit.id == Membership.org_unit_id)
                                  .outerjoin(Role, Role.id == Membership.role_id)
                                  .where(Membership.user_id == users["baixue"].id)).all()
    assert {tuple(m) for m in memberships} == {("lkq", None), (None, "investment_officer")}
    assert _count(session, AuditEvent) == events + 4
    assert audit.verify(session).ok

    assert "更新 updated 0" in load_seed(session, seed_dir)  # and the edited files are idempotent too


def test_a_conflict_found_by_the_database_leaves_everything_as_it_was(session: Session, seed_dir: Path) -> None:
    load_seed(session)
    session.commit()
    before = _snapshot(session)
    # Swapping two names passes validation but collides in the database half-way through the update.
    _edit(seed_dir, "org.yaml", "    name: 发展和改革局\n", "    name: 工业和信息化局x\n")
    _edit(seed_dir, "org.yaml", "    name: 工业和信息化局\n", "    name: 发展和改革局\n")
    _edit(seed_dir, "org.yaml", "    name: 工业和信息化局x\n", "    name: 工业和信息化局\n")
    with pytest.raises(InvalidInput, match="nothing changed"):
        load_seed(session, seed_dir)
    session.commit()
    assert _snapshot(session) == before
    assert session.scalar(select(OrgUnit.name).where(OrgUnit.code == "fgj")) == "发展和改革局"


def test_cli_seed_loads_and_reports_bad_input(db_url: str, tmp_path: Path, seed_dir: Path) -> None:
    env = {"JZFLOW_DATABASE_URL": db_url, "JZFLOW_INSTANCE_DIR": str(tmp_path)}
    result = CliRunner().invoke(cli.main, ["seed"], env=env)
    assert result.exit_code == 0, result.output
    assert "32 单位 units" in result.output
    _edit(seed_dir, "indicators.yaml", "    target: 5.6\n", "    target: abc\n")
    result = CliRunner().invoke(cli.main, ["seed", "--path", str(seed_dir)], env=env)
    assert result.exit_code == 2
    assert "indicators.yaml" in result.output and "gdp_growth" in result.output and "target" in result.output
