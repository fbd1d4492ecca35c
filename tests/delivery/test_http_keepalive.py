"""post_pinned's kept connections against raw local servers: a connection is reused only when the
previous answer was read to its end and the server keeps it; one the server closed while idle costs
one fresh connection, not a failed attempt; other failures are never retried."""
from __future__ import annotations

import socket

import pytest
import requests

from apps.delivery.http import post_pinned
from apps.delivery.ssrf import ResolvedTarget

from .test_deadlines import read_request, server  # noqa: F401 - the fixture, shared


def _post(srv, **kw):
    target = ResolvedTarget(host="127.0.0.1", port=srv.port, scheme="http", addresses=("127.0.0.1",))
    return post_pinned(target, f"http://127.0.0.1:{srv.port}/hook?x=1", body=b'{"a":1}', headers={"X-Test": "1"},
                       timeout=3, keep_alive=True, **kw)


def test_a_connection_the_server_closed_while_idle_is_replaced_once(server):  # noqa: F811
    heads = []

    def serve(conn):  # one answer per connection, then the server hangs up without saying so
        heads.append(read_request(conn))
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    srv = server(serve)
    assert [_post(srv).content for _ in range(3)] == [b"ok"] * 3
    assert srv.connections == 3 and len(heads) == 3
    first = heads[0].decode().split("\r\n")
    assert first[0] == "POST /hook?x=1 HTTP/1.1"
    assert {"Host: 127.0.0.1:%d" % srv.port, "Content-Length: 7", "X-Test: 1", "Connection: keep-alive",
            "Accept-Encoding: identity", "User-Agent: AlertCenter-Webhook/1.0"} <= set(first[1:])


def test_kept_only_when_read_to_the_end_and_the_server_keeps_it(server):  # noqa: F811
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
               b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
               b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"y" * 100,  # over the cap below
               b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
               b"HTTP/1.1 204 No Content\r\n\r\n"]
    served = []

    def serve(conn):
        while answers and read_request(conn):
            served.append(conn.fileno())
            conn.sendall(answers.pop(0))

    srv = server(serve)
    bodies = [_post(srv, max_body=10).content for _ in range(5)]
    assert bodies == [b"ok", b"ok", b"y" * 10, b"ok", b""]
    # 1 and 2 share a connection and so does 3 (read to the end), 4 comes after a cut-off body,
    # 5 after the server said it closes.
    assert srv.connections == 3


def test_a_refused_connection_is_not_retried():
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    target = ResolvedTarget(host="127.0.0.1", port=port, scheme="http", addresses=("127.0.0.1",))
    with pytest.raises(requests.ConnectionError, match="refused"):
        post_pinned(target, f"http://127.0.0.1:{port}/", body=b"{}", headers={}, timeout=3, keep_alive=True)
