"""The task page's forms that change state, sent twice — a double click, a resend after a slow answer — get the first
answer (its redirect, its flash) and do nothing twice; never an error caused by the user's own first click. A new
page draw after the work is done still gets today's clear refusal."""
from __future__ import annotations

from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.audit.models import AuditEvent
from engine.tasks.collab_models import CarbonCopy
from engine.tasks.models import HumanTask
from tests.web.conftest import csrf_of, form_at
from tests.web.test_forms_once import sent_twice
from tests.web.test_task_page import at_review, deployed, post, task_of

__all__ = ["deployed"]
Login = Callable[[str], FlaskClient]


def _audited(factory: sessionmaker[Session], action: str) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)) or 0


def test_a_task_submitted_twice_gets_the_first_answer(deployed: sessionmaker[Session], login: Login) -> None:
    """提交 sent twice was refused 409 (already done) by its own first click: it is the first's answer now (its
    redirect, 已提交), one completion; the form kept from before it, with a new key, is still refused 409."""
    _, review = at_review(deployed)
    fg = login("fg")
    post(fg, f"/tasks/{review}/claim")
    action = f"/tasks/{review}/complete"
    fields = {**form_at(fg, f"/tasks/{review}", action), "f/approved": "true", "opinion": "同意立项"}
    before = _audited(deployed, "task.complete")  # the applicant's 填报
    sent_twice(fg, action, fields, said="已提交", other={"opinion": "另一个意见"})
    assert _audited(deployed, "task.complete") == before + 1
    again = fg.post(action, data={**fields, "once": "0" * 32})  # another page's key: the step is done, said so
    assert again.status_code == 409 and "此表单已提交过" not in again.get_data(as_text=True)
    zr = login("zr")  # another person sending the same key gets no answer of fg's: the step is done, said so
    theirs = zr.post(action, data={**fields, "csrf_token": csrf_of(zr, "/inbox")})
    assert theirs.status_code == 409 and "此表单已提交过" not in theirs.get_data(as_text=True)
    assert _audited(deployed, "task.complete") == before + 1


def test_a_malformed_key_on_the_task_form_is_refused_naming_it(deployed: sessionmaker[Session],
                                                               login: Login) -> None:
    _, review = at_review(deployed)
    fg = login("fg")
    post(fg, f"/tasks/{review}/claim")
    action = f"/tasks/{review}/complete"
    fields = {**form_at(fg, f"/tasks/{review}", action), "f/approved": "true", "once": "x" * 65}
    before = _audited(deployed, "task.complete")
    refused = fg.post(action, data=fields)
    assert refused.status_code == 422 and "once" in refused.get_data(as_text=True)
    assert _audited(deployed, "task.complete") == before
    strange = fg.post(f"/tasks/{review}/unclaim", data={**fields, "once": "é"})
    assert strange.status_code == 422 and "once" in strange.get_data(as_text=True)
    assert _audited(deployed, "task.unclaim") == 0


def _copies(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(CarbonCopy)) or 0


def test_a_cc_sent_again_after_it_was_read_reaches_no_one_twice(deployed: sessionmaker[Session],
                                                                 login: Login) -> None:
    """抄送's own de-duplication looks at unread copies only: resent after the recipient had read the first copy, it
    reached them again. The form carries `once` now: the resend is the first's answer, one copy; a 抄送 from a page
    drawn again later still reaches them."""
    _, review = at_review(deployed)
    fg, boss = login("fg"), login("boss")
    post(fg, f"/tasks/{review}/claim")
    action = f"/tasks/{review}/cc"
    fields = {**form_at(fg, f"/tasks/{review}", action), "usernames": "boss", "note": "请阅"}
    first = fg.post(action, data=fields)
    assert first.status_code == 302 and _copies(deployed) == 1
    assert post(boss, "/inbox/cc/read-all").status_code == 302  # boss reads it
    sent_twice(fg, action, fields, said="已抄送给", other={"note": "另一说明"})
    assert _copies(deployed) == 1 and _audited(deployed, "instance.cc") == 1
    fresh = {**form_at(fg, f"/tasks/{review}", action), "usernames": "boss", "note": "请阅"}  # a deliberate 抄送
    assert fg.post(action, data=fresh).status_code == 302 and _copies(deployed) == 2


