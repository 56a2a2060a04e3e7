"""Tiny real-HTTP servers on loopback for the client, auth and registry tests.

They speak actual HTTP over sockets (no mocks), so the tests exercise httpx, timeouts, dropped
connections and streaming exactly as a run against a real server would:
- `SmartServer`: a SMART Backend Services authorization server plus a protected FHIR endpoint;
- `MisbehavingServer`: a FHIR endpoint whose first path segment picks how it misbehaves;
- `RegistryServer`: an npm-style FHIR package registry serving fixed routes.
"""

from __future__ import annotations

import base64
import functools
import gzip
import io
import json
import secrets
import socket
import struct
import tarfile
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
        pass

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status: int, body: bytes | dict | list = b"",
             content_type: str = "application/fhir+json", headers: dict[str, str] | None = None
             ) -> None:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class LoopbackServer:
    """Runs a handler class on 127.0.0.1 (free port) in a daemon thread; use as a context
    manager. Handlers reach this object as `self.server.fake`."""

    handler: type[_Handler]

    def __init__(self) -> None:
        self._httpd = _Server(("127.0.0.1", 0), self.handler)
        self._httpd.fake = self
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# -- SMART Backend Services ----------------------------------------------------------------------


def _b64json(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


class _SmartHandler(_Handler):
    def do_GET(self) -> None:
        fake: SmartServer = self.server.fake
        path = urlsplit(self.path).path
        if path == "/fhir/.well-known/smart-configuration":
            fake.discoveries += 1
            self.send(200, {"token_endpoint": fake.token_url,
                            "token_endpoint_auth_methods_supported": ["private_key_jwt"]},
                      content_type="application/json")
        elif path == "/fhir/metadata":
            self.send(200, {"resourceType": "CapabilityStatement", "status": "active"})
        else:
            self._protected({"resourceType": "Task", "id": path.rsplit("/", 1)[-1]}, 200)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == "/auth/token":
            self._token()
        else:
            resource = json.loads(self.read_body() or b"{}")
            self._protected({**resource, "id": "new"}, 201)

    def _protected(self, body: dict, status: int) -> None:
        fake: SmartServer = self.server.fake
        authorization = self.headers.get("Authorization", "")
        fake.fhir_authorizations.append(authorization)
        token = authorization.removeprefix("Bearer ")
        with fake.lock:
            expiry = fake.issued.get(token)
        if expiry is None or expiry < time.time() or token in fake.revoked:
            self.send(401, {"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "login", "diagnostics": "invalid token"}]})
            return
        self.send(status, body)

    def _token(self) -> None:
        fake: SmartServer = self.server.fake
        form = {k: v[0] for k, v in parse_qs(self.read_body().decode()).items()}
        with fake.lock:
            fake.token_requests += 1
            fake.forms.append(form)
        problem = fake.check_assertion(form)
        if problem:
            with fake.lock:
                fake.rejections.append(problem)
            if fake.echo_errors:  # a careless server quotes what it got back
                problem += f" (received {form.get('client_assertion')})"
            self.send(401, {"error": "invalid_client", "error_description": problem},
                      content_type="application/json")
            return
        token = secrets.token_urlsafe(24)
        honoured = fake.token_lifetime if fake.honoured_lifetime is None else fake.honoured_lifetime
        with fake.lock:
            fake.issued[token] = time.time() + honoured
        self.send(200, {"access_token": token, "token_type": "bearer",
                        "expires_in": fake.token_lifetime, "scope": "system/*.*"},
                  content_type="application/json")


class SmartServer(LoopbackServer):
    """Authorization server checking client assertions the way SMART Backend Services demands:
    signature against the client's registered public keys, iss = sub = client id, aud = token
    URL, exp in the future and at most 5 minutes away, jti never seen before, the right
    grant_type and client_assertion_type. Protected FHIR endpoints live under /fhir."""

    handler = _SmartHandler

    def __init__(self, token_lifetime: int = 300, honoured_lifetime: float | None = None,
                 echo_errors: bool = False) -> None:
        """`token_lifetime` is the `expires_in` announced; `honoured_lifetime` (default: the
        same) is how long a token really works, shorter to make tokens die before the client
        expects; `echo_errors` quotes the received assertion back in refusals."""
        super().__init__()
        self.fhir_base = f"{self.url}/fhir"
        self.token_url = f"{self.url}/auth/token"
        self.token_lifetime = token_lifetime
        self.honoured_lifetime = honoured_lifetime
        self.echo_errors = echo_errors
        self.clients: dict[str, list[RSAKey | ECKey]] = {}
        self.lock = threading.Lock()
        self.issued: dict[str, float] = {}
        self.revoked: set[str] = set()
        self.seen_jtis: set[str] = set()
        self.forms: list[dict[str, str]] = []
        self.rejections: list[str] = []
        self.fhir_authorizations: list[str] = []
        self.token_requests = 0
        self.discoveries = 0

    def register(self, client_id: str, public_jwk: dict) -> None:
        key_class = RSAKey if public_jwk["kty"] == "RSA" else ECKey
        self.clients.setdefault(client_id, []).append(key_class.import_key(public_jwk))

    def revoke_all(self) -> None:
        with self.lock:
            self.revoked.update(self.issued)

    def check_assertion(self, form: dict[str, str]) -> str | None:
        """What is wrong with a token request, or None."""
        if form.get("grant_type") != "client_credentials":
            return "grant_type must be client_credentials"
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return "wrong client_assertion_type"
        assertion = form.get("client_assertion", "")
        try:
            unverified = _b64json(assertion.split(".")[1])
        except (ValueError, IndexError):
            return "client_assertion is not a JWT"
        keys = self.clients.get(str(unverified.get("iss")), [])
        claims = None
        for key in keys:
            try:
                claims = jwt.decode(assertion, key, algorithms=["RS384", "RS512", "ES384"]).claims
                break
            except Exception:  # noqa: BLE001 - any failure means "not this key"
                continue
        if claims is None:
            return "signature does not verify with the registered keys"
        now = time.time()
        if claims.get("iss") != claims.get("sub"):
            return "iss and sub differ"
        if claims.get("aud") != self.token_url:
            return f"aud is not {self.token_url}"
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now or exp > now + 300:
            return "exp missing, past, or more than 5 minutes ahead"
        with self.lock:
            if not claims.get("jti") or claims["jti"] in self.seen_jtis:
                return "jti missing or reused"
            self.seen_jtis.add(claims["jti"])
        return None

    def accepts(self, token: str) -> bool:
        """Whether `token` was issued here, is not revoked and has not expired: what a resource
        server in front of this authorization server checks."""
        with self.lock:
            expiry = self.issued.get(token)
            return expiry is not None and time.time() < expiry and token not in self.revoked

    def assertions(self) -> list[str]:
        """Every client assertion received, accepted or not."""
        with self.lock:
            return [f.get("client_assertion", "") for f in self.forms]

    def assertion_headers(self) -> list[dict]:
        """The JOSE headers of all client assertions received."""
        return [_b64json(f["client_assertion"].split(".")[0]) for f in self.forms]


# -- a misbehaving FHIR server -------------------------------------------------------------------

HUGE_BYTES = 50 * 1024 * 1024


class _MisbehavingHandler(_Handler):
    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake: MisbehavingServer = self.server.fake
        body = self.read_body()
        mode = urlsplit(self.path).path.strip("/").split("/", 1)[0]
        with fake.lock:
            fake.hits[mode] += 1
            count = fake.hits[mode]
            fake.requests.append((self.command, self.path, dict(self.headers), body))
        ok = {"resourceType": "Task", "id": "1", "status": "requested"}
        if mode == "slow":
            time.sleep(fake.slow_seconds)
            self.send(200, ok)
        elif mode == "nonjson":
            self.send(200, b"<html><body>Internal error</body></html>", content_type="text/html")
        elif mode == "empty":
            self.send(200, b"")
        elif mode == "huge":
            self._huge()
        elif mode == "drop":
            self.close_connection = True  # close without a byte of answer
        elif mode == "reset":
            # linger 0 and close before the server's orderly shutdown: the kernel sends RST
            # instead of FIN, so the client sees "connection reset by peer"
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif mode == "throttle" and count == 1:
            self.send(429, {"resourceType": "OperationOutcome"}, headers={"Retry-After": "1"})
        elif mode == "unavailable" and count == 1:
            self.send(503, b"")
        elif mode == "gzip-bomb":  # 200 KB that inflate to 200 MB of zeros
            self.send(200, gzip_bomb(), headers={"Content-Encoding": "gzip"})
        elif mode == "brotli":  # compressed in an encoding the client did not ask for
            self.send(200, b"\x0b\x02\x80{}\x03", headers={"Content-Encoding": "br"})
        elif mode == "unavailable-for-days":  # every time, asking for 31 years' patience
            self.send(503, b"", headers={"Retry-After": "999999999"})
        elif mode == "trickle":
            self._trickle()
        elif mode == "truncated":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"resourceType": "Ta')
            self.close_connection = True
        elif mode == "denied":
            self.send(401, {"resourceType": "OperationOutcome"})
        elif mode == "redirect":
            self.send(302, b"", headers={"Location": fake.redirect_to})
        else:
            self.send(201 if self.command == "POST" else 200, ok)

    def _huge(self) -> None:
        """50 MB without Content-Length (read-until-close), so only streaming can stop it."""
        fake: MisbehavingServer = self.server.fake
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.end_headers()
        chunk = b"[" + b"0," * 32767 + b"0"
        try:
            while fake.huge_sent < HUGE_BYTES:
                self.wfile.write(chunk)
                fake.huge_sent += len(chunk)
        except OSError:
            pass  # the client hung up, as it should
        self.close_connection = True


    def _trickle(self) -> None:
        """A byte every 50 ms: never trips a read timeout, yet never ends in useful time."""
        self.send_response(200)
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b" ")
                time.sleep(0.05)
        except OSError:
            pass
        self.close_connection = True


@functools.cache
def gzip_bomb() -> bytes:
    return gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=1)


class MisbehavingServer(LoopbackServer):
    """A FHIR endpoint at URL/MODE: slow, nonjson, empty, huge, drop, reset, trickle (a byte
    every 50 ms), truncated (less body than Content-Length, then close), denied (401),
    throttle (429 with Retry-After: 1, then OK), unavailable (503, then OK), unavailable-for-days
    (503 with Retry-After: 999999999, every time), gzip-bomb (200 KB of gzip, 200 MB inflated),
    brotli (Content-Encoding: br, not asked for), redirect (302 to
    `redirect_to`); anything else answers OK. Requests are counted per mode."""

    handler = _MisbehavingHandler

    def __init__(self, slow_seconds: float = 2.0, redirect_to: str = "") -> None:
        super().__init__()
        self.slow_seconds = slow_seconds
        self.redirect_to = redirect_to
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.huge_sent = 0


# -- a FHIR package registry ---------------------------------------------------------------------


class _LingeringCloseHandler(_Handler):
    """HTTP/1.1 with keep-alive, unlike the other fakes (HTTP/1.0 closes after every answer).
    Each POST is refused with 422; then, a moment later and without `Connection: close`, the
    connection is closed, as Jetty under HAPI does after some refusals."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.read_body()
        fake: LingeringCloseServer = self.server.fake
        with fake.lock:
            fake.connections.add(self.client_address)
        self.send(422, {"resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "code": "invalid"}]})
        self.wfile.flush()
        time.sleep(fake.linger)
        self.close_connection = True


class LingeringCloseServer(LoopbackServer):
    """See _LingeringCloseHandler; `connections` records the client ports it served."""

    handler = _LingeringCloseHandler

    def __init__(self, linger: float = 0.3) -> None:
        super().__init__()
        self.linger = linger
        self.lock = threading.Lock()
        self.connections: set[tuple[str, int]] = set()


class _RegistryHandler(_Handler):
    def do_GET(self) -> None:
        fake: RegistryServer = self.server.fake
        path = urlsplit(self.path).path
        fake.requests[path] += 1
        route = fake.routes.get(path)
        if path in fake.trickle:
            self._trickle(fake)
        elif route is None:
            self.send(404, {"error": "Not found"}, content_type="application/json")
        else:
            content_type, body = route
            self.send(200, body, content_type=content_type)

    def _trickle(self, fake: RegistryServer) -> None:
        """Announces a megabyte of tgz, then sends one byte every `trickle[path]` seconds:
        each read gets data well within any read timeout, yet the body never ends."""
        interval = fake.trickle[urlsplit(self.path).path]
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(1024 * 1024))
        self.end_headers()
        try:
            self.wfile.write(b"\x1f")
            self.wfile.flush()
            while not fake.stopping.wait(interval):
                self.wfile.write(b"\x8b")
                self.wfile.flush()
        except OSError:
            pass  # the client hung up
        self.close_connection = True


class RegistryServer(LoopbackServer):
    """Serves `routes` (path -> (content type, body)); everything else is 404. A path in
    `trickle` (path -> seconds) answers a byte at a time, forever."""

    handler = _RegistryHandler

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[str, tuple[str, bytes | dict]] = {}
        self.trickle: dict[str, float] = {}
        self.stopping = threading.Event()
        self.requests: defaultdict[str, int] = defaultdict(int)

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        super().__exit__(*exc)


def build_tgz(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    """A gzipped tar with `files` (member path -> content) and optional symlinks."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return out.getvalue()


# -- keys ----------------------------------------------------------------------------------------


def write_private_key(path: Path, kind: str) -> Path:
    """A freshly generated private key in PKCS#8 PEM at `path`: `rsa` (2048 bit) or `ec384`
    (P-384). Generated per test run, so no private key is ever committed."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(65537, 2048)
    elif kind == "ec384":
        key = ec.generate_private_key(ec.SECP384R1())
    else:
        raise ValueError(f"unknown key kind {kind}")
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def public_jwk(pem_path: Path) -> dict:
    """The public half of the PEM private key at `pem_path`, as a JWK (what a client registers
    with a Koppeltaal authorization server)."""
    pem = pem_path.read_bytes()
    is_ec = isinstance(serialization.load_pem_private_key(pem, None), ec.EllipticCurvePrivateKey)
    return (ECKey if is_ec else RSAKey).import_key(pem).as_dict(private=False)
