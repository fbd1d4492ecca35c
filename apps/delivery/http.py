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

Deadline: ``timeout`` is a total wall-clock budget for connect, TLS, headers and body, not requests'
per-read timeout (a receiver dripping one header byte at a time would never trip that). Every
socket our pools open or reuse is registered with ``apps.delivery.deadline.watchdog``, which shuts it
down when the budget is spent; the call then raises ``DeadlineExceeded`` (a ``requests.ReadTimeout``).
``post_form`` gives operator-configured URLs (the SMS provider) the same deadline and cap, unpinned.

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
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from apps.delivery.deadline import Deadline, watch_socket, watchdog
from apps.delivery.ssrf import ResolvedTarget

_DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = "AlertCenter-Webhook/1.0"
MAX_RESPONSE_BYTES = 64 * 1024  # default cap on response bytes read (DELIVERY_MAX_RESPONSE_BYTES)


class DeadlineExceeded(requests.exceptions.ReadTimeout):
    """The exchange did not finish within its total deadline."""


class _WatchedMixin:
    """urllib3 connection whose socket the enclosing ``watchdog`` block shuts down at its deadline."""

    def _new_conn(self):  # type: ignore[no-untyped-def]
        sock = super()._new_conn()  # type: ignore[misc]
        watch_socket(sock)
        return sock

    def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.sock is not None:  # type: ignore[attr-defined]  # kept alive from an earlier exchange
            watch_socket(self.sock)  # type: ignore[attr-defined]
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_WatchedMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedMixin, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    """Adapter whose connections are subject to the enclosing ``watchdog`` deadline."""

    def __init__(self, pool_maxsize: int = 1) -> None:
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _PinnedAdapter(_WatchedAdapter):
    """Adapter that presents ``server_hostname`` (SNI + certificate name) instead of the URL's IP."""

    def __init__(self, server_hostname: str, pool_maxsize: int = 1) -> None:
        self._server_hostname = server_hostname
        super().__init__(pool_maxsize=pool_maxsize)

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


