"""A real ``stream`` process (uvicorn, ASGI) on the test database, and a small SSE client."""
from __future__ import annotations

import queue
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import requests
from django.conf import settings

from tests.support.processes import BIN, BASE_DIR, child_env, free_port, stop_process, wait_for


@dataclass
class StreamServer:
    base: str
    port: int
    log: Path
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"{self.base}/api/v1/stream"

    def start(self) -> None:
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [str(BIN / "uvicorn"), "alertcenter.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
             "--timeout-graceful-shutdown", "1", "--no-access-log"],
            cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_for(lambda: requests.get(f"{self.base}/-/live", timeout=2).status_code == 200, timeout=40,
                 what=f"uvicorn up (see {self.log})")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=5)
            self.proc = None


@contextmanager
def stream_server(log_dir: Path, *, host: str = "127.0.0.1", **overrides: str) -> Iterator[StreamServer]:
    """``uvicorn alertcenter.asgi:application`` as `make run` starts it; ``overrides`` are env vars."""
    port = free_port()
    env = child_env(**{"SECRET_KEY": settings.SECRET_KEY, "ALLOWED_HOSTS": "127.0.0.1,localhost",
                       "REDIS_URL": settings.REDIS_URL, "STREAM_REDIS_CHANNEL": settings.STREAM_REDIS_CHANNEL,
                       "LOG_FORMAT": "text", **overrides})
    server = StreamServer(base=f"http://{host}:{port}", port=port, log=log_dir / f"uvicorn-{port}.log", env=env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Event:
    id: int | None
    type: str
    data: str


class SSEClient:
    """Reads an event stream on a thread; ``events`` and ``comments`` fill as they arrive."""

    def __init__(self, url: str, *, headers: dict[str, str] | None = None, params: dict | None = None):
        self.response = requests.get(url, headers={"Accept": "text/event-stream", **(headers or {})},
                                     params=params, stream=True, timeout=(5, 60))
        self.items: queue.Queue = queue.Queue()
        self.events: list[Event] = []
        self.comments: list[str] = []
        if self.response.status_code == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            for raw in self.response.iter_lines(chunk_size=1, decode_unicode=True):
                line = raw or ""
                if not line:
                    if "data" in fields or "event" in fields:
                        self.items.put(Event(int(fields["id"]) if fields.get("id") else None,
                                             fields.get("event", "message"), fields.get("data", "")))
                    fields = {}
                elif line.startswith(":"):
                    self.items.put(line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value[1:] if value.startswith(" ") else value
        except Exception:  # the connection closed under us (the test stopped the server)
            pass
        self.items.put(None)

    def wait(self, predicate, *, timeout: float = 10.0, what: str = "events") -> None:
        """Read until ``predicate(self)`` holds; fail naming ``what`` (and what came) on timeout."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; got {[(e.id, e.type) for e in self.events]}")
            try:
                item = self.items.get(timeout=left)
            except queue.Empty:
                continue
            if item is None:
                raise AssertionError(f"stream closed while waiting for {what}; got {self.events}")
            (self.comments if isinstance(item, str) else self.events).append(item)

    def ids(self) -> list[int]:
        return [e.id for e in self.events if e.id is not None]

    def close(self) -> None:
        self.response.close()
