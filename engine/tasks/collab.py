"""What people add to an instance beside the tasks: 抄送 (carbon copies), comments (意见 on the instance or a step)
and attachments (附件).

Each is an audited engine service in the caller's transaction; notifications go through the outbox.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit
from engine.db import advisory_lock
from engine.errors import InvalidInput
from engine.org.actors import Actor
from engine.tasks import access, people, uploads
from engine.tasks.collab_models import Attachment, CarbonCopy, Comment
from engine.tasks.operations import notify, user_named

MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
SAFE_NAME = re.compile(r"[^\w.\-（）()\u4e00-\u9fff ]+")


def carbon_copy(session: Session, *, instance_id: int, actor: Actor, usernames: Sequence[str], note: str = "",
                task_id: int | None = None) -> list[CarbonCopy]:
    """Show an instance to other users for information (抄送); return the copies made now.

    A person who has the same 抄送 unread (same instance and step, sender and note) gets nothing more: the form
    posted twice (a double click, a retry) reaches each person once; two at once take turns on the instance's lock.

    Raises: Forbidden, UserNotFound, InvalidInput
    """
    access.require_view(session, actor, instance_id)
    if not usernames:
        raise InvalidInput("请选择抄送人 (choose at least one recipient)", field="usernames")
    people.require_few(usernames, field="usernames", what="抄送")
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
        notify(session, user.id, "cc", f"{actor.display_name}抄送给您", body=note, link=f"/instances/{instance_id}")
    session.add_all(copies)
    session.flush()
    if reached:
        audit.record(session, actor, "instance.cc", stream=f"instance:{instance_id}", object_type="process_instance",
                     object_id=instance_id, after={"to": reached, "note": note, "task_id": task_id})
    return copies


def add_comment(session: Session, *, instance_id: int, actor: Actor, body: str,
                task_id: int | None = None) -> Comment:
    """Comment on an instance or one of its tasks.

    Raises: Forbidden, InvalidInput
    """
    access.require_view(session, actor, instance_id)
    if not body.strip():
        raise InvalidInput("评论不能为空 (a comment cannot be empty)", field="body")
    comment = Comment(instance_id=instance_id, task_id=task_id, author_id=actor.user_id, kind="comment",
                      body=body.strip()[:4000])
    session.add(comment)
    session.flush()
    audit.record(session, actor, "instance.comment", stream=f"instance:{instance_id}", object_type="comment",
                 object_id=comment.id, after={"body": comment.body, "task_id": task_id})
    return comment


def attach(session: Session, *, instance_id: int, actor: Actor, name: str, content: bytes,
           content_type: str = "application/octet-stream", task_id: int | None = None) -> Attachment:
    """Attach a file (at most 20 MB) to an instance.

    Raises: Forbidden, InvalidInput
    """
    access.require_view(session, actor, instance_id)
    clean = SAFE_NAME.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")[:200]
    if not clean:
        raise InvalidInput("文件名无效 (invalid file name)", field="name")
    if not content:
        raise InvalidInput("文件为空 (empty file)", field="file")
    if len(content) > MAX_ATTACHMENT_BYTES:
        raise InvalidInput("文件超过20MB (file larger than 20 MB)", field="file")
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


__all__ = ["MAX_ATTACHMENT_BYTES", "add_comment", "attach", "carbon_copy"]
