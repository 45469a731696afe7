"""项目导入: a unit's data officer imports projects, stages and dates from an XLSX (or CSV) file, with a preview.

The file has a header row naming its columns (Chinese or English, order free, `HEADERS`). A row whose 项目编号
names an existing project updates it (planned dates, stages reached since); any other row adds a project.
Stages: 签约日期 / 开工日期 with their evidence are reached at once; 竣工日期 / 投产日期 are filed as reports that
a second person confirms (`plan.projects.entry`). Every row goes through the same services as the forms —
the same rights (only one's own unit's projects), the same checks (dates in order, named by column).

The preview runs the import inside a savepoint and rolls it back, so it shows exactly what storing would do;
one bad row refuses the whole file, each refusal naming its line, column and reason. The file is read by the
bounded reader of `plan.indicators.upload` (size, rows, and the XLSX bomb guards of `plan.indicators.sheets`).

Storing is one transaction (a crash leaves nothing) and happens once per confirm form: the preview gives the form
a one-time key, and the result is kept under it in the same transaction (`engine.org.idempotency`). The same form
posted again — a double click, or a retry after the answer was lost with a server that died after its commit — gets
the first result back and adds nothing (a row without 项目编号 would otherwise be a second project). The preview
also gives the form `seen`, the version of the projects the file names (`files_version`): a confirmation after
someone changed one of them is refused (`plan.stale`), so the file does not overwrite that change unseen.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import EngineError, InvalidInput
from engine.org import idempotency
from engine.org.actors import Actor
from plan.indicators.upload import MAX_BYTES, MAX_ROWS, UploadInvalid, read_table
from plan.projects import edits, entry
from plan.projects.core import lock_codes, lock_projects, today
from plan.projects.models import STAGES, Project, StageReport
from plan.stale import require_fresh, version

HEADERS: dict[str, tuple[str, ...]] = {
    "code": ("code", "项目编号", "编号"), "name": ("name", "项目名称", "名称"),
    "enterprise": ("enterprise", "企业", "建设单位"),
    "investment": ("investment", "总投资（万元）", "总投资", "投资（万元）"), "project_type": ("project_type", "项目类型"),
    "unit_code": ("unit_code", "责任单位", "责任单位代码"), "location_code": ("location_code", "所在单位", "所在单位代码"),
    "libraries": ("libraries", "项目库"), "industry": ("industry", "产业"), "category": ("category", "类别"),
    "leader": ("leader", "包挂领导", "市级领导"), "standard_land": ("standard_land", "标准地"),
    "description": ("description", "说明", "项目简介"),
    "planned_sign": ("planned_sign", "计划签约日期", "计划签约"),
    "planned_start": ("planned_start", "计划开工日期", "计划开工"),
    "planned_complete": ("planned_complete", "计划竣工日期", "计划竣工"),
    "planned_produce": ("planned_produce", "计划投产日期", "计划投产"),
    "signed_on": ("signed_on", "签约日期"), "signed_evidence": ("signed_evidence", "签约证明"),
    "started_on": ("started_on", "开工日期"), "started_evidence": ("started_evidence", "开工证明"),
    "completed_on": ("completed_on", "竣工日期"), "completed_evidence": ("completed_evidence", "竣工证明"),
    "produced_on": ("produced_on", "投产日期"), "produced_evidence": ("produced_evidence", "投产证明"),
}
COLUMN_NAMES = {key: names[1] for key, names in HEADERS.items()}
ONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")  # the confirm form's one-time key (the preview makes it)
STAGE_COLUMNS = (("signed", "signed_on", "signed_evidence"), ("started", "started_on", "started_evidence"),
                 ("completed", "completed_on", "completed_evidence"), ("producing", "produced_on", "produced_evidence"))


@dataclass(frozen=True)
class RowError:
    line: int
    column: str
    message: str

    @property
    def column_name(self) -> str:
        return COLUMN_NAMES.get(self.column, self.column)


@dataclass(frozen=True)
class RowDone:
    line: int
    code: str
    name: str
    action: str  # add | update
    stages: tuple[str, ...]


@dataclass
class ImportResult:
    filename: str
    sha256: str
    rows: list[RowDone] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    replayed: bool = False  # this confirm form was stored before: its first result, nothing done now
    seen: str = ""  # the version of the projects the file names, as the preview found them (`files_version`)

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.rows)

    def count(self, action: str) -> int:
        return sum(1 for r in self.rows if r.action == action)


def _columns(header: list[str]) -> tuple[dict[str, int], list[RowError]]:
    found: dict[str, int] = {}
    names = {n.lower(): key for key, options in HEADERS.items() for n in options}
    for index, title in enumerate(header):
        key = names.get(title.strip().lower())
        if key is not None and key not in found:
            found[key] = index
    missing = [k for k in ("name", "investment", "unit_code") if k not in found and "code" not in found]
    errors = [RowError(1, k, "缺少此列 (missing column)") for k in missing]
    return found, errors


def _stages(session: Session, project: Project, cells: dict[str, str], actor: Actor) -> list[str]:
    done = []
    for stage, on_key, evidence_key in STAGE_COLUMNS:
        on = entry.day(cells.get(on_key), on_key)
        if on is None:
            continue
        if STAGES.index(stage) <= STAGES.index(project.stage):
            reached = next((s.on for s in project.stages if s.stage == stage), None)
            if reached == on:
                continue  # imported before: the same file twice changes nothing
        try:
            entry.record_stage(session, project, actor=actor, stage=stage, on=on,
                               evidence=cells.get(evidence_key) or "", note="导入")
        except InvalidInput as exc:
            column = evidence_key if exc.details.get("field") == "evidence" else on_key
            raise InvalidInput(exc.message, field=column) from None
        done.append(stage)
    return done


def _row(session: Session, cells: dict[str, str], actor: Actor) -> RowDone:
    code = cells.get("code", "").strip()  # locked by run() when storing
    project = session.scalar(select(Project).where(Project.code == code)) if code else None
    if project is not None:
        planned = {f: entry.day(cells.get(f), f) for f in entry.PLANNED_FIELDS if cells.get(f, "").strip()}
        if planned:
            edits.set_planned(session, project, actor=actor, dates=planned, seen=None)
        else:
            entry.require_edit(project, actor)
        if cells.get("libraries", "").strip():
            edits.set_libraries(session, project, actor=actor, codes=cells["libraries"].replace("，", ",").split(","),
                                seen=None)
        return RowDone(0, project.code, project.name, "update", tuple(_stages(session, project, cells, actor)))
    if code and len(code) > 40:
        raise InvalidInput("项目编号不能超过 40 个字 (code too long)", field="code")
    data = entry.read_input(cells)
    reached = [d for _s, on_key, _e in STAGE_COLUMNS if (d := entry.day(cells.get(on_key), on_key)) is not None]
    # a project entered after the fact: its 线索 is no later than the first stage the file says it reached
    project = entry.create_project(session, actor=actor, data=data, code=code or None,
                                   created_on=min([*reached, today()]), lock=False)
    return RowDone(0, project.code, project.name, "add", tuple(_stages(session, project, cells, actor)))


def files_version(session: Session, codes: Iterable[str]) -> str:
    """The `seen` of an import's confirmation: the projects the file names as they are now (which exist; their
    stage, planned dates, libraries, leader and waiting reports), for the preview to carry to the confirmation."""
    projects = session.scalars(select(Project).where(Project.code.in_(sorted(set(codes)))).order_by(Project.code))
    return version(*((p.code, p.stage, *(getattr(p, f) for f in entry.PLANNED_FIELDS), p.responsible_leader_id,
                      tuple(sorted(edits.library_codes(session, p.id))),
                      tuple(sorted(session.scalars(select(StageReport.stage).where(
                          StageReport.project_id == p.id, StageReport.status == "reported")))))
                     for p in projects))


def run(session: Session, *, filename: str, data: bytes, actor: Actor, store: bool, once: str | None = None,
        seen: str | None = None) -> ImportResult:
    """Check (and with `store`, apply) an import; a preview rolls everything back (flushes when storing).

    `once` (storing): the confirm form's one-time key; a form stored before returns its first result (`replayed`).
    None (a caller with no form, a script): stored each time it is called.

    `seen` (storing): the preview's `result.seen`. The preview showed what storing would do to the projects the
    file names; when one of them changed since, storing would overwrite that change unseen: refused, as is a
    confirmation without it (`plan.stale`; None: not from a page).

    Raises: UploadInvalid (an unreadable file; with `store`, any bad row), InvalidInput (a malformed `once`),
    Conflict (`seen` stale or blank)
    """
    result = ImportResult(filename=filename[:200], sha256=hashlib.sha256(data).hexdigest())
    key = _once_key(once) if store and once is not None and actor.user_id is not None else None
    if key is not None:  # the same form again waits here for the first to commit, then finds its result
        earlier = idempotency.find(session, user_id=actor.user_id or 0, key=key, fingerprint=result.sha256)
        if earlier is not None:
            return _replayed(earlier)
    table = read_table(filename, data)
    rows = [(n, r) for n, r in enumerate(table, 1) if any(c.strip() for c in r)]
    if not rows:
        raise UploadInvalid("文件是空的 (the file is empty)", field="file")
    (_, header), body = rows[0], rows[1:]
    if len(body) > MAX_ROWS:
        raise UploadInvalid(f"行数超过 {MAX_ROWS} (too many rows)", field="file")
    columns, result.errors = _columns(header)
    if result.errors:
        if store:
            raise UploadInvalid(f"第1行：缺少列 {result.errors[0].column_name} (row 1: a column is missing)",
                                field="file", errors=_plain(result))
        return result
    screened = _screen(body, columns)
    codes = {c for line, raw in body if line not in screened and (c := _cell(raw, columns, "code"))}
    if store:
        # Every code of the file, in one order, before the first row: another import adding one of them at once is
        # waited for (its projects are then updated), and two files naming the same codes in different orders take
        # turns instead of each holding one the other waits for (a deadlock). A preview rolls back: it takes none.
        lock_codes(session, *codes)
        # and the rows of those that exist, before `seen` is compared: a change being saved to one of them now
        # (its row held, not yet committed) is waited for and then seen, not overwritten by the rows below
        lock_projects(session, codes)
    result.seen = files_version(session, codes)
    if store:
        require_fresh(seen, result.seen, what="导入文件中的项目（预览之后）", changes=True)
    outer = session.begin_nested()
    try:
        for line, raw in body:
            if line in screened:
                result.errors.append(screened[line])
                continue
            cells = {key: _cell(raw, columns, key) for key in columns}
            row = session.begin_nested()
            try:
                done = _row(session, cells, actor)
            except EngineError as exc:
                row.rollback()
                result.errors.append(RowError(line, str(exc.details.get("field") or "file"), exc.message))
                continue
            row.commit()
            result.rows.append(RowDone(line, done.code, done.name, done.action, done.stages))
    except BaseException:
        outer.rollback()
        raise
    if not store or result.errors:
        outer.rollback()
        session.expire_all()
        if store:
            first = result.errors[0]
            raise UploadInvalid(f"第{first.line}行 {first.column_name}：{first.message}", field="file",
                                errors=_plain(result))
        return result
    outer.commit()
    if key is not None:
        kept = json.dumps({"filename": result.filename, "rows": [asdict(r) for r in result.rows]}, ensure_ascii=False)
        idempotency.remember(session, user_id=actor.user_id or 0, key=key, fingerprint=result.sha256,
                             answer=idempotency.Answer(status=200, body=kept))
    return result


def _once_key(once: str) -> str:
    """Raises: InvalidInput (not a key the preview made: none, or a page from before keys)"""
    if not ONCE.fullmatch(once):
        raise InvalidInput("确认表单已失效，请重新上传文件 (the confirmation form is out of date; upload the file again)",
                           field="once")
    return f"projects-import:{once}"


def _replayed(answer: idempotency.Answer) -> ImportResult:
    stored = json.loads(answer.body)
    rows = [RowDone(r["line"], r["code"], r["name"], r["action"], tuple(r["stages"])) for r in stored["rows"]]
    return ImportResult(filename=stored["filename"], sha256="", rows=rows, replayed=True)


def _screen(body: list[tuple[int, list[str]]], columns: dict[str, int]) -> dict[int, RowError]:
    """Return the rows refused before any row is looked up, by line: a 项目编号 an earlier row names — its second
    row would update what the first added or set, whatever the two said, and the file means two things. (A cell
    holding NUL never gets here: `read_table` refuses the file, naming its line and column.)"""
    refused: dict[int, RowError] = {}
    first: dict[str, int] = {}
    for line, raw in body:
        if (code := _cell(raw, columns, "code")) and code in first:
            refused[line] = RowError(line, "code", f"项目编号 {code[:40]} 与第{first[code]}行重复 "
                                                   f"(the same code as line {first[code]})")
        elif code:
            first[code] = line
    return refused


def _cell(raw: list[str], columns: dict[str, int], key: str) -> str:
    i = columns.get(key)
    return raw[i].strip() if i is not None and i < len(raw) else ""


def _plain(result: ImportResult) -> list[dict[str, Any]]:
    return [{"line": e.line, "column": e.column, "message": e.message} for e in result.errors]


TEMPLATE_COLUMNS = ("code", "name", "enterprise", "investment", "project_type", "unit_code", "location_code",
                    "libraries", "industry", "category", "leader", "standard_land", "planned_sign", "planned_start",
                    "planned_complete", "planned_produce", "signed_on", "signed_evidence", "started_on",
                    "started_evidence", "completed_on", "completed_evidence", "produced_on", "produced_evidence")


def a_year_on(day: date) -> date:
    """Return the same day a year later (28 February for 29 February)."""
    if (day.month, day.day) == (2, 29):
        day -= timedelta(days=1)
    return day.replace(year=day.year + 1)


def template_xlsx(example_unit: str, today: date) -> bytes:
    """Return an XLSX template with the header row and one example row."""
    import io

    from openpyxl import Workbook
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "项目"
    sheet.append([COLUMN_NAMES[c] for c in TEMPLATE_COLUMNS])
    example = {"name": "示例项目", "enterprise": "示例企业", "investment": "12000", "project_type": "industrial",
               "unit_code": example_unit, "location_code": example_unit, "libraries": "key,investment",
               "category": "key", "planned_complete": a_year_on(today).isoformat()}
    sheet.append([example.get(c, "") for c in TEMPLATE_COLUMNS])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


__all__ = ["HEADERS", "MAX_BYTES", "ImportResult", "RowError", "files_version", "run", "template_xlsx"]
