"""The HTTP client the suites use to talk to the server under test.

The server under test may misbehave in any way (hang, drop connections, send HTML or 50 MB), and
that is a finding, not a crash: every request returns an `Exchange`, with `error` saying why no
usable answer came. Only set-up problems raise (`UsageError`): an unreachable target, refused
credentials, a target that looks like production.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import re
import shlex
import threading
import time
import zlib
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from kt2conformance import __version__
from kt2conformance._errors import UsageError, dump_json
from kt2conformance._koppeltaal import PRODUCTION_DOMAIN
from kt2conformance._vocabulary import Problem
from kt2conformance.target._redact import redact, redact_headers

FHIR_JSON = "application/fhir+json"
MAX_BODY_BYTES = 8 * 1024 * 1024  # a read-back may hold several 1 MiB strings
_SHOWN_OF_TOO_LARGE = 64 * 1024  # what an exchange keeps of a body past that bound
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
RETRY_STATUSES = frozenset({429, 503})
# request headers that add nothing to a reproducer line
_CURL_SKIP = frozenset({"host", "content-length", "accept-encoding", "connection", "user-agent"})


@dataclass
class Exchange:
    """One request and what came back, safe to put in a report (secrets already redacted).

    `status` is None when no HTTP answer came at all. `problem` is None for a usable answer;
    otherwise it says, as a kind, what was wrong (timeout, dropped connection, body not JSON,
    empty or too large body, unfollowed redirect, still throttled after the retries), and
    `error` says it to a person. A set `problem` with a set `status` means the server did
    answer, but not usably. Header names are lower case.
    The response body is kept up to the client's bound (8 MiB by default)."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str | None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    json: Any = None
    error: str | None = None
    elapsed: float = 0.0
    attempts: int = 1
    problem: Problem | None = None

    def fail(self, problem: Problem, message: str) -> None:
        """Mark the answer unusable: its kind for verdicts, its message for people."""
        self.problem, self.error = problem, message

    def curl(self, body: bool = True) -> str:
        """A command line that repeats this request, with credentials shown as <redacted>
        (without its body when `body` is false: report.html adds it from the Task it shows)."""
        parts = ["curl", "-sS", "-i", "-X", self.method, shlex.quote(self.url)]
        for name, value in self.request_headers.items():
            if name.lower() not in _CURL_SKIP:
                parts += ["-H", shlex.quote(f"{name}: {value}")]
        if self.request_body and body:
            parts += ["--data-binary", shlex.quote(self.request_body)]
        return redact(" ".join(parts))

    def __str__(self) -> str:
        answer = f"HTTP {self.status}" if self.status is not None else "no response"
        text = f"{self.method} {self.url} -> {answer} ({self.elapsed:.2f} s"
        text += f", {self.attempts} attempts)" if self.attempts > 1 else ")"
        if self.error:
            text += f": {self.error}"
        return redact(text)


@dataclass
class _Attempt:
    """The outcome of one try, plus what the retry decision needs to know."""

    exchange: Exchange
    dropped: bool = False  # the connection failed before an answer: retryable when idempotent


