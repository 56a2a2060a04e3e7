"""Broken Koppeltaal servers for testing the harness: a small threaded HTTP proxy in front of the
real reference server that forwards everything except the one kind of request its fault is about.
Real HTTP end to end, so the harness is tested exactly as it meets a real server.

Faults:
- `lets-note-through`: a POSTed Task with `note` (forbidden by KT2Task) gets 201 without reaching
  the reference server, as if stored;
- `500-on-bad-json`: a POST body that is not JSON gets a bare 500;
- `refuses-valid`: every POSTed Task gets 422 with an OperationOutcome, valid or not;
- `forbids-tasks`: every POSTed Task gets 403, as for a client without the right role;
- `ignores-if-match`: every PUT goes on with If-Match set to the stored version (read first), as
  if the server took no notice of the header: updates without it or with a stale one succeed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

FAULTS = ("lets-note-through", "500-on-bad-json", "refuses-valid", "forbids-tasks",
          "ignores-if-match")
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
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if self.fault == "ignores-if-match" and self.command == "PUT":
            current = self.http.get(self.upstream + path.removeprefix("/fhir"),
                                    headers={"Accept": "application/fhir+json"})
            headers = {k: v for k, v in headers.items() if k.lower() != "if-match"}
            if current.headers.get("etag"):
                headers["If-Match"] = current.headers["etag"]
        response = self.http.request(
            self.command, self.upstream + self.path.removeprefix("/fhir"), content=body,
            headers=headers)
        headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
        if "location" in response.headers:  # as a reverse proxy does: the Location names us
            headers = {k: v for k, v in headers.items() if k.lower() != "location"}
            headers["Location"] = response.headers["location"].replace(
                self.upstream, f"http://{self.headers.get('Host')}/fhir")
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


# -- proxies with a life of their own: auth checking and hostile answers -------------------------
#
# `faulty_target` above answers each fault with a fixed response. The proxies below are for the
# whole-run tests of auth and of hostile targets: `AuthProxy` lets through only requests carrying
# an access token its authorization server issued and that has not expired; `HostileTarget`
# misbehaves at the transport level (hangs, garbage, drops) for the generated Task cases only,
# so the run's set-up (prerequisites and the example Task) succeeds and the findings are about
# the cases. Both record what they did, so the tests can check the harness met the misbehaviour.

HOSTILE_MODES = ("slow", "nonjson", "empty", "huge", "drop", "throttle", "always-429", "echo")
HUGE_BODY_BYTES = 50 * 1024 * 1024


@dataclass
class Incoming:
    """One request as the proxy received it."""

    method: str
    target: str  # path with query, as sent
    path: str  # path without query or trailing slash
    headers: dict[str, str]
    body: bytes


class _QuietServer(ThreadingHTTPServer):
    # a handler stuck in a slow answer must not hold up shutdown: the test is over by then
    daemon_threads = True
    block_on_close = False


class _ForwardingHandler(BaseHTTPRequestHandler):
    proxy: ForwardingProxy

    def log_message(self, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = Incoming(self.command, self.path, self.path.split("?")[0].rstrip("/"),
                           dict(self.headers.items()), body)
        try:
            self.proxy.handle(self, request)
        except OSError:
            pass  # the harness hung up first (a timeout, a body it stopped reading): as meant

    def answer(self, status: int, body: bytes | dict[str, Any],
               headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        self.send_response(status)
        for name, value in (headers or {"Content-Type": "application/fhir+json"}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class ForwardingProxy:
    """A threaded HTTP proxy on loopback in front of `upstream` (a FHIR base URL); its own FHIR
    base is `url`. Subclasses decide per request in `intercept`; what they leave is forwarded
    as is. A context manager: the proxy runs inside the `with`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._http = httpx.Client(timeout=60.0)
        handler = type("Handler", (_ForwardingHandler,), {"proxy": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/fhir"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    def __enter__(self) -> ForwardingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()  # wakes handlers waiting in a slow answer
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._http.close()

    def handle(self, handler: _ForwardingHandler, request: Incoming) -> None:
        if not self.intercept(handler, request):
            self.forward(handler, request)

    def intercept(self, handler: _ForwardingHandler, request: Incoming) -> bool:
        """Answer the request here and return True, or return False to forward it."""
        return False

    def forward(self, handler: _ForwardingHandler, request: Incoming,
                drop_headers: frozenset[str] = frozenset()) -> None:
        skip = _HOP_BY_HOP | drop_headers
        response = self._http.request(
            request.method, self.upstream + request.target.removeprefix("/fhir"),
            content=request.body,
            headers={k: v for k, v in request.headers.items() if k.lower() not in skip})
        headers = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
        if "location" in response.headers:  # as a reverse proxy does: the Location names us
            headers = {k: v for k, v in headers.items() if k.lower() != "location"}
            headers["Location"] = response.headers["location"].replace(self.upstream, self.url)
        handler.answer(response.status_code, response.content, headers)


class AuthProxy(ForwardingProxy):
    """A Koppeltaal-like resource server: `.well-known/smart-configuration` (public) names
    `token_url`; every other request needs `Authorization: Bearer T` with `accepts(T)` true, else
    401 with an OperationOutcome and a WWW-Authenticate challenge. Accepted requests are
    forwarded without the Authorization header (the upstream is an open reference server).
    `accepted` counts requests per token; `refused` lists why requests were turned away."""

    def __init__(self, upstream: str, accepts: Callable[[str], bool], token_url: str) -> None:
        super().__init__(upstream)
        self.accepts = accepts
        self.token_url = token_url
        self.accepted: Counter[str] = Counter()
        self.refused: list[str] = []
        self.discoveries = 0

    def intercept(self, handler: _ForwardingHandler, request: Incoming) -> bool:
        if request.method == "GET" and request.path == "/fhir/.well-known/smart-configuration":
            with self.lock:
                self.discoveries += 1
            handler.answer(200, {
                "token_endpoint": self.token_url,
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384", "RS512", "ES384"],
                "grant_types_supported": ["client_credentials"],
            }, {"Content-Type": "application/json"})
            return True
        authorization = request.headers.get("Authorization", "")
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
        if token and self.accepts(token):
            with self.lock:
                self.accepted[token] += 1
            self.forward(handler, request, drop_headers=frozenset({"authorization"}))
            return True
        with self.lock:
            self.refused.append(f"{request.method} {request.path}: "
                                f"{'no bearer token' if not token else 'token not accepted'}")
        handler.answer(401, {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "login", "diagnostics": "invalid or expired token"}]},
            {"Content-Type": "application/fhir+json",
             "WWW-Authenticate": 'Bearer error="invalid_token"'})
        return True


