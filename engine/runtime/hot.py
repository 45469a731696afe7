"""The hot-instance cache: deserialised workflows kept per process after a committed save.

A completion spends most of its time turning the stored state back into a workflow. After a save
commits, the workflow it wrote is exactly the stored state at the new `lock_version`, so this process
keeps it, keyed by (database, instance id), and the next `load` of that instance reuses it when the row
still has that `lock_version` and process version. A completion's first read then leaves the state out of its
row (`lock_version_hint`: the task ids whose instance is known, noted by the reads and saves).

Correct with several web and worker processes: every process checks the row's `lock_version`, which
every save bumps, so a workflow another process moved on is never reused — it is dropped.

A cached workflow is *taken* out of the cache by `load` (one unit of work owns it; it is mutated as
the instance runs). What a save wrote is held on the session until the transaction commits and only
then published; a rollback (also of a savepoint) discards it. So an exception mid-completion followed
by a retry deserialises the stored state again and never sees the half-run workflow.

Bounded by count and an approximate size (JZFLOW_INSTANCE_CACHE_SIZE, JZFLOW_INSTANCE_CACHE_MB; 0 turns it
off), least recently used out first.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from engine import config
from engine.db import database_key
from engine.spiff.workflow import Workflow

# A deserialised workflow takes several times its JSON text in memory (objects, dicts, UUIDs).
MEMORY_PER_STATE_BYTE = 6
TASKS_NOTED = 100_000  # task ids whose instance is remembered (a few MB)
_PENDING = "jzflow.hot_pending"
_BORROWED = "jzflow.hot_borrowed"

Key = tuple[str, int]  # (database url, instance id)


@dataclass
class Entry:
    lock_version: int
    version_id: int
    workflow: Workflow
    size: int  # approximate bytes in memory


class HotCache:
    """A thread-safe LRU of workflows bounded by count and approximate bytes."""

    def __init__(self) -> None:
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._instance_of: dict[Key, int] = {}  # (database url, task id) -> its instance's id, for `lock_version_hint`
        self._lock = threading.Lock()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def take(self, key: Key, lock_version: int, version_id: int) -> Workflow | None:
        """Remove and return the workflow kept for this row version; a stale entry is dropped."""
        entry = self.take_entry(key, lock_version, version_id)
        return entry.workflow if entry is not None else None

    def take_entry(self, key: Key, lock_version: int, version_id: int) -> Entry | None:
        """`take`, returning the entry taken: what a look gives back is the entry it was lent, in the same lock."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.lock_version > lock_version:
                self.misses += 1  # this reader read the row before a save that committed since: the entry is newer
                return None
            if entry is not None:
                del self._entries[key]
                self._bytes -= entry.size
            if entry is None or entry.lock_version != lock_version or entry.version_id != version_id:
                self.misses += 1
                return None
            self.hits += 1
            return entry

    def put(self, key: Key, entry: Entry) -> None:
        """Keep a committed workflow, evicting the least recently used past the limits; one kept at a later
        lock_version stays (every save bumps it: the later one is the newer state)."""
        self._put(key, entry, replace_same=True)

    def put_back(self, key: Key, entry: Entry) -> None:
        """Return a workflow borrowed by a read-only unit of work, unless something as new or newer is kept."""
        self._put(key, entry, replace_same=False)

    def _put(self, key: Key, entry: Entry, *, replace_same: bool) -> None:
        settings = config.load()
        max_count, max_bytes = settings.instance_cache_size, settings.instance_cache_mb * 1024 * 1024
        with self._lock:  # the check and the put in one hold: a put between them could be replaced by an older one
            old = self._entries.get(key)
            if old is not None and (old.lock_version > entry.lock_version
                                    or (old.lock_version == entry.lock_version and not replace_same)):
                return
            if old is not None:
                del self._entries[key]
                self._bytes -= old.size
            if max_count <= 0 or entry.size > max_bytes:
                return
            self._entries[key] = entry
            self._bytes += entry.size
            while len(self._entries) > max_count or self._bytes > max_bytes:
                _key, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size

    def drop(self, key: Key) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._bytes -= entry.size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._instance_of.clear()
            self._bytes = 0

    def note_tasks(self, database: str, instance_id: int, task_ids: Iterable[int | None]) -> None:
        """Remember which instance these task rows are of (a row never moves to another instance)."""
        if config.load().instance_cache_size <= 0:
            return
        with self._lock:
            if len(self._instance_of) > TASKS_NOTED:  # a hint only: forgetting them all costs one state read each
                self._instance_of.clear()
            for task_id in task_ids:
                if task_id is not None:
                    self._instance_of[(database, task_id)] = instance_id

    def lock_version_hint(self, database: str, task_id: int) -> int | None:
        """The lock_version at which this process keeps the workflow of the task's instance, if it knows of one."""
        with self._lock:
            instance_id = self._instance_of.get((database, task_id))
            entry = self._entries.get((database, instance_id)) if instance_id is not None else None
            return entry.lock_version if entry is not None else None


CACHE = HotCache()


def key_of(session: Session, instance_id: int) -> Key:
    return (database_key(session), instance_id)


