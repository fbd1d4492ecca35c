"""HTTP POST pinned to an address checked by ``apps.delivery.ssrf.check_url``.

Why: resolving the host again at connect time would let a hostile DNS server answer a public
address to the check and ``127.0.0.1`` to the connection (DNS rebinding). So we never resolve again:
the request goes to ``https://<checked IP>:<port>/path`` and the original name is kept where it
matters:

* ``Host`` header = the original host (and port when not the default), so virtual hosts work;
* TLS: the socket to the checked address is wrapped with the original name as ``server_hostname``
  (SNI), and the ``ssl`` module verifies the certificate chain (certifi's bundle, as requests uses,
  or the ``verify`` CA file) and matches the certificate against that same name (``check_hostname``),
  exactly as for an unpinned request.

``post_pinned`` speaks HTTP/1.1 through the standard library's ``http.client`` directly, not through
requests/urllib3: in an alert storm their layers (session merging, pool lookups, URL parsing, retry
objects) cost as much CPU as the exchange itself (bench/storm.py under py-spy), and none of their
features is wanted here (no redirects, no proxies, no cookies, no retries). Its failures are still
raised as requests' exception classes and its answer is a ``requests.Response``, so callers map
errors as for any requests call.

Also: redirects are never followed (a redirect could point anywhere, e.g. to cloud metadata);
``trust_env`` is off so ``HTTPS_PROXY``/``.netrc`` from the environment cannot reroute the request or
add credentials; at most ``max_body`` bytes of the response are read, so a hostile endpoint cannot
make us download a huge body. Only the first resolved address is tried.

Deadline: ``timeout`` is a total wall-clock budget for connect, TLS, headers and body, not requests'
per-read timeout (a receiver dripping one header byte at a time would never trip that). Every
socket our pools open or reuse is registered with ``apps.delivery.deadline.watchdog``, which shuts it
down when the budget is spent; the call then raises ``DeadlineExceeded`` (a ``requests.ReadTimeout``).
``post_form`` gives operator-configured URLs (the SMS provider) the same deadline and cap, unpinned.

Keep-alive: ``post_pinned(..., keep_alive=True)`` reuses a per-thread connection per (scheme, name,
checked address, port, CA), so repeated sends to one endpoint reuse the TCP/TLS connection, and a
connection is only ever reused for the same address the check just approved; a response whose body
was not read to its end (or that says it closes) closes its connection instead of keeping it.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from urllib.parse import urlsplit

import certifi
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


def _host_header(target: ResolvedTarget) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != _DEFAULT_PORTS[target.scheme]:
        host = f"{host}:{target.port}"
    return host


def _pinned(target: ResolvedTarget, url: str) -> tuple[str, str]:
    """(the first checked address, the path and query of ``url``); the fragment is dropped.

    Raises ``ValueError`` when ``url`` is not the URL ``target`` was checked for (host/port/scheme).
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").encode("idna").decode("ascii")
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    if (host, port, scheme) != (target.host, target.port, target.scheme):
        raise ValueError(f"URL {url!r} does not match the checked target {target.host}:{target.port}")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return target.addresses[0], path


MAX_KEPT_CONNECTIONS = 64  # per thread; the least recently used is closed beyond this


class _PinnedHTTP(http.client.HTTPConnection):
    """A plain connection whose socket the enclosing ``watchdog`` block shuts down at its deadline."""

    def connect(self) -> None:
        super().connect()
        watch_socket(self.sock)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to the checked address, presenting and verifying ``server_hostname`` (the original name)."""

    def __init__(self, address: str, port: int, *, server_hostname: str, context: ssl.SSLContext,
                 timeout: float) -> None:
        super().__init__(address, port, timeout=timeout, context=context)
        self.server_hostname = server_hostname

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)  # TCP to the address; no second DNS lookup
        watch_socket(self.sock)  # before wrapping: the watchdog keeps the descriptor (deadline.py)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_hostname)


_contexts: dict[str, ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def _tls_context(verify: bool | str) -> ssl.SSLContext:
    """One verifying context per CA file (loading a bundle costs milliseconds; contexts are thread-safe)."""
    cafile = certifi.where() if verify is True else str(verify)
    with _contexts_lock:
        context = _contexts.get(cafile)
        if context is None:
            context = _contexts[cafile] = ssl.create_default_context(cafile=cafile)
    return context


class _Kept(threading.local):
    def __init__(self) -> None:
        self.connections: OrderedDict[tuple, http.client.HTTPConnection] = OrderedDict()


_kept = _Kept()


def _connection_key(target: ResolvedTarget, address: str, verify: bool | str) -> tuple:
    return (target.scheme, target.host, address, target.port, verify if target.scheme == "https" else None)


def _new_connection(target: ResolvedTarget, address: str, verify: bool | str,
                    timeout: float) -> http.client.HTTPConnection:
    if target.scheme == "https":
        return _PinnedHTTPS(address, target.port, server_hostname=target.host, context=_tls_context(verify),
                            timeout=timeout)
    return _PinnedHTTP(address, target.port, timeout=timeout)


def _keep(key: tuple, conn: http.client.HTTPConnection) -> None:
    _kept.connections[key] = conn
    while len(_kept.connections) > MAX_KEPT_CONNECTIONS:
        _kept.connections.popitem(last=False)[1].close()


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
    ``verify`` is True (certifi's bundle) or a CA bundle path; turning it off is not offered on purpose.
    """
    deadline = deadline or Deadline(timeout)
    address, path = _pinned(target, url)
    merged = {}  # lower-case name -> (name, value): the caller's headers over our defaults
    for name, value in (("User-Agent", USER_AGENT), ("Accept-Encoding", "identity"), ("Accept", "*/*"),
                        ("Connection", "keep-alive" if keep_alive else "close"), *headers.items()):
        merged[name.lower()] = (name, value)
    merged["host"] = ("Host", _host_header(target))  # always ours: a caller-provided Host could lie
    merged["content-length"] = ("Content-Length", str(len(body)))
    request = (path, list(merged.values()), body)
    key = _connection_key(target, address, verify)
    conn = _kept.connections.pop(key, None) if keep_alive else None  # put back below when reusable
    reused = conn is not None

    with watchdog(deadline) as dog:
        try:
            try:
                conn, raw = _exchange(conn, target, address, verify, deadline, request)
            except requests.ConnectionError as exc:
                if not reused or isinstance(exc, requests.Timeout) or dog.fired:
                    raise
                # A kept connection the receiver closed while idle: one fresh connection, as any
                # keep-alive client does (receivers dedupe on webhook-id in any case).
                conn, raw = _exchange(None, target, address, verify, deadline, request)
        except Exception as exc:
            _raise_if_deadline(exc, dog.fired, deadline)
            raise
        response, reusable = _read_response(raw, max_body)
        if keep_alive and reusable and not dog.fired:
            _keep(key, conn)
        else:
            conn.close()
    response.url = url  # the URL the tenant configured, not the pinned address
    return response