class FhirClient:
    """A FHIR R4 JSON client for one base URL; see the module docstring for the error model.

    Retries: 429 and 503 answers are retried (any method: the server did not process them),
    waiting for Retry-After (seconds or HTTP date) or an exponential backoff, all the waits of
    one request together at most `max_retry_wait` (a server asking for days gets that, once);
    dropped connections are retried only for idempotent methods, never for POST, since the
    server may have created the resource already. Timeouts are not retried: they would only
    multiply the wait. Redirects are never followed; the 3xx is returned as it came.
    """

    def __init__(
        self,
        base_url: str,
        auth: httpx.Auth | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        max_retries: int = 3,
        rate: float | None = None,
        allow_production: bool = False,
        max_body: int = MAX_BODY_BYTES,
        backoff: float = 0.5,
        max_retry_wait: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.timeout = timeout
        self.max_retries = max_retries
        self.allow_production = allow_production
        self.max_body = max_body
        self.backoff = backoff
        self.max_retry_wait = max_retry_wait
        self._interval = 1.0 / rate if rate else 0.0
        self._next_slot = 0.0
        self._rate_lock = threading.Lock()
        self._hurry = threading.Event()
        self.requests_sent = 0  # every HTTP request, retries included (summary.json: requests)
        self._http = httpx.Client(
            auth=auth,
            timeout=httpx.Timeout(timeout[1], connect=timeout[0]),
            follow_redirects=False,
            headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON,
                     "Accept-Encoding": ACCEPT_ENCODING,
                     "User-Agent": f"kt2conformance/{__version__}"},
        )

    # -- FHIR interactions -----------------------------------------------------------------------

    def create(self, resource: Mapping[str, Any]) -> Exchange:
        """POST the resource to its type endpoint."""
        return self._request("POST", _segment(str(resource.get("resourceType", ""))),
                             body=dump_json(resource).encode())

    def post_raw(self, resource_type: str, body: bytes, content_type: str = FHIR_JSON,
                 authorization: str | None = None) -> Exchange:
        """POST bytes as given: for malformed JSON and wrong content types. `authorization`
        replaces the run's credentials for this request: "" sends none, anything else is sent
        as the Authorization header (for the bearer-token rule); None keeps the run's."""
        return self._request("POST", _segment(resource_type), body=body, content_type=content_type,
                             authorization=authorization)

    def bearer_token(self) -> str | None:
        """The bearer token the run's requests carry, None for a run without credentials."""
        current = getattr(self.auth, "current_token", None)
        return current() if callable(current) else None

    def update(self, resource: Mapping[str, Any], if_match: str | None = None) -> Exchange:
        """PUT the resource to its own URL (`Type/id`), with an If-Match header when given (a
        Koppeltaal server refuses an update without one)."""
        path = f"{_segment(str(resource.get('resourceType', '')))}/{_segment(str(resource.get('id', '')))}"
        return self._request("PUT", path, body=dump_json(resource).encode(),
                             headers={"If-Match": if_match} if if_match is not None else None)

    def read(self, resource_type: str, resource_id: str) -> Exchange:
        return self._request("GET", f"{_segment(resource_type)}/{_segment(resource_id)}")

    def delete(self, resource_type: str, resource_id: str) -> Exchange:
        """DELETE; an empty answer is fine here (servers may send 204 or 200 without a body)."""
        return self._request("DELETE", f"{_segment(resource_type)}/{_segment(resource_id)}",
                             expect_json=False)

    def search(self, resource_type: str,
               params: Mapping[str, str] | None = None) -> Exchange:
        return self._request("GET", _segment(resource_type), params=params)

    def metadata(self) -> Exchange:
        return self._request("GET", "metadata")

    def check_reachable(self) -> Exchange:
        """The set-up check a run does first: the target answers `GET metadata`, accepts the
        credentials and does not look like production. Returns the metadata exchange."""
        exchange = self.metadata()
        if exchange.status is None:
            raise UsageError(f"cannot reach {self.base_url}: {exchange.error}")
        if exchange.status in (401, 403):
            raise UsageError(f"{self.base_url} answered HTTP {exchange.status} to GET metadata: "
                             f"check --token or --client-id/--private-key")
        guard_production(self.base_url, exchange.json, self.allow_production)
        return exchange

    def close(self) -> None:
        self._http.close()
        close_auth = getattr(self.auth, "close", None)
        if callable(close_auth):
            close_auth()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = FHIR_JSON,
        expect_json: bool = True,
        headers: Mapping[str, str] | None = None,
        authorization: str | None = None,
    ) -> Exchange:
        auth: httpx.Auth | None = None if authorization is None else _Credentials(authorization)
        request = self._http.build_request(method, f"{self.base_url}/{path}", content=body,
                                           params=params,
                                           headers={"Content-Type": content_type, **(headers or {})})
        started = time.monotonic()
        attempt = 0
        waited = 0.0  # all retries of one request wait at most max_retry_wait together
        while True:
            self._throttle()
            with self._rate_lock:
                self.requests_sent += 1
            outcome = self._send_once(request, body, expect_json, auth)
            exchange = outcome.exchange
            wait = self._retry_wait(method, outcome, attempt)
            if wait is None or self._hurry.is_set() or waited >= self.max_retry_wait:
                break
            wait = min(wait, self.max_retry_wait - waited)
            waited += wait
            attempt += 1
            if self._hurry.wait(wait):  # stopping: the answer so far is the answer
                break
        exchange.attempts = attempt + 1
        exchange.elapsed = time.monotonic() - started
        if exchange.status in RETRY_STATUSES:  # whatever its body (often none): still throttled
            exchange.fail(Problem.THROTTLED, f"still HTTP {exchange.status} after {attempt} retries")
        return exchange

    def _retry_wait(self, method: str, outcome: _Attempt, attempt: int) -> float | None:
        """Seconds to wait before the next try, or None when this outcome is final."""
        if attempt >= self.max_retries:
            return None
        exchange = outcome.exchange
        if exchange.status in RETRY_STATUSES:
            hinted = parse_retry_after(exchange.response_headers.get("retry-after"))
            wait = hinted if hinted is not None else self.backoff * 2.0**attempt
            return min(wait, self.max_retry_wait)
        if outcome.dropped and method in IDEMPOTENT:
            return min(self.backoff * 2.0**attempt, self.max_retry_wait)
        return None

    def hurry(self, on: bool = True) -> None:
        """While a run is being stopped: no retries and no waiting for a rate slot, so every
        request in flight ends within one attempt's timeout. `hurry(False)` for the cleanup."""
        if on:
            self._hurry.set()
        else:
            self._hurry.clear()

    def _throttle(self) -> None:
        """Keep to the `rate` option (requests per second) across threads."""
        if not self._interval or self._hurry.is_set():
            return
        with self._rate_lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._interval
        if slot > now:
            self._hurry.wait(slot - now)

    def _send_once(self, request: httpx.Request, body: bytes | None, expect_json: bool,
                   auth: httpx.Auth | None = None) -> _Attempt:
        exchange = Exchange(
            method=request.method,
            url=str(request.url),
            request_headers={},
            request_body=redact(body.decode("utf-8", "replace")) if body is not None else None,
        )
        started = time.monotonic()
        try:
            response = (self._http.send(request, stream=True) if auth is None
                        else self._http.send(request, stream=True, auth=auth))
        except httpx.TimeoutException as exc:
            exchange.fail(*_timeout(exc, self.timeout))
            return _Attempt(exchange)
        except (httpx.ConnectError, httpx.ReadError, httpx.WriteError,
                httpx.RemoteProtocolError) as exc:
            problem = (Problem.CANNOT_CONNECT if isinstance(exc, httpx.ConnectError)
                       else Problem.DROPPED)
            exchange.fail(problem, f"{problem.value}: {_describe(exc)}")
            return _Attempt(exchange, dropped=True)
        except httpx.HTTPError as exc:
            exchange.fail(Problem.REQUEST_FAILED, f"request failed: {_describe(exc)}")
            return _Attempt(exchange)
        finally:
            # the auth flow has set its headers on the request by now, whatever happened
            exchange.request_headers = redact_headers(request.headers.multi_items())
        try:
            exchange.status = response.status_code
            exchange.response_headers = redact_headers(response.headers.multi_items())
            raw, unusable = self._read_body(response, started)
        finally:
            if response.status_code >= 400:
                _retire_connection(response)
            response.close()
        if unusable is not None and unusable[0] is Problem.BODY_TOO_LARGE:
            raw = raw[:_SHOWN_OF_TOO_LARGE]  # enough to show; redacting megabytes takes seconds
        exchange.response_body = redact(raw.decode("utf-8", "replace"))
        if unusable is None:
            exchange.json, unusable = _interpret_body(response, raw, expect_json)
        if unusable is not None:
            exchange.fail(*unusable)
        return _Attempt(exchange)

    def _read_body(self, response: httpx.Response,
                   started: float) -> tuple[bytes, tuple[Problem, str] | None]:
        """Up to `max_body` bytes of the (decoded) body, read in chunks so a huge or endless body
        cannot exhaust memory; a trickling body is cut off at the connect+read time budget."""
        budget = self.timeout[0] + self.timeout[1]
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in _decoded(response):
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_body:
                    return (b"".join(chunks)[: self.max_body],
                            (Problem.BODY_TOO_LARGE,
                             f"response body larger than {self.max_body} bytes: cut off"))
                if time.monotonic() - started > budget:
                    return b"".join(chunks), (Problem.BODY_INCOMPLETE,
                                              f"response body not complete within {budget:g} s")
        except httpx.TimeoutException as exc:
            return b"".join(chunks), (Problem.BODY_INCOMPLETE,
                                      f"body incomplete: {_timeout(exc, self.timeout)[1]}")
        except httpx.HTTPError as exc:
            return b"".join(chunks), (Problem.DROPPED, "connection dropped while reading the "
                                                       f"body: {_describe(exc)}")
        except _Undecodable as exc:
            return b"".join(chunks), (Problem.NOT_JSON, str(exc))
        return b"".join(chunks), None


