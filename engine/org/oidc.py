"""Single sign-on with OpenID Connect (统一身份认证): authorization code flow with PKCE, state and nonce.

The provider is found through its discovery document (`<issuer>/.well-known/openid-configuration`,
whose `issuer` must equal the configured one exactly); its signing keys come from the document's
`jwks_uri`, kept for an hour and fetched again once when a token names an unknown key (rotation).
An ID token is accepted only when its signature verifies against those keys with an asymmetric
algorithm, `iss` is the issuer, `aud` holds our client id (`azp`, when present or when `aud` names several
parties, is ours), it is not expired nor issued in the future (a minute of leeway), and `nonce` is the one this browser's
login began with. Everything here is plain HTTP and JOSE: the web layer keeps `Pending` in the
(signed) session cookie and hands back what the provider sent.

Settings (environment): JZFLOW_OIDC_ISSUER (empty: SSO off), JZFLOW_OIDC_CLIENT_ID,
JZFLOW_OIDC_CLIENT_SECRET, JZFLOW_OIDC_SCOPES, the claim names JZFLOW_OIDC_USERNAME_CLAIM /
_NAME_CLAIM / _EMAIL_CLAIM / _UNIT_CLAIM / _ROLES_CLAIM, JZFLOW_OIDC_ROLE_MAP
("provider value=role code, …"), JZFLOW_OIDC_LOCAL_LOGINS (accounts that may still use a password),
JZFLOW_OIDC_LINK (how an existing account is linked to a provider's subject: LINK_MODES),
JZFLOW_OIDC_REDIRECT_URL and JZFLOW_OIDC_TIMEOUT.
"""
from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from engine import clock, config
from engine.errors import EngineError

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY = 60            # seconds of clock difference tolerated on exp / iat / nbf
METADATA_TTL = 3600.0  # seconds the discovery document and the keys are kept
MAX_DOCUMENT = 1 << 20  # bytes: a discovery document, key set or token answer larger than this is refused
# How a first SSO login may take an existing account (made here or by the directory sync) not yet bound to a subject:
# "admin" only an administrator links it (jzflow sso-link); "username" the provider's username claim is trusted (the
# provider assigns usernames, nobody picks their own); "email" the token's e-mail, verified by the provider
# (email_verified true), must be the account's. Whatever the mode, an account bound to one subject is refused to others.
LINK_MODES = ("admin", "username", "email")


class SsoError(EngineError):
    """The single sign-on did not complete; the message is safe to show to the person logging in."""

    code = "sso_failed"
    http_status = 400


class SsoRefused(SsoError):
    """The provider vouched for the person, but jzflow may not let them in (unknown unit, deactivated, …)."""

    code = "sso_refused"
    http_status = 403


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.replace(";", ",").split(",") if v.strip())


def _pairs(value: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in _split(value):
        key, sep, target = item.partition("=")
        if sep and key.strip() and target.strip():
            pairs[key.strip()] = target.strip()
    return pairs


@dataclass(frozen=True)
class Settings:
    """How jzflow talks to the city's identity provider (empty issuer: single sign-on is off)."""

    issuer: str = ""
    client_id: str = ""
    client_secret: str = ""
    scopes: str = "openid profile email"
    username_claim: str = "preferred_username"
    name_claim: str = "name"
    email_claim: str = "email"
    unit_claim: str = "unit"
    roles_claim: str = "roles"
    role_map: Mapping[str, str] = field(default_factory=dict)
    local_logins: tuple[str, ...] = ("admin",)
    link: str = "admin"
    redirect_url: str = ""
    timeout: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)

    def allows_password(self, username: str) -> bool:
        """Tell whether this account may log in with a local password (always, while SSO is off).

        In any case, as sso_users keeps the provider away from them: usernames are one account whatever their case.
        """
        return not self.enabled or username.lower() in {name.lower() for name in self.local_logins}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the JZFLOW_OIDC_* settings.

    Raises: SsoError (an issuer without a client id, or not https outside loopback; an unknown JZFLOW_OIDC_LINK)
    """
    env = os.environ if env is None else env
    issuer = env.get("JZFLOW_OIDC_ISSUER", "").strip().rstrip("/")
    settings = Settings(
        issuer=issuer,
        client_id=env.get("JZFLOW_OIDC_CLIENT_ID", "").strip(),
        client_secret=env.get("JZFLOW_OIDC_CLIENT_SECRET", ""),
        scopes=env.get("JZFLOW_OIDC_SCOPES", "openid profile email").strip() or "openid",
        username_claim=env.get("JZFLOW_OIDC_USERNAME_CLAIM", "preferred_username").strip(),
        name_claim=env.get("JZFLOW_OIDC_NAME_CLAIM", "name").strip(),
        email_claim=env.get("JZFLOW_OIDC_EMAIL_CLAIM", "email").strip(),
        unit_claim=env.get("JZFLOW_OIDC_UNIT_CLAIM", "unit").strip(),
        roles_claim=env.get("JZFLOW_OIDC_ROLES_CLAIM", "roles").strip(),
        role_map=_pairs(env.get("JZFLOW_OIDC_ROLE_MAP", "")),
        local_logins=_split(env.get("JZFLOW_OIDC_LOCAL_LOGINS", "admin")),
        link=env.get("JZFLOW_OIDC_LINK", "admin").strip().lower() or "admin",
        redirect_url=env.get("JZFLOW_OIDC_REDIRECT_URL", "").strip(),
        timeout=config.number("JZFLOW_OIDC_TIMEOUT", 10.0, positive=True, env=env),
    )
    if settings.link not in LINK_MODES:
        raise SsoError(f"JZFLOW_OIDC_LINK 须为 {' / '.join(LINK_MODES)} 之一 (how an existing account is linked: "
                       f"one of {', '.join(LINK_MODES)}): {settings.link[:40]!r}", field="JZFLOW_OIDC_LINK")
    if settings.enabled:
        if not settings.client_id:
            raise SsoError("统一身份认证未配置客户端标识 (JZFLOW_OIDC_CLIENT_ID is empty)", field="JZFLOW_OIDC_CLIENT_ID")
        if "openid" not in settings.scopes.split():
            raise SsoError("JZFLOW_OIDC_SCOPES 须包含 openid (scopes must include openid)", field="JZFLOW_OIDC_SCOPES")
        require_secure(issuer, "JZFLOW_OIDC_ISSUER")
    return settings


def require_secure(url: str, name: str) -> None:
    parts = urlsplit(url)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise SsoError(f"{name} 须为 https 地址 (must be an https URL): {url[:200]}", field=name)


@dataclass(frozen=True)
class Pending:
    """What one browser's login began with; kept in its signed session until the provider sends it back."""

    state: str
    nonce: str
    verifier: str
    next: str

    def as_dict(self) -> dict[str, str]:
        return {"state": self.state, "nonce": self.nonce, "verifier": self.verifier, "next": self.next}

    @classmethod
    def from_dict(cls, data: Any) -> Pending | None:
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("state", "nonce", "verifier")):
            return None
        return cls(state=data["state"], nonce=data["nonce"], verifier=data["verifier"], next=str(data.get("next", "")))


