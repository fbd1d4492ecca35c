"""The client's address, for throttles and the audit trail.

``REMOTE_ADDR`` is the peer of the TCP connection. Behind a proxy that peer is the proxy, so every
client would share one address (and one throttle). ``X-Forwarded-For`` names the real client, but
anyone can send it, so it is believed only hop by hop: starting at ``REMOTE_ADDR`` and walking the
header from the right, each hop is accepted only while the previous one is a trusted proxy
(``TRUSTED_PROXIES``). The first untrusted hop is the client. With no trusted proxies (the
default) the header is ignored.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    """CIDR strings (a bare address means that one host) -> networks; ValueError names a bad one."""
    networks = []
    for value in values:
        value = value.strip()
        if not value:
            continue
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
    return networks


def _address(value: str) -> IPAddress | None:
    """An address from one hop, tolerating a port ("1.2.3.4:80", "[::1]:80"); None if it is not one."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    return address.ipv4_mapped or address if address.version == 6 else address


def _trusted(address: IPAddress) -> bool:
    networks = settings.TRUSTED_PROXIES
    if networks and isinstance(networks[0], str):  # set as strings (e.g. override_settings)
        networks = parse_networks(networks)
    return any(address in network for network in networks)


def client_ip(request: HttpRequest | None) -> str:
    """The client's address as text, or "" when unknown (no request, unparsable REMOTE_ADDR)."""
    if request is None:
        return ""
    peer = _address(request.META.get("REMOTE_ADDR") or "")
    if peer is None:
        return ""
    if not settings.TRUSTED_PROXIES:
        return str(peer)
    hops = [h for h in (request.META.get("HTTP_X_FORWARDED_FOR") or "").split(",") if h.strip()]
    client = peer
    while _trusted(client) and hops:
        previous = _address(hops.pop())
        if previous is None:  # garbage in the chain: stop at the last hop we could verify
            break
        client = previous
    return str(client)
