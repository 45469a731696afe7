"""What people add to an instance beside the tasks: 抄送 (carbon copies), comments (意见 on the instance or a step)
and attachments (附件).

Each is an audited engine service in the caller's transaction; notifications go through the outbox. One that names a
step takes the step's row first and looks at it again (`_on_step`): a step closed meanwhile (提交, 撤回, 退回, a timer,
终止) gets nothing (409), a step that had ended before the actor looked (its page in 已办) still may be written on.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit
from engine.db import advisory_lock
from engine.errors import Conflict, InstanceArchived, InvalidInput
from engine.org.actors import Actor
from engine.runtime.models import ProcessInstance
from engine.tasks import access, lookup, people, uploads
from engine.tasks.collab_models import Attachment, CarbonCopy, Comment
from engine.tasks.models import HumanTask, archived_tasks
from engine.tasks.operations import notice, tell, user_named

MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
# An instance's files together: anyone who sees it may attach (an applicant to their case), 20 MB a post, so without
# these one person with a script filled the database. A count, not a lock: two uploads at the same moment
# may each pass it by their own file.
MAX_INSTANCE_FILES = 500
MAX_INSTANCE_BYTES = 2 * 1024 * 1024 * 1024
SAFE_NAME = re.compile(r"[^\w.\-（）()\u4e00-\u9fff ]+")
# What a refusal names: the trace that was not kept, in both languages.
TRACES = {"comment": ("评论", "comment"), "attachment": ("附件", "file"), "carbon_copy": ("抄送", "copy")}


def step_closed(step_id: int, instance_id: int, trace: str) -> lookup.TaskAlreadyDone:
    """Return the refusal of a comment, file or 抄送 on a step that closed after the actor saw it open (409)."""
    zh, en = TRACES[trace]
    error = lookup.TaskAlreadyDone(instance_id)
    Conflict.__init__(error, f"此步骤已结束（已提交、撤回、退回或取消），{zh}未保存，请刷新页面后再办理 "
                             f"(this step closed meanwhile — submitted, withdrawn, sent back or cancelled; the {en} was "
                             f"not saved: reload the page)", instance_id=instance_id, task_id=step_id)
    return error


def _on_step(session: Session, instance_id: int, task_id: int | None, trace: str, *, seen_closed: bool) -> None:
    """Lock the step a comment, file or 抄送 names and refuse it unless the step is open, or the actor saw it ended.

    The instance's row first (FOR KEY SHARE, as a submission's first read and a signature take it: the trace's own
    foreign key would take it later, after the step's, the order the timer sweep deadlocks with), then the step's (FOR
    SHARE). A 撤回, 退回 or submission closing the step holds that row until its commit: a trace made meanwhile waits
    for it and reads the step as it left it; one holding the row first makes them wait, and a 撤回 then sees that the
    next handler has acted. `seen_closed`: the actor wrote on a step that had ended when they looked (its page in 已办),
    as the product always allowed; a step they saw open must still be open.

    Raises: TaskNotFound (not a step of this instance), InstanceArchived, TaskAlreadyDone (closed meanwhile)
    """
    if task_id is None:
        return
    session.execute(select(ProcessInstance.id).where(ProcessInstance.id == instance_id)
                    .with_for_update(read=True, key_share=True))
    step = session.execute(select(HumanTask.instance_id, HumanTask.state).where(HumanTask.id == task_id)
                           .with_for_update(read=True)).one_or_none()
    if step is None and session.scalar(select(archived_tasks.c.id).where(
            archived_tasks.c.id == task_id, archived_tasks.c.instance_id == instance_id)) is not None:
        raise InstanceArchived(f"此任务所在的流程实例已归档，只能在实例页查看 (task {task_id} belongs to an archived "
                               f"instance)", task_id=task_id)
    if step is None or step.instance_id != instance_id:
        raise lookup.not_found(task_id)  # another instance's step: as for one that does not exist
    if step.state in ("completed", "cancelled") and not seen_closed:
        raise step_closed(task_id, instance_id, trace)


def carbon_copy(session: Session, *, instance_id: int, actor: Actor, usernames: Sequence[str], note: str = "",
                task_id: int | None = None, seen_closed: bool = False) -> list[CarbonCopy]:
    """Show an instance (from one of its steps: `task_id`) to other users for information (抄送); return the copies
    made now. `seen_closed`: the step had ended when the actor looked (else it must still be open).

    A person who has the same 抄送 unread (same instance and step, sender and note) gets nothing more: the form
    posted twice (a double click, a retry) reaches each person once; two at once take turns on the instance's lock.

    Raises: Forbidden, UserNotFound, InvalidInput, TaskNotFound, InstanceArchived, TaskAlreadyDone
    """
    access.require_view(session, actor, instance_id)
    if not usernames:
        raise InvalidInput("请选择抄送人 (choose at least one recipient)", field="usernames")
    people.require_few(usernames, field="usernames", what="抄送")
    _on_step(session, instance_id, task_id, "carbon_copy", seen_closed=seen_closed)
    advisory_lock(session, f"carbon_copy:{instance_id}")
    step = CarbonCopy.task_id.is_(None) if task_id is None else CarbonCopy.task_id == task_id
    unread = set(session.scalars(select(CarbonCopy.user_id).where(
        CarbonCopy.instance_id == instance_id, step, CarbonCopy.from_user_id == actor.user_id,
        CarbonCopy.note == note[:2000], CarbonCopy.read_at.is_(None))))
    copies, reached = [], []
    for username in dict.fromkeys(usernames):
        user = user_named(session, username, field="usernames", what="抄送给")
        people.require_in_scope(session, actor, user, field="usernames", what="抄送给", instance_id=instance_id)
        if user.id in unread:
            continue
        copies.append(CarbonCopy(instance_id=instance_id, task_id=task_id, user_id=user.id,
                                 from_user_id=actor.user_id, note=note[:2000]))
        reached.append(username)
    session.add_all(copies)
    session.flush()
    if reached:
        audit.record(session, actor, "instance.cc", stream=f"instance:{instance_id}", object_type="process_instance",
                     object_id=instance_id, after={"to": reached, "note": note, "task_id": task_id})
    tell(session, [notice(c.user_id, "cc", "cc", {"actor": actor.display_name, "note": note},
                          link=f"/instances/{instance_id}", instance_id=instance_id) for c in copies])
    return copies


def add_comment(session: Session, *, instance_id: int, actor: Actor, body: str,
                task_id: int | None = None, seen_closed: bool = False) -> Comment:
    """Comment on an instance or one of its steps (`task_id`; `seen_closed`: it had ended when the actor looked, else
    it must still be open).

    Raises: Forbidden, InvalidInput, TaskNotFound, InstanceArchived, TaskAlreadyDone
    """
    access.require_view(session, actor, instance_id)
    if not body.strip():
        raise InvalidInput("评论不能为空 (a comment cannot be empty)", field="body")
    _on_step(session, instance_id, task_id, "comment", seen_closed=seen_closed)
    comment = Comment(instance_id=instance_id, task_id=task_id, author_id=actor.user_id, kind="comment",
                      body=body.strip()[:4000])
    session.add(comment)
    session.flush()
    audit.record(session, actor, "instance.comment", stream=f"instance:{instance_id}", object_type="comment",
                 object_id=comment.id, after={"body": comment.body, "task_id": task_id})
    return comment


def _megabytes(size: int) -> str:
    return f"{size // (1024 * 1024)} MB" if size >= 1024 * 1024 else f"{size} B"


def _require_room(session: Session, instance_id: int, size: int) -> None:
    """Refuse a file the instance has no room for (MAX_INSTANCE_FILES, MAX_INSTANCE_BYTES), naming `file`.

    Raises: InvalidInput
    """
    count, total = session.execute(select(func.count(Attachment.id), func.coalesce(func.sum(Attachment.size), 0))
                                   .where(Attachment.instance_id == instance_id)).one()
    if count >= MAX_INSTANCE_FILES:
        raise InvalidInput(f"此流程实例已有 {MAX_INSTANCE_FILES} 个附件，不能再上传 (the instance holds "
                           f"{MAX_INSTANCE_FILES} files, the most it takes)", field="file")
    if total + size > MAX_INSTANCE_BYTES:
        limit = _megabytes(MAX_INSTANCE_BYTES)
        raise InvalidInput(f"此流程实例的附件合计不能超过 {limit}，已有 {_megabytes(int(total))} (the instance's files "
                           f"together may not pass {limit}; it holds {_megabytes(int(total))})", field="file")


def attach(session: Session, *, instance_id: int, actor: Actor, name: str, content: bytes,
           content_type: str = "application/octet-stream", task_id: int | None = None,
           seen_closed: bool = False) -> Attachment:
    """Attach a file (at most 20 MB; the instance's files: MAX_INSTANCE_FILES, MAX_INSTANCE_BYTES) to an instance,
    from one of its steps (`task_id`; `seen_closed`: it had ended when the actor looked, else it must still be
    open). The file is kept in the database, in the caller's transaction: a refusal or a rollback leaves nothing of it
    anywhere.

    Raises: Forbidden, InvalidInput, TaskNotFound, InstanceArchived, TaskAlreadyDone
    """
    access.require_view(session, actor, instance_id)
    clean = SAFE_NAME.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")[:200]
    if not clean:
        raise InvalidInput("文件名无效 (invalid file name)", field="name")
    if not content:
        raise InvalidInput("文件为空 (empty file)", field="file")
    if len(content) > MAX_ATTACHMENT_BYTES:
        raise InvalidInput("文件超过20MB (file larger than 20 MB)", field="file")
    _on_step(session, instance_id, task_id, "attachment", seen_closed=seen_closed)
    _require_room(session, instance_id, len(content))
    digest = hashlib.sha256(content).hexdigest()
    # The uploader's declared type is a claim: only an inert one is kept (text/javascript, html, svg are not).
    attachment = Attachment(instance_id=instance_id, task_id=task_id, name=clean,
                            content_type=uploads.safe_type(content_type), size=len(content), sha256=digest,
                            content=content, uploaded_by_id=actor.user_id)
    session.add(attachment)
    session.flush()
    audit.record(session, actor, "instance.attach", stream=f"instance:{instance_id}", object_type="attachment",
                 object_id=attachment.id, after={"name": clean, "size": len(content), "sha256": digest})
    return attachment


__all__ = ["MAX_ATTACHMENT_BYTES", "MAX_INSTANCE_BYTES", "MAX_INSTANCE_FILES", "TRACES", "add_comment", "attach",
           "carbon_copy", "step_closed"]
