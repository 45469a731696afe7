"""指标数据录入: store a period's indicator figures from a checked file or the entry form; fill-in templates.

Reading a file is `upload`'s, checking rows and previewing the change `preview`'s. Storing a period
replaces it: afterwards the period's recorded figures are exactly the file's (or the form's) —
changed ones updated, new ones added, the ones not given removed — in one transaction, audited per
indicator (`indicator:<id>`, action indicator.value.set / .delete) and once for the period
(`indicator_period:<YYYY-MM>`, indicator.period.replace: how, the file's name and sha256, counts).
Figures are year-to-date (1–N月累计) as plan.investment reads them. Who may enter: data officers
(role data_officer), each the figures of the indicators their own units are responsible for
(Indicator.responsible_unit) or report (Indicator.source names one of them, e.g. 统计局): their part of the
period is what they see, replace and version; another unit's figures are neither shown to them nor removed,
and a row of one is refused naming it; admins, every figure (the whole period).
"""
from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, clock, exports
from engine.db import advisory_lock
from engine.errors import Conflict, Forbidden
from engine.org.actors import Actor
from engine.org.models import OrgUnit, Role
from plan import investment as plan
from plan.indicators.models import Indicator, IndicatorValue
from plan.indicators.preview import (
    Entry,
    Reach,
    RowError,
    check_rows,
    enterable,
    in_reach,
    not_yours,
    period_changes,
    preview_upload,
    reach,
    within,
)
from plan.indicators.upload import UploadInvalid

ENTRY_ROLES = ("data_officer",)


def can_enter(session: Session, actor: Actor) -> bool:
    """Tell whether the actor may enter indicator figures (data officers and admins)."""
    if actor.is_admin or actor.is_system:
        return True
    codes = set(session.scalars(select(Role.code).where(Role.id.in_(actor.role_ids or {-1}))))
    return bool(codes & set(ENTRY_ROLES))


def require_entry(session: Session, actor: Actor) -> None:
    """Raises: Forbidden unless the actor may enter figures."""
    if not can_enter(session, actor):
        raise Forbidden("只有数据监测人员可以录入指标数据 (only data officers may enter indicator figures)")


# -- storing ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Replaced:
    period: str
    added: int
    changed: int
    removed: int
    unchanged: int


def period_version(session: Session, period: str, *, actor: Actor | None = None) -> str:
    """Fingerprint the period's recorded figures that `actor` enters (None: all of them): a form or preview carries
    it, to tell whether they changed since. Another unit's save does not change an officer's."""
    query = (select(IndicatorValue.indicator_id, IndicatorValue.value, IndicatorValue.source)
             .where(IndicatorValue.period == period).order_by(IndicatorValue.indicator_id))
    if (scope := reach(session, actor)) is not None:
        query = query.join(Indicator, Indicator.id == IndicatorValue.indicator_id).where(in_reach(scope))
    rows = session.execute(query).all()
    text = "\n".join(f"{i}\t{Decimal(v).quantize(Decimal('0.0001'))}\t{s}" for i, v, s in rows)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def replace_period(session: Session, *, period: str, entries: list[Entry], actor: Actor, via: str, seen: str,
                   filename: str | None = None, sha256: str | None = None) -> Replaced:
    """Make the period's recorded figures exactly `entries` (flushes; audited per indicator and per period): those
    the actor enters — a data officer's own units' part of the period (another unit's figures are kept), all of it
    for an admin.

    `seen`: the `period_version` the officer's form or preview showed, required. The whole period is replaced, so
    a page opened before another officer's save would silently put back what they changed: refused when the
    figures changed since, unless the entries are exactly what is stored (the same form posted twice), and
    refused when `seen` is blank (an old page, a script posting the form: a blind overwrite).

    Raises: Forbidden, InvalidInput, Conflict (field `seen`), UploadInvalid (an entry of another unit's indicator)
    """
    require_entry(session, actor)
    plan.parse_period(period)
    scope = reach(session, actor)
    if scope is not None and entries:  # the checked rows said so already: kept here for any other caller
        given = {i.id: i for i in session.scalars(select(Indicator).where(
            Indicator.id.in_({e.indicator_id for e in entries})))}
        foreign = [RowError(e.line, "code", not_yours(session, given[e.indicator_id])) for e in entries
                   if not within(given[e.indicator_id], scope)]
        if foreign:
            raise _invalid(foreign)
    if not seen:
        raise Conflict(f"{period} 的表单缺少数据版本（seen），无法判断页面打开后数据是否已被他人修改，请刷新后重新填写 "
                       "(the form carries no version `seen`; reload the page)", field="seen", period=period)
    # Two officers storing one period at once: the second waits here, then compares with what the first stored.
    advisory_lock(session, f"indicator_period:{period}")
    changes = period_changes(session, period, entries, scope)
    if seen != period_version(session, period, actor=actor) and any(c.kind != "same" for c in changes):
        raise Conflict(f"{period} 的数据已被他人修改，请刷新后重新填写 (changed since the page was opened)",
                       field="seen", period=period)
    current = {v.indicator_id: v for v in session.scalars(select(IndicatorValue).where(IndicatorValue.period == period))}
    ids = {i.code: i.id for i in session.scalars(select(Indicator).where(Indicator.code.in_([c.code for c in changes])))}
    by_code = {e.code: e for e in entries}
    now = clock.now()
    for change in changes:
        if change.kind == "same":
            continue
        indicator_id = ids[change.code]
        row = current.get(indicator_id)
        entry = by_code.get(change.code)
        if entry is None:
            assert row is not None
            session.delete(row)
        elif row is None:
            session.add(IndicatorValue(indicator_id=indicator_id, period=period, value=entry.value, source=entry.source,
                                       recorded_by_id=actor.user_id, recorded_at=now))
        else:
            row.value, row.source, row.recorded_by_id, row.recorded_at = entry.value, entry.source, actor.user_id, now
        session.flush()
        audit.record(session, actor, "indicator.value.delete" if entry is None else "indicator.value.set",
                     stream=f"indicator:{indicator_id}", object_type="indicator", object_id=indicator_id,
                     before={"period": period, "value": change.before, "source": change.source_before}
                     if change.before is not None else None,
                     after={"period": period, "value": change.after, "source": change.source, "via": via}
                     if entry is not None else None)
    result = Replaced(period, *(sum(1 for c in changes if c.kind == k) for k in ("add", "change", "remove", "same")))
    audit.record(session, actor, "indicator.period.replace", stream=f"indicator_period:{period}",
                 object_type="indicator_period", object_id=period,
                 after={"via": via, "filename": filename, "sha256": sha256, "figures": len(entries),
                        "added": result.added, "changed": result.changed, "removed": result.removed,
                        "units": _codes(session, scope)})
    return result


