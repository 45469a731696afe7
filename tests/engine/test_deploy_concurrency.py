"""Defect 2 (issue "Trust II"): two process owners deploy the same process key at once.

Real threads on real connections, on SQLite and PostgreSQL. Every deploy either creates its own
version, is a no-op (identical content), or is refused with a 409 that names who deployed which
version since the base it started from; never a server error, never an edit silently replaced.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, cli, clock, deploy, org
from engine.audit.models import AuditEvent
from engine.errors import EngineError, InvalidInput
from engine.org.actors import SYSTEM, Actor, actor_for
from engine.runtime.models import ProcessDefinition, ProcessFile, ProcessVersion
from tests.conftest import FIXTURES

ROUNDS = 20
GOOD = FIXTURES / "good"
Job = Callable[[Session], list[deploy.Deployed]]


def bundle(marker: str, key: str = "minimal") -> dict[str, str]:
    """The minimal process with its task renamed after `marker` (an owner's edit), under process `key`."""
    text = (GOOD / "minimal.bpmn").read_text(encoding="utf-8")
    text = text.replace('name="审批"', f'name="审批 {marker}"')
    text = text.replace('processRef="minimal"', f'processRef="{key}"').replace('id="minimal"', f'id="{key}"')
    forms = {p.name: p.read_text(encoding="utf-8") for p in (GOOD / "forms").glob("approve.*")}
    return {f"{key}.bpmn": text, **forms}


@pytest.fixture
def owners(session: Session) -> tuple[Actor, Actor]:
    org.add_role(session, code="process_owner", name="流程管理员")
    org.add_user(session, username="owner_a", display_name="流程管理员甲", role_codes=["process_owner"])
    org.add_user(session, username="owner_b", display_name="流程管理员乙", role_codes=["process_owner"])
    deploy.deploy(session, bundle("v1"), actor=SYSTEM, check_lanes=False)
    actors = actor_for(session, "owner_a"), actor_for(session, "owner_b")
    session.commit()  # on SQLite an open transaction holds the write lock
    return actors


def race(factory: sessionmaker[Session], jobs: list[Job]) -> list[object]:
    """Run the jobs at once, each in its own session and thread; return each one's result or exception."""
    barrier = threading.Barrier(len(jobs))
    outcomes: list[object] = [None] * len(jobs)

    def attempt(i: int) -> None:
        with factory() as s:
            s.execute(select(1))  # hold a connection (and on SQLite a transaction) before the race starts
            s.commit()
            barrier.wait()
            try:
                outcomes[i] = jobs[i](s)
                s.commit()
            except Exception as exc:  # an EngineError is an answer; anything else fails the test below
                s.rollback()
                outcomes[i] = exc

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return outcomes


def server_errors(outcomes: list[object]) -> list[object]:
    return [o for o in outcomes if isinstance(o, Exception) and not isinstance(o, EngineError)]


def latest(session: Session, key: str = "minimal") -> int:
    """Read the latest version number, ending the read transaction (on SQLite it holds the write lock)."""
    session.expire_all()
    found = session.scalar(select(ProcessDefinition.latest_version).where(ProcessDefinition.key == key)) or 0
    session.commit()
    return found


def task_name_of(session: Session, key: str, version: int) -> str:
    text = session.scalar(select(ProcessFile.text).join(ProcessVersion).join(ProcessDefinition).where(
        ProcessDefinition.key == key, ProcessVersion.version == version, ProcessFile.name == f"{key}.bpmn"))
    assert text is not None
    session.commit()
    return text.split('<bpmn:userTask id="approve" name="', 1)[1].split('"', 1)[0]


def job(files: dict[str, str], actor: Actor, base: dict[str, int] | None) -> Job:
    if base is None:  # the call of clients that send no base, as before
        return lambda s: deploy.deploy(s, files, actor=actor, check_lanes=False)
    return lambda s: deploy.deploy(s, files, actor=actor, check_lanes=False, base_versions=base)


def test_defect2_concurrent_deploys_from_one_base_one_wins_the_other_gets_409_naming_the_winner(
        session: Session, factory: sessionmaker[Session], owners: tuple[Actor, Actor]) -> None:
    names = {"owner_a": "流程管理员甲", "owner_b": "流程管理员乙"}
    for rnd in range(ROUNDS):
        base = latest(session)
        edits = [bundle(f"{o.username}-{rnd}") for o in owners]
        outcomes = race(factory, [job(edits[i], owners[i], {"minimal": base}) for i in (0, 1)])
        assert server_errors(outcomes) == [], (rnd, outcomes)
        won = [i for i, o in enumerate(outcomes) if isinstance(o, list)]
        lost = [i for i, o in enumerate(outcomes) if isinstance(o, deploy.StaleBaseVersion)]
        assert len(won) == 1 and len(lost) == 1, (rnd, outcomes)
        [created] = outcomes[won[0]]  # type: ignore[misc]
        assert created.created and created.version == base + 1
        assert latest(session) == base + 1
        # What was stored is the winner's edit; the loser was told, with who, which version and when.
        assert task_name_of(session, "minimal", base + 1) == f"审批 {owners[won[0]].username}-{rnd}"
        refusal = outcomes[lost[0]]
        assert isinstance(refusal, deploy.StaleBaseVersion) and refusal.http_status == 409
        winner = names[owners[won[0]].username]
        assert winner in refusal.message and f"v{base + 1}" in refusal.message and f"v{base}" in refusal.message
        assert refusal.details["since"][0]["deployed_by"] == winner
        assert refusal.details["since"][0]["version"] == base + 1
        assert refusal.details["base_version"] == base and refusal.details["latest_version"] == base + 1
    assert latest(session) == 1 + ROUNDS
    assert audit.verify(session).ok


def test_defect2_concurrent_deploys_without_a_base_each_store_their_own_version(
        session: Session, factory: sessionmaker[Session], owners: tuple[Actor, Actor]) -> None:
    """Clients that send no base (older scripts): no server error, and both edits are kept as versions."""
    for rnd in range(ROUNDS):
        base = latest(session)
        edits = [bundle(f"{o.username}-{rnd}") for o in owners]
        outcomes = race(factory, [job(edits[i], owners[i], None) for i in (0, 1)])
        assert server_errors(outcomes) == [], (rnd, outcomes)
        versions = sorted(r.version for o in outcomes for r in o)  # type: ignore[attr-defined]
        assert versions == [base + 1, base + 2], (rnd, outcomes)
        stored = {task_name_of(session, "minimal", v) for v in versions}
        assert stored == {f"审批 {o.username}-{rnd}" for o in owners}
    deploys = session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.stream == "process:minimal", AuditEvent.action == "process.deploy"))
    assert deploys == 1 + 2 * ROUNDS
    assert audit.verify(session).ok


