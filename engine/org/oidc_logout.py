"""Single sign-out (统一身份认证退出): OpenID Connect RP-initiated logout.

Logging out of jzflow after an OIDC login also sends the browser to the provider's `end_session_endpoint`
(from its discovery document) with `id_token_hint`, `client_id` and `post_logout_redirect_uri`; a provider
without that endpoint, or a password login, ends only the local session.

The ID token of the login is the hint. jzflow has no server-side session store, so it travels in the signed
session cookie sealed: a JWE (`dir` + A256GCM) under a key derived from the app's secret, bound to the user it
was issued for, so the browser can neither read it (claims, e-mail) nor swap in another. A seal that does not
open, or belongs to another user, is no hint at all: the provider is then asked with `client_id` alone, and
confirms with the person. A token too large for a cookie is not kept (the same fallback).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from urllib.parse import urlsplit

from authlib.common.urls import add_params_to_uri
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from engine.org.oidc import METADATA, Settings, SsoError, require_secure

MAX_SEALED = 2400  # characters: a session cookie holds about 4 KB in all
_HEADER = {"alg": "dir", "enc": "A256GCM", "zip": "DEF"}
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-]+(:\d{1,5})?$|^https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def _key(secret: str | bytes) -> OctKey:
    raw = secret.encode() if isinstance(secret, str) else secret
    return OctKey.import_key(hmac.new(raw, b"jzflow oidc id_token_hint", hashlib.sha256).digest())


def seal(id_token: str, *, user_id: int, secret: str | bytes) -> str | None:
    """Return the ID token sealed for this user's session cookie, or None when it is too large to keep."""
    plaintext = json.dumps({"u": user_id, "t": id_token}, separators=(",", ":")).encode()
    sealed = jwe.encrypt_compact(_HEADER, plaintext, _key(secret))
    return sealed if len(sealed) <= MAX_SEALED else None


def unseal(sealed: object, *, user_id: int, secret: str | bytes) -> str | None:
    """Return the ID token of a seal made for this user with this secret; None for anything else."""
    if not isinstance(sealed, str) or not sealed or len(sealed) > MAX_SEALED:
        return None
    try:
        data = json.loads(jwe.decrypt_compact(sealed, _key(secret), algorithms=["dir", "A256GCM", "DEF"]).plaintext or b"")
    except (JoseError, ValueError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("u") != user_id or not isinstance(data.get("t"), str):
        return None
    token: str = data["t"]
    return token


def end_session_url(settings: Settings, *, id_token_hint: str | None, post_logout_redirect_uri: str) -> str | None:
    """Return the provider's end-session URL for this logout, or None when it offers none (a local logout).

    Raises: SsoError (provider unreachable, or its end_session_endpoint is not a secure URL)
    """
    endpoint = METADATA.document(settings).get("end_session_endpoint")
    if endpoint is None or endpoint == "":
        return None
    if not isinstance(endpoint, str):
        raise SsoError("统一身份认证服务的退出地址无效 (end_session_endpoint is not a URL)", field="end_session_endpoint")
    require_secure(endpoint, "end_session_endpoint")
    params = [("id_token_hint", id_token_hint)] if id_token_hint else []
    params += [("post_logout_redirect_uri", post_logout_redirect_uri), ("client_id", settings.client_id)]
    url: str = add_params_to_uri(endpoint, params)
    return url


def _origin(url: object) -> str | None:
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    origin = f"{parts.scheme}://{f'[{host}]' if ':' in host else host}{f':{port}' if port else ''}"
    return origin if _ORIGIN.match(origin) else None


def form_origins(settings: Settings) -> tuple[str, ...]:
    """Return the provider's origins a logout form may be redirected to (CSP form-action): the issuer's, and
    the end-session endpoint's when this process already holds the discovery document."""
    if not settings.enabled:
        return ()
    doc = METADATA.cached(settings) or {}
    found = (_origin(settings.issuer), _origin(doc.get("end_session_endpoint")))
    return tuple(dict.fromkeys(o for o in found if o))


__all__ = ["MAX_SEALED", "end_session_url", "form_origins", "seal", "unseal"]