def _codes(session: Session, scope: Reach) -> list[str] | None:
    """The codes of the units of a data officer's part of the period (None: the whole period, an admin's)."""
    if scope is None:
        return None
    return sorted(session.scalars(select(OrgUnit.code).where(OrgUnit.id.in_(scope.ids or {-1}))))


def apply_upload(session: Session, *, period: str, filename: str, data: bytes, actor: Actor, seen: str) -> Replaced:
    """Check a file and, when every row is good, replace the period with it (flushes).

    Raises: Forbidden, InvalidInput, Conflict (`seen` is stale or blank), UploadInvalid (with `errors`: each row's line,
    column and reason)
    """
    require_entry(session, actor)
    preview = preview_upload(session, period=period, filename=filename, data=data, actor=actor)
    if not preview.ok:
        raise _invalid(preview.errors)
    return replace_period(session, period=period, entries=preview.entries, actor=actor, via="upload",
                          filename=filename, sha256=preview.sha256, seen=seen)


def _invalid(errors: list[RowError]) -> UploadInvalid:
    listed = "；".join(str(e) for e in errors[:20]) or "没有数据行 (no data rows)"
    more = f"；另有 {len(errors) - 20} 处" if len(errors) > 20 else ""
    return UploadInvalid(f"数据有误，未作任何修改 (nothing stored): {listed}{more}",
                         errors=[{"line": e.line, "column": e.column, "message": e.message} for e in errors])


def save_form(session: Session, *, period: str, values: Mapping[str, tuple[str, str]], actor: Actor,
              seen: str) -> Replaced:
    """Replace the actor's part of a period with the figures of the entry form ({code: (value, source)}; a blank
    value removes it; a figure given for another unit's indicator is refused naming it).

    Raises: Forbidden, InvalidInput, Conflict (`seen` is stale or blank), UploadInvalid
    """
    require_entry(session, actor)
    year, _ = plan.parse_period(period)
    rows = []
    for n, indicator in enumerate(enterable(session, year), 1):
        value, source = values.get(indicator.code, ("", ""))
        if value.strip():
            rows.append((n, {"code": indicator.code, "value": value, "source": source}))
    entries, errors = check_rows(session, period, rows, reach(session, actor))
    if errors:
        raise _invalid(errors)
    return replace_period(session, period=period, entries=entries, actor=actor, via="form", seen=seen)


def current_figures(session: Session, period: str, *,
                    actor: Actor | None = None) -> list[tuple[Indicator, IndicatorValue | None]]:
    """The entry form's rows: each indicator of the period's year that `actor` enters (None: every one) with its
    figure for the period."""
    year, _ = plan.parse_period(period)
    values = {v.indicator_id: v for v in session.scalars(select(IndicatorValue).where(IndicatorValue.period == period))}
    return [(i, values.get(i.id)) for i in enterable(session, year, reach(session, actor))]


def template_rows(session: Session, period: str, *, actor: Actor | None = None) -> list[list[str]]:
    """A fill-in template for a period: header and one row per indicator `actor` enters (current figure filled in)."""
    rows = [["指标代码", "指标名称", "期间", "数值", "单位", "数据来源"]]
    for indicator, value in current_figures(session, period, actor=actor):
        rows.append([indicator.code, indicator.name, period, (plan.show(Decimal(value.value)) or "") if value else "",
                     indicator.unit, value.source if value else indicator.source])
    return rows


def template_csv(session: Session, period: str, *, actor: Actor | None = None) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows([exports.csv_text(v) for v in row] for row in template_rows(session, period, actor=actor))
    return out.getvalue().encode("utf-8-sig")


def template_xlsx(session: Session, period: str, *, actor: Actor | None = None) -> bytes:
    from openpyxl import Workbook
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = period
    for row in template_rows(session, period, actor=actor):
        sheet.append(exports.xlsx_row(row))
    exports.no_formulas(sheet)
    for column, width in zip("ABCDEF", (34, 36, 10, 14, 8, 18), strict=True):
        sheet.column_dimensions[column].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


__all__ = ["ENTRY_ROLES", "Replaced", "apply_upload", "can_enter", "current_figures", "period_version", "replace_period",
           "require_entry", "save_form", "template_csv", "template_rows", "template_xlsx"]
