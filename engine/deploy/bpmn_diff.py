"""Element-level diff of two BPMN or DMN documents: what was added, removed or changed, by element id.

An element's comparable content is what jzflow executes or shows: its type and name, its
attributes, the lane it sits in, conditions, scripts, timers, multi-instance settings,
spiffworkflow properties (SLA, forms, candidates …), called decisions and services; for DMN the
rules' cells. Diagram layout (DI) is not compared: moving a shape is not a change of the process.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from lxml import etree

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
SKIPPED_CHILDREN = ("incoming", "outgoing", "flowNodeRef", "extensionElements")
CONTAINERS = ("definitions", "process", "subProcess", "transaction", "adHocSubProcess", "collaboration", "laneSet",
              "lane")
NOT_ELEMENTS = ("EventDefinition", "LoopCharacteristics", "laneSet", "ioSpecification", "Expression", "dataInput",
                "dataOutput", "inputSet", "outputSet")
DMN_ELEMENTS = ("decision", "decisionTable", "input", "output", "rule")
MAX_DIFF_LINES = 400
# Attribute values the BPMN schema takes when the attribute is absent: modellers write them or not at will.
DEFAULTS = {"cancelActivity": "true", "isInterrupting": "true", "parallelMultiple": "false",
            "isForCompensation": "false", "startQuantity": "1", "completionQuantity": "1", "isImmediate": "true",
            "gatewayDirection": "Unspecified", "isClosed": "false", "processType": "None", "isSequential": "false",
            "implementation": "##unspecified", "associationDirection": "None", "instantiate": "false",
            "eventGatewayType": "Exclusive", "triggeredByEvent": "false", "isExecutable": "true",
            "textFormat": "text/plain", "ordering": "Parallel", "cancelRemainingInstances": "true"}


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class ElementChange:
    file: str
    element_id: str
    kind: str  # added | removed | changed
    type: str  # the element's local name (userTask, sequenceFlow, rule …)
    name: str
    changes: tuple[FieldChange, ...] = ()


@dataclass(frozen=True)
class FileChange:
    name: str
    kind: str  # added | removed | changed
    unified: str  # a unified diff of the text (cut at MAX_DIFF_LINES lines)


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _ns(el: etree._Element) -> str:
    return (etree.QName(el).namespace or "") if isinstance(el.tag, str) else ""


def _text(el: etree._Element) -> str:
    return " ".join((el.text or "").split()) if _local(el) not in ("script", "preScript", "postScript") \
        else (el.text or "").strip()


def _parse(text: str | None) -> etree._Element | None:
    if not text:
        return None
    try:
        return etree.fromstring(text.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return None


def _bpmn_fields(el: etree._Element, lanes: dict[str, str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, value in sorted(el.attrib.items()):
        qname = etree.QName(key)
        if qname.localname not in ("id", "name") and DEFAULTS.get(qname.localname) != value:
            fields[f"@{qname.localname}"] = value
    if el.get("id") in lanes:
        fields["lane"] = lanes[str(el.get("id"))]
    for child in el:
        name = _local(child)
        if not name or name in SKIPPED_CHILDREN:
            continue
        if name == "documentation" or name == "text":
            fields[name] = _text(child)
        elif name == "conditionExpression":
            fields["condition"] = _text(child)
        elif name == "script":
            fields["script"] = _text(child)
        elif name.endswith("EventDefinition"):
            parts = [name.removesuffix("EventDefinition")]
            parts += [f"{k}={v}" for k, v in sorted(child.attrib.items()) if k != "id"]
            parts += [f"{_local(c)}={_text(c)}" for c in child if _local(c)]
            fields[f"event:{parts[0]}"] = " ".join(parts[1:])
        elif name.endswith("LoopCharacteristics"):
            parts = [f"{etree.QName(k).localname}={v}" for k, v in sorted(child.attrib.items()) if k != "id"]
            parts += [f"{_local(c)}={_text(c) or c.get('name') or c.get('id') or ''}" for c in child if _local(c)]
            fields[name] = "; ".join(parts)
    for ext in el.findall(f"{{{BPMN_NS}}}extensionElements"):
        for item in ext.iter():
            if _ns(item) != SPIFF_NS:
                continue
            name = _local(item)
            if name == "property":
                fields[f"property:{item.get('name')}"] = item.get("value") or ""
            elif name in ("preScript", "postScript", "instructionsForEndUser", "calledDecisionId", "messagePayload",
                          "messageVariable"):
                fields[name] = _text(item)
            elif name == "serviceTaskOperator":
                params = [f"{p.get('id')}={p.get('value')}" for p in item.iter(f"{{{SPIFF_NS}}}parameter")]
                fields["service"] = f"{item.get('id')}({', '.join(params)})" + \
                    (f" → {item.get('resultVariable')}" if item.get("resultVariable") else "")
    return fields


def _bpmn_elements(root: etree._Element) -> dict[str, tuple[str, str, dict[str, str]]]:
    lanes: dict[str, str] = {}
    for lane in root.iter(f"{{{BPMN_NS}}}lane"):
        for ref in lane.findall(f"{{{BPMN_NS}}}flowNodeRef"):
            lanes[(ref.text or "").strip()] = lane.get("name") or str(lane.get("id"))
    found: dict[str, tuple[str, str, dict[str, str]]] = {}
    for el in root.iter():
        if _ns(el) != BPMN_NS or not el.get("id") or _local(el) == "definitions":
            continue
        name = _local(el)
        if name.endswith(NOT_ELEMENTS) or _inside_extension(el):
            continue
        fields = _bpmn_fields(el, lanes)
        if name in CONTAINERS:  # their content is diffed element by element
            fields = {k: v for k, v in fields.items() if not k.startswith("event:")}
        found[str(el.get("id"))] = (name, el.get("name") or "", fields)
    return found


def _inside_extension(el: etree._Element) -> bool:
    return any(_local(a) == "extensionElements" for a in el.iterancestors())


def _dmn_elements(root: etree._Element) -> dict[str, tuple[str, str, dict[str, str]]]:
    found: dict[str, tuple[str, str, dict[str, str]]] = {}
    for el in root.iter():
        name = _local(el)
        if name not in DMN_ELEMENTS or not el.get("id"):
            continue
        fields = {f"@{k}": v for k, v in sorted(el.attrib.items()) if k not in ("id", "name", "label")}
        if el.get("label"):
            fields["label"] = str(el.get("label"))
        if name == "input":
            fields["expression"] = " ".join(_text(t) for t in el.iter() if _local(t) == "text")
        elif name == "rule":
            for i, entry in enumerate(c for c in el if _local(c) == "inputEntry"):
                fields[f"input {i + 1}"] = " ".join(_text(t) for t in entry if _local(t) == "text")
            for i, entry in enumerate(c for c in el if _local(c) == "outputEntry"):
                fields[f"output {i + 1}"] = " ".join(_text(t) for t in entry if _local(t) == "text")
            for entry in (c for c in el if _local(c) == "description"):
                fields["description"] = _text(entry)
        found[str(el.get("id"))] = (name, el.get("name") or el.get("label") or "", fields)
    return found


def diff_xml(file: str, old_text: str | None, new_text: str | None) -> list[ElementChange]:
    """Return the element changes between two versions of one BPMN or DMN file (None: absent)."""
    old_root, new_root = _parse(old_text), _parse(new_text)
    is_dmn = any("dmn" in (_ns(r) or "").lower() for r in (old_root, new_root) if r is not None)
    read = _dmn_elements if is_dmn else _bpmn_elements
    old = read(old_root) if old_root is not None else {}
    new = read(new_root) if new_root is not None else {}
    changes: list[ElementChange] = []
    for element_id in sorted(set(old) | set(new), key=lambda i: (i not in old, i not in new, i)):
        if element_id not in new:
            kind, name, _fields = old[element_id]
            changes.append(ElementChange(file, element_id, "removed", kind, name))
        elif element_id not in old:
            kind, name, _fields = new[element_id]
            changes.append(ElementChange(file, element_id, "added", kind, name))
        else:
            (kind_a, name_a, fields_a), (kind_b, name_b, fields_b) = old[element_id], new[element_id]
            fields = [FieldChange(k, fields_a.get(k), fields_b.get(k)) for k in sorted(set(fields_a) | set(fields_b))
                      if fields_a.get(k) != fields_b.get(k)]
            if kind_a != kind_b:
                fields.insert(0, FieldChange("type", kind_a, kind_b))
            if name_a != name_b:
                fields.insert(0, FieldChange("name", name_a, name_b))
            if fields:
                changes.append(ElementChange(file, element_id, "changed", kind_b, name_b, tuple(fields)))
    order = {"removed": 0, "changed": 1, "added": 2}
    changes.sort(key=lambda c: (order[c.kind], c.element_id))
    return changes


def diff_files(old: dict[str, str], new: dict[str, str]) -> list[FileChange]:
    """Return which files were added, removed or changed, with a unified diff of each."""
    changes: list[FileChange] = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        kind = "added" if before is None else "removed" if after is None else "changed"
        lines = list(difflib.unified_diff((before or "").splitlines(), (after or "").splitlines(),
                                          fromfile=f"a/{name}", tofile=f"b/{name}", lineterm="", n=2))
        if len(lines) > MAX_DIFF_LINES:
            lines = [*lines[:MAX_DIFF_LINES], f"… ({len(lines) - MAX_DIFF_LINES} more lines)"]
        changes.append(FileChange(name, kind, "\n".join(lines)))
    return changes


__all__ = ["ElementChange", "FieldChange", "FileChange", "diff_files", "diff_xml"]
