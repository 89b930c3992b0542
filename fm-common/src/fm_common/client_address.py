"""The address of the client behind a request, for per-address limits.

Behind the gateway every request comes from the gateway's address, so the client's
address is read from `X-Forwarded-For`, but only when the direct peer is a trusted proxy;
the rightmost address not itself a trusted proxy is the client (anything left of it could
have been written by the client).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from fastapi import Request

# Loopback (`make run`) and private networks (docker compose, Kubernetes), where the
# gateway is another container; services are never published outside them.
DEFAULT_TRUSTED_PROXIES = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)


def _networks(
    trusted: Iterable[str],
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(t, strict=False) for t in trusted]


def _is_trusted(addr: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(
    request: Request, trusted_proxies: Iterable[str] = DEFAULT_TRUSTED_PROXIES
) -> str:
    """The client's IP address (as text); 'unknown' when the server does not know it."""
    peer = request.client.host if request.client else "unknown"
    networks = _networks(trusted_proxies)
    if not _is_trusted(peer, networks):
        return peer
    forwarded = request.headers.get("x-forwarded-for")
    if not forwarded:
        return peer
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain is not trusted at all
        if not _is_trusted(hop, networks):
            return hop
    return hops[0] if hops else peer
