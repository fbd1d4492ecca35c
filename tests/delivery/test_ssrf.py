from __future__ import annotations

import socket

import pytest

from apps.delivery.ssrf import UnsafeURL, check_url, parse_allowed_networks


def fake_resolver(*addresses: str):
    """A getaddrinfo stand-in answering ``addresses`` for any name, recording the calls."""
    calls = []

    def resolve(host, port, type=0, **kw):
        calls.append((host, port))
        out = []
        for a in addresses:
            family = socket.AF_INET6 if ":" in a else socket.AF_INET
            sockaddr = (a, port, 0, 0) if family == socket.AF_INET6 else (a, port)
            out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return out

    resolve.calls = calls
    return resolve


def failing_resolver(host, port, type=0, **kw):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_public_https_passes_and_returns_pinned_addresses():
    t = check_url("https://hooks.example.com/x?y=1", resolver=fake_resolver("93.184.216.34", "2606:2800:220:1::1"))
    assert (t.host, t.port, t.scheme) == ("hooks.example.com", 443, "https")
    assert t.addresses == ("93.184.216.34", "2606:2800:220:1::1")


def test_explicit_port_and_idna_host():
    r = fake_resolver("93.184.216.34")
    t = check_url("https://bücher.example:8443/", resolver=r)
    assert (t.host, t.port) == ("xn--bcher-kva.example", 8443)
    assert r.calls == [("xn--bcher-kva.example", 8443)]


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "CGNAT"),
        ("169.254.169.254", "link-local"),
        ("169.254.1.1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "address"),
        ("192.0.2.1", "address"),  # documentation range
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::1", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 wrapping 169.254.169.254
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 wrapping 169.254.169.254
    ],
)
def test_blocked_ranges(address, reason):
    with pytest.raises(UnsafeURL, match=reason) as exc:
        check_url("https://evil.example/", resolver=fake_resolver(address))
    assert address in exc.value.message
    assert not exc.value.transient


@pytest.mark.parametrize("address, phrase", [("0.0.0.0", "an unspecified address"), ("10.0.0.1", "a private address")])
def test_the_refusal_reads_as_english(address, phrase):
    with pytest.raises(UnsafeURL, match=phrase):
        check_url("https://evil.example/", resolver=fake_resolver(address))


def test_nat64_and_6to4_to_public_ipv4_pass():
    check_url("https://v4only.example/", resolver=fake_resolver("64:ff9b::5db8:d822"))  # 93.184.216.34
    check_url("https://v4only.example/", resolver=fake_resolver("2002:5db8:d822::1"))


def test_one_bad_address_among_good_ones_blocks():
    with pytest.raises(UnsafeURL, match="loopback"):
        check_url("https://mixed.example/", resolver=fake_resolver("93.184.216.34", "127.0.0.1"))


def test_hostname_resolving_to_loopback_is_blocked():
    with pytest.raises(UnsafeURL, match=r"localtest\.me resolves to 127\.0\.0\.1, a loopback"):
        check_url("https://localtest.me/hook", resolver=fake_resolver("127.0.0.1"))


def test_dns_failure_is_a_refusal():
    with pytest.raises(UnsafeURL, match="could not resolve host 'nx.example'") as exc:
        check_url("https://nx.example/", resolver=failing_resolver)
    assert exc.value.transient


def test_empty_dns_answer_is_a_refusal():
    with pytest.raises(UnsafeURL, match="could not resolve"):
        check_url("https://nx.example/", resolver=fake_resolver())


def test_http_refused_by_default_without_dns():
    r = fake_resolver("93.184.216.34")
    with pytest.raises(UnsafeURL, match="'http' is not allowed"):
        check_url("http://hooks.example.com/", resolver=r)
    assert r.calls == []


def test_http_allowed_with_allow_http():
    t = check_url("http://hooks.example.com/", allow_http=True, resolver=fake_resolver("93.184.216.34"))
    assert (t.scheme, t.port) == ("http", 80)


def test_allowed_network_opens_loopback_and_plain_http():
    nets = parse_allowed_networks("127.0.0.0/8")
    t = check_url("http://127.0.0.1:8099/hook", allowed_networks=nets, resolver=fake_resolver("127.0.0.1"))
    assert t.addresses == ("127.0.0.1",)
    # IPv4-mapped form of an allowed address is allowed as well.
    check_url("https://x.test/", allowed_networks=nets, resolver=fake_resolver("::ffff:127.0.0.1"))


def test_allowed_network_does_not_open_other_ranges_or_http_to_public():
    nets = parse_allowed_networks("127.0.0.0/8")
    with pytest.raises(UnsafeURL, match="private"):
        check_url("https://x.test/", allowed_networks=nets, resolver=fake_resolver("10.0.0.1"))
    with pytest.raises(UnsafeURL, match="'http' is not allowed"):
        check_url("http://x.test/", allowed_networks=nets, resolver=fake_resolver("93.184.216.34"))


