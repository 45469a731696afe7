"""Webhook targets that hide an internal IPv4 address inside an IPv6 one (NAT64, 6to4, IPv4-compatible), or use the
deprecated site-local range, are refused like the IPv4 address itself; public ones inside them still pass. A receiver
that answers a byte at a time cannot hold the sender past its deadline."""
from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest

from engine.notify import outbound

EMBEDDED = ["http://[64:ff9b::7f00:1]/x",       # NAT64 well-known prefix → 127.0.0.1
            "http://[64:ff9b::a9fe:a9fe]/x",    # NAT64 → 169.254.169.254 (cloud metadata)
            "http://[64:ff9b::a00:1]/x",        # NAT64 → 10.0.0.1
            "http://[2002:7f00:1::]/x",         # 6to4 → 127.0.0.1
            "http://[2002:c0a8:101::1]/x",      # 6to4 → 192.168.1.1
            "http://[::7f00:1]/x",              # IPv4-compatible → 127.0.0.1
            "http://[::a9fe:a9fe]/x",           # IPv4-compatible → 169.254.169.254
            "http://[fec0::1]/x"]               # site-local (deprecated, still routed inside some networks)


@pytest.mark.parametrize("url", EMBEDDED)
def test_an_internal_ipv4_address_inside_an_ipv6_one_is_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(outbound.ALLOW_ENV, raising=False)
    with pytest.raises(outbound.Refused, match="not a public address"):
        outbound.check(url)


@pytest.mark.parametrize("url", ["http://[64:ff9b::808:808]/x", "http://[2002:808:808::1]/x",
                                 "http://[2606:4700:4700::1111]/x", "http://8.8.8.8/x"])
def test_a_public_address_inside_an_ipv6_one_still_passes(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(outbound.ALLOW_ENV, raising=False)
    assert outbound.check(url)


# -- a receiver that answers a byte at a time -------------------------------------------------------------------

class Dribbler:
    """An HTTP server on loopback that takes the request, then answers its header a byte every 0.1 s for `seconds`:
    each read returns well within any timeout, and the answer never ends."""

    def __init__(self, seconds: float = 8.0) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.port = int(self.server.getsockname()[1])
        self.seconds = seconds
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        with self.server:
            conn, _ = self.server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            end = time.monotonic() + self.seconds
            try:
                while time.monotonic() < end:
                    conn.sendall(b"a")
                    time.sleep(0.1)
            except OSError:
                return  # the sender gave up: what it should do


def test_a_receiver_answering_a_byte_at_a_time_cannot_hold_the_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read returned within the timeout, so a webhook's receiver dribbling its answer held an outbox worker (and,
    once the lease passed, the next one) for as long as it liked."""
    monkeypatch.setenv(outbound.ALLOW_ENV, "127.0.0.1")
    slow = Dribbler()
    outcome: list[BaseException | int] = []

    def send() -> None:
        try:
            outcome.append(outbound.post_json(f"http://127.0.0.1:{slow.port}/hook", b"{}", timeout=0.5))
        except BaseException as exc:
            outcome.append(exc)
    started = time.monotonic()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    sender.join(timeout=6)
    assert not sender.is_alive(), "the sender was still reading the answer"
    assert time.monotonic() - started < 4
    assert outcome and isinstance(outcome[0], (OSError, http.client.HTTPException))


@pytest.mark.parametrize("url", ["https://example.com/a b", "https://example.com/hook\r\nX-Injected: 1",
                                 "https://exa\tmple.com/hook", "https://example.com/\x7f", "https://example.com/\u3000",
                                 "https://example.com/hook ", "https://example.com/机器人?key=1"])
def test_a_url_with_spaces_or_control_characters_is_refused_when_saved(url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """http.client refuses to send such a path (or Python drops the characters silently, so what is sent is not
    what was saved): saved, every notification failed ten times and was given up."""
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(2, 1, 6, "", ("93.184.216.34", 443))])
    with pytest.raises(outbound.Refused) as caught:
        outbound.check(url, strict=False)
    assert caught.value.details["field"] == "url"
