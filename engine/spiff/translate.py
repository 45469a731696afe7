"""Translate what other tools' models say into jzflow's terms where the meaning is clear, and report each change.

Asked for explicitly (`jzflow deploy --translate`, the modeller's "translate" choice at import). Rewrites:

- JUEL (`${approved}`) and FEEL (`=amount > 5000`) conditions, completion conditions, cardinalities and
  timers into Python (engine/spiff/foreign_expr.py, a real parser); a bare ISO 8601 timer (`PT5M`) is quoted;
- Camunda 7 / Activiti / Flowable `assignee`, `candidateUsers`, `candidateGroups`, `dueDate` and Camunda 8's
  `zeebe:assignmentDefinition` / `zeebe:taskSchedule` into the spiffworkflow properties `assignee`,
  `candidates`, `due` (Python expressions);
- `camunda:formData` into a JSON Schema form file named by `formJsonSchemaFilename`;
- FEEL cells of DMN tables exported by Camunda or Flowable modellers (unary tests: comparisons, ranges,
  lists, `not(…)`) into the Python cells SpiffWorkflow's DMN engine evaluates.

What is outside the subset is left as it was, so the deploy refuses it naming the element and line. Line
numbers are kept: what is added goes on the line of the element it belongs to, what is removed leaves its
lines behind, so every later refusal points at the file the owner has.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping

from lxml import etree

from engine.spiff import foreign_expr, translate_dmn, vendor_forms
from engine.spiff.foreign_expr import Untranslatable
from engine.spiff.translated import Translated, Translation

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
ZEEBE_NS = "http://camunda.org/schema/zeebe/1.0"
VENDORS = {CAMUNDA_NS: "camunda", "http://activiti.org/bpmn": "activiti", "http://flowable.org/bpmn": "flowable"}
JAVA_VENDORS = tuple(VENDORS)
EXPRESSIONS = ("conditionExpression", "condition", "completionCondition", "loopCardinality")
TIMERS = ("timeDuration", "timeDate", "timeCycle")
ISO_TIMER = re.compile(r"^(R\d*/)?(P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?"
                       r"|\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?(\.\d+)?(Z|[+-]\d{2}:?\d{2})?)?)$")
FOREIGN_LANGUAGES = ("juel", "feel", "http://www.omg.org/spec/feel/20140401", "https://www.omg.org/spec/dmn/20191111/feel/")


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _ns(el: etree._Element) -> str:
    return (etree.QName(el).namespace or "") if isinstance(el.tag, str) else ""


def _owner(el: etree._Element) -> etree._Element:
    node: etree._Element | None = el
    while node is not None:
        if node.get("id") and _ns(node) == BPMN_NS and not _local(node).endswith(("EventDefinition", "Expression",
                                                                                   "LoopCharacteristics")):
            return node
        node = node.getparent()
    return el


def _parse(data: bytes) -> etree._Element:
    """Parse like the deploy does: no entity is resolved, nothing is fetched."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    return etree.fromstring(data, parser=parser)


def translate_bundle(files: Mapping[str, bytes | str]) -> Translation:
    """Translate every BPMN and DMN file of a bundle; files that do not parse are passed on untouched."""
    out = Translation(files=dict(files))
    outputs = _decision_outputs(files)
    for name, raw in sorted(files.items()):
        lower = name.lower()
        kind = "bpmn" if lower.endswith((".bpmn", ".bpmn20.xml")) else "dmn" if lower.endswith(".dmn") else None
        if kind is None:
            continue
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            root = _parse(text.removeprefix("\ufeff").encode("utf-8"))
        except (UnicodeDecodeError, etree.XMLSyntaxError, ValueError):
            continue  # the deploy reports it
        if root.getroottree().docinfo.doctype:
            continue
        before = len(out.report)
        if kind == "bpmn":
            _Bpmn(name, root, out, outputs).run()
        else:
            translate_dmn.translate(name, root, out)
        if len(out.report) > before:
            head = '<?xml version="1.0" encoding="UTF-8"?>\n' if text.lstrip("\ufeff").startswith("<?xml") else ""
            out.files[name] = head + etree.tostring(root, encoding="unicode")
    return out