def test_real_resolver_with_ip_literal():
    with pytest.raises(UnsafeURL, match="loopback"):
        check_url("https://127.0.0.1/")
    with pytest.raises(UnsafeURL, match="loopback"):
        check_url("https://[::1]:8443/")
    # Odd IPv4 spellings resolve to loopback too and are judged by the resolved address.
    with pytest.raises(UnsafeURL, match="loopback"):
        check_url("https://2130706433/")


@pytest.mark.parametrize(
    "url, match",
    [
        ("ftp://example.com/", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://example.com/", "scheme"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://user@example.com/", "credentials"),
        ("https:///path", "no host"),
        ("https://example.com:99999/", "invalid URL"),
        ("example.com/hook", "scheme"),
    ],
)
def test_malformed_urls(url, match):
    with pytest.raises(UnsafeURL, match=match):
        check_url(url, resolver=fake_resolver("93.184.216.34"))


def test_parse_allowed_networks():
    nets = parse_allowed_networks("127.0.0.0/8, ::1/128,,10.0.0.5")
    assert [str(n) for n in nets] == ["127.0.0.0/8", "::1/128", "10.0.0.5/32"]
    assert [str(n) for n in parse_allowed_networks(["192.168.0.1/16"])] == ["192.168.0.0/16"]
    assert parse_allowed_networks("") == [] and parse_allowed_networks(None) == []


@pytest.mark.parametrize("value", ["localhost", "127.0.0.0/33", "10.0.0.0/8,nope", "::1/129"])
def test_parse_allowed_networks_errors_name_the_entry(value):
    with pytest.raises(ValueError, match="WEBHOOK_ALLOWED_NETWORKS: '"):
        parse_allowed_networks(value)


# Every range of the IANA special-purpose registries the guard must refuse, and the global unicast
# addresses (bare or wrapped around a public IPv4) it must let through.
ADDRESS_TABLE = [
    ("93.184.216.34", True),
    ("8.8.8.8", True),
    ("2606:2800:220:1::1", True),
    ("2a00:1450:4001:80b::200e", True),
    ("::ffff:8.8.8.8", True),  # mapped: judged on the IPv4 inside
    ("64:ff9b::808:808", True),  # NAT64 to 8.8.8.8
    ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
    ("0.1.2.3", False),
    ("100.64.0.1", False),
    ("100.127.255.254", False),
    ("192.0.0.8", False),
    ("192.0.2.10", False),
    ("192.88.99.1", False),
    ("198.18.0.1", False),
    ("198.19.255.1", False),
    ("198.51.100.7", False),
    ("203.0.113.9", False),
    ("240.0.0.1", False),
    ("255.255.255.255", False),
    ("::", False),
    ("::1", False),
    ("::ffff:192.168.0.1", False),
    ("::ffff:0.0.0.0", False),
    ("64:ff9b::7f00:1", False),  # NAT64 to 127.0.0.1
    ("64:ff9b::c633:6407", False),  # NAT64 to 198.51.100.7
    ("64:ff9b:1::808:808", False),  # local-use NAT64
    ("100::1", False),
    ("2001::1", False),  # Teredo
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", False),  # Teredo to a public client
    ("2001:20::1", False),  # ORCHIDv2, inside 2001::/23
    ("2001:db8::1", False),
    ("2002:c000:0201::1", False),  # 6to4 of 192.0.2.1
    ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
    ("3fff::1", False),
    ("3fff:fff::1", False),
    ("fc00::1", False),
    ("fdff::1", False),
    ("fe80::1", False),
    ("febf::1", False),
    ("fec0::1", False),
    ("feff::1", False),
    ("ff02::1", False),
    ("::a00:1", False),  # deprecated IPv4-compatible form
    ("4000::1", False),  # outside 2000::/3: not allocated as global unicast
]


@pytest.mark.parametrize("address, allowed", ADDRESS_TABLE)
def test_address_table(address, allowed):
    resolver = fake_resolver(address)
    if allowed:
        assert check_url("https://hook.example/", resolver=resolver).addresses == (address,)
    else:
        with pytest.raises(UnsafeURL) as exc:
            check_url("https://hook.example/", resolver=resolver)
        assert address in exc.value.message and "address" in exc.value.message


def test_refusal_names_the_range():
    for address, name in [("fec0::1", "deprecated site-local"), ("3fff::1", "documentation"),
                          ("198.51.100.7", "documentation"), ("64:ff9b:1::1", "local-use NAT64")]:
        with pytest.raises(UnsafeURL, match=name):
            check_url("https://hook.example/", resolver=fake_resolver(address))


def test_allowed_networks_still_open_special_ranges():
    """WEBHOOK_ALLOWED_NETWORKS stays the operator's way in (tests and the demo use loopback)."""
    nets = parse_allowed_networks("127.0.0.0/8,fec0::/10,198.18.0.0/15")
    for address in ("127.0.0.1", "fec0::5", "198.18.0.9"):
        check_url("http://hook.example/", allowed_networks=nets, resolver=fake_resolver(address))
    with pytest.raises(UnsafeURL, match="documentation"):
        check_url("https://hook.example/", allowed_networks=nets, resolver=fake_resolver("3fff::1"))
