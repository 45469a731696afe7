"""Issue #17: SpiffWorkflow 3.2.0 copies the parent's data into every ④ 认领 child, the whole `plan_items` list
included, so a period's state grew as items × items. The state writes such a repeated value once
(engine/spiff/repeats.py): a 七步工作法 period with 16 items saves far less, and claims, 撤回, compaction and a restart
work as before."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from engine import runtime
from engine.org.actors import Actor
from engine.runtime.models import ProcessInstance, ProcessStateHistory
from engine.spiff import repeats, serializer
from engine.tasks import sendback
from tests.processes.test_investment_loop import deployed, figures, people, start
from tests.processes.test_investment_loop_compaction import ITEMS, _claim, _same_kept_and_stored, _state, _to_claims
from tests.steps import do, names, only_task

__all__ = ["deployed", "figures", "people"]


def _unshared(session: Session, iid: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """The state as the serializer wrote it before (every copy in full)."""
    with monkeypatch.context() as m:
        m.setattr(repeats, "share", lambda dct, encode: None)
        text = serializer.dump_state(runtime.load(session, iid, read_only=True).workflow)
    session.rollback()
    return text


def test_a_period_with_16_items_writes_the_plan_once_and_runs_as_before(
        session: Session, factory: sessionmaker[Session], people: dict[str, Actor], deployed: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert ITEMS == 16
    iid = _to_claims(session, people)
    stored = _state(session, iid)
    session.rollback()
    before = _unshared(session, iid, monkeypatch)
    table = json.loads(stored)[repeats.KEY]
    # The plan's items (and ①②'s results): in every open child's subprocess before, once now.
    assert max(len(at) for at in table["at"]) >= ITEMS, [len(at) for at in table["at"]]
    print(f"state after ③ with {ITEMS} items: {len(before)} chars before, {len(stored)} now")
    # Before: 127 K (bench/wide.py); each child's copies of the parent's data were ~28 K of it.
    assert len(stored) < 0.8 * len(before), (len(stored), len(before))
    assert len(stored) < 100_000
    _same_kept_and_stored(session, iid)
    # A state saved before (jz2: every copy in full) loads, and the next save writes the table.
    with factory() as other:
        other.execute(update(ProcessInstance).where(ProcessInstance.id == iid).values(
            state=before, serializer_version="jz2/spiff1.5", lock_version=ProcessInstance.lock_version + 1))
        other.commit()
    session.expire_all()

    done = _claim(session, people, iid, ITEMS - 1)
    assert len(_state(session, iid)) < len(stored)
    session.rollback()
    with factory() as s:  # finished children still leave for the history table
        assert s.scalar(select(func.count()).select_from(ProcessStateHistory)
                        .where(ProcessStateHistory.instance_id == iid)) > 0
    # A restart loads what was saved (before a 撤回: see _same_kept_and_stored).
    runtime._spec_cache.clear()
    session.rollback()
    with factory() as other:
        text = _state(other, iid)
        row = other.get(ProcessInstance, iid)
        assert row is not None and row.serializer_version == serializer.SERIALIZER_VERSION
        loaded = serializer.load_state(text, runtime.specs_for(other, row.version_id), runtime.script_engine(),
                                       version=row.serializer_version)
        assert serializer.dump_state(loaded) == text
    # 撤回 of the claim just made, and of the first (compacted into history, read back from there).
    leader = people["wangjianguo"]
    for task in (done[-1], done[0]):
        session.expire_all()
        reopened = sendback.withdraw(session, task_id=task.id, actor=leader, reason="填错了")
        session.commit()
        assert reopened.task_guid == task.task_guid
    _same_kept_and_stored(session, iid)
    assert names(session, iid).count("claim_item") == 3
    _claim(session, people, iid, 3)
    assert names(session, iid) == ["publish_call", "record_visits", "source_leads"]


def test_the_widest_plan_the_review_form_allows_opens_every_claim(
        session: Session, people: dict[str, Actor], deployed: dict[str, str]) -> None:
    """50 items (the form's maxItems) with titles at their maxLength, in Chinese (industry and indicator are names
    of the plan's own, checked by ③'s service): each ④ child starts with a copy
    of the whole plan, and the copies stay under the bound on what a fan-out may hold (engine.spiff.fanout
    `check_copies`: characters as held, a Chinese character one)."""
    iid = start(session)
    do(session, only_task(session, iid, "confirm_figures"), people["tongji"], {"figures_decision": "confirm"})
    items = [{"title": f"{i:02d}" + "招" * 298, "industry": "", "indicator": ""} for i in range(50)]
    do(session, only_task(session, iid, "review_plan"), people["guihua"], {"items": items})
    assert names(session, iid).count("claim_item") == 50
    row = session.get(ProcessInstance, iid)
    assert row is not None and row.status == "running"
