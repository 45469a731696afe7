"""Standing guard: every web route and form, fed malformed input, answers 4xx with a message — never a 500.

Routes come from app.url_map and field names from the templates' forms and the views' `request.*.get`
calls, so a new route or field is swept without editing this file. Each route (and method) gets NUL
bytes, lone surrogates, 1 MB strings, huge and negative integers, repeated fields (wrong types), bad cursors and dates,
deeply nested and wrongly typed JSON, and out-of-range path ids. A 2xx/3xx is fine where the input is
legitimately ignored; a 4xx must carry a message.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from engine.org.models import User
from tests.web.conftest import app_on
from tests.web.flows import Api, db, deploy_good, token_for, user_id

WEB = Path(__file__).resolve().parents[2] / "web"
SKIP_ENDPOINTS = {"static", "auth.logout"}
NUL = "x\x00y"
LONE = "孤\ud800代理"
HUGE = str(10**30)
DEEP = "[" * 50_000 + "]" * 50_000
VARIANTS: dict[str, Any] = {"nul": NUL, "huge_int": HUGE, "wrong_type": ["1", "two", ""], "long": "长" * 100}
# Two more requests per route mix these over the fields (field i, request k: MIXED[(i + 2k) % 4]).
MIXED = ("-1", "!!not-a-cursor!!", "2025-13-45", "/inbox\r\nSet-Cookie: x=1")


def field_names() -> list[str]:
    """Every form field the templates render and every argument the views read."""
    names: set[str] = set()
    for path in (WEB / "templates").rglob("*.html"):
        names.update(re.findall(r'\bname="([A-Za-z_][\w:-]*)"', path.read_text(encoding="utf-8")))
    for path in WEB.rglob("*.py"):
        names.update(re.findall(r'(?:get|getlist|text|_date|usernames|_int|id_arg)\(\s*"([A-Za-z_][\w:-]*)"',
                                path.read_text(encoding="utf-8")))
    names.discard("csrf_token")
    return sorted(names)


def _path(rule: Rule, ids: dict[str, Any], bad: bool) -> str:
    values = {}
    for name in rule.arguments:
        converter = type(rule._converters[name]).__name__
        if converter in ("BoundedInt", "IntegerConverter"):
            values[name] = 10**30 if bad else ids.get(name, 1)
        else:
            values[name] = NUL if bad else ids.get(name, "review_process")
    path = rule.rule
    for name, value in values.items():
        path = re.sub(rf"<(?:[^:<>]+:)?{name}>", str(value), path)
    return path


@pytest.fixture
def sweep_app(db_url: str, session: Session, review_org: dict[str, Any]) -> Iterator[Flask]:
    yield from app_on(db_url, session, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)


def _as(app: Flask, client: FlaskClient, uid: int) -> None:
    with db(app) as session:  # the user's current session epoch: a password change in the sweep moves it on
        epoch = session.get(User, uid).session_epoch  # type: ignore[union-attr]
    with client.session_transaction() as sess:  # (re)log in without the rate-limited form
        sess["_user_id"] = f"{uid}:{epoch}"
        sess["_fresh"] = True


def _answered_well(response: TestResponse) -> bool:
    if response.status_code >= 500:
        return False
    if 400 <= response.status_code < 500:
        text = response.get_data(as_text=True)
        return bool(text.strip())
    return True


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_malformed_input_sweep_over_every_route_never_answers_500(sweep_app: Flask) -> None:
    app = sweep_app
    deploy_good(app)
    started = Api(app, token_for(app, "applicant")).post("/api/processes/review_process/instances", {"title": "扫"})
    assert started.status_code == 201 and started.json is not None
    ids = {"instance_id": started.json["id"], "task_id": started.json["next_task_id"], "key": "review_process",
           "process_key": "review_process"}
    fields = field_names()
    assert {"username", "q", "after", "title", "body"} <= set(fields), fields
    admin_id = user_id(app, "admin")
    client = app.test_client()
    statuses: Counter[int] = Counter()
    bad: list[str] = []
    logged_out: list[str] = []

    def send(method: str, path: str, **kwargs: Any) -> None:
        _as(app, client, admin_id)
        try:
            response = client.open(path, method=method, **kwargs)
        except Exception as exc:  # an exception out of the app is a 500 in production
            statuses[500] += 1
            bad.append(f"{method} {path[:80]!r} {sorted(kwargs)} → {type(exc).__name__}: {str(exc)[:120]}")
            return
        statuses[response.status_code] += 1
        if response.status_code == 302 and response.headers.get("Location", "").startswith("/login"):
            logged_out.append(f"{method} {path[:80]!r}")  # the sweep must reach the views, not the login page
        if not _answered_well(response):
            bad.append(f"{method} {path[:80]!r} {sorted(kwargs)} → {response.status_code}")

    rules = [r for r in app.url_map.iter_rules() if r.endpoint not in SKIP_ENDPOINTS]
    assert len(rules) > 80
    for index, rule in enumerate(rules):
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            path = _path(rule, ids, bad=False)
            if rule.arguments:
                send(method, _path(rule, ids, bad=True))
            requests: list[dict[str, Any]] = []
            for variant, value in VARIANTS.items():
                data = {name: value for name in fields}
                if variant == "long":  # and one 1 MB field, a different one per route
                    data[fields[index % len(fields)]] = "x" * 1_000_000
                requests.append(data)
            requests += [{name: MIXED[(i + 2 * k) % len(MIXED)] for i, name in enumerate(fields)} for k in (0, 1)]
            for data in requests:
                if method == "GET":
                    send(method, path, query_string=data)
                else:
                    send(method, path, data=data)
            if method != "GET":
                send(method, path, data=DEEP, content_type="application/json")
                wrong = {name: [{"nested": [1, None, True]}] for name in fields}
                send(method, path, data=json.dumps(wrong), content_type="application/json")
                send(method, path, data=json.dumps({name: 10**30 for name in fields}), content_type="application/json")
                # "\ud800" escaped alone: json.loads gives a str that UTF-8 (the audit hash, the database) cannot hold
                send(method, path, data=json.dumps({name: LONE for name in fields}), content_type="application/json")
    total = sum(statuses.values())
    fives = sum(n for code, n in statuses.items() if code >= 500)
    print(f"\nmalformed-input sweep: {len(rules)} routes, {len(fields)} fields, {total} requests, "
          f"{fives} 5xx, statuses {dict(sorted(statuses.items()))}")
    assert not bad, "\n".join(bad[:40])
    assert not logged_out, "the sweep lost its login at: " + "; ".join(logged_out[:10])
