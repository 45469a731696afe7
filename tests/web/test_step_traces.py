"""A comment, a file or a 抄送 posted from a step's page after the step closed (撤回, 退回, a submission).

The page the form came from says whether it showed the step open (its hidden `step`): a step shown open and closed
since is refused (409, why, in the reader's language) and nothing is kept; a step shown ended (its page in 已办) may
still be written on, as it always could.
"""
from __future__ import annotations

import io
import re
from collections.abc import Callable

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.notify.models import OutboxMessage
from engine.tasks.collab_models import Attachment, CarbonCopy, Comment
from tests.web.test_task_page import at_review, deployed, page, post, row, task_of  # noqa: F401 (deployed: fixture)

Login = Callable[[str], FlaskClient]


def _kept(factory: sessionmaker[Session], instance_id: int) -> tuple[int, int, int, int]:
    """The comments, files, 抄送 and 抄送 notices the instance has."""
    with factory() as s:
        found = (s.scalar(select(func.count()).select_from(Comment).where(Comment.instance_id == instance_id,
                                                                          Comment.kind == "comment")),
                 s.scalar(select(func.count()).select_from(Attachment).where(Attachment.instance_id == instance_id)),
                 s.scalar(select(func.count()).select_from(CarbonCopy).where(CarbonCopy.instance_id == instance_id)),
                 s.scalar(select(func.count()).select_from(OutboxMessage).where(
                     OutboxMessage.payload["kind"].as_string() == "cc")))
        s.rollback()
    return tuple(int(n or 0) for n in found)  # type: ignore[return-value]


def _shown(html: str, action: str) -> str:
    """The hidden `step` of the page's form posting to `action`."""
    form = html[html.index(f'action="{action}"'):]
    found = re.search(r'name="step" value="(\w+)"', form[:form.index("</form>")])
    assert found is not None, form[:600]
    return found.group(1)


def test_a_trace_on_a_step_withdrawn_since_its_page_was_shown_is_refused_and_kept_nowhere(
        deployed: sessionmaker[Session], login: Login) -> None:  # noqa: F811
    instance_id, review = at_review(deployed)
    fill = task_of(deployed, instance_id, "fill", state="completed")
    fg, applicant = login("fg"), login("applicant")
    html = page(fg, review)  # fg has the review open in a tab
    for action in ("comments", "attachments", "cc"):
        assert _shown(html, f"/tasks/{review}/{action}") == "open"
    assert post(applicant, f"/tasks/{fill}/withdraw", {"reason": "填错了"}).status_code == 302
    assert row(deployed, review).state == "cancelled"

    refused = post(fg, f"/tasks/{review}/comments", {"step": "open", "body": "材料在看"})
    text = refused.get_data(as_text=True)
    assert refused.status_code == 409 and "此步骤已结束" in text and "评论未保存" in text
    upload = {"step": "open", "file": (io.BytesIO(b"doc"), "审查意见.docx", "text/plain")}
    refused = post(fg, f"/tasks/{review}/attachments", upload, content_type="multipart/form-data")
    assert refused.status_code == 409 and "附件未保存" in refused.get_data(as_text=True)
    refused = post(fg, f"/tasks/{review}/cc", {"step": "open", "usernames": "boss", "note": "请知悉"},
                   headers={"Referer": f"http://localhost/tasks/{review}"})
    assert refused.status_code == 302  # back to the page, saying why
    assert "抄送未保存" in page(fg, review)
    assert _kept(deployed, instance_id) == (0, 0, 0, 0)

    fg.get("/lang/en")
    refused = post(fg, f"/tasks/{review}/comments", {"step": "open", "body": "材料在看"})
    assert refused.status_code == 409 and "the comment was not saved" in refused.get_data(as_text=True)
    assert _kept(deployed, instance_id) == (0, 0, 0, 0)


def test_a_step_shown_ended_may_still_be_written_on(deployed: sessionmaker[Session], login: Login) -> None:  # noqa: F811
    """The applicant's submitted step, in 已办: a note, a file and a 抄送 on it are kept there, as before."""
    instance_id, _review = at_review(deployed)
    fill = task_of(deployed, instance_id, "fill", state="completed")
    applicant = login("applicant")
    html = page(applicant, fill)
    for action in ("comments", "attachments"):
        assert _shown(html, f"/tasks/{fill}/{action}") == "closed"
    assert post(applicant, f"/tasks/{fill}/comments", {"step": "closed", "body": "补充说明"}).status_code == 302
    upload = {"step": "closed", "file": (io.BytesIO(b"p"), "补充材料.txt", "text/plain")}
    assert post(applicant, f"/tasks/{fill}/attachments", upload, content_type="multipart/form-data").status_code == 302
    assert post(applicant, f"/tasks/{fill}/comments", {"body": "表单之外"}).status_code == 302  # no `step`: as read
    with deployed() as s:
        assert set(s.scalars(select(Comment.task_id).where(Comment.instance_id == instance_id,
                                                           Comment.kind == "comment"))) == {fill}
        assert s.scalar(select(Attachment.task_id).where(Attachment.instance_id == instance_id)) == fill
        s.rollback()
