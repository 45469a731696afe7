"""Indicators beyond one number on one line: a count over its parts, a range, a target the plan restates.

- 5条产业链产值增长20% (line 63): `agri_chains_on_target` counts the five chains (红黄黑白+粮油) that meet
  their own 20 % — unless a figure of its own is recorded, which wins.
- 定向招引3—5家 (line 80): met at 3, shown as 3—5.
- 新增落户创投风投机构20家 (lines 26 and 91): one indicator; migration 0020 folds the second one that
  earlier seeds made into it, figures and plan items included.
"""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from engine import migrate
from plan import investment as plan
from plan.data.seed import load_seed
from plan.indicators.models import Indicator, IndicatorValue

CHAINS = ("red", "yellow", "black", "white", "grain_oil")


def _record(session: Session, code: str, period: str, value: str) -> None:
    indicator = session.scalars(select(Indicator).where(Indicator.code == code)).one()
    session.add(IndicatorValue(indicator_id=indicator.id, period=period, value=Decimal(value)))
    session.flush()


def _status(session: Session, period: str) -> dict[str, plan.Assessment]:
    return {a.code: a for a in plan.indicator_statuses(session, period)}


def test_the_count_of_chains_is_the_chains_that_meet_their_target(session: Session) -> None:
    load_seed(session)
    assert _status(session, "2025-06")["agri_chains_on_target"].status == "missing"  # no chain has a figure yet
    for chain, value in zip(CHAINS, ("21", "20", "12.5", "19.99", "25"), strict=True):
        _record(session, f"agri_chain_{chain}_output_growth", "2025-05", value)
    _record(session, "agri_chain_black_output_growth", "2025-06", "20.5")  # the latest figure counts
    rows = _status(session, "2025-06")
    whole = rows["agri_chains_on_target"]
    assert (whole.value, whole.as_of, whole.status, whole.gap) == (Decimal(4), "2025-06", "behind", Decimal(1))
    assert rows["agri_chain_white_output_growth"].status == "behind"
    assert {rows[f"agri_chain_{c}_output_growth"].parent_id for c in CHAINS} == {whole.indicator_id}
    # As of May only three chains met 20 %.
    assert _status(session, "2025-05")["agri_chains_on_target"].value == Decimal(3)
    _record(session, "agri_chain_white_output_growth", "2025-07", "20")
    assert _status(session, "2025-07")["agri_chains_on_target"].status == "met"
    # A figure recorded for the count itself wins over the parts.
    _record(session, "agri_chains_on_target", "2025-07", "2")
    assert _status(session, "2025-07")["agri_chains_on_target"].value == Decimal(2)


def test_a_range_is_met_at_its_lower_end_and_shown_whole(session: Session) -> None:
    load_seed(session)
    _record(session, "aerospace_leading_firms", "2025-04", "3")
    row = _status(session, "2025-04")["aerospace_leading_firms"]
    assert (row.target, row.target_high, row.target_text, row.status) == (Decimal(3), Decimal(5), "3—5", "met")
    assert _status(session, "2025-04")["gdp_growth"].target_text == "5.6"


def test_a_restated_target_is_one_indicator(session: Session) -> None:
    load_seed(session)
    row = session.scalars(select(Indicator).where(Indicator.code == "vc_institutions_new")).one()
    assert (row.plan_line, row.also_quoted) == (26, [{"plan_line": 91, "plan_text": "创投风投机构新增落户20家"}])
    assert session.scalar(select(Indicator).where(Indicator.code == "finance_vc_institutions_new")) is None


def test_migration_0020_folds_the_duplicate_into_the_kept_indicator(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0012")
    engine = create_engine(url)
    with engine.begin() as conn:
        for id_, code in ((1, "vc_institutions_new"), (2, "finance_vc_institutions_new")):
            conn.execute(text("INSERT INTO indicator (id, code, name, \"group\", kind, unit, target, comparison, year, "
                              "cumulative, source, plan_text, plan_line) VALUES (:id, :code, :code, 'operations', "
                              "'count', '家', 20, '>=', 2025, 1, '', '', 26)"), {"id": id_, "code": code})
        for indicator, period, value in ((1, "2025-01", 2), (2, "2025-01", 3), (2, "2025-02", 5)):
            conn.execute(text("INSERT INTO indicator_value (indicator_id, period, value, source, recorded_at) "
                              "VALUES (:i, :p, :v, '', '2025-03-01')"), {"i": indicator, "p": period, "v": value})
        conn.execute(text("INSERT INTO plan_item (period, indicator_id, title, status, created_at) "
                          "VALUES ('2025-02', 2, 'x', 'open', '2025-02-01')"))
    engine.dispose()
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, code FROM indicator")).all() == [(1, "vc_institutions_new")]
        values = conn.execute(text("SELECT indicator_id, period, value FROM indicator_value ORDER BY period")).all()
        assert [(i, p, Decimal(str(v))) for i, p, v in values] == [(1, "2025-01", Decimal(2)), (1, "2025-02", Decimal(5))]
        assert conn.execute(text("SELECT indicator_id FROM plan_item")).scalars().all() == [1]
    engine.dispose()
