"""Document numbers by rule: a template with the year and a per-year sequence, gap-free and never duplicated.

A rule is a name and a template such as ``胶审〔{year}〕{seq:04d}号``: `{year}` is the year of issue, `{seq}` the
sequence within that year, zero-padded by its format (`{seq:04d}` → 0001). An application gives each rule a default;
JZFLOW_NUMBER_RULES (a JSON object, rule name → template) overrides it without a code change.

The next number is taken from a `document_sequence` row by one `UPDATE … SET last = last + 1 … RETURNING` in the
issuer's transaction: the row stays locked until that transaction ends, so two issuers at once get consecutive
numbers, and a transaction that rolls back gives its number back (no gap). The issued document's unique number is
the last guard.
"""
from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine import config
from engine.db import is_postgres
from engine.documents.models import DocumentSequence
from engine.errors import InvalidInput

FIELDS = ("year", "seq")
MAX_TEMPLATE = 100
MAX_WIDTH = 12


@dataclass(frozen=True)
class NumberRule:
    name: str
    template: str

    def format(self, year: int, seq: int) -> str:
        """Return the number for a year and a sequence value."""
        return self.template.format(year=year, seq=seq)


def check_template(name: str, template: str) -> NumberRule:
    """Return the rule if its template names only {year} and {seq} (with an integer format), {seq} once, and {year}.

    Raises: InvalidInput naming the rule
    """
    def bad(why: str, english: str) -> InvalidInput:
        return InvalidInput(f"编号规则 {name} 无效: {why} (number rule {name}: {english})", field=name)
    if not isinstance(template, str) or not template.strip() or len(template) > MAX_TEMPLATE:
        raise bad(f"模板须为1–{MAX_TEMPLATE}个字符", f"the template takes 1–{MAX_TEMPLATE} characters")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise bad(str(exc), str(exc)) from exc
    seen: list[str] = []
    for _text, field_name, spec, conversion in parts:
        if field_name is None:
            continue
        if field_name not in FIELDS or conversion:
            raise bad(f"只能使用 {{year}} 和 {{seq}}，不能使用 {{{field_name}}}",
                      f"only {{year}} and {{seq}} may be used, not {{{field_name}}}")
        width = re.fullmatch(r"0?([1-9][0-9]?)?d", spec) if spec else None
        if spec and (width is None or int(width.group(1) or 0) > MAX_WIDTH):
            raise bad(f"{{{field_name}:{spec}}} 不是整数格式（如 {{seq:04d}}）",
                      f"{{{field_name}:{spec}}} is not a whole-number format such as {{seq:04d}}")
        seen.append(field_name)
    if seen.count("seq") != 1:
        raise bad("须恰好包含一个 {seq}", "the template takes {seq} exactly once")
    if "year" not in seen:  # the sequence starts again each year: without the year, its numbers would repeat
        raise bad("须包含 {year}：序号每年从1重新开始，没有年份的编号会重复",
                  "the template needs {year}: the sequence starts again at 1 each year")
    return NumberRule(name, template)


def _overrides() -> dict[str, str]:
    raw = config.load().number_rules
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"JZFLOW_NUMBER_RULES 不是JSON: {exc}", field="JZFLOW_NUMBER_RULES") from exc
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidInput("JZFLOW_NUMBER_RULES 须为 {规则名: 模板} (an object of rule name → template)",
                           field="JZFLOW_NUMBER_RULES")
    return value


def rule(name: str, default: str) -> NumberRule:
    """Return the rule named `name`: JZFLOW_NUMBER_RULES' template for it, else the application's default.

    Raises: InvalidInput (a template that is not a valid rule)
    """
    return check_template(name, _overrides().get(name, default))


def allocate(session: Session, rule_name: str, year: int) -> int:
    """Take the next sequence value of a rule in a year, inside the caller's transaction (flushes).

    The sequence row stays locked until the caller commits or rolls back: numbers are consecutive, and a
    rolled-back issue leaves no gap.
    """
    insert = pg_insert if is_postgres(session) else sqlite_insert
    session.execute(insert(DocumentSequence).values(rule=rule_name, year=year, last=0)
                    .on_conflict_do_nothing(index_elements=["rule", "year"]))
    value = session.execute(update(DocumentSequence)
                            .where(DocumentSequence.rule == rule_name, DocumentSequence.year == year)
                            .values(last=DocumentSequence.last + 1)
                            .returning(DocumentSequence.last)
                            .execution_options(synchronize_session=False)).scalar_one()
    return int(value)


def skip_to(session: Session, rule_name: str, year: int, last: int) -> None:
    """Move a rule's sequence in a year on to `last` when the numbers up to it were given out another way.

    For a caller that holds the sequence row (`allocate` earlier in its transaction); never moves it back.
    """
    session.execute(update(DocumentSequence)
                    .where(DocumentSequence.rule == rule_name, DocumentSequence.year == year,
                           DocumentSequence.last < last)
                    .values(last=last)
                    .execution_options(synchronize_session=False))


__all__ = ["NumberRule", "allocate", "check_template", "rule", "skip_to"]
