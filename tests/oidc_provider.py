"""A real OpenID Connect provider on loopback for the tests (`oidc-provider-mock`, built on Authlib's server).

It runs the real protocol — discovery, authorization endpoint, token endpoint that redeems a code once,
RS256-signed ID tokens, JWKS — in a thread of the test process. `authorize()` plays the person at the
provider's login form: it submits the form for a subject and returns where the provider sends the browser.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

with warnings.catch_warnings():  # it imports authlib.jose, which Authlib 1.9 deprecates in favour of joserfc
    warnings.simplefilter("ignore", DeprecationWarning)
    import oidc_provider_mock


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


@contextmanager
def running(users: Sequence[oidc_provider_mock.User] = (), max_age: timedelta = timedelta(hours=1)) -> Iterator[Provider]:
    """Start the provider on a free loopback port; stop it afterwards."""
    with oidc_provider_mock.run_server_in_thread(port=0, require_nonce=True, user_claims=users,
                                                 access_token_max_age=max_age) as server:
        yield Provider(issuer=f"http://localhost:{server.server_port}")
