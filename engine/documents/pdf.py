"""PDF documents with an embedded Chinese font: a title, a number, facts, sections of submitted forms, a seal area.

The font is a TrueType CJK font embedded as a subset (reportlab embeds TrueType outlines only; Noto CJK's OpenType
fonts have CFF outlines it cannot embed): JZFLOW_PDF_FONT (``path`` or ``path#index`` for a collection), else the
first of `CANDIDATES` present (Debian's fonts-wqy-microhei, which `make system-packages` installs). Without one a
PDF is refused with a message naming the setting, never printed with a font the reader may not have.

Every text is escaped before reportlab's paragraph markup sees it: submitted values cannot inject markup.
"""
from __future__ import annotations

import html
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import config, content_limits, plaintext
from engine.errors import EngineError
from engine.runtime.formtext import Field

FONT_NAME = "JZCJK"
CANDIDATES = (
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
    ("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf", 0),
    ("/usr/share/fonts/truetype/arphic/uming.ttc", 0),
)
_font_lock = threading.Lock()
_registered: dict[str, str] = {}
MAX_FIELD_TEXT = 4000  # one value's text in a PDF (the screen shows it all)
CHUNK = 50  # rows of one reportlab table


class FontMissing(EngineError):
    """No TrueType CJK font to embed."""

    http_status = 503


def _font_file() -> tuple[str, int]:
    setting = config.load().pdf_font
    if setting:
        path, _sep, number = setting.partition("#")
        if not Path(path).is_file():
            raise FontMissing(f"JZFLOW_PDF_FONT 指向的字体文件不存在: {path} (font file not found)", path=path)
        if not (number or "0").isdigit():
            raise FontMissing(f"JZFLOW_PDF_FONT 的字体序号不是数字: {number} (path#index)", path=path)
        return path, int(number or 0)
    for candidate, index in CANDIDATES:
        if Path(candidate).is_file():
            return candidate, index
    raise FontMissing("没有可嵌入PDF的中文TrueType字体：请安装 fonts-wqy-microhei（make system-packages）或设置 "
                      "JZFLOW_PDF_FONT (no TrueType CJK font to embed)", path=CANDIDATES[0][0])


