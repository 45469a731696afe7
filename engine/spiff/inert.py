"""Refuse what could turn a deployment's files into active content or a server-side fetch.

BPMN and DMN are XML: an element in the XHTML or SVG namespace inside `extensionElements` is a
script to a browser that opens the file, and an `<?xml-stylesheet?>` instruction runs XSLT. So
elements are allowed only in the namespaces of BPMN, DMN, diagram interchange and the known
modellers' extensions; processing instructions are refused. A form's JSON Schema may `$ref` only
itself or another form file of the same deployment, by its plain name: no URL, no path.
"""
from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from engine.errors import DeployProblem

# Namespaces whose elements a deployment may contain (BPMN 2.0, DMN 1.1–1.5, DI, and modeller extensions).
KNOWN_NAMESPACES = frozenset({
    "http://www.omg.org/spec/BPMN/20100524/MODEL", "http://www.omg.org/spec/BPMN/20100524/DI",
    "http://www.omg.org/spec/DD/20100524/DC", "http://www.omg.org/spec/DD/20100524/DI",
    "http://spiffworkflow.org/bpmn/schema/1.0/core",
    "http://camunda.org/schema/1.0/bpmn", "http://camunda.org/schema/1.0/dmn",
    "http://camunda.org/schema/zeebe/1.0", "http://camunda.org/schema/modeler/1.0",
    "http://www.signavio.com", "http://bpmn.io/schema/bpmn/biocolor/1.0",
    "http://www.omg.org/spec/BPMN/non-normative/color/1.0",
    "http://bpmn.io/schema/dmn/biodi/1.0", "http://bpmn.io/schema/dmn/biodi/2.0",
})
DMN_PREFIXES = ("http://www.omg.org/spec/DMN/", "https://www.omg.org/spec/DMN/")
REF_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")


def _known(namespace: str) -> bool:
    return namespace in KNOWN_NAMESPACES or namespace.startswith(DMN_PREFIXES)


def check_xml(file: str, root: etree._Element) -> Iterator[DeployProblem]:
    """Yield a problem for each element in a foreign namespace and each processing instruction."""
    node = root.getprevious()
    while node is not None:  # the prolog: <?xml-stylesheet?> before the root element
        if isinstance(node, etree._ProcessingInstruction):
            yield DeployProblem(file, f"processing instruction <?{node.target}?> is not allowed", line=node.sourceline)
        node = node.getprevious()
    for el in root.iter():
        if isinstance(el, etree._ProcessingInstruction):
            yield DeployProblem(file, f"processing instruction <?{el.target}?> is not allowed", line=el.sourceline)
            continue
        if not isinstance(el.tag, str):
            continue  # comments, entities
        qname = etree.QName(el)
        if not _known(qname.namespace or ""):
            owner = owner_id(el)
            yield DeployProblem(file, f"element <{qname.localname}> in namespace '{qname.namespace or '(none)'}' "
                                      f"is not a BPMN/DMN extension jzflow knows (HTML, SVG and scripts are refused)",
                                element_id=owner, line=el.sourceline)


def owner_id(el: etree._Element) -> str | None:
    """Return the id of the element or of its nearest ancestor that has one."""
    node: etree._Element | None = el
    while node is not None:
        if node.get("id"):
            return str(node.get("id"))
        node = node.getparent()
    return None


def local_ref_file(ref: str) -> str | None:
    """Return the file a `$ref` names ('' for the schema itself), or None when it is not a plain local name."""
    parts = urlsplit(ref)
    if parts.scheme or parts.netloc or parts.query:
        return None
    path = parts.path
    if path.startswith("./"):
        path = path[2:]
    if "/" in path or "\\" in path or path in (".", ".."):
        return None
    return path


def refs(doc: Any, where: tuple[str | int, ...] = ()) -> Iterator[tuple[str, tuple[str | int, ...]]]:
    """Yield every reference string in a JSON document with its path."""
    if isinstance(doc, Mapping):
        for key, value in doc.items():
            if key in REF_KEYS and isinstance(value, str):
                yield value, (*where, key)
            elif key == "$id" and isinstance(value, str):
                yield value, (*where, key)  # a base URI that would make every relative $ref remote
            else:
                yield from refs(value, (*where, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            yield from refs(value, (*where, index))


def check_form_refs(file: str, doc: Any, form_names: Collection[str]) -> Iterator[DeployProblem]:
    """Yield a problem for each reference that leaves the deployment's own form files."""
    for ref, where in refs(doc):
        target = local_ref_file(ref)
        path = "/".join(str(p) for p in where)
        if target is None:
            yield DeployProblem(file, f"{path}: '{ref[:200]}' must name a form file of this deployment "
                                      f"(no URL, no path)", line=1)
        elif target and where[-1] != "$id" and target not in form_names:
            yield DeployProblem(file, f"{path}: form file '{target}' is not in the deployment", line=1)


def referenced_forms(name: str, texts: Mapping[str, str]) -> set[str]:
    """Return the form files a form reaches through `$ref`, itself excluded (for storing them with it)."""
    found: set[str] = set()
    todo = [name]
    while todo:
        try:
            doc = json.loads(texts.get(todo.pop(), "null"))
            for ref, where in refs(doc):
                target = local_ref_file(ref)
                if where[-1] != "$id" and target and target in texts and target not in found and target != name:
                    found.add(target)
                    todo.append(target)
        except (ValueError, RecursionError):  # a stored file deploy would refuse: its name says so where it is read
            continue
    return found


__all__ = ["KNOWN_NAMESPACES", "check_form_refs", "check_xml", "local_ref_file", "owner_id", "referenced_forms", "refs"]