def test_defect2_concurrent_deploys_of_identical_content_store_one_version(
        session: Session, factory: sessionmaker[Session], owners: tuple[Actor, Actor]) -> None:
    for rnd in range(ROUNDS // 4):
        base = latest(session)
        same = bundle(f"same-{rnd}")
        outcomes = race(factory, [job(same, owners[i], {"minimal": base}) for i in (0, 1)])
        assert server_errors(outcomes) == [], (rnd, outcomes)
        results = sorted(((r.version, r.created) for o in outcomes for r in o), key=lambda x: x[1])  # type: ignore[attr-defined]
        assert results == [(base + 1, False), (base + 1, True)], (rnd, outcomes)
    assert latest(session) == 1 + ROUNDS // 4


def test_defect2_concurrent_deploys_of_a_new_process_key(session: Session, factory: sessionmaker[Session],
                                                         owners: tuple[Actor, Actor]) -> None:
    """A key nobody deployed yet (uq_process_definition_key): same content → one version; a new-process base (0)
    that lost → 409; no base → two versions."""
    for rnd in range(ROUNDS // 4):
        same = bundle("same", key=f"same_{rnd}")
        outcomes = race(factory, [job(same, owners[i], None) for i in (0, 1)])
        assert server_errors(outcomes) == [], outcomes
        assert sorted(r.created for o in outcomes for r in o) == [False, True]  # type: ignore[attr-defined]
        fresh = [bundle(o.username, key=f"fresh_{rnd}") for o in owners]
        outcomes = race(factory, [job(fresh[i], owners[i], {f"fresh_{rnd}": 0}) for i in (0, 1)])
        assert server_errors(outcomes) == [], outcomes
        assert sum(isinstance(o, deploy.StaleBaseVersion) for o in outcomes) == 1, outcomes
        loose = [bundle(o.username, key=f"loose_{rnd}") for o in owners]
        outcomes = race(factory, [job(loose[i], owners[i], None) for i in (0, 1)])
        assert server_errors(outcomes) == [], outcomes
        assert latest(session, f"same_{rnd}") == 1 and latest(session, f"fresh_{rnd}") == 1
        assert latest(session, f"loose_{rnd}") == 2


def test_a_stale_base_is_refused_naming_who_deployed_what_when(session: Session, owners: tuple[Actor, Actor],
                                                              frozen: type[clock]) -> None:
    owner_a, owner_b = owners
    deploy.deploy(session, bundle("b-edit"), actor=owner_b, check_lanes=False, base_versions={"minimal": 1})
    session.commit()
    with pytest.raises(deploy.StaleBaseVersion) as err:
        deploy.deploy(session, bundle("a-edit"), actor=owner_a, check_lanes=False, base_versions={"minimal": 1})
    session.rollback()
    refusal = err.value
    assert "流程管理员乙" in refusal.message and "v2" in refusal.message and "2025-09-01 09:00" in refusal.message
    assert refusal.details["key"] == "minimal" and refusal.details["base_version_id"] != refusal.details["latest_version_id"]
    assert latest(session) == 2 and task_name_of(session, "minimal", 2) == "审批 b-edit"
    # Starting again from the latest version goes through.
    [again] = deploy.deploy(session, bundle("a-edit"), actor=owner_a, check_lanes=False, base_versions={"minimal": 2})
    assert again.created and again.version == 3


@pytest.mark.parametrize("base", [{"minimal": 7}, {"minimal": -1}, {"other": 1}])
def test_a_base_version_that_does_not_fit_is_refused_naming_the_field(session: Session, owners: tuple[Actor, Actor],
                                                                       base: dict[str, int]) -> None:
    with pytest.raises(InvalidInput) as err:
        deploy.deploy(session, bundle("x"), actor=owners[0], check_lanes=False, base_versions=base)
    session.rollback()
    assert err.value.details["field"] == "base_version"
    assert latest(session) == 1


def test_cli_deploy_takes_a_base_version_and_refuses_a_stale_one(db_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"JZFLOW_DATABASE_URL": db_url, "JZFLOW_INSTANCE_DIR": str(tmp_path)}
    folder = tmp_path / "edit"
    (folder / "forms").mkdir(parents=True)
    for name, text in bundle("cli-1").items():
        (folder / ("forms" if name.endswith(".json") else "") / name).write_text(text, encoding="utf-8")
    first = runner.invoke(cli.main, ["deploy", "--no-lane-check", "--base-version", "minimal=0", str(folder)], env=env)
    assert first.exit_code == 0 and "minimal: v1" in first.output, first.output
    (folder / "minimal.bpmn").write_text(bundle("cli-2")["minimal.bpmn"], encoding="utf-8")
    second = runner.invoke(cli.main, ["deploy", "--no-lane-check", "--base-version", "minimal=1", str(folder)], env=env)
    assert second.exit_code == 0 and "minimal: v2" in second.output, second.output
    (folder / "minimal.bpmn").write_text(bundle("cli-3")["minimal.bpmn"], encoding="utf-8")
    stale = runner.invoke(cli.main, ["deploy", "--no-lane-check", "--base-version", "minimal=1", str(folder)], env=env)
    assert stale.exit_code == 2 and "stale_base_version" in stale.output and "v2" in stale.output, stale.output
    assert "Traceback" not in stale.output
    for bad in ("3", "minimal=x", "=2"):
        refused = runner.invoke(cli.main, ["deploy", "--no-lane-check", "--base-version", bad, str(folder)], env=env)
        assert refused.exit_code == 2 and "--base-version" in refused.output, refused.output