def _decision_outputs(files: Mapping[str, bytes | str]) -> dict[str, list[str]]:
    """Map each DMN decision id of the bundle to its table's output names."""
    found: dict[str, list[str]] = {}
    for name, raw in files.items():
        if not name.lower().endswith(".dmn"):
            continue
        try:
            root = _parse(raw if isinstance(raw, bytes) else raw.encode("utf-8"))
        except (etree.XMLSyntaxError, ValueError):
            continue
        for decision in root.iter():
            if isinstance(decision.tag, str) and _local(decision) == "decision" and decision.get("id"):
                found[str(decision.get("id"))] = [str(o.get("name") or "") for o in decision.iter()
                                                  if isinstance(o.tag, str) and _local(o) == "output"]
    return found


class _Bpmn:
    def __init__(self, file: str, root: etree._Element, out: Translation, outputs: Mapping[str, list[str]]) -> None:
        self.file, self.root, self.out, self.outputs = file, root, out, outputs

    def done(self, el: etree._Element, what: str, before: str, after: str) -> None:
        self.out.report.append(Translated(self.file, _owner(el).get("id"), el.sourceline, what, before, after))

    def kept(self, el: etree._Element, what: str, before: str, reason: str) -> None:
        self.out.kept.append(Translated(self.file, _owner(el).get("id"), el.sourceline, what, before, reason))

    def run(self) -> None:
        for el in list(self.root.iter()):
            if _ns(el) != BPMN_NS:
                continue
            name = _local(el)
            if name in EXPRESSIONS:
                self.expression(el)
            elif name in TIMERS:
                self.timer(el)
            elif name in ("userTask", "manualTask"):
                self.assignment(el)
                self.form(el)
            elif name == "businessRuleTask":
                self.decision(el)
            elif name == "startEvent":
                self.initiator(el)

    def initiator(self, start: etree._Element) -> None:
        """`initiator="initiator"` asks for what jzflow does anyway: the starter's username in `initiator`."""
        for attr, value in list(start.attrib.items()):
            q = etree.QName(attr)
            if q.namespace in JAVA_VENDORS and q.localname == "initiator" and value == "initiator":
                del start.attrib[attr]
                self.done(start, f"{VENDORS[str(q.namespace)]}:initiator", value, "initiator (jzflow sets it)")

    # --- decisions
    def decision(self, task: etree._Element) -> None:
        """A called decision whose single output is named like the result variable means the same in jzflow."""
        zeebe = next(task.iter(f"{{{ZEEBE_NS}}}calledDecision"), None)
        attrs = {etree.QName(a).localname: (a, v) for a, v in task.attrib.items()
                 if etree.QName(a).namespace in JAVA_VENDORS}
        if zeebe is not None:
            decision, result, label = zeebe.get("decisionId") or "", zeebe.get("resultVariable") or "", \
                "zeebe:calledDecision"
        elif "decisionRef" in attrs:
            decision, result, label = attrs["decisionRef"][1], attrs.get("resultVariable", ("", ""))[1], \
                "camunda:decisionRef"
            if attrs.get("mapDecisionResult", ("", "singleEntry"))[1] != "singleEntry" or \
                    attrs.get("decisionRefBinding", ("", "latest"))[1] != "latest":
                self.kept(task, label, decision, "only mapDecisionResult=\"singleEntry\" of the latest decision "
                                                 "is translated")
                return
        else:
            return
        outputs = self.outputs.get(decision)
        if outputs is None or outputs != [result] or not result.isidentifier():
            self.kept(task, label, decision, f"the decision's outputs {outputs or []} are not exactly the result "
                                             f"variable “{result}”")
            return
        if zeebe is not None:
            _remove_keeping_lines(zeebe)
        else:
            for key in ("decisionRef", "resultVariable", "mapDecisionResult", "decisionRefBinding"):
                if key in attrs:
                    del task.attrib[attrs[key][0]]
        ext = self.extensions(task)
        called = etree.SubElement(ext, f"{{{SPIFF_NS}}}calledDecisionId", nsmap={"spiffworkflow": SPIFF_NS})
        called.text = decision
        self.done(task, label, f"{decision} → {result}", f"spiffworkflow:calledDecisionId = {decision}")

    # --- expressions
    def expression(self, el: etree._Element) -> None:
        text = (el.text or "").strip()
        language = (el.get("language") or "").strip().lower()
        dialect = "juel" if text[:2] in ("${", "#{") or language == "juel" else \
            "feel" if text.startswith("=") or "feel" in language else None
        if dialect is None or (language and language not in FOREIGN_LANGUAGES and "feel" not in language):
            return
        try:
            python = foreign_expr.juel(text) if dialect == "juel" else foreign_expr.feel(text)
        except Untranslatable as exc:
            self.kept(el, _local(el), text, str(exc))
            return
        el.text = python
        if "language" in el.attrib:
            del el.attrib["language"]
        self.done(el, _local(el), text, python)

    def timer(self, el: etree._Element) -> None:
        text = (el.text or "").strip()
        language = (el.get("language") or "").strip().lower()
        if ISO_TIMER.match(text) and (not language or language in FOREIGN_LANGUAGES):
            el.text = json.dumps(text)
            if "language" in el.attrib:
                del el.attrib["language"]
            self.done(el, _local(el), text, el.text)
        else:
            self.expression(el)

    # --- who and when
    def assignment(self, task: etree._Element) -> None:
        found: dict[str, tuple[str, str]] = {}  # jzflow property → (vendor attribute text, its value)
        removals: list[tuple[etree._Element, str | None]] = []  # (element, attribute or None: the element)
        for attr, value in list(task.attrib.items()):
            q = etree.QName(attr)
            if q.namespace in JAVA_VENDORS and q.localname in ("assignee", "candidateUsers", "candidateGroups",
                                                               "dueDate"):
                found[q.localname] = (f"{VENDORS[str(q.namespace)]}:{q.localname}", value)
                removals.append((task, attr))
        for ext in task.iter(f"{{{ZEEBE_NS}}}assignmentDefinition", f"{{{ZEEBE_NS}}}taskSchedule"):
            for key in ("assignee", "candidateUsers", "candidateGroups", "dueDate"):
                if ext.get(key) is not None:
                    found[key] = (f"zeebe:{_local(ext)} {key}", str(ext.get(key)))
            removals.append((ext, None))
        if not found:
            return
        try:
            props = self.properties(found)
        except Untranslatable as exc:
            for label, value in found.values():
                self.kept(task, label, value, str(exc))
            return
        existing = {p.get("name") for p in task.iter(f"{{{SPIFF_NS}}}property")}
        clash = sorted(set(props) & existing)
        if clash:
            for label, value in found.values():
                self.kept(task, label, value, f"the task already has the jzflow property {', '.join(clash)}")
            return
        for name, value in props.items():
            self.property(task, name, value)
        for el, attr in removals:
            if attr is not None:
                del el.attrib[attr]
            else:
                _remove_keeping_lines(el)
        for key, (label, value) in found.items():
            target = {"assignee": "assignee", "candidateUsers": "candidates", "candidateGroups": "candidates",
                      "dueDate": "due"}[key]
            self.done(task, label, value, f"{target} = {props[target]}")

    def properties(self, found: Mapping[str, tuple[str, str]]) -> dict[str, str]:
        props: dict[str, str] = {}
        if "assignee" in found:
            items = _names(found["assignee"][1])
            if len(items) != 1:
                raise Untranslatable("an assignee is one user")
            props["assignee"] = items[0]
        names = [*_names(found.get("candidateUsers", ("", ""))[1]), *_names(found.get("candidateGroups", ("", ""))[1])]
        if names:
            props["candidates"] = names[0] if len(names) == 1 and not names[0].startswith(("'", '"')) \
                else "[" + ", ".join(names) + "]"
        if "dueDate" in found:
            props["due"] = _value(found["dueDate"][1], date=True)
        return props

    def extensions(self, task: etree._Element) -> etree._Element:
        ext = next((c for c in task if _ns(c) == BPMN_NS and _local(c) == "extensionElements"), None)
        if ext is None:
            ext = etree.Element(f"{{{BPMN_NS}}}extensionElements")
            ext.tail = task.text  # on the task's own line: nothing below moves
            task.text = None
            task.insert(0, ext)
        return ext

    def property(self, task: etree._Element, name: str, value: str) -> None:
        ext = self.extensions(task)
        holder = next((c for c in ext if c.tag == f"{{{SPIFF_NS}}}properties"), None)
        if holder is None:
            holder = etree.Element(f"{{{SPIFF_NS}}}properties", nsmap={"spiffworkflow": SPIFF_NS})
            holder.tail = ext.text
            ext.text = None
            ext.insert(0, holder)
        etree.SubElement(holder, f"{{{SPIFF_NS}}}property", {"name": name, "value": value})

    # --- forms
    def form(self, task: etree._Element) -> None:
        data = next(task.iter(f"{{{CAMUNDA_NS}}}formData"), None)
        if data is None:
            return
        try:
            schema = vendor_forms.form_schema(task, data)
        except Untranslatable as exc:
            self.kept(data, "camunda:formData", "formData", str(exc))
            return
        if any(p.get("name") == "formJsonSchemaFilename" for p in task.iter(f"{{{SPIFF_NS}}}property")):
            self.kept(data, "camunda:formData", "formData", "the task already names a JSON Schema form")
            return
        form_name = _free_name(f"{task.get('id')}.schema.json", self.out.files)
        self.out.files[form_name] = json.dumps(schema, ensure_ascii=False, indent=2) + "\n"
        props = schema["properties"]
        fields = ", ".join(map(str, props)) if isinstance(props, dict) else ""
        self.done(data, "camunda:formData", fields, form_name)
        _remove_keeping_lines(data)
        self.property(task, "formJsonSchemaFilename", form_name)


