"""fm_common.client_address: the client's address behind trusted proxies only."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from fm_common.client_address import client_address


def _request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "client": (peer, 5000), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.1", None, "198.51.100.1"),
        # An untrusted peer cannot choose its address.
        ("198.51.100.1", "203.0.113.9", "198.51.100.1"),
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
        # The client may prepend anything; the rightmost untrusted hop is the client.
        ("127.0.0.1", "1.2.3.4, 203.0.113.9", "203.0.113.9"),
        ("127.0.0.1", "203.0.113.9, 127.0.0.1", "203.0.113.9"),
        ("127.0.0.1", "not-an-ip", "127.0.0.1"),
        ("127.0.0.1", None, "127.0.0.1"),
        ("::1", "2001:db8::5", "2001:db8::5"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str):
    assert client_address(_request(peer, forwarded)) == expected


def test_private_networks_are_trusted_by_default_and_the_list_is_configurable():
    # docker compose: the gateway is another container on a private network.
    req = _request("172.18.0.5", "203.0.113.9")
    assert client_address(req) == "203.0.113.9"
    assert client_address(req, ["127.0.0.1/32"]) == "172.18.0.5"
