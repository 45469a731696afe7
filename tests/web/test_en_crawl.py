"""Every page every role can reach, with English chosen, shows no Chinese interface text (the mirror of
tests/web/test_zh_crawl.py, with its page walk tests/web/zh_crawl.py).

The English switch is the `lang` cookie (`/lang/en`, web/__init__.py `_locale`). Each page's visible text is
checked for CJK characters outside data: names of processes, tasks, people, units, projects, form answers and
audit payloads stay as they were typed and are marked `translate="no"` in the templates (choices of a <select>
included), or sit in <code>, <pre>…, which the walk skips; the few phrases the app itself keeps in Chinese on purpose are in
`ALLOWED` below.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from tests.web import pages_world as pw
from tests.web import zh_crawl

WINDOW = pw.WINDOW
PEOPLE = (*pw.EVERYONE, WINDOW)
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff01-\uff60]+")
# Chinese the English page keeps on purpose: the language switch names its language in that language.
ALLOWED = frozenset({"中文"})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[pw.PagesWorld]:
    for built in pw.open_world(tmp_path_factory, sqlite_template, also=(WINDOW,)):
        for each in built.clients.values():
            each.get("/lang/en")
        yield built


class _Pieces(zh_crawl._Text):
    """zh_crawl's reader, also noting which pieces are attribute values (title, aria-label…), and reading the
    choices of a <select>: a choice the app names is interface; one that names data is marked translate="no"."""

    skip = zh_crawl.SKIP - {"option"}

    def __init__(self) -> None:
        super().__init__()
        self.attributes: set[int] = set()  # and <option> texts: neither can hold a marked element
        self.in_option = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        before = len(self.parts)
        super().handle_starttag(tag, attrs)
        self.attributes.update(range(before, len(self.parts)))
        self.in_option = tag == "option" or (self.in_option and tag not in ("select", "datalist", "optgroup"))

    def handle_endtag(self, tag: str) -> None:
        super().handle_endtag(tag)
        if tag in ("option", "select", "datalist"):
            self.in_option = False

    def handle_data(self, data: str) -> None:
        before = len(self.parts)
        super().handle_data(data)
        if self.in_option:
            self.attributes.update(range(before, len(self.parts)))


def chinese(html: str, allowed: Iterable[str] = ()) -> list[str]:
    """Return the visible pieces of a page that hold Chinese outside data and `ALLOWED`.

    An attribute or a choice (<option>) cannot hold a marked element, so one that reads English and names data
    ("Select 一窗受理", "Previous step: 填报申请") passes; one that is all Chinese does not, unless the choice
    itself is marked as data.
    """
    ok = ALLOWED | set(allowed)
    reader = _Pieces()
    reader.feed(html.split("<body>", 1)[-1])
    return [piece[:80] for i, piece in enumerate(reader.parts)
            if any(match.group(0) not in ok for match in CJK.finditer(piece))
            and not (i in reader.attributes and re.search(r"[A-Za-z]{2,}", piece))]


def known_routes(world: pw.PagesWorld) -> list[str]:
    """Every GET route without a parameter (outside /api and the static files)."""
    return sorted(rule.rule for rule in world.app.url_map.iter_rules()
                  if "GET" in (rule.methods or ()) and not rule.arguments and not rule.rule.startswith(("/api", "/static"))
                  and rule.endpoint not in ("auth.logout", "healthz", "set_language"))


def test_the_detector_finds_chinese_and_spares_data() -> None:
    page = "<body><main><p>{}</p></main></body>"
    assert chinese(page.format("Pending tasks 待办"))
    assert chinese(page.format("提交"))
    assert chinese("<body><input type=\"submit\" value=\"保存\"></body>")
    assert chinese("<body><input placeholder=\"搜索\"></body>")
    assert not chinese("<body><input type=\"checkbox\" aria-label=\"Select 一窗受理\"></body>")
    assert not chinese(page.format("Process <span translate=\"no\">项目审批</span> · Language: 中文"))
    assert not chinese("<body><pre>审批意见</pre><select><option translate=\"no\">发改局</option></select></body>")
    assert chinese("<body><select><option value=\"\">全部</option></select></body>")
    assert not chinese("<body><select><option value=\"previous\">Previous step: 填报申请</option></select></body>")


@pytest.mark.parametrize("username", PEOPLE)
def test_every_page_is_english(world: pw.PagesWorld, username: str) -> None:
    pages = zh_crawl.crawl(lambda url: pw.get(world, username, url), ["/", "/inbox", *known_routes(world)])
    assert len(pages) >= 5, sorted(pages)
    if username == "admin":  # 编辑人员, reached from the admin list
        assert any(re.fullmatch(r"/admin/users/\d+", url) for url in pages), sorted(pages)
    problems = {url: found for url, html in pages.items() if (found := chinese(html))}
    assert not problems, "\n".join(f"{url}: {found[:6]}" for url, found in sorted(problems.items()))


def test_a_refused_form_says_what_is_wrong_in_english(world: pw.PagesWorld) -> None:
    """The applicant's form, refused: the page around it and the refusals are English; the form's own words stay."""
    page = pw.refused_application(world)
    assert not chinese(page), chinese(page)
    errors = re.findall(r'<div class="field-error"[^>]*>(.*?)</div>', page)
    assert "at most 50 characters" in errors and "required" in errors, errors
    assert '<span translate="no">请输入 11 位手机号或带区号的固定电话</span>' in errors  # the form's own errorMessage
