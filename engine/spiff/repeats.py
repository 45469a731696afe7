"""Store a large data value the workflow's state repeats once (issue #17).

SpiffWorkflow 3.2.0 starts every multi-instance child (and an embedded subprocess) with a deep copy of the parent
task's data, the collection it iterates included: with n children over a collection of n items, the state held n
copies of it. The serializer writes each copy in full (a subprocess's root task holds its data whole).

`share` runs on the dict SpiffWorkflow's serializer made, before it is encoded. It looks at the values of the data
dicts (a workflow's or subprocess's own data, a task's data and its delta's updates), top level only: a list or dict
whose encoding takes `LARGE` characters or more and that occurs more than once — equal as the state writes it: the
same pickle, which tells 1, 1.0 and True apart (pickling is about five times faster than encoding) — is written once
in a top-level table (`KEY`) and each place holds None; the table names the places. Nothing is written inside user
data, so no user value can pass for a reference.

`expand` puts the value back at each place before SpiffWorkflow restores the dict. Its restore builds every dict and
list anew (`DictionaryConverter.restore`), so each place gets its own copy — a script mutating one child's data does
not change another's (tests/engine/spiff/test_repeats.py holds it to that).
"""
from __future__ import annotations

import json
import pickle  # nosec B403 # dumps only, to tell equal values apart: nothing is ever unpickled
from collections.abc import Callable, Iterator
from typing import Any

KEY = "jz_shared"  # top-level key of the state: SpiffWorkflow writes no such key
LARGE = 512  # characters of a value's encoding from which a repeat is stored once

# A place: [subprocess id or None (the instance's workflow), task id or None (the workflow's own data),
#           "data" | "updates", data key]
Place = list[Any]


class Table:
    """The values stored once (their canonical JSON texts) and, for each, the places holding it."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.places: list[list[Place]] = []

    def repeated_chars(self) -> int:
        """Characters the places hold beyond the one written copy of each value (what a restore builds anew)."""
        return sum(len(text) * (len(at) - 1) for text, at in zip(self.texts, self.places, strict=True))

    def encode(self, dumps: Callable[[Any], str]) -> str:
        """The table as JSON, its values as the texts already encoded (sorted keys, as the state's canonical text)."""
        return '{"at": ' + dumps(self.places) + ', "values": [' + ", ".join(self.texts) + "]}"


def _data_dicts(dct: dict[str, Any]) -> Iterator[tuple[Place, dict[Any, Any]]]:
    """Each data dict of a serialized workflow that holds something, with its place (without the data key)."""
    flows: list[tuple[str | None, Any]] = [(None, dct)]
    flows.extend((dct.get("subprocesses") or {}).items())
    for sub_id, flow in flows:
        data = flow.get("data")
        if data and isinstance(data, dict):
            yield [sub_id, None, "data"], data
        for task_id, task in (flow.get("tasks") or {}).items():
            data = task.get("data")
            if data and isinstance(data, dict):
                yield [sub_id, task_id, "data"], data
            delta = task.get("delta")
            data = delta.get("updates") if delta else None
            if data and isinstance(data, dict):
                yield [sub_id, task_id, "updates"], data


def share(dct: dict[str, Any], encode: Callable[[Any], str]) -> Table | None:
    """Replace each repeated large value of the state's data dicts by None, noting its places; None: none repeats.

    `encode`: the value's canonical JSON text (as the state writes it). The data dicts are replaced, never changed
    in place (in the serializer's encoder mode a data dict's values are the workflow's own objects).
    """
    # Candidates: a list or dict sharing its type and length with another.
    seen: dict[tuple[type, int], list[tuple[Place, dict[Any, Any], str]]] = {}
    dicts = list(_data_dicts(dct))
    for place, data in dicts:
        for key, value in data.items():
            if isinstance(key, str) and isinstance(value, (list, dict)) and value:
                seen.setdefault((type(value), len(value)), []).append((place, data, key))
    # Equal as written: the same pickle (C-fast; 1, 1.0 and True differ in it, so do dict orders — then merely not
    # shared); one of each such kind is encoded, to know its size.
    by_kind: dict[bytes, list[tuple[Place, dict[Any, Any], str]]] = {}
    kinds: dict[int, bytes | None] = {}  # by identity: one object at several places is pickled once
    for group in seen.values():
        if len(group) < 2:
            continue
        for found in group:
            value = found[1][found[2]]
            if id(value) not in kinds:
                kinds[id(value)] = _kind(value)
            kind = kinds[id(value)]
            if kind is not None:
                by_kind.setdefault(kind, []).append(found)
    table = Table()
    replaced: dict[int, dict[Any, Any]] = {}  # original data dict → its copy holding None at the shared keys
    for alike in by_kind.values():
        if len(alike) < 2:
            continue
        text = encode(alike[0][1][alike[0][2]])
        if len(text) < LARGE:
            continue
        table.texts.append(text)
        table.places.append([[*place, key] for place, _data, key in alike])
        for _place, data, key in alike:
            replaced.setdefault(id(data), dict(data))[key] = None
    if not table.texts:
        return None
    for place, data in dicts:
        copy = replaced.get(id(data))
        if copy is not None:
            _put(dct, place, copy)
    return table


def _kind(value: Any) -> bytes | None:
    """The value's pickle, equal for two values only when they are written alike; None: it does not pickle (left
    out)."""
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:  # whatever an object left to the encoder raises: such a value is simply not shared
        return None


def _put(dct: dict[str, Any], place: Place, data: dict[Any, Any]) -> None:
    sub_id, task_id, field = place
    flow = dct if sub_id is None else dct["subprocesses"][sub_id]
    if task_id is None:
        flow["data"] = data
    elif field == "data":
        flow["tasks"][task_id] = {**flow["tasks"][task_id], "data": data}
    else:
        task = flow["tasks"][task_id]
        flow["tasks"][task_id] = {**task, "delta": {**task["delta"], "updates": data}}


def expand(dct: dict[str, Any]) -> int:
    """Put each value stored once back at its places (the dict json.loads made of a state); no table: nothing to do.

    Returns about how many characters the places hold beyond the written copies (as `Table.repeated_chars`; each
    value measured again as JSON), for what the restored workflow takes in memory.

    Raises: ValueError when the table does not fit the state (a damaged state)."""
    table = dct.pop(KEY, None)
    if table is None:
        return 0
    repeated = 0
    try:
        values, places = table["values"], table["at"]
        if len(values) != len(places):
            raise ValueError("values and places differ in number")
        for value, at in zip(values, places, strict=True):
            if len(at) > 1:
                repeated += len(json.dumps(value)) * (len(at) - 1)
            for sub_id, task_id, field, key in at:
                flow = dct if sub_id is None else dct["subprocesses"][sub_id]
                if task_id is None:
                    data = flow["data"]
                elif field == "data":
                    data = flow["tasks"][task_id]["data"]
                else:
                    data = flow["tasks"][task_id]["delta"]["updates"]
                if field not in ("data", "updates") or data[key] is not None:
                    raise ValueError(f"place {[sub_id, task_id, field, key]} holds a value")
                data[key] = value
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"stored workflow state has a damaged table of shared values ({KEY}): {exc!r}") from exc
    return repeated


__all__ = ["KEY", "LARGE", "Table", "expand", "share"]
