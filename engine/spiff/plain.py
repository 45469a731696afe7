"""Say in the process owner's words what SpiffWorkflow's parser or the BPMN schema would report in its own.

SpiffWorkflow 3.2.0 reports a broken diagram in the words of its code: `Cannot resolve dataOutputAssociation
<Element … at 0x7f…>`, `Multiple outgoing flows are not supported for tasks of type`, `Time Specification
Error. Unknown Time Specification.`, `…found two items, perhaps a form has the same ID? (nowhere)` for a flow
whose target is missing; the schema says `'work' is not a valid value of the atomic type 'xs:ID'` for a
duplicate id. These checks run before SpiffWorkflow's parser and find the same mistakes first, each named by
file, element and line, in Chinese (the catalogue template, English in web/translations).
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from lxml import etree

from engine.errors import DeployProblem

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
OMG = "{http://www.omg.org/spec/"

# Elements SpiffWorkflow lets branch on their own (every other flow node takes one outgoing flow).
BRANCHING = ("exclusiveGateway", "inclusiveGateway", "parallelGateway", "eventBasedGateway", "complexGateway",
             "startEvent")
FLOW_NODES = ("task", "userTask", "manualTask", "scriptTask", "serviceTask", "businessRuleTask", "sendTask",
              "receiveTask", "callActivity", "subProcess", "transaction", "adHocSubProcess", "startEvent",
              "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent", "exclusiveGateway",
              "inclusiveGateway", "parallelGateway", "eventBasedGateway", "complexGateway")
KIND_WORDS = {"task": "任务", "userTask": "用户任务", "manualTask": "人工任务", "scriptTask": "脚本任务",
              "serviceTask": "服务任务", "businessRuleTask": "业务规则任务", "sendTask": "发送任务",
              "receiveTask": "接收任务", "callActivity": "调用活动", "subProcess": "子流程",
              "transaction": "事务子流程", "adHocSubProcess": "自由子流程", "endEvent": "结束事件",
              "intermediateCatchEvent": "中间捕获事件", "intermediateThrowEvent": "中间抛出事件",
              "boundaryEvent": "边界事件", "startEvent": "开始事件"}

# Catalogue templates (msgids): the English is in web/translations/en/LC_MESSAGES/messages.po.
DUPLICATE_ID = "id “%(id)s” 在本文件中用了不止一次（第 %(first)s 行已有）：每个元素的 id 须唯一，请改掉其中一个"
FLOW_TARGET_MISSING = ("连线 %(flow)s 指向的元素 “%(target)s” 不存在（图中没有这个 id）：请把连线接到图中的元素上，"
                       "或删除这条连线")
FLOW_SOURCE_MISSING = ("连线 %(flow)s 的起点 “%(source)s” 不存在（图中没有这个 id）：请把连线接到图中的元素上，"
                       "或删除这条连线")
MANY_OUTGOING = ("%(kind)s “%(name)s” 直接引出了 %(count)s 条连线（%(flows)s）：jzflow 不从任务或事件直接分支。"
                 "请在它后面加一个网关——并行网关（每条都走）或排他网关（按条件走一条）")
TIMER_EMPTY = ("定时事件 “%(name)s” 没有设置时间：请在属性面板中给出期限（timeDuration，如 \"P5D\"）、"
               "日期（timeDate，如 \"2025-06-30T09:00:00+08:00\"）或周期（timeCycle，如 \"R3/P1D\"）")
DATA_REF_MISSING = ("%(kind)s “%(name)s” 的数据%(direction)s关联指向 “%(ref)s”，但图中没有这个数据对象：请把关联"
                    "连到一个数据对象（data object），或删除这条关联")
EVENT_WITHOUT_REF = ("%(kind)s “%(name)s” 是%(what)s事件，但没有指定哪个%(what)s（%(attr)s 为空）：请在属性面板中"
                     "选择或新建一个%(what)s")
SCHEMA_ERROR = "BPMN 格式（XSD）错误：%(detail)s"
XS_ID = re.compile(r"attribute 'id': '([^']*)' is not a valid value of the atomic type 'xs:ID'")


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _bpmn(el: etree._Element, name: str) -> bool:
    return isinstance(el.tag, str) and el.tag == f"{{{BPMN_NS}}}{name}"


def _name(el: etree._Element) -> str:
    return str(el.get("name") or el.get("id") or "")


def _kind(el: etree._Element) -> str:
    return KIND_WORDS.get(_local(el), _local(el))


def duplicate_ids(file: str, root: etree._Element) -> tuple[list[DeployProblem], set[str]]:
    """Return a problem for every element whose id an earlier element already has, and the ids concerned."""
    first: dict[str, int] = {}
    problems: list[DeployProblem] = []
    for el in root.iter():
        if not isinstance(el.tag, str) or not el.get("id") or not str(el.tag).startswith(OMG):
            continue  # only BPMN and diagram interchange ids are document-wide (xs:ID); extensions reuse names
        ident = str(el.get("id"))
        if ident in first:
            problems.append(DeployProblem.said(file, DUPLICATE_ID, element_id=ident, line=el.sourceline,
                                               id=ident, first=first[ident]))
        else:
            first[ident] = el.sourceline or 0
    return problems, {p.element_id for p in problems if p.element_id}


def schema_problem(file: str, message: str, line: int | None, element_id: str | None,
                   duplicates: set[str]) -> DeployProblem | None:
    """Return the schema validator's complaint for the owner, or None when it is a duplicate id already named."""
    found = XS_ID.search(message)
    if found and found.group(1) in duplicates:
        return None
    detail = message.replace(f"{{{BPMN_NS}}}", "bpmn:")
    return DeployProblem.said(file, SCHEMA_ERROR, element_id=element_id, line=line, detail=detail)


