"""Flask's signed-cookie sessions, with the signing serializer built once per key.

Flask builds an itsdangerous serializer twice a request (to open the session and to save it), on every request,
an API call with a bearer token and no cookie included. It depends only on the secret key and its fallbacks, so it
is kept per key: a rotated key (SECRET_KEY_FALLBACKS) gets a new one. The serializer holds no state between
calls (a signer is made per dumps and loads), so threads share it.
"""
from __future__ import annotations

import threading
from typing import Any

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class CookieSessions(SecureCookieSessionInterface):
    def __init__(self) -> None:
        self._serializers: dict[tuple[Any, ...], URLSafeTimedSerializer | None] = {}
        self._lock = threading.Lock()

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        key = (app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        try:
            return self._serializers[key]
        except KeyError:
            serializer = super().get_signing_serializer(app)
            with self._lock:
                if len(self._serializers) >= 8:  # keys change rarely: a test suite's many apps must not pile up
                    self._serializers.clear()
                self._serializers[key] = serializer
            return serializer
