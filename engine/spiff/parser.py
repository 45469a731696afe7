"""Parse and validate a bundle of BPMN, DMN and form files before anything is deployed.

Every problem is pinned to a file, an element id and a line. Validation runs in stages (XML,
XSD, SpiffWorkflow's parser, then our own checks of every expression under the sandbox); a stage
only runs when the ones before it found nothing, so one typo does not cascade into noise.
"""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.mixins.user_task import UserTask
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser

from engine import content_limits
from engine.errors import DeployInvalid, DeployProblem
from engine.spiff import calls, end_events, events, expressions, form_files, inert, plain, support, translate_dmn
from engine.spiff.guards import locate_validation_error, run_deep
from engine.spiff.serializer import Specs

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
FORM_SCHEMA_PROP = "formJsonSchemaFilename"
FORM_UI_PROP = "formUiSchemaFilename"

LaneResolver = Callable[[str], bool]
LANE_UNKNOWN = ("泳道 “%(lane)s” 没有对应的角色或单位，任务将无人可办：请管理员先创建同名角色——运行 "
                "jzflow add-role <角色代码> %(lane)s（单位用 jzflow add-unit <单位代码> %(lane)s）——或把泳道改名为"
                "已有的角色或单位")


@dataclass(frozen=True)
class BundleFile:
    name: str
    kind: str  # bpmn | dmn | form
    text: str
    sha256: str


@dataclass
class UserTaskInfo:
    bpmn_id: str
    name: str
    lane: str | None
    properties: dict[str, str]
    instructions: str | None


@dataclass(frozen=True)
class NamedIn:
    """Names an element's property gives whatever the data (quoted in the model): checked against the organisation."""

    file: str
    element_id: str | None
    line: int | None
    prop: str  # assignee | escalationUnit
    names: tuple[str, ...]


NAMING_PROPERTIES = ("assignee", "escalationUnit")


@dataclass
class ParsedProcess:
    key: str
    name: str
    bpmn_file: str
    specs: Specs
    dmn_files: set[str] = field(default_factory=set)
    form_files: set[str] = field(default_factory=set)
    lanes: set[str] = field(default_factory=set)
    user_tasks: dict[str, UserTaskInfo] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)  # deployed process key → the version it is bound to
    named: list[NamedIn] = field(default_factory=list)  # in document order

    def file_names(self) -> list[str]:
        """Return every file this process needs, sorted."""
        return sorted({self.bpmn_file, *self.dmn_files, *self.form_files})


@dataclass
class ParsedBundle:
    files: dict[str, BundleFile]
    processes: dict[str, ParsedProcess]