def _pending(session: Session) -> dict[Key, Entry]:
    pending: dict[Key, Entry] = session.info.setdefault(_PENDING, {})
    return pending


def take(session: Session, instance_id: int, lock_version: int, version_id: int, *,
         read_only: bool = False) -> Workflow | None:
    """Return the workflow at this row version: saved earlier in this transaction, or cached; else None.

    `read_only`: the caller promises not to change the workflow; it goes back to the cache when the
    transaction ends (a task page read before its completion keeps the instance hot).
    """
    key = key_of(session, instance_id)
    pending = session.info.get(_PENDING)
    if pending:
        entry = pending.get(key) if read_only else pending.pop(key, None)  # a look leaves it to be published
        if entry is not None and entry.lock_version == lock_version and entry.version_id == version_id:
            return entry.workflow
    if config.load().instance_cache_size <= 0:
        return None
    # One step under the cache's lock: a peek first and a take after could lend one entry and give back another
    # (taken meanwhile by another thread's completion, which changes its workflow and may roll back).
    found = CACHE.take_entry(key, lock_version, version_id)
    if found is None:
        return None
    if read_only:
        session.info.setdefault(_BORROWED, {})[key] = found
    return found.workflow


def kept_lock_version(session: Session, instance_id: int) -> int | None:
    """The lock_version at which this transaction or this process keeps the instance's workflow, if it does: a read of
    its row then leaves out the state, which it would not use (runtime/row_read.py)."""
    key = key_of(session, instance_id)
    pending: dict[Key, Entry] | None = session.info.get(_PENDING)
    entry = pending.get(key) if pending else None
    if entry is None:
        entry = CACHE._entries.get(key)
    return entry.lock_version if entry is not None else None


def lock_version_hint(session: Session, task_id: int) -> int | None:
    """The lock_version at which the task's instance is hot in this transaction or this process, if known: a
    completion's first read then leaves out the state, which it would not use (the workflow is taken from here). Only
    a hint: when the workflow is gone by the time it is taken, the state is read then (tasks.first_read)."""
    database = database_key(session)
    pending: dict[Key, Entry] | None = session.info.get(_PENDING)
    if pending:
        instance_id = CACHE._instance_of.get((database, task_id))
        entry = pending.get((database, instance_id)) if instance_id is not None else None
        if entry is not None:
            return entry.lock_version
    return CACHE.lock_version_hint(database, task_id)


def note_tasks(session: Session, instance_id: int, task_ids: Iterable[int | None]) -> None:
    """Remember which instance these task rows are of, for `lock_version_hint`."""
    CACHE.note_tasks(database_key(session), instance_id, task_ids)


def borrowed(session: Session, instance_id: int, lock_version: int, version_id: int, workflow: Workflow,
             state_bytes: int) -> None:
    """Keep a workflow a read-only load deserialised: it is cached when the transaction ends."""
    session.info.setdefault(_BORROWED, {})[key_of(session, instance_id)] = Entry(
        lock_version, version_id, workflow, state_bytes * MEMORY_PER_STATE_BYTE)


def saved(session: Session, instance_id: int, lock_version: int, version_id: int, workflow: Workflow,
          state_bytes: int) -> None:
    """Remember the workflow a save just wrote; it is cached when the transaction commits."""
    key = key_of(session, instance_id)
    CACHE.drop(key)  # whatever was cached is older than this save
    _pending(session)[key] = Entry(lock_version, version_id, workflow, state_bytes * MEMORY_PER_STATE_BYTE)


def forget(session: Session, instance_id: int) -> None:
    """Drop what is known of an instance (its row changed without a save)."""
    key = key_of(session, instance_id)
    pending = session.info.get(_PENDING)
    if pending:
        pending.pop(key, None)
    CACHE.drop(key)


@event.listens_for(Session, "after_commit")
def _publish(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the outer transaction may still roll back
    pending = session.info.pop(_PENDING, None)
    if pending:
        for key, entry in pending.items():
            CACHE.put(key, entry)
    _return_borrowed(session, pending or {})


def _return_borrowed(session: Session, saved: dict[Key, Entry]) -> None:
    lent = session.info.pop(_BORROWED, None)
    if lent:
        for key, entry in lent.items():
            if key not in saved:  # a save in this transaction wrote a newer state (published or discarded)
                CACHE.put_back(key, entry)


@event.listens_for(Session, "after_soft_rollback")
def _discard(session: Session, previous_transaction: Any) -> None:
    # Any rollback, a savepoint's too: what was saved in it may not be in the database; the workflows
    # may have been changed after their save. Drop them all (the next load reads the row).
    session.info.pop(_PENDING, None)


@event.listens_for(Session, "after_transaction_end")
def _end(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the outermost transaction ended (commit published already; close, rollback)
        pending = session.info.pop(_PENDING, None) or {}
        _return_borrowed(session, pending)


__all__ = [
    "CACHE",
    "Entry",
    "HotCache",
    "borrowed",
    "forget",
    "kept_lock_version",
    "key_of",
    "lock_version_hint",
    "note_tasks",
    "saved",
    "take",
]
