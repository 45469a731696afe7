"""web/sessions.py: the signed cookie's serializer is built once per key, and a rotated key is honoured at once."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer


def _signed_in(client: FlaskClient) -> bool:
    return client.get("/inbox").status_code == 200


def test_the_serializer_is_built_once_across_requests(app: Flask, login: Callable[[str], FlaskClient],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    client = login("applicant")
    built: list[Any] = []
    original = URLSafeTimedSerializer.__init__

    def counting(self: URLSafeTimedSerializer, *args: Any, **kwargs: Any) -> None:
        built.append(args)
        original(self, *args, **kwargs)

    monkeypatch.setattr(URLSafeTimedSerializer, "__init__", counting)
    for _ in range(3):
        assert _signed_in(client)
    # Flask's session serializer takes a list of keys (flask-wtf builds its own CSRF one from the key alone)
    assert [a for a in built if a and isinstance(a[0], list) and "test-secret" in a[0]] == []


def test_a_rotated_key_signs_anew_and_still_reads_the_old_cookie_only_as_a_fallback(
        app: Flask, login: Callable[[str], FlaskClient]) -> None:
    client = login("applicant")
    assert _signed_in(client)
    app.secret_key = "the-next-secret"  # rotated without the old key as a fallback: the old cookie is void
    assert not _signed_in(client)
    app.secret_key = "test-secret"
    assert _signed_in(client)  # the old key is back: the cookie reads again
    app.config["SECRET_KEY_FALLBACKS"] = ["test-secret"]
    app.secret_key = "the-next-secret"  # rotated with the old key as a fallback: still signed in
    assert _signed_in(client)