def _read_capped(response: requests.Response, max_body: int, keep_alive: bool) -> None:
    """Read at most ``max_body`` bytes into ``response.content`` and release the connection.

    A failure while reading (including the deadline) leaves the body as read so far: the status
    line already arrived and is what counts. The connection goes back to the pool only when the body
    was read to its end, so unread bytes never reach the next request.
    """
    chunks: list[bytes] = []
    reusable = False
    try:
        left = max_body
        while left > 0:
            chunk = response.raw.read(min(left, 16384), decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        reusable = keep_alive and getattr(response.raw, "length_remaining", None) == 0
    except Exception:  # noqa: BLE001 - see the docstring
        reusable = False
    finally:
        if not reusable:
            response.raw.close()
        response._content_consumed = True
        response.close()  # returns a reusable connection to the pool, closed ones are dropped
    response._content = b"".join(chunks)


def post_pinned(
    target: ResolvedTarget,
    url: str,
    *,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    deadline: Deadline | None = None,
    verify: bool | str = True,
    max_body: int = MAX_RESPONSE_BYTES,
    keep_alive: bool = False,
) -> requests.Response:
    """POST ``body`` to ``url`` over a connection to ``target.addresses[0]``; never follow redirects.

    ``timeout`` is the total budget in seconds (see the module docstring); pass ``deadline`` instead
    when the budget started earlier (the caller's DNS check). Returns the response with ``content``
    holding at most ``max_body`` bytes. Raises ``DeadlineExceeded`` when the budget runs out before
    the status line, or other ``requests.RequestException`` subclasses (ConnectTimeout,
    ConnectionError, SSLError) on transport failure; HTTP error statuses are returned, not raised.
    ``verify`` is requests' option (True or a CA bundle path); turning it off is not offered on purpose.
    """
    deadline = deadline or Deadline(timeout)
    request_url = pinned_url(target, url)
    send_headers = CaseInsensitiveDict({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    send_headers.update(headers)
    send_headers["Host"] = _host_header(target)  # always ours: a caller-provided Host could lie
    reused = keep_alive and (target.scheme, target.host) in _sessions.by_host
    session = _kept_session(target) if keep_alive else _new_session(target.host)

    def post(session: requests.Session) -> requests.Response:
        return _send_within(session, request_url, deadline, body=body, headers=send_headers, verify=verify)

    with watchdog(deadline) as dog:
        try:
            try:
                response = post(session)
            except requests.ConnectionError as exc:
                if not reused or isinstance(exc, requests.Timeout) or dog.fired:
                    raise
                # A kept connection the receiver closed while idle: one fresh connection, as any
                # keep-alive client does (receivers dedupe on webhook-id in any case).
                _sessions.by_host.pop((target.scheme, target.host), None)
                session.close()
                session = _kept_session(target)
                response = post(session)
        except Exception as exc:
            if keep_alive:  # a broken kept connection must not be offered again
                _sessions.by_host.pop((target.scheme, target.host), None)
            session.close()
            _raise_if_deadline(exc, dog.fired, deadline)
            raise
        _read_capped(response, max_body, keep_alive and not dog.fired)
    if not keep_alive:
        session.close()
    response.url = url  # report the URL the tenant configured, not the pinned IP form
    return response


def post_form(
    url: str,
    *,
    data: Mapping[str, str],
    auth: tuple[str, str],
    timeout: float,
    max_body: int = MAX_RESPONSE_BYTES,
) -> requests.Response:
    """POST a form to an operator-configured ``url`` (no SSRF check, no pinning) with the same total
    deadline, response cap, no redirects and no environment proxies as ``post_pinned``."""
    deadline = Deadline(timeout)
    session = requests.Session()
    session.trust_env = False
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    with session, watchdog(deadline) as dog:
        try:
            response = _post_within(session, url, deadline, data=dict(data), auth=auth,
                                    headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        except Exception as exc:
            _raise_if_deadline(exc, dog.fired, deadline)
            raise
        _read_capped(response, max_body, keep_alive=False)
    return response


def _post_within(session: requests.Session, url: str, deadline: Deadline, **kwargs: object) -> requests.Response:
    left = deadline.remaining()
    if left <= 0:
        raise DeadlineExceeded(f"no time left of the {deadline.seconds:g} s deadline")
    # Per-read timeouts at the remaining budget; the watchdog bounds the exchange as a whole.
    return session.post(url, timeout=(left, left), allow_redirects=False, stream=True, **kwargs)


def _send_within(session: requests.Session, url: str, deadline: Deadline, *, body: bytes,
                 headers: Mapping[str, str], verify: bool | str) -> requests.Response:
    """``_post_within`` for a body already in bytes, handed straight to the session's adapter: the
    same request on the wire (the session's default headers under ours, no proxies, no redirects),
    without ``Session.request``'s merging of cookies, hooks, environment settings and redirect
    handling, which cost as much CPU as the send itself in a storm (bench/storm.py under py-spy)."""
    left = deadline.remaining()
    if left <= 0:
        raise DeadlineExceeded(f"no time left of the {deadline.seconds:g} s deadline")
    merged = CaseInsensitiveDict(session.headers)
    merged.update(headers)
    prepared = requests.PreparedRequest()
    prepared.prepare_method("POST")
    prepared.prepare_url(url, None)
    prepared.prepare_headers(merged)
    prepared.prepare_body(body, None)
    return session.get_adapter(url).send(prepared, stream=True, timeout=(left, left), verify=verify, cert=None,
                                         proxies={})


def _raise_if_deadline(exc: BaseException, fired: bool, deadline: Deadline) -> None:
    """Report a failure caused by the deadline (the watchdog shut the socket, or a read timed out at
    it) as ``DeadlineExceeded``; a connect timeout stays what it is."""
    if isinstance(exc, (DeadlineExceeded, requests.ConnectTimeout)):
        return
    if fired or (isinstance(exc, requests.Timeout) and deadline.expired):
        raise DeadlineExceeded(f"no complete response within the {deadline.seconds:g} s deadline") from exc
