"""Outbound HTTP to addresses users gave (webhooks): never into the server's own networks.

A webhook URL is the user's choice, so posting to it is a server-side request a user controls. Its
host must resolve only to public addresses: loopback, link-local (cloud metadata), private,
shared, reserved and multicast ranges are refused, unless an administrator lists the host in
JZFLOW_WEBHOOK_ALLOW_HOSTS (comma-separated host names, IP addresses or networks such as
10.1.0.0/16). The name is resolved again at send time and the connection goes to the address
that was checked (a DNS answer that changes in between — rebinding — gains nothing); redirects
are not followed.
"""
from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from engine.errors import InvalidInput

ALLOW_ENV = "JZFLOW_WEBHOOK_ALLOW_HOSTS"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(InvalidInput):
    """The URL's host is (or resolves to) an address outbound requests may not reach."""

    code = "outbound_refused"


def allowed_hosts() -> tuple[str, ...]:
    """Return the administrator's allow-list (JZFLOW_WEBHOOK_ALLOW_HOSTS), lower-cased."""
    return tuple(h.strip().lower() for h in os.environ.get(ALLOW_ENV, "").split(",") if h.strip())


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: a NAT64 gateway turns it into the IPv4 address it ends in
COMPATIBLE = ipaddress.ip_network("::/96")  # IPv4-compatible (deprecated): ::a.b.c.d


def embedded(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address an IPv6 one carries to (mapped, NAT64, 6to4, IPv4-compatible), else None."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64 or (ip in COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def internal(ip: Address) -> bool:
    """True for an address outside the public internet (loopback, private, link-local, reserved, …).

    An IPv6 address that carries an IPv4 one is judged by that one: a NAT64 gateway or 6to4 relay delivers 64:ff9b::a00:1
    to 10.0.0.1. Site-local (fec0::/10, deprecated but still routed inside some networks) is internal too.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:
            return True
        ip = embedded(ip) or ip
    return not ip.is_global or ip.is_multicast


def _listed(host: str, ip: Address | None, allow: Sequence[str]) -> bool:
    for entry in allow:
        if entry == host:
            return True
        if ip is not None and "/" in entry:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        elif ip is not None and _address(entry) == ip:
            return True
    return False


def split(url: str) -> tuple[str, str, int]:
    """Return (scheme, host, port) of an http(s) URL.

    Raises: Refused (not http(s), no host, credentials in the URL, a space or control character in it, a path
    or query not percent-encoded)
    """
    if any(c.isspace() or not c.isprintable() for c in url):
        # http.client refuses to send such a path, and urlsplit drops tabs and line breaks silently (what is sent
        # would not be what was saved): refused here, when the webhook is saved, not at each send.
        raise Refused(f"Webhook 地址不能含空格或控制字符 (no spaces or control characters): {url[:200]!r}", field="url")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"Webhook 地址须为 http(s) 网址 (an http or https URL): {url[:200]!r}", field="url")
    if parts.username or parts.password:
        raise Refused("Webhook 地址不能包含用户名或密码 (no credentials in the URL)", field="url")
    if not (parts.path + parts.query).isascii():
        raise Refused(f"Webhook 路径须先百分号编码 (percent-encode the path and query): {url[:200]!r}", field="url")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused(f"Webhook 端口无效 (invalid port): {url[:200]!r}", field="url") from None
    return parts.scheme, parts.hostname.lower(), port


def resolve(host: str, port: int) -> list[Address]:
    """Return every address the host resolves to (a literal resolves to itself)."""
    literal = _address(host)
    if literal is not None:
        return [literal]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found = [_address(str(info[4][0])) for info in infos]
    return [ip for ip in found if ip is not None]


def check(url: str, *, allow: Sequence[str] | None = None, strict: bool = True) -> list[Address]:
    """Return the addresses to connect to for the URL, all of them permitted.

    strict=False (when a webhook is saved): a name that does not resolve yet passes; it is checked
    again when something is sent.

    Raises: Refused
    """
    allow = allowed_hosts() if allow is None else allow
    _scheme, host, port = split(url)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        if not strict:
            return []
        raise Refused(f"无法解析 Webhook 主机 (cannot resolve {host}): {exc}", field="url") from None
    if not addresses:
        if strict:
            raise Refused(f"无法解析 Webhook 主机 (cannot resolve {host})", field="url")
        return []
    for ip in addresses:
        if internal(ip) and not _listed(host, ip, allow):
            raise Refused(f"Webhook 地址指向内部网络，已拒绝 ({host} → {ip} is not a public address; "
                          f"an administrator may allow it in {ALLOW_ENV})", field="url")
    return addresses


def post_json(url: str, body: bytes, *, timeout: float = 10.0, deadline: float | None = None,
              headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """POST a JSON body to a checked URL, connecting to the address that was checked; return the status and the first
    64 KB of the answer (a group robot answers 200 whatever happened, and says in its body).

    `timeout` bounds each step; `deadline` (default 3 × timeout) the whole exchange: a receiver answering a byte at a
    time meets every step's timeout, and held the outbox worker (and, its lease passed, the next) as long as it liked.
    At the deadline the socket is shut, and the read under way fails.

    Raises: Refused, OSError, http.client.HTTPException
    """
    addresses = check(url)
    scheme, host, port = split(url)
    pinned = str(addresses[0])
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout)  # TLS checks the name, not the address
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def connect_pinned(_address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        return socket.create_connection((pinned, port), *args, **kwargs)

    conn._create_connection = connect_pinned  # type: ignore[attr-defined]
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    fired = threading.Event()  # set before the socket is shut: a read it ended (an EOF, not an error) is not an answer

    def shut() -> None:
        fired.set()
        _shut(conn)

    watchdog = threading.Timer(deadline if deadline is not None else 3 * timeout, shut)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json; charset=utf-8",
                                                       "User-Agent": "jzflow-webhook", **(headers or {})})
        response = conn.getresponse()
        answer = response.read(64 * 1024)
        # Not the timer thread's being alive: it still is for a moment after it shut the socket, and the headers cut
        # off there read as complete (http.client takes the EOF for their end), so a dribbled answer passed as a 200.
        if fired.is_set():
            raise TimeoutError("webhook answer took longer than its deadline")
        return int(response.status), answer
    finally:
        watchdog.cancel()
        conn.close()


def _shut(conn: http.client.HTTPConnection) -> None:
    # From the watchdog's thread: shutting the socket wakes the sender's blocked read (closing it would not).
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


__all__ = ["ALLOW_ENV", "Refused", "allowed_hosts", "check", "embedded", "internal", "post_json", "resolve", "split"]
