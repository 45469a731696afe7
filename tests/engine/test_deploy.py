"""Deploy validates everything first, pins each problem to file/element/line, and stores nothing on error."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import cli, deploy
from engine.audit.models import AuditEvent
from engine.errors import DeployInvalid, DeployProblem
from engine.org.actors import SYSTEM, Actor
from engine.runtime import instances
from engine.runtime.models import ProcessFile, ProcessInstance, ProcessVersion
from tests.conftest import FIXTURES, read_fixture_dir

BAD = FIXTURES / "bad"

# file → (file named in the problem, element id, line, words in the message)
EXPECTED = {
    "malformed.bpmn": ("malformed.bpmn", None, 20, "malformed XML"),
    "unknown_element.bpmn": ("unknown_element.bpmn", "frobnicate_1", 12, "frobnicate"),
    "no_start_event.bpmn": ("no_start_event.bpmn", "no_start_event", 8, "no start event"),
    "bad_condition.bpmn": ("bad_condition.bpmn", "flow_bad", 26, "condition"),
    "unquoted_timer.bpmn": ("unquoted_timer.bpmn", "timer_bad", 17, "must be quoted"),
    "escape_script.bpmn": ("escape_script.bpmn", "script_escape", 15, "refused"),
    "import_script.bpmn": ("import_script.bpmn", "script_import", 15, "refused"),
}


def problems_of(files: dict[str, bytes], session: Session) -> list[DeployProblem]:
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, files, actor=SYSTEM, check_lanes=False)
    return err.value.problems


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_bpmn_is_refused_with_file_element_and_line(session: Session, name: str) -> None:
    problems = problems_of({name: (BAD / name).read_bytes()}, session)
    file, element, line, words = EXPECTED[name]
    assert any(p.file == file and p.element_id == element and p.line == line and words.lower() in p.message.lower()
               for p in problems), problems
    assert session.scalar(select(func.count()).select_from(ProcessVersion)) == 0


def test_overlapping_unique_rules_are_named(session: Session) -> None:
    files = {n: (BAD / n).read_bytes() for n in ("overlapping_dmn.bpmn", "overlapping_dmn.dmn")}
    [problem] = problems_of(files, session)
    assert problem.file == "overlapping_dmn.dmn" and problem.element_id == "Rule_medium" and problem.line == 24
    assert "Rule_small" in problem.message and "Rule_medium" in problem.message


def test_invalid_form_schema_is_refused(session: Session) -> None:
    problems = problems_of(deploy.read_directory(BAD / "invalid_form"), session)
    assert any(p.file == "broken.schema.json" and p.line == 8 and "properties/name/type" in p.message
               for p in problems), problems


def test_missing_form_file_is_refused(session: Session) -> None:
    problems = problems_of(deploy.read_directory(BAD / "missing_form"), session)
    assert any(p.element_id == "fill_missing" and "does_not_exist.schema.json" in p.message for p in problems)


def test_unknown_lane_is_refused(session: Session) -> None:
    with pytest.raises(DeployInvalid) as err:
        deploy.deploy(session, read_fixture_dir("good"), actor=SYSTEM)
    assert any(p.element_id == "lane_applicant" and "申请人" in p.message for p in err.value.problems)


def test_redeploy_is_a_noop_and_a_change_makes_a_version(session: Session, review_org: dict[str, Actor]) -> None:
    files = read_fixture_dir("good")
    first = {d.key: d for d in deploy.deploy(session, files, actor=SYSTEM)}
    assert {k: (d.version, d.created) for k, d in first.items()} == {
        "minimal": (1, True), "review_process": (1, True), "timer_wait": (1, True)}
    row = instances.start(session, process_key="minimal", actor=review_org["fg"])
    again = deploy.deploy(session, files, actor=SYSTEM)
    assert all(not d.created and d.version == 1 for d in again)
    changed = dict(files)
    changed["minimal.bpmn"] = files["minimal.bpmn"].replace("审批".encode(), "审核".encode(), 1)
    assert changed["minimal.bpmn"] != files["minimal.bpmn"]
    result = {d.key: d for d in deploy.deploy(session, changed, actor=SYSTEM)}
    assert result["minimal"].created and result["minimal"].version == 2
    assert not result["review_process"].created
    # The running instance stays on its version.
    assert session.get(ProcessInstance, row.id).version.version == 1  # type: ignore[union-attr]
    v2 = deploy.latest_version(session, "minimal")
    assert v2 is not None and v2.version == 2
    assert session.scalar(select(ProcessFile.text).where(ProcessFile.version_id == v2.id,
                                                         ProcessFile.name == "minimal.bpmn")) is not None
    session.commit()  # audit events are chained onto their streams at commit
    assert session.scalar(select(func.count()).select_from(AuditEvent)
                          .where(AuditEvent.action == "process.deploy")) == 4


def _env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return {"JZFLOW_DATABASE_URL": db_url, "JZFLOW_INSTANCE_DIR": str(tmp_path)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cli_deploy_of_bad_bpmn_exits_non_zero_without_traceback(db_url: str, tmp_path: Path, name: str) -> None:
    result = CliRunner().invoke(cli.main, ["deploy", "--no-lane-check", str(BAD / name)], env=_env(db_url, tmp_path))
    assert result.exit_code == 2, result.output
    assert ("Traceback" not in result.output and result.exception is None) or isinstance(result.exception, SystemExit)
    file, element, line, _words = EXPECTED[name]
    assert f"{file}:{line}" in result.output
    if element:
        assert f"[{element}]" in result.output


def test_cli_deploy_of_good_files_and_a_run(db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    env = _env(db_url, tmp_path)
    assert runner.invoke(cli.main, ["add-unit", "dept", "审批部门"], env=env).exit_code == 0
    assert runner.invoke(cli.main, ["add-user", "wang", "--name", "王五", "--unit", "dept"], env=env).exit_code == 0
    out = runner.invoke(cli.main, ["deploy", str(FIXTURES / "good" / "minimal.bpmn"),
                                   str(FIXTURES / "good" / "forms")], env=env)
    assert out.exit_code == 0, out.output
    assert "minimal: v1" in out.output
    out = runner.invoke(cli.main, ["start", "minimal", "--as", "wang"], env=env)
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli.main, ["tasks", "--as", "wang"], env=env)
    assert "可认领" in out.output, out.output
    task_id = out.output.split("\t", 1)[0]
    assert runner.invoke(cli.main, ["claim", task_id, "--as", "wang"], env=env).exit_code == 0
    bad = runner.invoke(cli.main, ["complete", task_id, "--as", "wang", "--data", "{not json"], env=env)
    assert bad.exit_code == 2 and "--data is not valid JSON" in bad.output
    nobody = runner.invoke(cli.main, ["complete", task_id, "--as", "ghost", "--data", "{}"], env=env)
    assert nobody.exit_code == 2 and "ghost" in nobody.output
    verify = runner.invoke(cli.main, ["audit-verify"], env=env)
    assert verify.exit_code == 0 and "intact" in verify.output
