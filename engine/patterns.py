"""Regular expressions a process owner wrote (a form's `pattern`, `patternProperties`), matched in linear time.

jsonschema matches them with Python's `re`, which backtracks: a pattern such as `^(a+)+$` takes twice as long for
each more character of input, and a 40-character answer then holds a web process (and its GIL) for hours. A form is
a process owner's content, and the input is anyone's. Here they are compiled with RE2, which matches in time
linear in the input and never backtracks; jsonschema's keyword modules get a `re` whose `search` is RE2's
(`install`). RE2 has no backreferences or lookaround: a form using them is refused at deploy
(engine/spiff/form_files.py), and one deployed before is refused when submitted, naming the pattern, never run.

Python's `re` is slow to *compile* some short patterns too (a case-insensitive class over the whole of Unicode costs
it some 15 ms: 600 of them held a process for 10 s). So a field's `"format": "regex"` is checked by compiling the
answer with RE2 (`format_checker`), and deploy checks a schema against its meta-schema (whose `pattern` is
`"format": "regex"`) without the `re` check, having compiled every pattern with RE2 first (`META_FORMATS`).

JSON Schema patterns are ECMA-262 regular expressions. RE2 reads them the same way for what forms use (classes,
quantifiers, anchors, groups, `\\d` as ASCII digits as ECMA has it); `\\uXXXX` is rewritten as RE2's `\\x{XXXX}`.
"""
from __future__ import annotations

import re
import sys
from functools import lru_cache
from types import ModuleType
from typing import Any, Final

import re2
from jsonschema import FormatChecker

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported to whoever wrote it, not written to stderr
_UNICODE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u([0-9a-fA-F]{4})")
MAX_PATTERN = 1000  # characters
# Instructions of a pattern's RE2 program. RE2's time is linear in the text times the program: past a few thousand its
# DFA outgrows its memory and searches fall back to the slow engine (`(?:.{0,100}){0,10}x`, 9,014: 336 ms for 4,000
# characters; the worst of 5,000 tried, 8 ms). `^.{0,500}$` takes 4,502; a length is better said with maxLength.
MAX_PROGRAM = 5000


class PatternRefused(ValueError):
    """A pattern RE2 cannot match (backreferences, lookaround, too large): the message says why."""


@lru_cache(maxsize=1024)
def compiled(pattern: str) -> Any:
    """Return the pattern compiled by RE2.

    Raises: PatternRefused
    """
    if len(pattern) > MAX_PATTERN:
        raise PatternRefused(f"正则表达式过长 (pattern longer than {MAX_PATTERN} characters): {pattern[:200]}")
    try:
        found = re2.compile(_UNICODE_ESCAPE.sub(r"\1\\x{\2}", pattern), _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternRefused(f"正则表达式无法安全执行 (not supported: backreferences and lookaround are not; {reason}): "
                             f"{pattern[:200]}") from None
    if found.programsize > MAX_PROGRAM:
        size = f"{found.programsize:,}"
        raise PatternRefused(f"正则表达式过于复杂：{size} 条指令，最多 {MAX_PROGRAM:,} 条，请改用 maxLength 等限制 "
                             f"(pattern too complex: {size} instructions, at most {MAX_PROGRAM:,}; say a length with "
                             f"maxLength): {pattern[:200]}")
    return found


@lru_cache(maxsize=256)
def pattern_set(patterns: tuple[str, ...]) -> Any:
    """Return the patterns as one RE2 set (`Match(text)`: the indexes of those the text holds a match of, or None),
    so a key is searched once for all of a schema's `patternProperties`, not once per pattern.

    Raises: PatternRefused (one refused alone)
    """
    found = re2.Set.SearchSet(_OPTIONS)
    for pattern in patterns:
        compiled(pattern)
        found.Add(_UNICODE_ESCAPE.sub(r"\1\\x{\2}", pattern))
    found.Compile()
    return found


def search(pattern: str, text: str, flags: int = 0) -> Any:
    """re.search's signature, RE2's matching (no flags are ever passed by jsonschema).

    Raises: PatternRefused
    """
    if flags:
        raise PatternRefused(f"flags are not supported here: {flags}")
    return compiled(pattern).search(text)


class _SafeRe(ModuleType):
    """A `re` for jsonschema's keyword modules: search through RE2, everything else as the standard module has it."""

    search = staticmethod(search)

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)


def _is_pattern(instance: object) -> bool:
    """jsonschema's "regex" format: a pattern RE2 compiles (never `re.compile`, as jsonschema's own check does).

    Raises: PatternRefused
    """
    if isinstance(instance, str):
        compiled(instance)
    return True


def format_checker() -> FormatChecker:
    """Return jsonschema's format checks with "regex" checked by RE2 (an answer to a `"format": "regex"` field)."""
    checker = FormatChecker()
    checker.checks("regex", raises=PatternRefused)(_is_pattern)
    return checker


# The format checks a schema is checked against its meta-schema with: all but "regex", whose patterns deploy has
# compiled with RE2 already (and named the ones refused).
META_FORMATS: Final = FormatChecker([name for name in FormatChecker.checkers if name != "regex"])

_SAFE_RE = _SafeRe("re")
# Every jsonschema module that matches a schema's pattern against input (pattern, patternProperties, and the
# property lookups of additionalProperties and unevaluatedProperties).
_MATCHING_MODULES = ("jsonschema._keywords", "jsonschema._utils", "jsonschema._legacy_keywords")


def install() -> None:
    """Give jsonschema's matching modules RE2's search (idempotent)."""
    import jsonschema  # noqa: F401  # its modules are loaded by the package

    for name in _MATCHING_MODULES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "re", None) is not _SAFE_RE:
            module.re = _SAFE_RE  # type: ignore[attr-defined]


def schema_patterns(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """Every pattern a JSON Schema holds, with where: `pattern` values and `patternProperties` keys."""
    found: list[tuple[tuple[Any, ...], str]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "pattern" and isinstance(value, str):
                found.append(((*path, key), value))
            elif key == "patternProperties" and isinstance(value, dict):
                found.extend(((*path, key, p), p) for p in value if isinstance(p, str))
            found.extend(schema_patterns(value, (*path, key)))
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            found.extend(schema_patterns(item, (*path, i)))
    return found


__all__ = ["MAX_PROGRAM", "META_FORMATS", "PatternRefused", "compiled", "format_checker", "install", "pattern_set",
           "schema_patterns", "search"]