def font() -> str:
    """Register the CJK font with reportlab once per process and file; return its name."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    path, index = _font_file()
    key = f"{path}#{index}"
    with _font_lock:
        name = _registered.get(key)
        if name is None:
            name = f"{FONT_NAME}{len(_registered)}"
            pdfmetrics.registerFont(TTFont(name, path, subfontIndex=index))
            _registered[key] = name
    return name


# Control characters and bidi controls are dropped from what a document prints (`engine.plaintext`, shared with the
# mail subjects): also what /verify shows of a document (core.public_facts)
printed = plaintext.printed


def text(value: Any, limit: int = MAX_FIELD_TEXT) -> str:
    """Escape a value for a reportlab paragraph (line breaks kept, control characters and bidi overrides dropped)."""
    raw = str(value if value is not None else "").replace("\r\n", "\n").replace("\r", "\n")
    if len(raw) > limit:
        raw = raw[:limit] + "…"
    return html.escape(printed(raw), quote=False).replace("\n", "<br/>")


@dataclass(frozen=True)
class Section:
    """A block of the document: a heading, a line under it, labelled fields and opinions."""

    heading: str
    meta: str = ""
    fields: Sequence[Field] = ()
    opinions: Sequence[str] = ()
    note: str = ""
    opinion_label: str = "审批意见"  # an applicant's own words: 申请说明


@dataclass(frozen=True)
class Seal:
    """The seal area (盖章处): who seals, and the date under it."""

    issuers: Sequence[str]
    date_text: str
    label: str = "盖章处"


@dataclass
class Document:
    title: str
    number: str | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    seal: Seal | None = None
    verify_code: str | None = None
    verify_url: str | None = None
    footer: str = ""


def _seal_flowable(seal: Seal, font_name: str) -> Any:
    from reportlab.lib import colors
    from reportlab.lib.units import mm
    from reportlab.platypus import Flowable

    class SealArea(Flowable):  # type: ignore[misc]
        """A dashed circle marked 盖章处, the issuers and the date beside it."""

        def __init__(self) -> None:
            super().__init__()
            self.width, self.height = 170 * mm, 48 * mm

        def draw(self) -> None:
            c = self.canv
            cx, cy, r = self.width - 30 * mm, self.height / 2, 21 * mm
            c.setStrokeColor(colors.HexColor("#b4232a"))
            c.setDash(3, 2)
            c.circle(cx, cy, r)
            c.setDash()
            c.setFillColor(colors.HexColor("#b4232a"))
            c.setFont(font_name, 12)
            c.drawCentredString(cx, cy - 4, f"（{seal.label}）")
            c.setFillColor(colors.black)
            c.setFont(font_name, 11)
            y = self.height - 8 * mm
            for name in list(seal.issuers)[:6]:
                c.drawRightString(cx - r - 6 * mm, y, printed(name)[:40])
                y -= 6 * mm
            c.drawRightString(cx - r - 6 * mm, max(y, 2 * mm), seal.date_text)
    return SealArea()


def _left_out(count: int, what: str = "行") -> tuple[str, str]:
    return "", f"（另有 {count:,} {what}未打印，请在系统中查看 ({count:,} more not printed: see the system)）"


def _field_rows(fields: Sequence[Field], room: list[int], depth: int = 0) -> list[tuple[str, str]]:
    """Return a section's rows, at most MAX_TABLE_ROWS of a table (like the form) and `room[0]` in all.

    The API and messages take a table of any length, and values the form does not describe print under their
    keys: each row is layout work for reportlab, so past the limits the document says how many it left out.
    """
    rows: list[tuple[str, str]] = []
    indent = "　" * depth
    for n, f in enumerate(fields):
        if room[0] <= 0:
            rows.append(_left_out(len(fields) - n, "项"))
            break
        room[0] -= 1
        if not f.children:
            rows.append((indent + f.label, f.text))
            continue
        rows.append((indent + f.label, ""))
        table = f.children[0].key.startswith(f.key + "/")  # rows of a table (formtext: `key/0`, `key/1`, …)
        shown = f.children[:content_limits.MAX_TABLE_ROWS] if table else f.children
        rows += _field_rows(shown, room, depth + 1)
        if len(shown) < len(f.children):
            rows.append(_left_out(len(f.children) - len(shown)))
    return rows


def _opinion_rows(opinions: Sequence[str], room: list[int], label: str = "审批意见") -> list[tuple[str, str]]:
    """Return a section's opinions as rows, within what is left of the document's rows (`room[0]`)."""
    shown = list(opinions[:max(room[0], 0)])
    room[0] -= len(shown)
    rows = [(label, o) for o in shown]
    return [*rows, _left_out(len(opinions) - len(shown), "条")] if len(shown) < len(opinions) else rows


def render(doc: Document) -> bytes:
    """Render a document as an A4 PDF with the CJK font embedded.

    Raises: FontMissing
    """
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    name = font()
    title = ParagraphStyle("title", fontName=name, fontSize=18, leading=26, alignment=1, spaceAfter=4)
    number = ParagraphStyle("number", fontName=name, fontSize=12, leading=18, alignment=1, spaceAfter=8)
    body = ParagraphStyle("body", fontName=name, fontSize=11, leading=18, firstLineIndent=22, spaceAfter=6)
    h2 = ParagraphStyle("h2", fontName=name, fontSize=12, leading=18, spaceBefore=8, spaceAfter=2)
    cell = ParagraphStyle("cell", fontName=name, fontSize=9.5, leading=13)
    small = ParagraphStyle("small", fontName=name, fontSize=8.5, leading=12, textColor=colors.HexColor("#555555"))
    # splitInRow: a row taller than a page (an opinion of 4000 characters) goes on over the next; unsplit, reportlab
    # refuses the whole document
    grid = TableStyle([("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#999999")),
                       ("VALIGN", (0, 0), (-1, -1), "TOP"),
                       ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f3f3f3"))])
    story: list[Any] = [Paragraph(text(doc.title, 300), title)]
    if doc.number:
        story.append(Paragraph(text(doc.number, 200), number))
    if doc.facts:
        facts = Table([[Paragraph(text(k, 200), cell), Paragraph(text(v), cell)] for k, v in doc.facts],
                      colWidths=[35 * mm, 135 * mm], splitInRow=1)
        facts.setStyle(grid)
        story += [facts, Spacer(1, 4 * mm)]
    story += [Paragraph(text(p), body) for p in doc.paragraphs]
    room = [content_limits.MAX_PRINTED_ROWS]
    for sec in doc.sections:
        block: list[Any] = [Paragraph(text(sec.heading, 300), h2)]
        if sec.meta:
            block.append(Paragraph(text(sec.meta, 300), small))
        rows = _field_rows(sec.fields, room) + _opinion_rows(sec.opinions, room, sec.opinion_label)
        # Tables of at most CHUNK rows: reportlab splits a table at each page by laying out what is left again,
        # quadratic in its rows (1,500 rows took 1.3 s, 15,000 took 35 s)
        for at in range(0, len(rows), CHUNK):
            table = Table([[Paragraph(text(k, 200), cell), Paragraph(text(v), cell)] for k, v in rows[at:at + CHUNK]],
                          colWidths=[45 * mm, 125 * mm], repeatRows=0, splitInRow=1)
            table.setStyle(grid)
            block.append(table)
        if sec.note:
            block.append(Paragraph(text(sec.note, 300), small))
        story.append(KeepTogether(block[:2]) if len(block) > 2 else KeepTogether(block))
        story += block[2:] if len(block) > 2 else []
    if doc.seal is not None:
        story += [Spacer(1, 8 * mm), KeepTogether([_seal_flowable(doc.seal, name)])]
    if doc.verify_code:
        lines = [f"核验码：{doc.verify_code}"]
        if doc.verify_url:
            lines.append(f"核验网址：{doc.verify_url}")
        verify: list[Any] = [Paragraph(text(line, 400), small) for line in lines]
        if doc.verify_url:
            from reportlab.graphics.barcode.qr import QrCodeWidget
            from reportlab.graphics.shapes import Drawing
            widget = QrCodeWidget(doc.verify_url)
            x0, y0, x1, y1 = widget.getBounds()
            size = 24 * mm
            drawing = Drawing(size, size, transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0])
            drawing.add(widget)
            table = Table([[verify, drawing]], colWidths=[140 * mm, 30 * mm])
            table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
            story += [Spacer(1, 4 * mm), table]
        else:
            story += [Spacer(1, 4 * mm), *verify]
    footer = doc.footer

    def on_page(canvas: Any, template: Any) -> None:
        canvas.saveState()
        canvas.setFont(name, 8)
        canvas.setFillColor(colors.HexColor("#777777"))
        canvas.drawString(20 * mm, 10 * mm, footer[:120])
        canvas.drawRightString(190 * mm, 10 * mm, f"第 {template.page} 页")
        canvas.restoreState()

    out = io.BytesIO()
    pdf = SimpleDocTemplate(out, pagesize=A4, leftMargin=20 * mm, rightMargin=20 * mm, topMargin=18 * mm,
                            bottomMargin=18 * mm, title=doc.title[:200], author="jzflow")
    pdf.build(story, onFirstPage=on_page, onLaterPages=on_page)
    return out.getvalue()


__all__ = ["CANDIDATES", "Document", "FontMissing", "Seal", "Section", "font", "printed", "render", "text"]
