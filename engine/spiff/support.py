"""Refuse BPMN that jzflow would run differently from what was drawn (docs/decisions/0004-foreign-bpmn.md).

SpiffWorkflow's parser silently skips what it does not execute: a link or compensation event
becomes a plain event, a Camunda `assignee` or `formData` is dropped, a Groovy script runs as
Python. Files exported by other modellers (Camunda Modeler, SpiffArena, Signavio, Flowable …)
deploy when they use only what jzflow executes; anything with executable meaning that would be
lost is refused here, naming the element and its line. What carries no behaviour (diagram
interchange, documentation, annotations, groups, vendor metadata, form keys) is accepted and
ignored. Only executable processes are checked: a pool that is never run cannot run wrongly.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from lxml import etree

from engine.errors import DeployProblem
from engine.spiff import foreign_hints

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
ZEEBE_NS = "http://camunda.org/schema/zeebe/1.0"
ACTIVITI_NS = "http://activiti.org/bpmn"
FLOWABLE_NS = "http://flowable.org/bpmn"
ENGINE_VENDORS = {CAMUNDA_NS: "camunda", ACTIVITI_NS: "activiti", FLOWABLE_NS: "flowable", ZEEBE_NS: "zeebe"}

# What SpiffWorkflow 3.2.0 has no implementation for (it parses them as something else, or not at all).
UNSUPPORTED_ELEMENTS = {
    "complexGateway": "complex gateways are not executed by jzflow; use an inclusive or exclusive gateway",
    "compensateEventDefinition": "compensation is not executed by jzflow (SpiffWorkflow 3.2.0 treats it as a "
                                 "plain event)",
    "linkEventDefinition": "link events are not executed by jzflow (SpiffWorkflow 3.2.0 treats them as plain "
                           "events, so the link is never followed); draw the sequence flow instead",
    "dataStore": "data stores are not executed by jzflow; keep the data in task data",
}
HINT_ASSIGN = "use a lane named after a role or org unit, or the spiffworkflow properties assignee/candidates"
HINT_SERVICE = "jzflow runs service tasks through spiffworkflow:serviceTaskOperator naming a registered service"
HINT_PYTHON = "jzflow expressions are Python"
TRANSLATABLE = ("; translation is available: jzflow deploy --translate, or the modeller's 转换 (translate) choice at "
                "import, writes it the jzflow way")
# Vendor attributes (Camunda 7, Activiti, Flowable share the names) whose meaning jzflow would drop.
REFUSED_ATTRIBUTES = {
    "assignee": f"task assignment is not read by jzflow: {HINT_ASSIGN}" + TRANSLATABLE,
    "candidateUsers": f"task assignment is not read by jzflow: {HINT_ASSIGN}" + TRANSLATABLE,
    "candidateGroups": f"task assignment is not read by jzflow: {HINT_ASSIGN}" + TRANSLATABLE,
    "candidateStarterUsers": "start permissions are not read by jzflow",
    "candidateStarterGroups": "start permissions are not read by jzflow",
    "dueDate": "due dates are not read by jzflow: use the spiffworkflow property sla or due" + TRANSLATABLE,
    "followUpDate": "follow-up dates are not read by jzflow: use the spiffworkflow property sla",
    "class": f"Java delegates are not run by jzflow: {HINT_SERVICE}",
    "delegateExpression": f"delegate expressions are not run by jzflow: {HINT_SERVICE}",
    "expression": f"JUEL expressions are not run by jzflow: {HINT_SERVICE}",
    "type": f"external or typed tasks are not run by jzflow: {HINT_SERVICE}",
    "topic": f"external tasks are not run by jzflow: {HINT_SERVICE}",
    "resultVariable": f"result variables of vendor tasks are not set by jzflow: {HINT_SERVICE}",
    "decisionRef": "use spiffworkflow:calledDecisionId to name the DMN decision" + TRANSLATABLE,
    "resource": "external script resources are not loaded by jzflow: put the Python script in the element",
    "collection": "multi-instance collections are read from loopDataInputRef (a task data variable) in jzflow",
    "elementVariable": "multi-instance items are named by inputDataItem in jzflow",
    "initiator": "jzflow puts the starter's username in the variable initiator",
    "errorCodeVariable": "error variables are not set by jzflow",
    "errorMessageVariable": "error variables are not set by jzflow",
}
# Vendor extension elements whose meaning jzflow would drop (local names, any engine vendor).
REFUSED_EXTENSIONS = {
    "inputOutput": "input/output mappings are not applied by jzflow: use a preScript or postScript",
    "ioMapping": "input/output mappings are not applied by jzflow: use a preScript or postScript",
    "executionListener": "execution listeners are not run by jzflow: use a preScript or postScript",
    "executionListeners": "execution listeners are not run by jzflow: use a preScript or postScript",
    "taskListener": "task listeners are not run by jzflow",
    "taskListeners": "task listeners are not run by jzflow",
    "connector": f"connectors are not run by jzflow: {HINT_SERVICE}",
    "taskDefinition": f"job workers are not called by jzflow: {HINT_SERVICE}",
    "assignmentDefinition": f"task assignment is not read by jzflow: {HINT_ASSIGN}" + TRANSLATABLE,
    "taskSchedule": "due dates are not read by jzflow: use the spiffworkflow property sla or due" + TRANSLATABLE,
    "calledDecision": "use spiffworkflow:calledDecisionId to name the DMN decision" + TRANSLATABLE,
    "calledElement": "name the called process in the callActivity's calledElement attribute",
    "loopCharacteristics": "multi-instance settings are read from the BPMN multiInstanceLoopCharacteristics",
    "subscription": "Zeebe correlation keys are not read by jzflow: correlate with BPMN correlation properties "
                    "(correlationProperty, retrieval expression in Python) or the business key",
    "in": "call activity variable mappings are not applied by jzflow (the called process gets all data)",
    "out": "call activity variable mappings are not applied by jzflow (the called process returns all data)",
    "field": f"delegate fields are not read by jzflow: {HINT_SERVICE}",
    "formData": "embedded form fields are not shown by jzflow: give the task a JSON Schema form "
                "(spiffworkflow property formJsonSchemaFilename)" + TRANSLATABLE,
    "script": "vendor scripts are not run by jzflow: use a preScript, postScript or script task",
    "errorEventDefinition": "vendor error mappings are not applied by jzflow",
}
PYTHON_FORMATS = {"", "python", "python3", "py", "text/python", "text/x-python", "application/x-python"}
JUEL = re.compile(r"^\s*[$#]\{")
FEEL = re.compile(r"^\s*=")
NOT_EXECUTABLE = ("本文件中没有可执行的流程（流程 %(processes)s 设置了 isExecutable=\"false\"，Signavio 等工具的默认值）："
                  "请在流程属性中勾选“可执行”（isExecutable=\"true\"）后再部署")
# Message and signal start events are started by jzflow's message and signal routing (engine/runtime/messages.py).
START_ONLY_BY_JZFLOW = ("conditionalEventDefinition",)


@dataclass(frozen=True)
class Document:
    """One parsed file of a bundle: its kind (bpmn | dmn | form) and root element."""

    kind: str
    root: etree._Element


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _ns(el: etree._Element) -> str:
    return (etree.QName(el).namespace or "") if isinstance(el.tag, str) else ""


def _drawn(el: etree._Element) -> bool:
    """Tell whether an element is one the diagram shows (so a problem can be marked on it)."""
    name = _local(el)
    return bool(el.get("id")) and _ns(el) == BPMN_NS and not name.endswith(NOT_DRAWN_SUFFIXES)


NOT_DRAWN_SUFFIXES = ("EventDefinition", "LoopCharacteristics", "laneSet", "ioSpecification", "Expression")


def _owner(el: etree._Element) -> etree._Element:
    """Return the nearest drawn BPMN element (an event definition's event, an extension's task)."""
    node: etree._Element | None = el
    while node is not None and not _drawn(node):
        node = node.getparent()
    return node if node is not None else el


def _problem(file: str, el: etree._Element, message: str) -> DeployProblem:
    owner = _owner(el)
    return DeployProblem(file, message, element_id=owner.get("id"), line=el.sourceline)


def _executable(proc: etree._Element) -> bool:
    return (proc.get("isExecutable") or "true").strip().lower() == "true"


def check_bundle(documents: Mapping[str, Document]) -> list[DeployProblem]:
    """Return what the bundle's BPMN documents use that jzflow does not execute as drawn."""
    problems: list[DeployProblem] = []
    processes = 0
    names: list[str] = []
    first: tuple[str, etree._Element] | None = None
    for file, doc in documents.items():
        if doc.kind == "dmn":
            problems.extend(_check_dmn(file, doc.root))
        if doc.kind != "bpmn":
            continue
        for store in doc.root.iter(f"{{{BPMN_NS}}}dataStore"):
            problems.append(_problem(file, store, UNSUPPORTED_ELEMENTS["dataStore"]))
        for proc in doc.root.iter(f"{{{BPMN_NS}}}process"):
            names.append(str(proc.get("id")))
            first = first or (file, proc)
            if _executable(proc):
                processes += 1
                problems.extend(_check_process(file, proc))
    if names and processes == 0 and first is not None:
        problems.append(DeployProblem.said(first[0], NOT_EXECUTABLE, element_id=first[1].get("id"),
                                           line=first[1].sourceline, processes="、".join(names)))
    return problems