def _exchange(conn: http.client.HTTPConnection | None, target: ResolvedTarget, address: str, verify: bool | str,
              deadline: Deadline, request: tuple[str, list[tuple[str, str]], bytes],
              ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Send ``request`` (path, headers, body) on ``conn`` (a kept one) or a new connection; the
    connection and the response with its status line and headers read. The connection is closed on
    any failure, raised as requests' classes: connect timeout, TLS, refused/reset, read timeout."""
    left = deadline.remaining()
    if left <= 0:
        if conn is not None:
            conn.close()
        raise DeadlineExceeded(f"no time left of the {deadline.seconds:g} s deadline")
    where = f"{target.host}:{target.port}"
    if conn is None:
        conn = _new_connection(target, address, verify, left)
        try:
            conn.connect()
        except ssl.SSLError as exc:
            conn.close()
            raise requests.exceptions.SSLError(f"TLS with {where} failed: {exc}") from exc
        except (socket.timeout, TimeoutError) as exc:
            conn.close()
            raise requests.ConnectTimeout(f"connecting to {where} timed out") from exc
        except OSError as exc:
            conn.close()
            raise requests.ConnectionError(f"Failed to establish a new connection: {exc}") from exc
    else:
        watch_socket(conn.sock)
        conn.sock.settimeout(left)
    path, headers, body = request
    try:
        conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders(body)  # headers and body in one send
        raw = conn.getresponse()
    except ssl.SSLError as exc:
        conn.close()
        raise requests.exceptions.SSLError(f"TLS with {where} failed: {exc}") from exc
    except (socket.timeout, TimeoutError) as exc:
        conn.close()
        raise requests.ReadTimeout(f"read from {where} timed out") from exc
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise requests.ConnectionError(f"Connection aborted: {exc!r}") from exc
    return conn, raw


def _read_response(raw: http.client.HTTPResponse, max_body: int) -> tuple[requests.Response, bool]:
    """(the response with at most ``max_body`` bytes of its body, whether its connection may be
    reused). A failure while reading (including the deadline) leaves the body as read so far: the
    status line already arrived and is what counts. Reusable only when the body was read to its end
    and the server keeps the connection, so unread bytes never reach the next request."""
    chunks: list[bytes] = []
    complete = False
    try:
        left = max_body
        while left > 0:
            chunk = raw.read(min(left, 16384))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        complete = raw.isclosed()  # http.client closes a response once its body is read to its end
    except Exception:  # noqa: BLE001 - see the docstring
        complete = False
    response = requests.Response()
    response.status_code = raw.status
    response.reason = raw.reason
    response.headers = CaseInsensitiveDict(
        (name, ", ".join(raw.headers.get_all(name))) for name in dict.fromkeys(raw.headers.keys()))
    response._content = b"".join(chunks)
    response._content_consumed = True
    response.encoding = None
    return response, complete and not raw.will_close


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


def _raise_if_deadline(exc: BaseException, fired: bool, deadline: Deadline) -> None:
    """Report a failure caused by the deadline (the watchdog shut the socket, or a read timed out at
    it) as ``DeadlineExceeded``; a connect timeout stays what it is."""
    if isinstance(exc, (DeadlineExceeded, requests.ConnectTimeout)):
        return
    if fired or (isinstance(exc, requests.Timeout) and deadline.expired):
        raise DeadlineExceeded(f"no complete response within the {deadline.seconds:g} s deadline") from exc
