"""Beat's daily job starts last month's 七步工作法 instance once."""
from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import clock, deploy
from engine.celery_app import celery
from engine.org.actors import SYSTEM
from engine.runtime.models import ProcessInstance
from plan import jobs
from plan.data import seed
from tests.conftest import FIXTURES


def test_the_period_job_starts_one_instance_per_month(session: Session, factory: sessionmaker[Session],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seed.load_seed(session)
    deploy.deploy(session, deploy.read_directory(FIXTURES.parent.parent / "bpmn"), actor=SYSTEM)
    session.commit()
    session.close()
    monkeypatch.setattr(jobs, "session_factory", lambda: factory)  # the job's own factory is the env's DB
    clock.freeze(datetime(2025, 9, 3, 8, 0, tzinfo=clock.SHANGHAI))
    first = jobs.start_investment_period.run()
    again = jobs.start_investment_period.run()
    assert first is not None and first == again
    with factory() as s:
        rows = s.scalar(select(func.count()).select_from(ProcessInstance)
                        .where(ProcessInstance.business_key == "investment_loop:2025-08"))
        assert rows == 1
    assert "start-investment-period" in celery.conf.beat_schedule


def test_the_slow_project_job_raises_one_issue_per_lag(session: Session, factory: sessionmaker[Session],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import date
    from decimal import Decimal

    from engine.org.models import OrgUnit
    from plan.ledger.models import LedgerIssue
    from plan.projects.models import Project, ProjectLibrary
    seed.load_seed(session)
    deploy.deploy(session, deploy.read_directory(FIXTURES.parent.parent / "bpmn"), actor=SYSTEM)
    library = session.scalars(select(ProjectLibrary)).first()
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == "gxj"))
    assert library is not None and unit is not None
    session.add(Project(code="XM-T-0001", name="测试滞后项目", library_id=library.id, category="focus",
                        investment=Decimal("12000"), stage="signed", responsible_unit_id=unit.id,
                        planned_start=date(2025, 6, 30)))
    session.commit()
    session.close()
    monkeypatch.setattr(jobs, "session_factory", lambda: factory)
    clock.freeze(datetime(2025, 9, 3, 8, 0, tzinfo=clock.SHANGHAI))
    assert jobs.flag_slow_projects.run() == 1
    assert jobs.flag_slow_projects.run() == 1  # still late, still one issue
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(LedgerIssue).where(LedgerIssue.source == "project")) == 1
    assert "flag-slow-projects" in celery.conf.beat_schedule