class _Metadata:
    """The provider's discovery document and keys, per issuer, shared by the threads of a process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._docs: dict[str, tuple[float, dict[str, Any]]] = {}
        self._keys: dict[str, tuple[float, dict[str, Any]]] = {}

    def clear(self) -> None:
        with self._lock:
            self._docs.clear()
            self._keys.clear()

    def document(self, settings: Settings) -> dict[str, Any]:
        with self._lock:
            cached = self._docs.get(settings.issuer)
        if cached and time.monotonic() - cached[0] < METADATA_TTL:
            return cached[1]
        doc = _get_json(settings.issuer + "/.well-known/openid-configuration", settings.timeout)
        if doc.get("issuer") != settings.issuer:
            raise SsoError("统一身份认证服务的发现文档与配置的签发者不符 (discovery issuer mismatch)")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(doc.get(key), str):
                raise SsoError(f"统一身份认证服务的发现文档缺少 {key} (discovery document lacks {key})")
            require_secure(doc[key], key)
        with self._lock:
            self._docs[settings.issuer] = (time.monotonic(), doc)
        return doc

    def cached(self, settings: Settings) -> dict[str, Any] | None:
        """Return the discovery document if this process holds it (never fetched here)."""
        with self._lock:
            cached = self._docs.get(settings.issuer)
        return cached[1] if cached else None

    def keys(self, settings: Settings, *, refresh: bool = False, fresh_for: float = 0.0) -> dict[str, Any]:
        """Return the provider's key set; `refresh` fetches it again unless it is younger than `fresh_for` seconds."""
        with self._lock:
            cached = self._keys.get(settings.issuer)
        age = time.monotonic() - cached[0] if cached else METADATA_TTL
        if cached and (age < fresh_for or (not refresh and age < METADATA_TTL)):
            return cached[1]
        jwks = _get_json(self.document(settings)["jwks_uri"], settings.timeout)
        if not isinstance(jwks.get("keys"), list):
            raise SsoError("统一身份认证服务的公钥集无效 (JWKS has no keys)")
        with self._lock:
            self._keys[settings.issuer] = (time.monotonic(), jwks)
        return jwks


METADATA = _Metadata()


def _answer(response: requests.Response) -> dict[str, Any]:
    if len(response.content) > MAX_DOCUMENT:
        raise SsoError("统一身份认证服务的应答过大 (answer too large)")
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SsoError(f"统一身份认证服务的应答无效 (not a JSON object, HTTP {response.status_code})")
    return data


