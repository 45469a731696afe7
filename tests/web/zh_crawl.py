"""Crawl every page a person can reach in zh-CN and find what is not Chinese: raw codes and English.

`crawl` follows links (GET, same site) from a start page and the known routes without parameters;
`untranslated` finds, in a page's visible text (and its title/placeholder/aria-label attributes), raw
dotted or snake_case codes (`escalation.yellow`, `working_days`) and English words, apart from a short
allow-list of proper names and abbreviations. Text inside <code>, <pre>, <script>, <style>, <kbd>, <samp>
and elements marked `translate="no"` (usernames, file names, element ids, user-typed values) is data,
not interface, and is skipped.
"""
from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from html.parser import HTMLParser
from urllib.parse import urldefrag, urlsplit

ALLOWED = frozenset({
    "BPMN", "DMN", "XLSX", "CSV", "PDF", "ID", "API", "JSON", "OpenAPI", "URL", "HTTP", "HTTPS", "YAML", "SLA",
    "GDP", "PPP", "AI", "IT", "OK", "English", "UTC", "XML", "SVG", "PNG", "Token", "token", "Bearer", "YYYY",
    "MM", "DD", "HH", "GB", "MB", "KB", "No", "Q1", "Q2", "Q3", "Q4", "jzflow", "SpiffWorkflow", "EPC", "PM",
    "CPI", "PMI", "SHA", "CSRF", "VS", "vs", "v", "JavaScript", "Camunda", "Modeler", "SpiffArena", "Signavio",
    "ZIP", "Flowable", "Activiti", "Python", "Webhook",
})
SKIP = frozenset({"script", "style", "code", "pre", "kbd", "samp", "textarea", "svg", "option"})
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})
CODE = re.compile(r"\b[a-z][a-z0-9]*(?:[._][a-z0-9]+)+\b")
WORD = re.compile(r"(?<![A-Za-z0-9_@./:-])[A-Za-z]{2,}(?![A-Za-z0-9_@/-])")
DOWNLOADS = re.compile(r"\.(xlsx|csv|pdf|png|svg|bpmn|dmn|json|zip|yaml|ico)(\?|$)|/download|/export|/files/")


class _Text(HTMLParser):
    skip = SKIP

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[bool] = []  # per open element: is it skipped?
        self.parts: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        skipped = (bool(self.stack) and self.stack[-1]) or tag in self.skip or found.get("translate") == "no" \
            or found.get("hidden") is not None
        if tag == "a" and found.get("href"):
            self.links.append(found["href"] or "")
        if not skipped:
            for name in ("title", "placeholder", "aria-label", "alt"):
                if found.get(name):
                    self.parts.append(found[name] or "")
            if tag == "input" and found.get("type") in ("submit", "button") and found.get("value"):
                self.parts.append(found["value"] or "")
        if tag not in VOID:
            self.stack.append(skipped)

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1]) and data.strip():
            self.parts.append(data.strip())


def parse(html: str) -> tuple[list[str], list[str]]:
    """Return (visible text pieces, link targets) of a page's <body>."""
    body = html.split("<body>", 1)[-1]
    parser = _Text()
    parser.feed(body)
    return parser.parts, parser.links


def untranslated(html: str, allowed: Iterable[str] = ()) -> list[str]:
    """Return the raw codes and English words in a page's visible text."""
    ok = ALLOWED | set(allowed)
    found: list[str] = []
    for piece in parse(html)[0]:
        for match in CODE.finditer(piece):
            if match.group(0) not in ok and not re.search(r"\.(bpmn|dmn|xlsx|csv|pdf|yaml|json)$", match.group(0)):
                found.append(f"code {match.group(0)!r} in {piece[:80]!r}")
        for match in WORD.finditer(CODE.sub(" ", piece)):
            if match.group(0) not in ok:
                found.append(f"English {match.group(0)!r} in {piece[:80]!r}")
    return found


def crawl(get: Callable[[str], tuple[int, str]], starts: Iterable[str], limit: int = 400,
          per_route: int = 3) -> dict[str, str]:
    """Follow links from `starts` (GET, this site, no downloads); return url → page for every 200 HTML page.

    At most `per_route` pages of one route shape (digits replaced) are opened, so a list of a thousand
    rows costs three task pages, not a thousand.
    """
    seen: set[str] = set()
    shapes: dict[str, int] = {}
    pages: dict[str, str] = {}
    queue = deque(starts)
    while queue and len(seen) < limit:
        url = urldefrag(queue.popleft())[0]
        parts = urlsplit(url)
        if (parts.netloc and parts.netloc != "localhost") or (not url.startswith("/") and not parts.netloc):
            continue
        url = parts.path + (f"?{parts.query}" if parts.query else "")
        shape = re.sub(r"\d+", "N", parts.path) + ("?" + re.sub(r"=[^&]*", "", parts.query) if parts.query else "")
        if url in seen or DOWNLOADS.search(parts.path) or parts.path.startswith(("/lang/", "/static/", "/logout")) \
                or shapes.get(shape, 0) >= per_route:
            continue
        seen.add(url)
        shapes[shape] = shapes.get(shape, 0) + 1
        status, html = get(url)
        if status != 200 or "<html" not in html[:200]:
            continue
        pages[url] = html
        queue.extend(parse(html)[1])
    return pages