def _local(el: etree._Element) -> str:
    """Return an element's local name ('' for comments and processing instructions)."""
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def sha256(text: str) -> str:
    """Return the hex sha256 of UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _kind(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(".bpmn") or lower.endswith(".bpmn20.xml"):
        return "bpmn"
    if lower.endswith(".dmn"):
        return "dmn"
    if lower.endswith(".json"):
        return "form"
    return None


def _decode(files: Mapping[str, bytes | str], problems: list[DeployProblem]) -> dict[str, BundleFile]:
    decoded: dict[str, BundleFile] = {}
    for name, raw in sorted(files.items()):
        kind = _kind(name)
        if kind is None:
            continue  # READMEs, diagrams' images and the like are not part of a deployment
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError as exc:
            problems.append(DeployProblem(name, f"not UTF-8 text (byte {exc.start})"))
            continue
        text = text.removeprefix("\ufeff")
        decoded[name] = BundleFile(name, kind, text, sha256(text))
    return decoded


def _parse_xml(f: BundleFile, problems: list[DeployProblem]) -> etree._Element | None:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(f.text.encode("utf-8"), parser=parser)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else None
        problems.append(DeployProblem(f.name, f"malformed XML: {exc.msg}", line=line))
        return None
    if root.getroottree().docinfo.doctype:  # entities are never expanded; a DTD has no place in BPMN or DMN
        problems.append(DeployProblem(f.name, "a DOCTYPE declaration is not allowed in BPMN or DMN files", line=1))
        return None
    return root


def _element_at(root: etree._Element, line: int | None) -> str | None:
    """Return the id of the element on `line` (or its nearest ancestor with an id)."""
    if line is None:
        return None
    for el in root.iter():
        if el.sourceline == line:
            return inert.owner_id(el)
    return None


def _xsd_check(f: BundleFile, root: etree._Element, problems: list[DeployProblem]) -> None:
    schema = VALIDATOR.validator
    if f.kind == "bpmn":
        duplicated, duplicate_ids = plain.duplicate_ids(f.name, root)
        problems.extend(duplicated)
        VALIDATOR.preprocess(root)
        try:
            ok = schema.validate(root)
        except etree.LxmlError as exc:  # libxml2 gives up on some inputs instead of reporting them
            problems.append(DeployProblem(f.name, f"BPMN schema: cannot validate ({exc})", line=root.sourceline))
            return
        if not ok:
            for err in schema.error_log:
                said = plain.schema_problem(f.name, err.message, err.line, _element_at(root, err.line), duplicate_ids)
                if said is not None:
                    problems.append(said)
    elif f.kind == "dmn" and not (root.tag.endswith("}definitions")
                                  and "dmn" in (etree.QName(root).namespace or "").lower()):
        problems.append(DeployProblem(f.name, "not a DMN document (root must be dmn:definitions)",
                                      line=root.sourceline))


def _spiff_parse(bpmn: dict[str, tuple[BundleFile, etree._Element]], dmn: dict[str, tuple[BundleFile, etree._Element]],
                 problems: list[DeployProblem]) -> SpiffBpmnParser | None:
    parser = end_events.Parser(validator=VALIDATOR)
    raw = {name: f.text.encode("utf-8") for name, (f, _root) in {**bpmn, **dmn}.items()}
    for name, (_f, root) in dmn.items():
        try:
            # SpiffWorkflow's DMN parser fails on a comment inside a decision table; comments mean nothing.
            parser.add_dmn_xml(_without_comments(root), filename=name)
        except (ValidationException, SpiffWorkflowException, etree.LxmlError) as exc:
            problems.append(_from_validation(exc, name, raw))
    for name, (_f, root) in bpmn.items():
        try:
            parser.add_bpmn_xml(root, filename=name)
        except (ValidationException, SpiffWorkflowException, etree.LxmlError) as exc:
            problems.append(_from_validation(exc, name, raw))
    return None if problems else parser


def _without_comments(root: etree._Element) -> etree._Element:
    copy = deepcopy(root)
    for comment in copy.xpath("//comment() | //processing-instruction()"):
        parent = comment.getparent()
        if parent is not None:
            if comment.tail:  # keep text that followed the comment
                prev = comment.getprevious()
                if prev is not None:
                    prev.tail = (prev.tail or "") + comment.tail
                else:
                    parent.text = (parent.text or "") + comment.tail
            parent.remove(comment)
    return copy


def _from_validation(exc: Exception, default_file: str, raw: Mapping[str, bytes]) -> DeployProblem:
    file, element, line = locate_validation_error(exc, raw)
    message = getattr(exc, "error_msg", None) or str(exc).splitlines()[0]
    return DeployProblem(file or default_file, message, element_id=element, line=line)


# What the process's row holds (engine.runtime.models): a longer id or name failed the deploy in the database, a 500.
PROCESS_KEY_CHARS, PROCESS_NAME_CHARS = 120, 200


def _too_long(file: str, proc: etree._Element) -> list[DeployProblem]:
    key, name = proc.get("id") or "", proc.get("name") or ""
    found = [(len(key), PROCESS_KEY_CHARS, "标识（id）", "id")] if len(key) > PROCESS_KEY_CHARS else []
    found += [(len(name), PROCESS_NAME_CHARS, "名称（name）", "name")] if len(name) > PROCESS_NAME_CHARS else []
    return [DeployProblem(file, f"流程{zh}过长：{n:,} 字，最多 {limit} 字 (process {en} of {n:,} characters, at most "
                                f"{limit})", element_id=key[:PROCESS_KEY_CHARS], line=proc.sourceline)
            for n, limit, zh, en in found]


def _process_elements(root: etree._Element) -> list[etree._Element]:
    return [p for p in root.iter(f"{{{BPMN_NS}}}process")]


def parse_bundle(files: Mapping[str, bytes | str], *, lane_known: LaneResolver | None = None,
                 services: Collection[str] | None = None,
                 called: calls.CalledResolver | None = None) -> ParsedBundle:
    """Validate and parse a bundle; raise DeployInvalid listing every problem found.

    Raises: DeployInvalid
    """
    problems: list[DeployProblem] = []
    decoded = _decode(files, problems)
    if not any(f.kind == "bpmn" for f in decoded.values()) and not problems:
        problems.append(DeployProblem("(bundle)", "no .bpmn file to deploy"))
    trees: dict[str, tuple[BundleFile, etree._Element]] = {}
    forms = {n: f.text for n, f in decoded.items() if f.kind == "form"}
    docs = form_files.docs(forms)
    for f in decoded.values():
        if f.kind == "form":
            problems.extend(form_files.check(f.name, f.text, forms, docs))
            continue
        root = _parse_xml(f, problems)
        if root is not None:
            problems.extend(inert.check_xml(f.name, root))  # no HTML/SVG, no stylesheets: nothing a browser runs
            trees[f.name] = (f, root)
    for f, root in trees.values():
        _xsd_check(f, root, problems)
    structure = [p for n, (f, r) in trees.items() if f.kind == "bpmn" for p in plain.check_document(n, r)]
    structure += [p for n, (f, r) in trees.items() if f.kind == "dmn" for p in translate_dmn.check(n, r)]
    covered = plain.covered_elements(structure)
    problems.extend(structure)
    problems.extend(p for p in support.check_bundle({n: support.Document(f.kind, r) for n, (f, r) in trees.items()})
                    if (p.file, p.element_id) not in covered)
    if problems:
        raise DeployInvalid(problems)

    bpmn = {n: t for n, t in trees.items() if t[0].kind == "bpmn"}
    dmn = {n: t for n, t in trees.items() if t[0].kind == "dmn"}
    for name, (_f, root) in bpmn.items():
        for proc in _process_elements(root):
            if not list(proc.iter(f"{{{BPMN_NS}}}startEvent")):
                problems.append(DeployProblem(name, "process has no start event", element_id=proc.get("id"),
                                              line=proc.sourceline))
            problems.extend(_too_long(name, proc))
    for name, (f, root) in trees.items():
        problems.extend(expressions.check_document(name, f.kind, root, services))
    bound = calls.resolve({n: r for n, (f, r) in trees.items() if f.kind == "bpmn"}, called, problems)
    if problems:
        raise DeployInvalid(problems)

    parser = run_deep(_spiff_parse, bpmn, dmn, problems)
    if parser is None:
        raise DeployInvalid(problems)
    with warnings.catch_warnings():
        # SpiffWorkflow 3.2.0 reads messagePayload/messageVariable on the bpmn:message too (SpiffArena's older
        # exports) and only warns that the place is deprecated: the diagram runs as drawn either way.
        warnings.filterwarnings("ignore", message="spiffworkflow:messagePayload", category=DeprecationWarning)
        processes = _collect_processes(parser, bpmn, dmn, decoded, problems, lane_known, bound)
    if problems:
        raise DeployInvalid(problems)
    return ParsedBundle(files=decoded, processes=processes)


def _collect_processes(parser: SpiffBpmnParser, bpmn: dict[str, tuple[BundleFile, etree._Element]],
                       dmn: dict[str, tuple[BundleFile, etree._Element]], decoded: dict[str, BundleFile],
                       problems: list[DeployProblem], lane_known: LaneResolver | None,
                       bound: Mapping[str, calls.CalledProcess]) -> dict[str, ParsedProcess]:
    decision_files = {d.get("id"): name for name, (_f, root) in dmn.items()
                      for d in root.iter() if _local(d) == "decision"}
    processes: dict[str, ParsedProcess] = {}
    raw = {name: f.text.encode("utf-8") for name, (f, _r) in {**bpmn, **dmn}.items()}
    for name, (_f, root) in bpmn.items():
        for proc in _process_elements(root):
            if proc.get("isExecutable", "true").lower() != "true":
                continue
            key = str(proc.get("id"))
            try:
                spec = run_deep(parser.get_spec, key)
                found = run_deep(parser.get_subprocess_specs, key, require_call_activity_specs=False)
            except (ValidationException, SpiffWorkflowException) as exc:
                problems.append(_from_validation(exc, name, raw))
                continue
            bound_versions = calls.fill(found, bound)  # calls.resolve refused every call it could not bind
            subs = {k: v for k, v in found.items() if v is not None}
            parsed = ParsedProcess(key=key, name=proc.get("name") or key, bpmn_file=name, specs=(spec, subs),
                                   calls=bound_versions)
            for lane in root.iter(f"{{{BPMN_NS}}}lane"):
                lane_name = lane.get("name") or lane.get("id")
                if lane_name is None:
                    continue
                if _lane_in_process(root, lane, proc):
                    parsed.lanes.add(lane_name)
                    if lane_known is not None and not lane_known(lane_name):
                        problems.append(DeployProblem.said(name, LANE_UNKNOWN, element_id=lane.get("id"),
                                                           line=lane.sourceline, lane=lane_name))
            parsed.named = list(_named_in(name, proc))
            for rule_task in proc.iter(f"{{{BPMN_NS}}}businessRuleTask"):
                ref = _called_decision(rule_task)
                if ref is None or ref not in decision_files:
                    problems.append(DeployProblem(name, f"business rule task calls unknown decision '{ref}'",
                                                  element_id=rule_task.get("id"), line=rule_task.sourceline))
                else:
                    parsed.dmn_files.add(decision_files[ref])
            for sub_spec in [spec, *subs.values()]:
                for task_spec in sub_spec.task_specs.values():
                    if isinstance(task_spec, UserTask):
                        _collect_user_task(parsed, task_spec, decoded, name, root, problems)
                    elif getattr(task_spec, "event_definition", None) is not None:  # a message's schema
                        _collect_forms(parsed, task_spec, decoded, name, root, problems)
            for start_event in spec.start.outputs:  # a start form (发起表单) on the process's start event
                _collect_forms(parsed, start_event, decoded, name, root, problems)
            processes[key] = parsed
    return processes


def _named_in(file: str, proc: etree._Element) -> Iterator[NamedIn]:
    """The quoted names of a process's `assignee` and `escalationUnit` properties (its embedded subprocesses' too)."""
    for prop in proc.iter(f"{{{SPIFF_NS}}}property"):
        if prop.get("name") in NAMING_PROPERTIES and (names := expressions.literal_names(prop.get("value") or "")):
            yield NamedIn(file, inert.owner_id(prop), prop.sourceline, str(prop.get("name")), tuple(names))


def _lane_in_process(root: etree._Element, lane: etree._Element, proc: etree._Element) -> bool:
    node = lane.getparent()
    while node is not None:
        if node is proc:
            return True
        node = node.getparent()
    return False


def _called_decision(rule_task: etree._Element) -> str | None:
    for el in rule_task.iter(f"{{{SPIFF_NS}}}calledDecisionId"):
        return (el.text or "").strip() or None
    return None


def _collect_forms(parsed: ParsedProcess, task_spec: Any, decoded: dict[str, BundleFile], file: str,
                   root: etree._Element, problems: list[DeployProblem]) -> dict[str, str]:
    """Check and keep the form files a user task or start event (a start form) names; return its properties."""
    props: dict[str, str] = dict((getattr(task_spec, "extensions", None) or {}).get("properties", {}) or {})
    el = next((e for e in root.iter() if e.get("id") == task_spec.bpmn_id), None)
    line = el.sourceline if el is not None else None
    for prop in (FORM_SCHEMA_PROP, FORM_UI_PROP, events.SCHEMA_PROP):
        form = props.get(prop)
        if not form:
            continue
        if form not in decoded:
            problems.append(DeployProblem(file, f"form file '{form}' is not in the deployment",
                                          element_id=task_spec.bpmn_id, line=line))
        else:
            parsed.form_files.add(form)
            parsed.form_files.update(inert.referenced_forms(form, {n: f.text for n, f in decoded.items()
                                                                   if f.kind == "form"}))
    return props


def _collect_user_task(parsed: ParsedProcess, task_spec: Any, decoded: dict[str, BundleFile], file: str,
                       root: etree._Element, problems: list[DeployProblem]) -> None:
    props = _collect_forms(parsed, task_spec, decoded, file, root, problems)
    instructions = task_spec.extensions.get("instructionsForEndUser")
    if instructions and len(instructions) > content_limits.MAX_INSTRUCTIONS:  # compiled on each view of the page
        el = next((e for e in root.iter() if e.get("id") == task_spec.bpmn_id), None)
        problems.append(DeployProblem(file, f"说明（instructionsForEndUser）过长：{len(instructions):,} 字，最多 "
                                            f"{content_limits.MAX_INSTRUCTIONS:,} 字 (instructions of "
                                            f"{len(instructions):,} characters, at most "
                                            f"{content_limits.MAX_INSTRUCTIONS:,})", element_id=task_spec.bpmn_id,
                                      line=el.sourceline if el is not None else None))
    parsed.user_tasks[task_spec.bpmn_id] = UserTaskInfo(
        bpmn_id=task_spec.bpmn_id, name=task_spec.bpmn_name or task_spec.bpmn_id, lane=task_spec.lane,
        properties=props, instructions=instructions)