def _tasks(factory: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    with factory() as s:
        return [(t.bpmn_id, t.kind, t.state) for t in s.scalars(select(HumanTask).order_by(HumanTask.id))]


def test_a_claim_sent_twice_is_answered_alike(deployed: sessionmaker[Session], login: Login) -> None:
    """认领 needs no key: claiming one's own claimed task again is the same answer (已认领), one claim audited."""
    _, review = at_review(deployed)
    fg = login("fg")
    first, second = post(fg, f"/tasks/{review}/claim"), post(fg, f"/tasks/{review}/claim")
    assert first.status_code == second.status_code == 302 and first.headers["Location"] == second.headers["Location"]
    assert "已认领" in fg.get(second.headers["Location"]).get_data(as_text=True)
    assert _audited(deployed, "task.claim") == 1


def test_an_unclaim_sent_twice_gets_the_first_answer(deployed: sessionmaker[Session], login: Login) -> None:
    """取消认领's second copy was refused 403 只能取消自己认领的任务: the first had given it back."""
    _, review = at_review(deployed)
    fg = login("fg")
    post(fg, f"/tasks/{review}/claim")
    action = f"/tasks/{review}/unclaim"
    sent_twice(fg, action, form_at(fg, f"/tasks/{review}", action), said="已取消认领", other={"x": "1"})
    assert _audited(deployed, "task.unclaim") == 1


def test_a_transfer_sent_twice_gets_the_first_answer(deployed: sessionmaker[Session], login: Login) -> None:
    """转办's second copy was refused 403 只有任务办理人可以执行此操作: the first had handed the task on."""
    _, review = at_review(deployed)
    fg = login("fg")
    post(fg, f"/tasks/{review}/claim")
    action = f"/tasks/{review}/transfer"
    fields = {**form_at(fg, f"/tasks/{review}", action), "to_username": "zr", "note": "请办理"}
    sent_twice(fg, action, fields, said="已转办给", other={"to_username": "st"})
    assert _audited(deployed, "task.transfer") == 1


def test_a_delegation_and_its_resolution_sent_twice_get_the_first_answers(deployed: sessionmaker[Session],
                                                                        login: Login) -> None:
    """委派's second copy was refused 403 任务已委派; 委派退回's 403 此任务没有委派给您: each by its own first."""
    _, review = at_review(deployed)
    fg, zr = login("fg"), login("zr")
    post(fg, f"/tasks/{review}/claim")
    action = f"/tasks/{review}/delegate"
    fields = {**form_at(fg, f"/tasks/{review}", action), "to_username": "zr", "note": "请核实"}
    sent_twice(fg, action, fields, said="已委派给", other={"note": "另一说明"})
    assert _audited(deployed, "task.delegate") == 1
    action = f"/tasks/{review}/resolve"
    fields = {**form_at(zr, f"/tasks/{review}", action), "opinion": "已核实"}
    sent_twice(zr, action, fields, said="已处理并退回委派人", other={"opinion": "另一意见"})
    assert _audited(deployed, "task.delegation_resolved") == 1


def test_a_send_back_and_a_withdrawal_sent_twice_get_the_first_answers(deployed: sessionmaker[Session],
                                                                       login: Login) -> None:
    """退回's second copy was refused 409 此任务已取消; 撤回's second copy was refused too: each by its own first."""
    instance_id, review = at_review(deployed)
    fg, applicant = login("fg"), login("applicant")
    post(fg, f"/tasks/{review}/claim")
    action = f"/tasks/{review}/send-back"
    fields = {**form_at(fg, f"/tasks/{review}", action), "reason": "请补材料"}
    sent_twice(fg, action, fields, said="已退回到", other={"reason": "另一理由"})
    assert _audited(deployed, "task.send_back") == 1
    fill = task_of(deployed, instance_id, "fill")
    assert post(applicant, f"/tasks/{fill}/complete", {"f/note": "已补"}).status_code == 302
    action = f"/tasks/{fill}/withdraw"
    fields = {**form_at(applicant, f"/tasks/{fill}", action), "reason": "还要改"}
    sent_twice(applicant, action, fields, said="已撤回", other={"reason": "另一理由"})
    assert _audited(deployed, "task.withdraw") == 1
    assert [t for t in _tasks(deployed) if t[2] == "ready"] == [("fill", "bpmn", "ready")]


def test_a_cosigner_removed_twice_gets_the_first_answer(deployed: sessionmaker[Session], login: Login) -> None:
    """减签's second copy was refused: the first had taken the co-signer off."""
    instance_id, review = at_review(deployed)
    fg = login("fg")
    post(fg, f"/tasks/{review}/claim")
    post(fg, f"/tasks/{review}/cosigners", {"usernames": "st", "position": "before"})
    cosign = task_of(deployed, instance_id, "review", kind="cosign")
    action = f"/tasks/{review}/cosigners/{cosign}/remove"
    sent_twice(fg, action, form_at(fg, f"/tasks/{review}", action), said="已减签", other={"x": "1"})
    assert _audited(deployed, "task.cosign.remove") == 1
