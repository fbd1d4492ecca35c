"""Real local peers: a Jira-shaped tracker and a programmable JSON server (runbooks, generic trackers)."""
from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from tests.support.http import PeerServer

Answer = tuple[int, object | None]


class Peer:
    """Threaded HTTP server; ``answer(path, headers, body) -> (status, json or None)``; keeps every request."""

    def __init__(self, answer: Callable[[str, dict, bytes], Answer]):
        self.answer = answer
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with peer.lock:
                    peer.requests.append({"path": self.path, "headers": headers, "body": body})
                status, document = peer.answer(self.path, headers, body)
                data = b"" if document is None else json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = PeerServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def json(self, i: int) -> dict:
        return json.loads(self.requests[i]["body"])

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]


class Jira(Peer):
    """Jira REST v2 as far as we use it: create issue 201 {"id","key","self"}, comment 201,
    transitions 204; 401 without the right credentials; 400 with {"errorMessages","errors"}."""

    def __init__(self, *, email: str = "bot@acme.example", token: str = "jira-token", project: str = "OPS"):
        self.auth = "Basic " + base64.b64encode(f"{email}:{token}".encode()).decode()
        self.project = project
        self.issues: dict[str, dict] = {}
        self.next = 1
        super().__init__(self._answer)

    def _answer(self, path: str, headers: dict, body: bytes) -> Answer:
        if headers.get("authorization") != self.auth:
            return 401, {"errorMessages": ["You are not authenticated. Authentication required to perform this operation."],
                         "errors": {}}
        document = json.loads(body or b"{}")
        if path == "/rest/api/2/issue":
            fields = document.get("fields") or {}
            errors = {}
            if (fields.get("project") or {}).get("key") != self.project:
                errors["project"] = "valid project is required"
            if not fields.get("summary"):
                errors["summary"] = "You must specify a summary of the issue."
            if errors:
                return 400, {"errorMessages": [], "errors": errors}
            with self.lock:
                key, issue_id = f"{self.project}-{self.next}", str(10000 + self.next)
                self.next += 1
                self.issues[key] = {"fields": fields, "comments": [], "transitions": []}
            return 201, {"id": issue_id, "key": key, "self": f"{self.url}/rest/api/2/issue/{issue_id}"}
        match = re.fullmatch(r"/rest/api/2/issue/([A-Z]+-\d+)/(comment|transitions)", path)
        if not match or match.group(1) not in self.issues:
            return 404, {"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}}
        issue = self.issues[match.group(1)]
        if match.group(2) == "comment":
            issue["comments"].append(document["body"])
            return 201, {"id": str(len(issue["comments"])), "body": document["body"]}
        issue["transitions"].append(document["transition"]["id"])
        return 204, None
