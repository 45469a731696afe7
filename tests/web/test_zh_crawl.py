"""Every page every role can reach, in zh-CN, shows no raw code and no English (tests/web/zh_crawl.py).

The crawl starts at each person's start page (/ → 待办) and the app's routes that take no parameter, and
follows links; each page's visible text is checked. Proper names and abbreviations (BPMN, XLSX, ID…) are
the detector's short allow-list; usernames, file names and typed-in values are marked translate="no".
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web import pages_world as pw
from tests.web import zh_crawl

WINDOW = pw.WINDOW
PEOPLE = (*pw.EVERYONE, WINDOW)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[pw.PagesWorld]:
    yield from pw.open_world(tmp_path_factory, sqlite_template, also=(WINDOW,))


def known_routes(world: pw.PagesWorld) -> list[str]:
    """Every GET route without a parameter (outside /api and the static files)."""
    return sorted(rule.rule for rule in world.app.url_map.iter_rules()
                  if "GET" in (rule.methods or ()) and not rule.arguments and not rule.rule.startswith(("/api", "/static"))
                  and rule.endpoint not in ("auth.logout", "healthz", "set_language"))


def test_the_detector_finds_codes_and_english_and_spares_proper_names() -> None:
    page = "<body><main><p>{}</p></main></body>"
    assert zh_crawl.untranslated(page.format("逾期提醒 escalation.yellow"))
    assert zh_crawl.untranslated(page.format("已完成 · 流程: completed"))
    assert zh_crawl.untranslated(page.format("必填 (required)"))
    assert zh_crawl.untranslated(page.format("'abc' does not match '^(1[3-9]'"))
    assert zh_crawl.untranslated(page.format("计划 investment_loop:2026-11"))
    assert not zh_crawl.untranslated(page.format("下载 XLSX · BPMN 图 · 元素 ID"))
    assert not zh_crawl.untranslated("<body><p>用户 <span translate=\"no\">maxiaoyan</span></p><pre>a.b</pre></body>")


@pytest.mark.parametrize("username", PEOPLE)
def test_every_page_is_chinese(world: pw.PagesWorld, username: str) -> None:
    pages = zh_crawl.crawl(lambda url: pw.get(world, username, url), ["/", "/inbox", *known_routes(world)])
    assert len(pages) >= 5, sorted(pages)
    if username == "admin":  # 编辑人员, reached from the admin list
        assert any(re.fullmatch(r"/admin/users/\d+", url) for url in pages), sorted(pages)
    problems = {url: found for url, html in pages.items() if (found := zh_crawl.untranslated(html))}
    assert not problems, "\n".join(f"{url}: {found[:6]}" for url, found in sorted(problems.items()))


def test_a_refused_form_says_what_is_wrong_in_chinese(world: pw.PagesWorld) -> None:
    """The applicant's form: a bad phone number gets the field's own words, other refusals Chinese messages."""
    page = pw.refused_application(world)
    assert "请输入 11 位手机号或带区号的固定电话" in page
    assert "does not match" not in page and "(required)" not in page and "is too long" not in page
    assert not zh_crawl.untranslated(page), zh_crawl.untranslated(page)
    assert "Decimal" not in page and "multipleOf" not in page  # no developer note on the applicant's form