DMN_IDS_REQUIRED = ("decision", "decisionTable", "input", "output", "rule", "inputEntry", "outputEntry")


def _check_dmn(file: str, root: etree._Element) -> Iterator[DeployProblem]:
    """SpiffWorkflow 3.2.0 reads the first decision of a file, and only its decision table."""
    decisions = [el for el in root if _local(el) == "decision"]
    if not decisions:
        yield DeployProblem(file, "DMN file has no decision", line=root.sourceline)
    elif len(decisions) > 1:
        yield DeployProblem(file, f"DMN file has {len(decisions)} decisions: jzflow reads one decision per file, "
                                  "put each decision in its own .dmn file",
                            element_id=decisions[1].get("id"), line=decisions[1].sourceline)
    for decision in decisions[:1]:
        if not any(_local(el) == "decisionTable" for el in decision):
            yield DeployProblem(file, "only decision tables are executed by jzflow (this decision has none, "
                                      "e.g. a literal expression)", element_id=decision.get("id"),
                                line=decision.sourceline)
    for el in root.iter():
        if _local(el) in DMN_IDS_REQUIRED and not el.get("id"):
            parent = el.getparent()
            while parent is not None and not parent.get("id"):
                parent = parent.getparent()
            yield DeployProblem(file, f"DMN {_local(el)} has no id", line=el.sourceline,
                                element_id=parent.get("id") if parent is not None else None)