def _get_json(url: str, timeout: float) -> dict[str, Any]:
    try:
        response = requests.get(url, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        raise SsoError(f"无法连接统一身份认证服务 (provider unreachable): {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise SsoError(f"统一身份认证服务出错 (provider answered HTTP {response.status_code})")
    return _answer(response)


def begin(settings: Settings, *, redirect_uri: str, next_path: str) -> tuple[str, Pending]:
    """Return the provider's authorization URL for a new login and what to keep until it comes back.

    Raises: SsoError (provider unreachable or misconfigured)
    """
    doc = METADATA.document(settings)
    pending = Pending(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
                      verifier=secrets.token_urlsafe(64), next=next_path)
    url = add_params_to_uri(doc["authorization_endpoint"], [
        ("response_type", "code"), ("client_id", settings.client_id), ("redirect_uri", redirect_uri),
        ("scope", settings.scopes), ("state", pending.state), ("nonce", pending.nonce),
        ("code_challenge", create_s256_code_challenge(pending.verifier)), ("code_challenge_method", "S256"),
    ])
    return url, pending


@dataclass(frozen=True)
class SignedIn:
    """A verified login: the ID token's claims, and the token itself (the hint of a later single sign-out)."""

    claims: dict[str, Any]
    id_token: str


def finish(settings: Settings, pending: Pending | None, *, args: Mapping[str, str], redirect_uri: str) -> SignedIn:
    """Check the provider's answer against the pending login, redeem the code, verify the ID token.

    Raises: SsoError
    """
    if pending is None:
        raise SsoError("登录请求已失效或已使用，请重新登录 (no login in progress: start again)", field="state")
    if not secrets.compare_digest(args.get("state", ""), pending.state):
        raise SsoError("登录请求校验失败 (state mismatch): 请重新登录", field="state")
    if args.get("error"):
        raise SsoError(f"统一身份认证未通过 (provider refused): {args.get('error', '')[:100]}", field="error")
    code = args.get("code", "")
    if not code or len(code) > 2000:
        raise SsoError("缺少授权码 (no authorization code)", field="code")
    token = redeem(settings, code=code, verifier=pending.verifier, redirect_uri=redirect_uri)
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise SsoError("统一身份认证服务未返回身份令牌 (no ID token)", field="id_token")
    return SignedIn(claims=verify_id_token(settings, id_token, nonce=pending.nonce), id_token=id_token)


def redeem(settings: Settings, *, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
    """Exchange an authorization code (with its PKCE verifier) at the token endpoint.

    Raises: SsoError
    """
    doc = METADATA.document(settings)
    try:
        response = requests.post(doc["token_endpoint"], timeout=settings.timeout, allow_redirects=False, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": verifier, "client_id": settings.client_id,
        }, auth=(settings.client_id, settings.client_secret), headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise SsoError(f"无法连接统一身份认证服务 (provider unreachable): {type(exc).__name__}") from exc
    data = _answer(response)
    if response.status_code != 200:
        raise SsoError(f"授权码无效、已过期或已使用，请重新登录 (token endpoint refused: "
                       f"{str(data.get('error', response.status_code))[:60]})", field="code")
    return data


def decode_signed(settings: Settings, token: str, *, refetch_after: float = 0.0) -> dict[str, Any]:
    """Return the claims of a JWT the provider signed, with one of its keys and an asymmetric algorithm.

    A key the cached key set does not hold has the set fetched again (the provider may have rotated its keys),
    unless it was fetched less than `refetch_after` seconds ago. Raises: ValueError, JoseError (the signature),
    SsoError (the provider cannot be asked)
    """
    def decode(keys: dict[str, Any]) -> jwt.Token:
        return jwt.decode(token, KeySet.import_key_set(keys), algorithms=list(ALGORITHMS))  # type: ignore[arg-type]

    try:
        return dict(decode(METADATA.keys(settings)).claims)
    except (ValueError, JoseError) as exc:
        if "key" not in str(exc).lower() and type(exc).__name__ not in ("InvalidKeyIdError", "MissingKeyError"):
            raise
        return dict(decode(METADATA.keys(settings, refresh=True, fresh_for=refetch_after)).claims)


def verify_id_token(settings: Settings, id_token: str, *, nonce: str,
                    now: Callable[[], int] | None = None) -> dict[str, Any]:
    """Verify an ID token's signature, issuer, audience, times and nonce; return its claims.

    Raises: SsoError
    """
    try:
        claims = decode_signed(settings, id_token)
    except (ValueError, JoseError) as exc:
        raise SsoError(f"身份令牌签名无效 (ID token signature: {type(exc).__name__})", field="id_token") from exc
    registry = jwt.JWTClaimsRegistry(
        now=now or (lambda: int(clock.now().timestamp())), leeway=LEEWAY,
        iss={"essential": True, "value": settings.issuer},
        aud={"essential": True, "value": settings.client_id},
        sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise SsoError(f"身份令牌无效 (ID token rejected: {exc.error} {getattr(exc, 'claim', '')})".strip(),
                       field="id_token") from exc
    audience = claims.get("aud")
    several = isinstance(audience, list) and len(audience) > 1
    if (several or "azp" in claims) and claims.get("azp") != settings.client_id:
        raise SsoError("身份令牌的授权方不是本系统 (ID token azp is not ours)", field="id_token")
    if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
        raise SsoError("身份令牌的随机数不符 (nonce mismatch): 请重新登录", field="nonce")
    return dict(claims)