class _Undecodable(Exception):
    """A response body in a content encoding that cannot be (or was not asked to be) decoded."""


# What the client asks for (and decodes itself, `_decoded`): a server that compresses anyway
# in another encoding sent an answer the client cannot read.
ACCEPT_ENCODING = "gzip, deflate"
_DECODED_CHUNK = 64 * 1024


def _decoded(response: httpx.Response) -> Iterator[bytes]:
    """The body, decoded from its Content-Encoding in chunks of at most 64 KiB: a gzip bomb
    (kilobytes that inflate to gigabytes) is inflated only as far as the reader reads, never
    all at once (httpx inflates each network chunk whole)."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        yield from response.iter_raw()
        return
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise _Undecodable(f"response body in content encoding {encoding[:40]!r}, which was not "
                           f"asked for (Accept-Encoding: {ACCEPT_ENCODING})")
    inflate = zlib.decompressobj(47)  # 32 + 15: a gzip or a zlib header, whichever it is
    try:
        for raw in response.iter_raw():
            data = inflate.decompress(raw, _DECODED_CHUNK)
            while data:
                yield data
                tail = inflate.unconsumed_tail
                data = inflate.decompress(tail, _DECODED_CHUNK) if tail else b""
    except zlib.error as exc:
        raise _Undecodable(f"response body is not valid {encoding}: {exc}") from None


class _Credentials(httpx.Auth):
    """The credentials of one request instead of the run's: none ("") or this Authorization
    header value."""

    def __init__(self, authorization: str) -> None:
        self.authorization = authorization

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.authorization:
            request.headers["Authorization"] = self.authorization
        else:
            request.headers.pop("Authorization", None)
        yield request


def _interpret_body(response: httpx.Response, raw: bytes,
                    expect_json: bool) -> tuple[Any, tuple[Problem, str] | None]:
    """The parsed JSON of a complete answer, or why the answer is not usable."""
    if response.is_redirect:
        return None, (Problem.REDIRECT, f"redirect (HTTP {response.status_code}) to "
                                         f"{response.headers.get('location', '?')} not followed")
    if not raw.strip():
        if expect_json and response.status_code not in (204, 304):
            return None, (Problem.EMPTY_BODY, f"empty response body (HTTP {response.status_code})")
        return None, None
    try:
        return json.loads(raw), None
    except (ValueError, RecursionError):
        content_type = response.headers.get("content-type", "no content type")
        snippet = " ".join(raw[:60].decode("utf-8", "replace").split())
        return None, (Problem.NOT_JSON, f"response body is not JSON ({content_type}): {snippet!r}")


# What a server said in an OperationOutcome: its error issues, and where they point.
_MAX_DIAGNOSTIC = 200
_INDEX = re.compile(r"\[\d+\]")


def outcome_errors(body: Any) -> list[str]:
    """The error and fatal issues of an OperationOutcome, as short texts ([] when there is none)."""
    texts = []
    for issue in _error_issues(body):
        details: dict[str, Any] = issue["details"] if isinstance(issue.get("details"), dict) else {}
        text = issue.get("diagnostics") or details.get("text") or issue.get("code") or "error"
        texts.append(" ".join(str(text).split())[:_MAX_DIAGNOSTIC])
    return texts


def outcome_elements(body: Any) -> list[str]:
    """The elements the error issues of an OperationOutcome point at (expression, else location),
    without list indexes: `Task.identifier[0].use` -> `Task.identifier.use`."""
    found = []
    for issue in _error_issues(body):
        for pointer in ("expression", "location"):
            paths = issue.get(pointer)
            if isinstance(paths, list) and paths and isinstance(paths[0], str):
                found.append(_INDEX.sub("", paths[0]))
                break
    return found


def _error_issues(body: Any) -> list[dict[str, Any]]:
    """The error and fatal issues of an OperationOutcome, whatever else its JSON holds: a
    server's answer is data, and wrongly typed fields are skipped, never trusted."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return []
    issues = body.get("issue")
    if not isinstance(issues, list):
        return []
    return [issue for issue in issues if isinstance(issue, dict)
            and isinstance(issue.get("severity"), str) and issue["severity"] in ("error", "fatal")]


