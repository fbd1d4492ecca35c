"""SSRF guard for tenant-supplied webhook URLs.

``check_url`` parses the URL, resolves the host once and returns a ``ResolvedTarget`` whose addresses
are the only ones the caller may connect to (``apps.delivery.http.post_pinned`` connects to them
directly, so a DNS answer that changes between check and connect, i.e. DNS rebinding, cannot reach a
different host). It is called when a URL is saved and again at every send.

Policy:

* scheme ``https``; ``http`` only when ``allow_http`` is set *or* every resolved address lies inside
  ``allowed_networks``. Allowed networks are an explicit operator opt-in for internal receivers
  (tests and the demo use ``http://127.0.0.1`` through ``WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8``),
  which rarely have TLS; a public host never gets plain text unless ``allow_http``.
* no userinfo (``user:pass@``): credentials in URLs leak into logs, and ``a@b`` tricks readers.
* every resolved address, after unwrapping IPv4-mapped (``::ffff:a.b.c.d``), 6to4 (``2002::/16``),
  NAT64 (``64:ff9b::/96``) and Teredo forms, must be global unicast: loopback, private, CGNAT,
  link-local (incl. 169.254.169.254 metadata), multicast, reserved, unspecified, documentation and
  the other special-purpose ranges of the IANA registries (``SPECIAL_PURPOSE``, listed explicitly so
  the answer does not depend on the Python version's ``ipaddress`` tables), and for IPv6 anything
  outside ``2000::/3``, are refused unless the address (wrapped or unwrapped) is inside an allowed
  network.
* a name that does not resolve is refused (``UnsafeURL`` with ``transient=True``), never passed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., list]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")

# IANA IPv4/IPv6 Special-Purpose Address Registries: ranges that are not global unicast. The IPv6
# wrappers (::ffff:0:0/96, 64:ff9b::/96, 2002::/16) are not here: their embedded IPv4 is judged.
SPECIAL_PURPOSE: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), name)
    for net, name in (
        ("0.0.0.0/8", "this-network"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation (TEST-NET-1)"),
        ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation (TEST-NET-2)"),
        ("203.0.113.0/24", "documentation (TEST-NET-3)"),
        ("240.0.0.0/4", "reserved"),
        ("255.255.255.255/32", "limited broadcast"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        # All of it, Teredo (2001::/32) included: the few global sub-blocks are not webhook receivers.
        ("2001::/23", "IETF protocol assignment"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique-local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "deprecated site-local"),
        ("ff00::/8", "multicast"),
    )
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsafeURL(Exception):
    """The URL must not be requested. ``transient`` is True when retrying later may help (DNS)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


@dataclass(frozen=True)
class ResolvedTarget:
    """A checked URL: connect only to ``addresses`` (first one first), present ``host`` for TLS/Host."""

    host: str
    port: int
    scheme: str
    addresses: tuple[str, ...]


def parse_allowed_networks(value: str | Iterable[str] | None) -> list[IPNetwork]:
    """Parse ``"127.0.0.0/8,::1/128"`` (or a list of such strings) into networks.

    Host bits are tolerated (``127.0.0.1/8`` means ``127.0.0.0/8``), matching settings.py.
    Raises ``ValueError`` naming the bad entry.
    """
    if value is None:
        return []
    items = value.replace(";", ",").split(",") if isinstance(value, str) else list(value)
    networks: list[IPNetwork] = []
    for item in items:
        if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            networks.append(item)
            continue
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise ValueError(f"WEBHOOK_ALLOWED_NETWORKS: {text!r} is not an IP network ({exc})") from exc
    return networks


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address an IPv6 address tunnels to, if any (mapped, 6to4, NAT64, Teredo)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.teredo is not None:
        return ip.teredo[1]  # (server, client): traffic ends at the client
    return None


def _blocked_reason(ip: IPAddress) -> str | None:
    """Name the reason ``ip`` is not a safe destination, or None when it is global unicast."""
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
    )
    for name, hit in checks:
        if hit:
            return name
    # Before ipaddress' is_reserved/is_private, which lump documentation, NAT64 etc. together.
    for net, name in SPECIAL_PURPOSE:
        if ip.version == net.version and ip in net:
            return name
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _GLOBAL_UNICAST_V6:
        return "non-global-unicast"
    # Catches anything the table misses on Python versions with newer registries.
    return "non-global" if not ip.is_global else None


def _in_networks(ip: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def _resolve(host: str, port: int, resolver: Resolver) -> tuple[str, ...]:
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
        raise UnsafeURL(f"could not resolve host {host!r}: {exc}", transient=True) from exc
    addresses: list[str] = []
    for info in infos or ():
        addr = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        if addr not in addresses:
            addresses.append(addr)
    if not addresses:
        raise UnsafeURL(f"could not resolve host {host!r}: no addresses", transient=True)
    return tuple(addresses)


def check_url(
    url: str,
    *,
    allowed_networks: Iterable[IPNetwork] = (),
    allow_http: bool = False,
    resolver: Resolver = socket.getaddrinfo,
) -> ResolvedTarget:
    """Validate ``url`` and resolve it; raise ``UnsafeURL`` naming the reason when it is refused."""
    allowed = list(allowed_networks)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"invalid URL {url!r}: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UnsafeURL(f"URL scheme {parts.scheme!r} is not allowed (use https)")
    if scheme == "http" and not allow_http and not allowed:
        # Nothing could make plain http acceptable: refuse before touching DNS.
        raise UnsafeURL("URL scheme 'http' is not allowed (use https)")
    if "@" in parts.netloc:
        raise UnsafeURL("URL must not contain credentials (user:password@)")
    host = parts.hostname or ""
    if not host:
        raise UnsafeURL(f"URL {url!r} has no host")
    try:
        # Resolve the IDNA form: that is also what goes on the wire (Host header, SNI).
        host = host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise UnsafeURL(f"invalid host name {host!r}: {exc}") from exc
    port = port or _DEFAULT_PORTS[scheme]

    addresses = _resolve(host, port, resolver)
    all_allowed = True
    for addr in addresses:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError as exc:
            raise UnsafeURL(f"{host} resolved to an unparsable address {addr!r}") from exc
        inner = _embedded_ipv4(ip)
        if _in_networks(ip, allowed) or (inner is not None and _in_networks(inner, allowed)):
            continue
        all_allowed = False
        # Traffic to a mapped/6to4/NAT64 address ends at the embedded IPv4 address, so judge that one
        # (the wrapper prefix itself counts as "reserved" in Python, which would wrongly block a
        # NAT64 route to a public host). Teredo is judged on both: 2001::/32 is not global anyway.
        candidates = (ip, inner) if inner is None or ip.teredo else (inner,)
        for candidate in candidates:
            if candidate is None:
                continue
            reason = _blocked_reason(candidate)
            if reason:
                shown = addr if candidate == ip else f"{addr} (= {candidate})"
                raise UnsafeURL(
                    f"{host} resolves to {shown}, {'an' if reason[0] in 'aeiou' else 'a'} {reason} address; "
                    "only public addresses or WEBHOOK_ALLOWED_NETWORKS may receive webhooks"
                )
    if scheme == "http" and not allow_http and not all_allowed:
        raise UnsafeURL("URL scheme 'http' is not allowed (use https)")
    return ResolvedTarget(host=host, port=port, scheme=scheme, addresses=addresses)
