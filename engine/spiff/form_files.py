"""A deployment's form files (JSON Schema, UI schema) checked one by one: JSON, the content limits (their `$ref`s
counted into the bundle's other form files), local references only, dynamic-choice markers, RE2 patterns, and the
schema itself. Each problem names the file and, for hand-written forms, the line of its path.
"""
from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from engine import content_limits, form_defaults, patterns
from engine.errors import DeployProblem
from engine.spiff import form_options, inert


def docs(texts: Mapping[str, str]) -> dict[str, Any]:
    """Return the bundle's form files that are JSON, parsed: a form's `$ref`s may reach any of them."""
    found: dict[str, Any] = {}
    for name, text in texts.items():
        try:
            found[name] = json.loads(text)
        except (ValueError, RecursionError):
            continue  # check() says so
    return found


def check(name: str, text: str, form_names: Collection[str], forms: Mapping[str, Any]) -> list[DeployProblem]:
    """Return the problems of one form file (`forms`: the bundle's form files parsed, which its `$ref`s may reach)."""
    from jsonschema import exceptions as js_exc
    from jsonschema import validators

    problems: list[DeployProblem] = []
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append(DeployProblem(name, f"invalid JSON: {exc.msg}", line=exc.lineno))
        return problems
    except (ValueError, RecursionError) as exc:  # a number too long to convert, nesting too deep to decode
        problems.append(DeployProblem(name, f"invalid JSON: {str(exc)[:200]}", line=1))
        return problems
    too_big = content_limits.form_problems(doc, forms)  # every page, preview, 审批单 and submission repeats the work
    problems.extend(DeployProblem(name, f"{path}: {message}", line=json_line(text, path.split("/")))
                    for path, message in too_big)
    if too_big:
        return problems
    if name.endswith(".uischema.json") or "uischema" in name.lower():
        if not isinstance(doc, dict):
            problems.append(DeployProblem(name, "UI schema must be a JSON object", line=1))
        problems.extend(DeployProblem(name, f"{path}: {message}", line=json_line(text, path.split("/")))
                        for path, message in form_defaults.problems(doc))  # "ui:default": "today", nothing else
        return problems
    if not isinstance(doc, dict):
        problems.append(DeployProblem(name, "JSON Schema must be a JSON object", line=1))
        return problems
    problems.extend(inert.check_form_refs(name, doc, form_names))  # never a URL: nothing is fetched
    for path, variable in form_options.markers(doc):  # SpiffArena's choices from a task data variable
        if not variable.isidentifier():
            problems.append(DeployProblem(name, f"{'/'.join(map(str, path))}: '{form_options.PREFIX}{variable}' "
                                                "must name a task data variable", line=json_line(text, path)))
    doc = form_options.for_deploy(doc)
    try:
        for path, pattern in patterns.schema_patterns(doc):  # matched by RE2 when a form is submitted
            try:
                patterns.compiled(pattern)
            except patterns.PatternRefused as exc:
                problems.append(DeployProblem(name, f"{'/'.join(map(str, path))}: {exc}", line=json_line(text, path)))
        meta = validators.validator_for(doc)  # its patterns' "format": "regex" not by re.compile (engine.patterns)
        meta.check_schema(doc, format_checker=patterns.META_FORMATS)  # type: ignore[call-arg]  # the stubs lack it
    except RecursionError:
        problems.append(DeployProblem(name, "JSON Schema nested too deeply", line=1))
    except js_exc.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        problems.append(DeployProblem(name, f"invalid JSON Schema at {where}: {exc.message}",
                                    line=json_line(text, exc.absolute_path)))
    return problems


def json_line(text: str, path: Any) -> int | None:
    """Find the line of a JSON path by finding each key after the previous one (hand-written forms)."""
    lines = text.splitlines()
    line_no = 0
    for key in [p for p in path if isinstance(p, str)]:
        needle = json.dumps(key, ensure_ascii=False) + ":"
        found = next((i for i in range(line_no, len(lines)) if needle in lines[i].replace('": ', '":')), None)
        if found is None:
            break
        line_no = found
    return line_no + 1


__all__ = ["check", "docs", "json_line"]