def _check_process(file: str, proc: etree._Element) -> Iterator[DeployProblem]:
    for el in proc.iter():
        if not isinstance(el.tag, str):
            continue
        name, ns = _local(el), _ns(el)
        if ns == BPMN_NS:
            if name in UNSUPPORTED_ELEMENTS:
                yield _problem(file, el, f"{name}: {UNSUPPORTED_ELEMENTS[name]}")
            if el.get("isForCompensation", "false").lower() == "true":
                yield _problem(file, el, f"{name} isForCompensation: {UNSUPPORTED_ELEMENTS['compensateEventDefinition']}")
            if name == "scriptTask":
                yield from _check_script_format(file, el)
            if name in ("conditionExpression", "condition", "completionCondition", "loopCardinality",
                        "timeDuration", "timeDate", "timeCycle"):
                yield from _check_expression_language(file, el)
        elif ns in ENGINE_VENDORS and name in REFUSED_EXTENSIONS and _inside_extensions(el):
            yield _problem(file, el, f"{ENGINE_VENDORS[ns]}:{name}: {REFUSED_EXTENSIONS[name]}")
        for attr in el.attrib:
            qname = etree.QName(attr)
            if qname.namespace in ENGINE_VENDORS and qname.localname in REFUSED_ATTRIBUTES:
                vendor = ENGINE_VENDORS[str(qname.namespace)]
                yield _problem(file, el, f"{vendor}:{qname.localname}=\"{el.get(attr)}\": "
                                         f"{REFUSED_ATTRIBUTES[qname.localname]}")
    yield from _check_events(file, proc)


def _inside_extensions(el: etree._Element) -> bool:
    node = el.getparent()
    while node is not None:
        if _ns(node) == BPMN_NS and _local(node) == "extensionElements":
            return True
        node = node.getparent()
    return False


def _check_script_format(file: str, el: etree._Element) -> Iterator[DeployProblem]:
    fmt = (el.get("scriptFormat") or "").strip().lower()
    if fmt not in PYTHON_FORMATS:
        yield _problem(file, el, f"script format '{el.get('scriptFormat')}' is not run by jzflow: "
                                 "scripts are Python (set scriptFormat=\"python\")")


def _check_expression_language(file: str, el: etree._Element) -> Iterator[DeployProblem]:
    language = (el.get("language") or "").strip().lower()
    text = el.text or ""
    if language and language not in PYTHON_FORMATS:
        yield _said(file, el, foreign_hints.LANGUAGE, language=str(el.get("language")),
                    what=foreign_hints.what(_local(el)), example=foreign_hints.example(_local(el)))
    elif JUEL.match(text) or FEEL.match(text):
        template, fields = foreign_hints.expression_hint(_local(el), text)
        yield _said(file, el, template, **fields)


def _said(file: str, el: etree._Element, template: str, **params: str | int) -> DeployProblem:
    return DeployProblem.said(file, template, element_id=_owner(el).get("id"), line=el.sourceline, **params)


def _check_events(file: str, proc: etree._Element) -> Iterator[DeployProblem]:
    """Refuse start events jzflow cannot trigger (conditional: nothing evaluates the condition)."""
    for start in proc.findall(f"{{{BPMN_NS}}}startEvent"):  # the process's own start (not a subprocess's)
        for definition in start:
            if _local(definition) in START_ONLY_BY_JZFLOW:
                kind = _local(definition).removesuffix("EventDefinition")
                yield _problem(file, definition, f"{kind} start event: nothing in jzflow evaluates the condition; "
                                                 "use a none, message or signal start event")


__all__ = ["Document", "check_bundle"]