class HostileTarget(ForwardingProxy):
    """Misbehaves for the POSTs of generated Task cases and forwards everything else, including
    the first POST /Task: that is the example Task the run creates at set-up, before any case.
    Modes:
    - `slow`: answers nothing for `slow_seconds` (longer than the harness's read timeout);
    - `nonjson`: 200 with an HTML page (a gateway's error page), no Location;
    - `empty`: 200 with an empty body, no Location;
    - `huge`: 200 with 50 MB of JSON-looking bytes and no Content-Length (read until close);
    - `drop`: closes the connection without a byte of answer;
    - `throttle`: 429 with Retry-After: 1 the first time a body is seen, forwarded when the same
      body comes again (the retry);
    - `always-429`: 429 with Retry-After: 0 every time, however often the harness retries;
    - `echo`: 422 with an OperationOutcome that quotes the request's credentials back, as a
      careless server's debug output would (for the secrets tests).
    `misbehaved` counts the requests it misbehaved on."""

    def __init__(self, upstream: str, mode: str, slow_seconds: float = 40.0) -> None:
        if mode not in HOSTILE_MODES:
            raise ValueError(f"unknown mode {mode}: one of {', '.join(HOSTILE_MODES)}")
        super().__init__(upstream)
        self.mode = mode
        self.slow_seconds = slow_seconds
        self.task_posts = 0
        self.misbehaved = 0
        self.huge_sent: list[int] = []  # huge: bytes written per request until the client hung up
        self.retry_gaps: list[float] = []  # throttle: seconds between a 429 and its retry
        self._seen: dict[bytes, float] = {}

    def intercept(self, handler: _ForwardingHandler, request: Incoming) -> bool:
        if request.method != "POST" or request.path != "/fhir/Task":
            return False
        with self.lock:
            self.task_posts += 1
            if self.task_posts == 1:  # the example Task of set-up
                return False
            if self.mode == "throttle":
                if request.body in self._seen:
                    self.retry_gaps.append(time.monotonic() - self._seen[request.body])
                    return False
                self._seen[request.body] = time.monotonic()
            self.misbehaved += 1
        getattr(self, "_" + self.mode.replace("-", "_"))(handler, request)
        return True

    def _slow(self, handler: _ForwardingHandler, request: Incoming) -> None:
        if not self.stopping.wait(self.slow_seconds):
            handler.answer(500, b"too late")

    def _nonjson(self, handler: _ForwardingHandler, request: Incoming) -> None:
        handler.answer(200, b"<html><body><h1>Service temporarily unavailable</h1></body></html>",
                       {"Content-Type": "text/html"})

    def _empty(self, handler: _ForwardingHandler, request: Incoming) -> None:
        handler.answer(200, b"", {"Content-Type": "application/fhir+json"})

    def _huge(self, handler: _ForwardingHandler, request: Incoming) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/fhir+json")
        handler.end_headers()
        handler.close_connection = True
        chunk = b'{"resourceType": "Bundle", "entry": [' + b"{}, " * 16000
        sent = 0
        try:
            while sent < HUGE_BODY_BYTES and not self.stopping.is_set():
                handler.wfile.write(chunk)
                sent += len(chunk)
        finally:
            with self.lock:
                self.huge_sent.append(sent)

    def _drop(self, handler: _ForwardingHandler, request: Incoming) -> None:
        handler.close_connection = True  # the handler returns without answering: connection closes

    def _throttle(self, handler: _ForwardingHandler, request: Incoming) -> None:
        handler.answer(429, {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "throttled", "diagnostics": "slow down"}]},
            {"Content-Type": "application/fhir+json", "Retry-After": "1"})

    def _always_429(self, handler: _ForwardingHandler, request: Incoming) -> None:
        handler.answer(429, {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "throttled", "diagnostics": "quota exhausted"}]},
            {"Content-Type": "application/fhir+json", "Retry-After": "0"})

    def _echo(self, handler: _ForwardingHandler, request: Incoming) -> None:
        credentials = request.headers.get("Authorization", "(none)")
        handler.answer(422, {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "security",
             "diagnostics": f"client with {credentials} may not create Tasks"}]})


def run_harness(tmp_path: Path, *args: str, timeout: float = 120,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m kt2conformance run ARGS --reports TMP/reports` in a subprocess from `tmp_path`,
    as a user runs it, with stdout and stderr captured. The KT2_* auth variables of the calling
    environment are cleared so only the given options count; `env` adds variables."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("KT2_TOKEN", "KT2_CLIENT_ID", "KT2_PRIVATE_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "kt2conformance", "run", "--reports", str(tmp_path / "reports"),
         *args], cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
        env={**clean, **(env or {})})


RESOURCE_TYPES = ("Task", "Patient", "Practitioner", "CareTeam", "RelatedPerson",
                  "ActivityDefinition", "Device", "Organization")


def resource_counts(base: str, token: str | None = None) -> dict[str, int]:
    """How many resources of each type the server at `base` holds: compared before and after a
    run to show the harness left the target as it found it."""
    headers = {"Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return {t: httpx.get(f"{base}/{t}", params={"_summary": "count"}, headers=headers)
            .json()["total"] for t in RESOURCE_TYPES}
