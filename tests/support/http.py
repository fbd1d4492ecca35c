"""The HTTP server every local test peer runs (webhook receivers, vendor stand-ins, the SMS API)."""
from __future__ import annotations

from http.server import ThreadingHTTPServer


class PeerServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a listen backlog a real receiver would have.

    The standard library's is 5. Our senders open up to eight connections per destination at once
    (more with several workers and sweepers), and past the backlog Linux drops the handshake's last
    ACK: the request then waits ~1 s and may be reset (ECONNRESET), a failed attempt that a
    production receiver (nginx: 511) would never cause. bench/chaos.py's clock scenario lost a
    retry to it: the delivery waited out its 30-minute retry and the run timed out.
    """

    request_queue_size = 1024
    daemon_threads = True
