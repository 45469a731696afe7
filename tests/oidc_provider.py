"""A real OpenID Connect provider on loopback for the tests (`oidc-provider-mock`, built on Authlib's server).

It runs the real protocol — discovery, authorization endpoint, token endpoint that redeems a code once,
RS256-signed ID tokens, JWKS — in a thread of the test process. `authorize()` plays the person at the
provider's login form: it submits the form for a subject and returns where the provider sends the browser.
Its discovery document names an `end_session_endpoint` (RP-initiated logout: a confirmation form, then back
to `post_logout_redirect_uri`); `running(end_session=False)` plays a provider that offers none.
`logout_token()` has it sign a back-channel logout token (OpenID Connect Back-Channel Logout 1.0) with the key its
ID tokens are signed with, as it would before POSTing it to a client's `backchannel_logout_uri`.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flask
import requests
import werkzeug.serving
from joserfc import jwt
from joserfc.jwk import RSAKey

with warnings.catch_warnings():  # it imports authlib.jose, which Authlib 1.9 deprecates in favour of joserfc
    warnings.simplefilter("ignore", DeprecationWarning)
    import oidc_provider_mock

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
CLIENT_ID = "jzflow-test"  # jzflow's client at the test provider


def configure(monkeypatch: Any, issuer: str, **settings: str) -> None:
    """Point jzflow's single sign-on at a test provider (`settings`: more JZFLOW_OIDC_* variables, by name)."""
    from engine.org import oidc

    for name, value in {"JZFLOW_OIDC_ISSUER": issuer, "JZFLOW_OIDC_CLIENT_ID": CLIENT_ID,
                        "JZFLOW_OIDC_CLIENT_SECRET": "s3cret", "JZFLOW_OIDC_LOCAL_LOGINS": "admin", **settings}.items():
        monkeypatch.setenv(name, value)
    oidc.METADATA.clear()


@dataclass
class Provider:
    issuer: str

    def set_user(self, sub: str, claims: dict[str, Any]) -> None:
        """Set (or replace) the claims the provider asserts for a subject."""
        response = requests.put(f"{self.issuer}/users/{sub}", json=claims, timeout=10)
        assert response.status_code == 204, response.text

    def authorize(self, authorize_url: str, sub: str) -> str:
        """Log `sub` in at the provider's form for this authorization request; return the redirect it answers."""
        response = requests.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text[:500]
        return response.headers["Location"]

    def id_token(self, *, sub: str, client_id: str, nonce: str, redirect_uri: str = "http://localhost/cb") -> str:
        """Run a whole code flow as client `client_id` and return the ID token the provider signs."""
        query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                 "scope": "openid profile email", "state": "s", "nonce": nonce}
        url = requests.Request("GET", f"{self.issuer}/oauth2/authorize", params=query).prepare().url
        assert url is not None
        location = self.authorize(url, sub)
        code = parse_qs(urlsplit(location).query)["code"][0]
        response = requests.post(f"{self.issuer}/oauth2/token", timeout=10, auth=(client_id, "secret"), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})
        assert response.status_code == 200, response.text
        token: str = response.json()["id_token"]
        return token


    def end_session(self, url: str) -> str:
        """Confirm a logout at the provider's end-session form; return where it sends the browser back ("" none)."""
        form = requests.get(url, allow_redirects=False, timeout=10)
        assert form.status_code == 200, form.text[:500]
        back = parse_qs(urlsplit(url).query).get("post_logout_redirect_uri", [None])[0]
        data = {"redirect_uri": back} if back else {}
        response = requests.post(f"{self.issuer}/oauth2/end_session/confirm", data=data, allow_redirects=False,
                                 timeout=10)
        return response.headers.get("Location", "")

    def logout_token(self, *, client_id: str, sub: str | None = None, sid: str | None = None,
                     header: dict[str, Any] | None = None, **claims: Any) -> str:
        """Return a back-channel logout token the provider signs (RS256, its ID token key) for `client_id`.

        The claims a genuine one carries (iss, aud, iat, exp, jti, events, and the given sub / sid) unless `claims`
        replaces them; a claim given as None is left out.
        """
        now = int(time.time())
        body: dict[str, Any] = {"iss": self.issuer, "aud": client_id, "iat": now, "exp": now + 120,
                                "jti": uuid.uuid4().hex, "events": {LOGOUT_EVENT: {}}, "sub": sub, "sid": sid}
        body.update(claims)
        payload = {"header": header or {}, "claims": {k: v for k, v in body.items() if v is not None}}
        response = requests.post(f"{self.issuer}/test/logout-token", json=payload, timeout=10)
        assert response.status_code == 200, response.text[:500]
        return response.text

    def public_jwk(self) -> dict[str, Any]:
        """Return the provider's public signing key as its JWKS publishes it."""
        keys: list[dict[str, Any]] = requests.get(f"{self.issuer}/jwks", timeout=10).json()["keys"]
        return keys[0]


def _without_end_session(response: flask.Response) -> flask.Response:
    if flask.request.path == "/.well-known/openid-configuration":
        doc = json.loads(response.get_data())
        doc.pop("end_session_endpoint", None)
        response.set_data(json.dumps(doc))
    return response


def _sign_logout_token() -> str:
    """Sign the posted claims with the provider's own key (the header may add to, or replace, alg/kid/typ)."""
    body = flask.request.get_json()
    key = RSAKey.import_key(flask.g.oidc_provider_mock_storage.jwk.as_dict(is_private=True))
    header = {"alg": "RS256", "typ": "logout+jwt", **({"kid": key.kid} if key.kid else {}), **body["header"]}
    return jwt.encode(header, body["claims"], key)


@contextmanager
def running(users: Sequence[oidc_provider_mock.User] = (), max_age: timedelta = timedelta(hours=1),
            end_session: bool = True) -> Iterator[Provider]:
    """Start the provider on a free loopback port; stop it afterwards."""
    app = oidc_provider_mock.app(require_nonce=True, user_claims=users, access_token_max_age=max_age)
    if not end_session:
        app.after_request(_without_end_session)
    app.add_url_rule("/test/logout-token", view_func=_sign_logout_token, methods=["POST"])
    server = werkzeug.serving.make_server("localhost", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield Provider(issuer=f"http://localhost:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