def _segment(value: str) -> str:
    """A URL path segment: ids and type names from generated or server data are escaped."""
    return quote(value, safe="")


def _retire_connection(response: httpx.Response) -> None:
    """Never reuse the connection an error answer came on. Servers (Jetty under HAPI among them)
    often close it right after a refusal without saying `Connection: close`; the pool can hand
    it out again before it notices, and the next request then meets "Server disconnected
    without sending a response". For a POST that is an unanswered case (a create is never
    retried: it may have been applied), so an incomplete run. A fresh connection per refusal
    costs a handshake; a false "no answer" costs a verdict."""
    stream = response.extensions.get("network_stream")
    if stream is not None:
        stream.close()


def _describe(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _timeout(exc: httpx.TimeoutException, timeout: tuple[float, float]) -> tuple[Problem, str]:
    if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
        return (Problem.CONNECT_TIMEOUT,
                f"could not connect within {timeout[0]:g} s (connect timeout)")
    if isinstance(exc, httpx.WriteTimeout):
        return (Problem.WRITE_TIMEOUT,
                f"could not send the request within {timeout[1]:g} s (write timeout)")
    return Problem.READ_TIMEOUT, f"no response within {timeout[1]:g} s (read timeout)"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or HTTP date), None if absent or
    unreadable; dates in the past mean 0."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# Production guard. The rule, in order:
