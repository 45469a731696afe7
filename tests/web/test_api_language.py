"""The JSON API in its token user's saved language (app_user.language): a refusal's `message` (= `detail`), and each
field's message of a form_invalid, is the half of the person's language — English for a person who chose English,
the Chinese for one who chose zh-CN; a person who has not chosen gets both halves as before ("中文 (English)"). The
saved language is read for the token's own user: a token request still loads no cookie session's user, and a browser
cookie (lang=…) sent along never overrides the person's choice."""
from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask

from engine.notify import language
from engine.org.actors import actor_for
from tests.web.flows import Api, db, deploy_files, deploy_good, start_form_bundle, token_for

CJK = re.compile(r"[\u4e00-\u9fff]")


def _choose(app: Flask, username: str, chosen: str) -> None:
    with db(app) as s:
        language.choose(s, actor=actor_for(s, username), language=chosen)
        s.commit()


def _refusals(api: Api) -> list[dict[str, Any]]:
    """A missing task (404), a start form refused naming its fields (422)."""
    missing = api.get("/api/tasks/987654321")
    assert missing.status_code == 404
    refused = api.post("/api/processes/start_form_demo/instances", {"data": {"investment": -1}})
    assert refused.status_code == 422, refused.get_data(as_text=True)
    return [missing.json, refused.json]


def test_an_english_token_user_reads_english_messages(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    from web.extensions import login_manager
    deploy_good(app)
    deploy_files(app, start_form_bundle())
    _choose(app, "fg", "en")
    loads: list[bool] = []
    real = login_manager._load_user  # type: ignore[attr-defined]
    monkeypatch.setattr(login_manager, "_load_user", lambda: loads.append(True) or real())
    api = Api(app, token_for(app, "fg"))
    for body in _refusals(api):
        assert not CJK.search(body["message"]), body
        assert body["detail"] == body["message"]
        for field in body.get("fields") or ():
            assert not CJK.search(field["message"]), field
    assert loads == []  # the person's language is read by the token's user id, never a cookie session's user


def test_a_chinese_token_user_reads_chinese_and_a_cookie_does_not_override(app: Flask) -> None:
    deploy_good(app)
    deploy_files(app, start_form_bundle())
    _choose(app, "fg", "zh-CN")
    api = Api(app, token_for(app, "fg"))
    api.client.get("/lang/en")  # this client's browser cookie says English: the person's choice wins
    for body in _refusals(api):
        assert CJK.search(body["message"]) and not re.search(r"\([a-z][a-z ]+\)\s*$", body["message"]), body


def test_a_token_user_who_has_not_chosen_gets_both_halves_as_before(app: Flask) -> None:
    deploy_good(app)
    deploy_files(app, start_form_bundle())
    api = Api(app, token_for(app, "fg"))
    missing, _refused = _refusals(api)
    assert CJK.search(missing["message"]) and re.search(r"\([A-Za-z][^()]*\)", missing["message"]), missing


def _show(app: Flask) -> None:
    deploy_good(app)
    deploy_files(app, start_form_bundle())
    for body in _refusals(Api(app, token_for(app, "fg"))):
        print(body)
