"""Issue a numbered document for an instance (once), find it by its verification code, and limit code guessing.

`issue` takes the next number of its rule (`numbering.allocate`, in the caller's transaction), draws an unguessable
verification code, stores the document and audits it — all in the unit of work of the step that issues it, so a
rollback leaves no number used and a retried step issues nothing twice (one document per instance and kind).

The file is made once, as the document is issued (`render.make_file`): its bytes are kept and served as they are,
and their SHA-256 goes into the audit trail. `/verify/<code>` shows only the public facts (`PublicFacts`): number,
title, subject, date, issuers and that digest, and compares a copy the checker uploads with it (`matches`: hashed as it is
read, never kept). Unknown codes and every upload count in the login counters' table (`login_failure`, `counters`):
per client address when anonymous, per user and per address (a higher ceiling) when signed in, so guessing (and
hashing) is stopped as login guessing is.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import IO, Any

from sqlalchemy import case, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine import audit, clock, config
from engine.db import advisory_lock, is_postgres
from engine.documents import numbering, pdf
from engine.documents.models import IssuedDocument
from engine.errors import InvalidInput
from engine.org.actors import Actor
from engine.org.login_guard import client_key
from engine.org.models import LoginFailure

# Crockford's base32 (no I, L, O, U): 20 symbols are 100 bits, read aloud or typed from paper without confusion.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 20
GROUP = 4
MAX_TEXT = 300
LOOK_ALIKES = str.maketrans("OIL", "011")  # typed from paper: O for 0, I or L for 1
VERIFY_PATH = "/verify/"  # the public page's address under JZFLOW_PUBLIC_URL (web/documents: /verify/<code>)
MAX_CHECKED_FILE = 10 * 1024 * 1024  # an uploaded copy: an issued certificate is some 100 KB
_READ = 64 * 1024
SHEET_KIND = "approval_sheet"  # the 审批单 issued (engine.documents.sheet): internal, not for an applicant from outside


class FileTooLarge(InvalidInput):
    """An uploaded copy larger than any issued document."""

    http_status = 413


class NoDigest(InvalidInput):
    """A document issued before files were kept: there is nothing to compare a copy with."""


@dataclass(frozen=True)
class PublicFacts:
    """What the public verification page shows of a document, and nothing else."""

    number: str
    title: str  # what the document is (审批单, 受理通知书, 并联审批联合意见书, 不予许可决定书, ...)
    subject: str
    issued_on: date
    issuers: list[str]
    digest: str | None  # SHA-256 (hex) of the issued file; None for documents issued before migration 0040


def new_code() -> str:
    """Return a fresh verification code (100 random bits)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def display_code(code: str) -> str:
    """Return a code grouped for reading: XXXX-XXXX-XXXX-XXXX-XXXX."""
    return "-".join(code[i:i + GROUP] for i in range(0, len(code), GROUP))


def normalize_code(text: str) -> str:
    """Return the stored form of a code as typed (case, dashes, spaces and O/I/L look-alikes forgiven).

    Raises: InvalidInput (not a code's shape: the wrong length or a symbol outside the alphabet)
    """
    cleaned = (text or "")[:100].upper().replace("-", "").replace(" ", "")
    cleaned = cleaned.translate(LOOK_ALIKES)
    if len(cleaned) != CODE_LENGTH or any(ch not in ALPHABET for ch in cleaned):
        raise InvalidInput(f"核验码格式不正确：应为{CODE_LENGTH}位字母数字（如 {display_code('0' * CODE_LENGTH)}）"
                           " (a verification code has 20 letters and digits)", field="code")
    return cleaned


def issue(session: Session, *, instance_id: int, kind: str, rule: numbering.NumberRule, title: str, subject: str,
          issuers: list[str], issued_on: date, actor: Actor, details: Any = None) -> IssuedDocument:
    """Issue the instance's document of this kind with the rule's next number, or return the one issued before.

    The same step submitted twice at once runs this twice before either commits: the second waits here for the
    first's transaction and then finds its document (its own save then loses: 409), instead of waiting for the number
    and failing on the unique constraint inside the engine run.

    Raises: InvalidInput (an empty title or subject)
    """
    advisory_lock(session, f"issued_document:{instance_id}:{kind}")
    found = session.scalar(select(IssuedDocument).where(IssuedDocument.instance_id == instance_id,
                                                        IssuedDocument.kind == kind))
    if found is not None:
        return found  # a step run again issues nothing twice
    if not title.strip() or not subject.strip():
        raise InvalidInput("文书须有标题和事项名称 (a document needs a title and a subject)", field="subject")
    seq = numbering.allocate(session, rule.name, issued_on.year)
    doc = IssuedDocument(instance_id=instance_id, kind=kind, rule=rule.name, year=issued_on.year, seq=seq,
                         number=rule.format(issued_on.year, seq), verify_code=new_code(), title=title[:MAX_TEXT],
                         subject=subject[:MAX_TEXT], issuers=[str(i)[:MAX_TEXT] for i in issuers][:50],
                         issued_on=issued_on, issued_at=clock.now(), issued_by_id=actor.user_id, details=details)
    session.add(doc)
    session.flush()
    from engine.documents import render  # render prints with core's codes: imported here, not at the top
    render.make_file(session, doc)
    audit.record(session, actor, "document.issue", stream=f"instance:{instance_id}", object_type="issued_document",
                 object_id=doc.id, after={"kind": kind, "number": doc.number, "rule": rule.name, "year": doc.year,
                                          "seq": seq, "title": doc.title, "subject": doc.subject,
                                          "issuers": doc.issuers, "issued_on": issued_on.isoformat(),
                                          "sha256": doc.digest})
    return doc