#   1. --allow-production: always allowed.
#   2. loopback hosts (localhost, 127.0.0.0/8, ::1) are allowed.
#   3. a host with a test-like label is allowed: a dot- or dash-separated part that is
#      test, tst, staging, stage, acc, acceptance, acceptatie, dev, develop, development,
#      sandbox, local or localhost, optionally followed by digits (test2, acc-fhir, ...).
#   4. otherwise the target is refused as production when any holds: a host label prod,
#      production or productie (digits allowed); the host is koppeltaal.nl or under it (the
#      production Koppeltaal domain; its test environments carry a test-like label); the
#      CapabilityStatement's name, title, software.name or implementation.description
#      mentions prod/production/productie as a word.
_TEST_LABEL = re.compile(r"^(test|tst|staging|stage|acc|acceptance|acceptatie|dev|develop|"
                         r"development|sandbox|local|localhost)\d*$")
_PROD_LABEL = re.compile(r"^(prod|production|productie)\d*$")
_PROD_WORD = re.compile(r"(?i)\bprod(uction|uctie)?\b")


def guard_production(base_url: str, metadata: Any, allow: bool) -> None:
    """Refuse (UsageError) a target that looks like production, so the harness never writes test
    Tasks into a live care system by accident. The rule is in the comment above."""
    if allow:
        return
    host = httpx.URL(base_url).host.lower()
    if host == "localhost" or host.endswith(".localhost") or _is_loopback(host):
        return
    labels = re.split(r"[.-]", host)
    if any(_TEST_LABEL.match(label) for label in labels):
        return
    reason = None
    if any(_PROD_LABEL.match(label) for label in labels):
        reason = f"its host {host} says prod"
    elif host == PRODUCTION_DOMAIN or host.endswith("." + PRODUCTION_DOMAIN):
        reason = f"{host} is a Koppeltaal domain without a test/acc/staging label"
    else:
        reason = _production_claim(metadata)
    if reason:
        raise UsageError(f"{base_url} looks like a production server ({reason}); the harness "
                         f"writes test data, so it refuses: pass --allow-production to insist")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _production_claim(metadata: Any) -> str | None:
    if not isinstance(metadata, dict):
        return None
    software: dict[str, Any] = metadata["software"] if isinstance(metadata.get("software"), dict) else {}
    implementation: dict[str, Any] = (metadata["implementation"]
                                      if isinstance(metadata.get("implementation"), dict) else {})
    fields = {
        "name": metadata.get("name"),
        "title": metadata.get("title"),
        "software.name": software.get("name"),
        "implementation.description": implementation.get("description"),
    }
    for name, value in fields.items():
        if isinstance(value, str) and _PROD_WORD.search(value):
            return f"its CapabilityStatement {name} is {value!r}"
    return None
