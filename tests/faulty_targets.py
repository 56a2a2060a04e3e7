"""Broken Koppeltaal servers for testing the harness: a small threaded HTTP proxy in front of the
real reference server that forwards everything except the one kind of request its fault is about.
Real HTTP end to end, so the harness is tested exactly as it meets a real server.

Faults:
- `lets-note-through`: a POSTed Task with `note` (forbidden by KT2Task) gets 201 without reaching
  the reference server, as if stored;
- `500-on-bad-json`: a POST body that is not JSON gets a bare 500;
- `refuses-valid`: every POSTed Task gets 422 with an OperationOutcome, valid or not;
- `forbids-tasks`: every POSTed Task gets 403, as for a client without the right role.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

FAULTS = ("lets-note-through", "500-on-bad-json", "refuses-valid", "forbids-tasks")
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive",
               "content-encoding"}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


class _Proxy(BaseHTTPRequestHandler):
    upstream: str  # base URL of the reference server, e.g. http://127.0.0.1:1234/fhir
    fault: str
    http: httpx.Client

    def log_message(self, *args: Any) -> None:  # quiet: the harness reports what matters
        pass

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0].rstrip("/")
        fault = self._fault(path, body)
        if fault is not None:
            self._answer(*fault)
            return
        response = self.http.request(
            self.command, self.upstream + self.path.removeprefix("/fhir"), content=body,
            headers={k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP})
        headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
        self._answer(response.status_code, response.content, headers)

    def _fault(self, path: str, body: bytes) -> tuple[int, bytes, dict[str, str]] | None:
        """The faulty answer to this request, or None to forward it."""
        if self.command != "POST":
            return None
        parsed = _json(body)
        if self.fault == "500-on-bad-json" and parsed is None:
            return 500, b"Internal Server Error", {"Content-Type": "text/plain"}
        if path != "/fhir/Task":
            return None
        if self.fault == "lets-note-through" and isinstance(parsed, dict) and "note" in parsed:
            task_id = str(uuid.uuid4())
            stored = {**parsed, "id": task_id, "meta": {**parsed.get("meta", {}), "versionId": "1"}}
            return 201, json.dumps(stored).encode(), {
                "Content-Type": "application/fhir+json",
                "Location": f"http://{self.headers.get('Host')}/fhir/Task/{task_id}/_history/1"}
        if self.fault in ("refuses-valid", "forbids-tasks"):
            status, code = (422, "processing") if self.fault == "refuses-valid" else (403, "forbidden")
            outcome = {"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": code, "diagnostics": f"{self.fault} (fault)"}]}
            return status, json.dumps(outcome).encode(), {"Content-Type": "application/fhir+json"}
        return None

    do_GET = do_POST = do_PUT = do_DELETE = _handle


@contextmanager
def faulty_target(upstream: str, fault: str) -> Iterator[str]:
    """A running proxy with `fault` in front of `upstream`; yields its FHIR base URL."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault}: one of {', '.join(FAULTS)}")
    with httpx.Client(timeout=30.0) as http:
        handler = type("Proxy", (_Proxy,), {"upstream": upstream.rstrip("/"), "fault": fault,
                                            "http": http})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