def _names(text: str) -> list[str]:
    """Turn a vendor list of names (`a, ${b}`, `=["a","b"]`) into Python expressions, one per name or list."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("="):
        return [foreign_expr.feel(text)]
    items = [t.strip() for t in text.split(",")] if "${" not in text or text.count("${") > 1 or "," not in text \
        or not (text.startswith("${") and text.endswith("}")) else [text]
    out: list[str] = []
    for item in items:
        if not item:
            continue
        out.append(_value(item))
    return out


def _value(text: str, *, date: bool = False) -> str:
    text = text.strip()
    if text[:2] in ("${", "#{"):
        return foreign_expr.juel(text)
    if text.startswith("="):
        return foreign_expr.feel(text)
    if "$" in text or "{" in text:
        raise Untranslatable(f"“{text}” mixes text and an expression")
    if date and not re.match(r"^\d{4}-\d{2}-\d{2}(T[\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$", text):
        raise Untranslatable(f"“{text}” is not an ISO 8601 date")
    return json.dumps(text, ensure_ascii=False)


def _free_name(name: str, files: Mapping[str, object]) -> str:
    if name not in files:
        return name
    stem = name.removesuffix(".schema.json")
    n = 2
    while f"{stem}-{n}.schema.json" in files:
        n += 1
    return f"{stem}-{n}.schema.json"


def _remove_keeping_lines(el: etree._Element) -> None:
    """Remove an element; its lines stay as blank lines so every later line keeps its number."""
    parent = el.getparent()
    if parent is None:
        return
    lines = etree.tostring(el, encoding="unicode", with_tail=False).count("\n")
    gap = "\n" * lines + (el.tail or "")
    prev = el.getprevious()
    if prev is not None:
        prev.tail = (prev.tail or "") + gap
    else:
        parent.text = (parent.text or "") + gap
    parent.remove(el)
    if _local(parent) == "extensionElements" and len(parent) == 0:
        _remove_keeping_lines(parent)


__all__ = ["Translated", "Translation", "translate_bundle"]