def _executable(proc: etree._Element) -> bool:
    return (proc.get("isExecutable") or "true").strip().lower() == "true"


def check_document(file: str, root: etree._Element) -> Iterator[DeployProblem]:
    """Yield what SpiffWorkflow's parser would refuse in its own words, for each executable process."""
    for proc in root.iter(f"{{{BPMN_NS}}}process"):
        if _executable(proc):
            yield from _check_flows(file, root, proc)
            yield from _check_events(file, proc)
            yield from _check_data(file, root, proc)


def _check_flows(file: str, root: etree._Element, proc: etree._Element) -> Iterator[DeployProblem]:
    nodes = {str(el.get("id")): el for el in proc.iter() if _local(el) in FLOW_NODES and el.get("id")}
    outgoing: dict[str, list[etree._Element]] = {}
    for flow in proc.iter(f"{{{BPMN_NS}}}sequenceFlow"):
        fid = str(flow.get("id") or "")
        source, target = flow.get("sourceRef") or "", flow.get("targetRef") or ""
        if source not in nodes:
            yield DeployProblem.said(file, FLOW_SOURCE_MISSING, element_id=fid or None, line=flow.sourceline,
                                     flow=fid, source=source)
        if target not in nodes:
            yield DeployProblem.said(file, FLOW_TARGET_MISSING, element_id=fid or None, line=flow.sourceline,
                                     flow=fid, target=target)
        outgoing.setdefault(source, []).append(flow)
    for node_id, flows in outgoing.items():
        node = nodes.get(node_id)
        if node is None or len(flows) < 2 or _local(node) in BRANCHING:
            continue
        yield DeployProblem.said(file, MANY_OUTGOING, element_id=node_id, line=node.sourceline, kind=_kind(node),
                                 name=_name(node), count=len(flows),
                                 flows="、".join(str(f.get("id")) for f in flows))


def _check_events(file: str, proc: etree._Element) -> Iterator[DeployProblem]:
    for definition in proc.iter(f"{{{BPMN_NS}}}timerEventDefinition"):
        event = definition.getparent()
        if event is None:
            continue
        if not any(_local(c) in ("timeDate", "timeDuration", "timeCycle") for c in definition):
            yield DeployProblem.said(file, TIMER_EMPTY, element_id=event.get("id"), line=definition.sourceline,
                                     name=_name(event))
    for kind, what, attr in (("signal", "信号", "signalRef"), ("message", "消息", "messageRef")):
        for definition in proc.iter(f"{{{BPMN_NS}}}{kind}EventDefinition"):
            event = definition.getparent()
            if event is not None and not (definition.get(attr) or "").strip():
                yield DeployProblem.said(file, EVENT_WITHOUT_REF, element_id=event.get("id"),
                                         line=definition.sourceline, kind=_kind(event), name=_name(event),
                                         what=what, attr=attr)


def _check_data(file: str, root: etree._Element, proc: etree._Element) -> Iterator[DeployProblem]:
    objects = {str(el.get("id")) for el in root.iter(f"{{{BPMN_NS}}}dataObject") if el.get("id")}
    references = {str(el.get("id")): el.get("dataObjectRef") for el in root.iter(f"{{{BPMN_NS}}}dataObjectReference")
                  if el.get("id")}
    stores = {str(el.get("id")) for el in root.iter(f"{{{BPMN_NS}}}dataStoreReference") if el.get("id")}
    for assoc_name, ref_name, direction in (("dataOutputAssociation", "targetRef", "输出"),
                                            ("dataInputAssociation", "sourceRef", "输入")):
        for assoc in proc.iter(f"{{{BPMN_NS}}}{assoc_name}"):
            task = assoc.getparent()
            for ref in assoc:
                if not _bpmn(ref, ref_name) or task is None:
                    continue
                target = (ref.text or "").strip()
                if target in stores or references.get(target) in objects:
                    continue  # a data store is refused on its own (support.py); a resolvable data object is fine
                yield DeployProblem.said(file, DATA_REF_MISSING, element_id=task.get("id"), line=ref.sourceline,
                                         kind=_kind(task), name=_name(task), direction=direction, ref=target)


def covered_elements(problems: list[DeployProblem]) -> set[tuple[str, str | None]]:
    """Return the (file, element) pairs an event-without-reference problem already explains."""
    return {(p.file, p.element_id) for p in problems if p.template == EVENT_WITHOUT_REF}


def templates() -> Mapping[str, str]:
    """Return every template this module writes, by name (for the translation catalogue's test)."""
    return {name: value for name, value in globals().items() if name.isupper() and isinstance(value, str)
            and "%(" in value}


__all__ = ["check_document", "covered_elements", "duplicate_ids", "schema_problem", "templates"]
