"""HTTP POST pinned to an address checked by ``apps.delivery.ssrf.check_url``.

Why: resolving the host again at connect time would let a hostile DNS server answer a public
address to the check and ``127.0.0.1`` to the connection (DNS rebinding). So we never resolve again:
the request goes to ``https://<checked IP>:<port>/path`` and the original name is kept where it
matters:

* ``Host`` header = the original host (and port when not the default), so virtual hosts work;
* TLS: urllib3's ``server_hostname`` pool option (set through requests' documented extension point
  ``HTTPAdapter.build_connection_pool_key_attributes``) sends the original name as SNI, and the
  ``ssl`` module verifies the certificate chain and matches the certificate against that same name
  (``check_hostname``), exactly as for an unpinned request.

Also: redirects are never followed (a redirect could point anywhere, e.g. to cloud metadata);
``trust_env`` is off so ``HTTPS_PROXY``/``.netrc`` from the environment cannot reroute the request or
add credentials; at most ``max_body`` bytes of the response are read, so a hostile endpoint cannot
make us download a huge body. Only the first resolved address is tried.

Keep-alive: ``post_pinned(..., keep_alive=True)`` reuses a per-thread session per checked host name
(its adapter presents that name), so repeated sends to one endpoint reuse the TCP/TLS connection to
the checked address. The pool key includes the address and the name, so a connection is only ever
reused for the same address the check just approved; a response whose body was not read to its end
closes its connection instead of returning it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from apps.delivery.ssrf import ResolvedTarget

_DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = "AlertCenter-Webhook/1.0"


class _PinnedAdapter(HTTPAdapter):
    """Adapter that presents ``server_hostname`` (SNI + certificate name) instead of the URL's IP."""

    def __init__(self, server_hostname: str, pool_maxsize: int = 1) -> None:
        self._server_hostname = server_hostname
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):  # type: ignore[override]
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") == "https":
            # Part of urllib3's pool key, so a pool is never shared across different names.
            pool_kwargs["server_hostname"] = self._server_hostname
        return host_params, pool_kwargs


def _host_header(target: ResolvedTarget) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != _DEFAULT_PORTS[target.scheme]:
        host = f"{host}:{target.port}"
    return host


def pinned_url(target: ResolvedTarget, url: str) -> str:
    """Return ``url`` rewritten to the first checked address (path and query kept, fragment dropped).

    Raises ``ValueError`` when ``url`` is not the URL ``target`` was checked for (host/port/scheme).
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").encode("idna").decode("ascii")
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    if (host, port, scheme) != (target.host, target.port, target.scheme):
        raise ValueError(f"URL {url!r} does not match the checked target {target.host}:{target.port}")
    ip = target.addresses[0]
    ip_host = f"[{ip}]" if ":" in ip else ip
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return f"{target.scheme}://{ip_host}:{target.port}{path}"


MAX_KEPT_SESSIONS = 64  # per thread; the least recently used is closed beyond this


class _Sessions(threading.local):
    def __init__(self) -> None:
        self.by_host: OrderedDict[tuple[str, str], requests.Session] = OrderedDict()


_sessions = _Sessions()


def _new_session(server_hostname: str, pool_maxsize: int = 1) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = _PinnedAdapter(server_hostname, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _kept_session(target: ResolvedTarget) -> requests.Session:
    key = (target.scheme, target.host)
    session = _sessions.by_host.get(key)
    if session is None:
        session = _sessions.by_host[key] = _new_session(target.host)
        while len(_sessions.by_host) > MAX_KEPT_SESSIONS:
            _sessions.by_host.popitem(last=False)[1].close()
    else:
        _sessions.by_host.move_to_end(key)
    return session


def close_kept_sessions() -> None:
    """Close this thread's kept connections (tests; a worker process exiting)."""
    while _sessions.by_host:
        _sessions.by_host.popitem()[1].close()


def post_pinned(
    target: ResolvedTarget,
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    verify: bool | str = True,
    max_body: int = 1024,
    keep_alive: bool = False,
) -> requests.Response:
    """POST ``body`` to ``url`` over a connection to ``target.addresses[0]``; never follow redirects.

    Returns the response with ``content`` holding at most ``max_body`` bytes (the connection is
    closed; a failure while reading the body leaves it empty, as the status already arrived).
    Raises ``requests.RequestException`` subclasses (Timeout, ConnectionError, SSLError) on
    transport failure; HTTP error statuses are returned, not raised. ``verify`` is requests' option
    (True or a CA bundle path); turning it off is not offered on purpose.
    """
    request_url = pinned_url(target, url)
    send_headers = CaseInsensitiveDict({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    send_headers.update(headers)
    send_headers["Host"] = _host_header(target)  # always ours: a caller-provided Host could lie
    reused = keep_alive and (target.scheme, target.host) in _sessions.by_host
    session = _kept_session(target) if keep_alive else _new_session(target.host)

    def post(session: requests.Session) -> requests.Response:
        return session.post(request_url, data=body, headers=send_headers, timeout=timeout,
                            allow_redirects=False, stream=True, verify=verify)

    try:
        try:
            response = post(session)
        except requests.ConnectionError as exc:
            if not reused or isinstance(exc, requests.Timeout):
                raise
            # A kept connection the receiver closed while idle: one fresh connection, as any
            # keep-alive client does (receivers dedupe on webhook-id in any case).
            _sessions.by_host.pop((target.scheme, target.host), None)
            session.close()
            session = _kept_session(target)
            response = post(session)
    except Exception:
        if keep_alive:  # a broken kept connection must not be offered again
            _sessions.by_host.pop((target.scheme, target.host), None)
        session.close()
        raise
    try:
        data = response.raw.read(max_body, decode_content=True) or b""
        # Read to its end: the connection can serve the next request (keep-alive).
        reusable = keep_alive and getattr(response.raw, "length_remaining", None) == 0
    except Exception:  # noqa: BLE001 - the status line already arrived and is what counts
        data, reusable = b"", False
    finally:
        if not reusable:
            response.raw.close()  # unread bytes left: never hand this connection to another request
        response._content_consumed = True
        response.close()  # returns a reusable connection to the pool, closed ones are dropped
    if not keep_alive:
        session.close()
    # Materialise the capped body so callers can use .content/.text as usual.
    response._content = data
    response.url = url  # report the URL the tenant configured, not the pinned IP form
    return response