def for_instance(session: Session, instance_id: int, *, internal: bool = True) -> list[IssuedDocument]:
    """Return the documents issued for an instance, in the order they were issued (no access check); without the
    internal ones (the 审批单) for a reader who may not read them (`internal=False`: an applicant from outside)."""
    query = select(IssuedDocument).where(IssuedDocument.instance_id == instance_id)
    if not internal:
        query = query.where(IssuedDocument.kind != SHEET_KIND)
    return list(session.scalars(query.order_by(IssuedDocument.issued_at, IssuedDocument.id)))


def public_facts(doc: IssuedDocument) -> PublicFacts:
    # As the paper prints them (pdf.printed): a bidi override in a submitted subject read backwards here
    return PublicFacts(number=doc.number, title=doc.title, subject=pdf.printed(doc.subject), issued_on=doc.issued_on,
                       issuers=[pdf.printed(i) for i in doc.issuers or []], digest=doc.digest)


def verify_link(code: str) -> str | None:
    """Return the public address that checks a code, printed on the document: None without JZFLOW_PUBLIC_URL.

    The file is made when the document is issued, often in a worker, with no request whose address could stand in
    (and a client's Host header must never reach an official document): without the setting it carries the code only.
    """
    public = config.load().public_url
    return f"{public}{VERIFY_PATH}{display_code(code)}" if public else None


def digest_of(stream: IO[bytes], limit: int = MAX_CHECKED_FILE) -> str:
    """Return the SHA-256 (hex) of what a stream holds, read in pieces and kept nowhere.

    Raises: FileTooLarge (more than `limit` bytes)
    """
    sha, size = hashlib.sha256(), 0
    while chunk := stream.read(_READ):
        size += len(chunk)
        if size > limit:
            raise FileTooLarge(f"文件过大：核验的文件不能超过 {limit // (1024 * 1024)} MB "
                               f"(the file is larger than {limit // (1024 * 1024)} MB)", field="file")
        sha.update(chunk)
    return sha.hexdigest()


def matches(facts: PublicFacts, stream: IO[bytes]) -> bool:
    """Tell whether a copy is byte for byte the issued file of the document.

    Raises: NoDigest (issued before files were kept), FileTooLarge
    """
    if facts.digest is None:
        raise NoDigest("本文书出具于启用文件摘要之前，未记录文件摘要，无法比对文件内容 "
                       "(issued before file digests were recorded: a copy cannot be compared)", field="file")
    return hmac.compare_digest(digest_of(stream), facts.digest)


@dataclass(frozen=True)
class Counter:
    """One count a check is made against: its key in the login counters' table, and how many it allows a window."""

    key: str
    limit: int


def counters(*, address: str | None, user_id: int | None, address_limit: int, user_limit: int,
             ceiling: int) -> list[Counter]:
    """The counts a check of this client is made against (an IPv6 address by its /64, like logins).

    Anonymous: its address (``verify:<address>``). Signed in: the user's own (``verify-user:<id>``), so colleagues
    behind one NAT address do not share one count, and all signed-in users of the address together
    (``verify-office:<address>``, a higher ceiling), so many accounts from one address still stop there.
    """
    client = (client_key(address) or "unknown")[:180]
    if user_id is None:
        return [Counter("verify:" + client, address_limit)]
    return [Counter(f"verify-user:{int(user_id)}", user_limit), Counter("verify-office:" + client, ceiling)]


def verify_wait(session: Session, found: list[Counter], *, now: datetime, window_seconds: int) -> int:
    """Return the seconds this client must wait before checking another code; 0 when it may check now."""
    wait = 0
    for counter in found:
        row = session.get(LoginFailure, counter.key)
        if row is None:
            continue
        ends = row.window_start + timedelta(seconds=window_seconds)
        if row.failures >= counter.limit and ends > now:
            wait = max(wait, int((ends - now).total_seconds()) + 1)
    return wait


def record_miss(session: Session, found: list[Counter], *, now: datetime, window_seconds: int) -> None:
    """Count one unknown or malformed code, or one uploaded copy, on each counter (atomic upserts; flushes)."""
    stale = now - timedelta(seconds=window_seconds)
    insert = pg_insert if is_postgres(session) else sqlite_insert
    restart = LoginFailure.window_start <= stale
    for counter in sorted(found, key=lambda c: c.key):  # one order: two checks at once never deadlock
        session.execute(insert(LoginFailure).values(key=counter.key, failures=1, window_start=now)
                        .on_conflict_do_update(index_elements=[LoginFailure.key], set_={
                            "failures": case((restart, 1), else_=LoginFailure.failures + 1),
                            "window_start": case((restart, now), else_=LoginFailure.window_start)}))
    session.flush()


def verify(session: Session, code: str) -> PublicFacts | None:
    """Return the public facts of the document with this code, or None for an unknown code.

    Raises: InvalidInput (a malformed code)
    """
    doc = session.scalar(select(IssuedDocument).where(IssuedDocument.verify_code == normalize_code(code)))
    return public_facts(doc) if doc is not None else None


__all__ = ["ALPHABET", "CODE_LENGTH", "MAX_CHECKED_FILE", "SHEET_KIND", "VERIFY_PATH", "Counter", "FileTooLarge", "NoDigest",
           "PublicFacts", "counters", "digest_of", "display_code", "for_instance", "issue", "matches", "new_code",
           "normalize_code", "public_facts", "record_miss", "verify", "verify_link", "verify_wait"]
