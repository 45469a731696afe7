"""Call activities into processes deployed before: resolve them at deploy, carry the called spec with the caller.

A call activity's `calledElement` names a process of the same bundle or one already deployed. A deployed one
is bound at deploy to its latest version, or to the version the property `calledElementVersion` pins; its
spec (and the specs it calls in turn) is copied into the caller's version as a subprocess spec. So a caller's
version runs exactly what was checked when it was deployed, and its instances keep running what they started
with whatever is deployed later (redeploy the caller to bind a newer called version). Nothing matching is
refused at deploy, naming the call activity and its line.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from lxml import etree
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec

from engine.errors import DeployProblem

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
VERSION_PROP = "calledElementVersion"

# Catalogue templates (English in web/translations/en/LC_MESSAGES/messages.po).
NO_CALLED = "调用活动 “%(name)s” 没有指定要调用的流程（calledElement 为空）：请在属性面板中填写被调用流程的 id"
UNKNOWN_CALLED = ("调用活动 “%(name)s” 调用的流程 “%(called)s” 既不在本次部署的文件中，也从未部署过：请先部署流程 "
                  "“%(called)s”，或与它一起部署，或改正流程 id")
UNKNOWN_VERSION = ("调用活动 “%(name)s” 固定调用流程 “%(called)s” 的版本 %(version)s，但该版本不存在（最新为版本 "
                   "%(latest)s）：请改正 calledElementVersion 属性，或删除它以调用最新版本")
BAD_VERSION = ("调用活动 “%(name)s” 的 calledElementVersion 属性 “%(value)s” 不是版本号：请填写正整数（如 2），"
               "或删除它以调用最新版本")

TWO_VERSIONS = ("调用活动 “%(name)s” 调用流程 “%(called)s” 的版本 %(version)s，而本次部署的另一个调用活动调用它的版本 "
                "%(other)s：一次部署中同一流程只能调用一个版本")


@dataclass(frozen=True)
class CalledProcess:
    """A deployed process version a call activity binds to, with its specs."""

    key: str
    version: int
    latest: int
    spec: BpmnProcessSpec
    subprocess_specs: dict[str, BpmnProcessSpec]


# (process key, pinned version or None for the latest) → the deployed version, or None when there is none.
CalledResolver = Callable[[str, int | None], CalledProcess | None]


def _name(el: etree._Element) -> str:
    return str(el.get("name") or el.get("id") or "")


def _pinned(call: etree._Element) -> str | None:
    for prop in call.iter(f"{{{SPIFF_NS}}}property"):
        if prop.get("name") == VERSION_PROP:
            return (prop.get("value") or "").strip()
    return None


def _executable(proc: etree._Element) -> bool:
    return (proc.get("isExecutable") or "true").strip().lower() == "true"


def resolve(roots: Mapping[str, etree._Element], resolver: CalledResolver | None,
            problems: list[DeployProblem]) -> dict[str, CalledProcess]:
    """Check every call activity of the executable processes; return the deployed processes they bind to."""
    in_bundle = {str(p.get("id")) for root in roots.values() for p in root.iter(f"{{{BPMN_NS}}}process")
                 if _executable(p)}
    bound: dict[str, CalledProcess] = {}
    for file, call in _calls(roots):
        called = (call.get("calledElement") or "").strip()
        where = {"element_id": call.get("id"), "line": call.sourceline}
        if not called:
            problems.append(DeployProblem.said(file, NO_CALLED, **where, name=_name(call)))
            continue
        pin_text = _pinned(call)
        pin: int | None = None
        if pin_text is not None:
            if not pin_text.isdigit() or int(pin_text) < 1:
                problems.append(DeployProblem.said(file, BAD_VERSION, **where, name=_name(call), value=pin_text))
                continue
            pin = int(pin_text)
        if called in in_bundle:
            continue  # deployed together: the bundle's own process (a pinned version would be a second spec)
        found = resolver(called, pin) if resolver is not None else None
        if found is None:
            latest = resolver(called, None) if resolver is not None and pin is not None else None
            if latest is not None:
                problems.append(DeployProblem.said(file, UNKNOWN_VERSION, **where, name=_name(call), called=called,
                                                   version=pin or 0, latest=latest.latest))
            else:
                problems.append(DeployProblem.said(file, UNKNOWN_CALLED, **where, name=_name(call), called=called))
            continue
        previous = bound.get(called)
        if previous is not None and previous.version != found.version:
            problems.append(DeployProblem.said(file, TWO_VERSIONS, **where, name=_name(call), called=called,
                                               version=found.version, other=previous.version))
            continue
        bound[called] = found
    return bound


def _calls(roots: Mapping[str, etree._Element]) -> Iterator[tuple[str, etree._Element]]:
    for file, root in roots.items():
        for proc in root.iter(f"{{{BPMN_NS}}}process"):
            if _executable(proc):
                for call in proc.iter(f"{{{BPMN_NS}}}callActivity"):
                    yield file, call


def fill(subprocess_specs: dict[str, BpmnProcessSpec | None], bound: Mapping[str, CalledProcess]) -> dict[str, int]:
    """Put each bound deployed spec (and what it calls) where the bundle has none; return key → bound version."""
    used: dict[str, int] = {}
    for key in [k for k, v in subprocess_specs.items() if v is None]:
        called = bound.get(key)
        if called is None:
            continue
        subprocess_specs[key] = called.spec
        used[key] = called.version
        for sub_key, sub in called.subprocess_specs.items():
            if subprocess_specs.get(sub_key) is None:  # the bundle's own process wins a name both have
                subprocess_specs[sub_key] = sub
    return used


__all__ = [
    "BAD_VERSION",
    "NO_CALLED",
    "TWO_VERSIONS",
    "UNKNOWN_CALLED",
    "UNKNOWN_VERSION",
    "VERSION_PROP",
    "CalledProcess",
    "CalledResolver",
    "fill",
    "resolve",
]
