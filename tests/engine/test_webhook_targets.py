"""Webhook targets that hide an internal IPv4 address inside an IPv6 one (NAT64, 6to4, IPv4-compatible), or use the
deprecated site-local range, are refused like the IPv4 address itself; public ones inside them still pass."""
from __future__ import annotations

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
