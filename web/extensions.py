"""The Flask extensions and the security headers every part of the web app shares; `create_app` binds them."""
from __future__ import annotations

from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from engine.org.login_guard import client_key

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
                               "frame-ancestors 'none'",
}


def client_address() -> str:
    """Return the rate-limit key of the client: its address, an IPv6 one by its /64 (login_guard.client_key)."""
    return client_key(get_remote_address()) or "unknown"


login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
limiter = Limiter(key_func=client_address, default_limits=[])

__all__ = ["SECURITY_HEADERS", "babel", "client_address", "csrf", "limiter", "login_manager"]
