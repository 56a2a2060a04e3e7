"""The FHIR client against a real misbehaving loopback server: it never raises for a bad server,
it says what went wrong, and it retries only where retrying is safe."""

from __future__ import annotations

import json
import socket
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from fakes import HUGE_BYTES, LingeringCloseServer, MisbehavingServer, gzip_bomb

from kt2conformance._errors import UsageError
from kt2conformance.target._client import (
    FHIR_JSON,
    MAX_BODY_BYTES,
    FhirClient,
    guard_production,
    parse_retry_after,
)
from kt2conformance.target._redact import REDACTED, redact, register_secret

TASK = {"resourceType": "Task", "status": "requested", "intent": "order"}


@pytest.fixture
def other() -> Iterator[MisbehavingServer]:
    """A second server, addressed as `localhost`, for redirects to another host."""
    with MisbehavingServer() as fake:
        yield fake


@pytest.fixture
def server(other: MisbehavingServer) -> Iterator[MisbehavingServer]:
    with MisbehavingServer(slow_seconds=2.0,
                           redirect_to=f"http://localhost:{other.port}/ok/Task/1") as fake:
        yield fake


def _client(server: MisbehavingServer, mode: str, **options: object) -> FhirClient:
    # Generous by default: under a loaded CI machine a loopback answer can take longer than a
    # fraction of a second; tests of the timeouts themselves pass their own short bounds.
    settings: dict = {"timeout": (2.0, 3.0), "backoff": 0.01, **options}
    return FhirClient(f"{server.url}/{mode}", **settings)


def test_well_behaved_answer_and_fhir_headers(server: MisbehavingServer) -> None:
    with _client(server, "ok") as client:
        created = client.create(TASK)
        read = client.read("Task", "1")
        searched = client.search("Task", {"status": "requested"})
    assert (created.status, created.error, created.json["id"]) == (201, None, "1")
    assert read.status == 200 and read.error is None and read.attempts == 1
    assert searched.url.endswith("/ok/Task?status=requested")
    method, path, headers, body = server.requests[0]
    assert (method, path) == ("POST", "/ok/Task")
    assert headers["Content-Type"] == FHIR_JSON and headers["Accept"] == FHIR_JSON
    assert json.loads(body) == TASK
    assert server.requests[1][2]["Content-Type"] == FHIR_JSON  # on GET too, always
    assert created.request_body == json.dumps(TASK)


def test_post_raw_sends_bytes_and_content_type_as_given(server: MisbehavingServer) -> None:
    with _client(server, "ok") as client:
        exchange = client.post_raw("Task", b'{"resourceType": "Task",', content_type="text/plain")
    assert exchange.status == 201
    assert server.requests[0][2]["Content-Type"] == "text/plain"
    assert server.requests[0][3] == b'{"resourceType": "Task",'


def test_ids_are_escaped_in_urls(server: MisbehavingServer) -> None:
    with _client(server, "ok") as client:
        client.read("Task", "../../metadata?x=1")
    assert server.requests[0][1] == "/ok/Task/..%2F..%2Fmetadata%3Fx%3D1"


def test_slow_server_gives_a_read_timeout(server: MisbehavingServer) -> None:
    started = time.monotonic()
    with _client(server, "slow", timeout=(1.0, 0.3)) as client:
        exchange = client.read("Task", "1")
    assert time.monotonic() - started < 1.5
    assert exchange.status is None
    assert exchange.error == "no response within 0.3 s (read timeout)"
    assert server.hits["slow"] == 1  # timeouts are not retried


def test_non_json_body(server: MisbehavingServer) -> None:
    with _client(server, "nonjson") as client:
        exchange = client.read("Task", "1")
    assert exchange.status == 200 and exchange.json is None
    assert exchange.error.startswith("response body is not JSON (text/html)")
    assert "<html>" in exchange.response_body


def test_empty_body(server: MisbehavingServer) -> None:
    with _client(server, "empty") as client:
        read = client.read("Task", "1")
        deleted = client.delete("Task", "1")
    assert read.status == 200 and read.error == "empty response body (HTTP 200)"
    assert deleted.status == 200 and deleted.error is None  # DELETE may answer without a body


def test_huge_body_is_cut_off(server: MisbehavingServer) -> None:
    with _client(server, "huge", timeout=(1.0, 5.0)) as client:
        exchange = client.read("Task", "1")
    assert exchange.status == 200 and exchange.json is None
    assert exchange.error == f"response body larger than {MAX_BODY_BYTES} bytes: cut off"
    # what the exchange keeps of it is a prefix to show: redacting megabytes takes seconds
    assert 0 < len(exchange.response_body) <= 64 * 1024
    time.sleep(0.1)
    assert server.huge_sent < HUGE_BYTES  # the client stopped reading; the rest was never sent


def test_a_gzip_bomb_is_inflated_only_as_far_as_read(server: MisbehavingServer) -> None:
    """200 KB of gzip that inflate to 200 MB: cut off at the body bound, and never inflated
    whole in memory (httpx's own decoder inflates each network chunk at once)."""
    gzip_bomb()  # built (200 MB, once) before memory is traced
    tracemalloc.start()
    try:
        with _client(server, "gzip-bomb", timeout=(1.0, 5.0)) as client:
            exchange = client.read("Task", "1")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert exchange.status == 200 and exchange.json is None
    assert exchange.error == f"response body larger than {MAX_BODY_BYTES} bytes: cut off"
    assert peak < 5 * MAX_BODY_BYTES, peak


def test_a_body_in_an_encoding_not_asked_for_is_unusable(server: MisbehavingServer) -> None:
    with _client(server, "brotli") as client:
        exchange = client.read("Task", "1")
    assert client._http.headers["accept-encoding"] == "gzip, deflate"
    assert exchange.status == 200 and exchange.json is None
    assert exchange.error is not None and "'br', which was not asked for" in exchange.error


def test_trickling_body_is_cut_off_at_the_time_budget(server: MisbehavingServer) -> None:
    started = time.monotonic()
    with _client(server, "trickle", timeout=(0.2, 0.3)) as client:
        exchange = client.read("Task", "1")
    assert time.monotonic() - started < 1.0
    assert exchange.status == 200 and exchange.error == "response body not complete within 0.5 s"


def test_connection_dropped_mid_body(server: MisbehavingServer) -> None:
    with _client(server, "truncated") as client:
        exchange = client.read("Task", "1")
    assert exchange.status == 200 and exchange.json is None
    assert exchange.error.startswith("connection dropped while reading the body")
    assert exchange.response_body == '{"resourceType": "Ta'


@pytest.mark.parametrize("mode", ["drop", "reset"])
def test_dropped_connection_is_retried_for_get(server: MisbehavingServer, mode: str) -> None:
    with _client(server, mode, max_retries=2) as client:
        exchange = client.read("Task", "1")
    assert exchange.status is None
    assert exchange.error.startswith("connection dropped")
    assert exchange.attempts == 3 and server.hits[mode] == 3


@pytest.mark.parametrize("mode", ["drop", "reset"])
def test_dropped_connection_is_not_retried_for_post(server: MisbehavingServer, mode: str) -> None:
    with _client(server, mode) as client:
        exchange = client.create(TASK)
    assert exchange.status is None and exchange.error.startswith("connection dropped")
    assert exchange.attempts == 1 and server.hits[mode] == 1


def test_429_waits_for_retry_after_then_succeeds(server: MisbehavingServer) -> None:
    started = time.monotonic()
    with _client(server, "throttle") as client:
        exchange = client.create(TASK)
    assert time.monotonic() - started >= 0.95  # Retry-After: 1 honoured
    assert exchange.status == 201 and exchange.error is None and exchange.attempts == 2
    assert server.hits["throttle"] == 2


def test_503_is_retried_with_backoff(server: MisbehavingServer) -> None:
    with _client(server, "unavailable") as client:
        exchange = client.read("Task", "1")
    assert exchange.status == 200 and exchange.attempts == 2 and exchange.error is None


def test_429_without_retries_left_is_reported(server: MisbehavingServer) -> None:
    with _client(server, "throttle", max_retries=0) as client:
        exchange = client.create(TASK)
    assert exchange.status == 429
    assert exchange.error == "still HTTP 429 after 0 retries"


def test_retry_after_is_capped(server: MisbehavingServer) -> None:
    started = time.monotonic()
    with _client(server, "throttle", max_retry_wait=0.1) as client:
        exchange = client.create(TASK)
    assert exchange.status == 201 and time.monotonic() - started < 0.9


def test_retries_wait_at_most_max_retry_wait_together(server: MisbehavingServer) -> None:
    """503 with Retry-After of 31 years, every time: one capped wait uses up the request's
    whole patience, so it ends after one retry instead of three full waits."""
    with _client(server, "unavailable-for-days", max_retry_wait=0.2) as client:
        exchange = client.create(TASK)
    assert exchange.status == 503 and exchange.error == "still HTTP 503 after 1 retries"
    assert exchange.attempts == 2 and server.hits["unavailable-for-days"] == 2


def test_redirect_to_another_host_is_not_followed(server: MisbehavingServer,
                                                  other: MisbehavingServer) -> None:
    with _client(server, "redirect") as client:
        exchange = client.read("Task", "1")
    assert exchange.status == 302
    assert exchange.error == (f"redirect (HTTP 302) to http://localhost:{other.port}/ok/Task/1 "
                              f"not followed")
    assert not other.requests


def test_a_refusal_s_connection_is_not_reused() -> None:
    """A server that closes the connection a moment after a refusal, without saying so: the
    next create must get its own answer, not "server disconnected" (a create is never retried,
    so that would be an unanswered case)."""
    with LingeringCloseServer() as fake, FhirClient(fake.url, timeout=(2.0, 3.0)) as client:
        answers = [client.create(TASK) for _ in range(3)]
    assert [(a.status, a.problem) for a in answers] == [(422, None)] * 3
    assert len(fake.connections) == 3


def test_rate_limit_spaces_requests(server: MisbehavingServer) -> None:
    started = time.monotonic()
    with _client(server, "ok", rate=20) as client:
        for _ in range(5):
            client.read("Task", "1")
    assert time.monotonic() - started >= 0.19  # 5 requests at 20/s: 4 gaps of 50 ms


def test_unreachable_target_is_a_usage_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with FhirClient(f"http://127.0.0.1:{port}/fhir", timeout=(0.5, 0.5), backoff=0.01) as client:
        exchange = client.read("Task", "1")
        assert exchange.status is None and exchange.error.startswith("cannot connect")
        with pytest.raises(UsageError, match=f"cannot reach http://127.0.0.1:{port}/fhir"):
            client.check_reachable()


def test_check_reachable_refuses_401(server: MisbehavingServer) -> None:
    with _client(server, "denied") as client, pytest.raises(UsageError, match="HTTP 401"):
        client.check_reachable()


def test_check_reachable_returns_metadata(server: MisbehavingServer) -> None:
    with _client(server, "ok") as client:
        exchange = client.check_reachable()
    assert exchange.status == 200 and server.requests[0][1] == "/ok/metadata"


def test_exchange_reproducer_and_redaction(server: MisbehavingServer) -> None:
    register_secret("patient-secret-in-body")
    with _client(server, "ok") as client:
        exchange = client.create({**TASK, "description": "patient-secret-in-body"})
    line = exchange.curl()
    assert line.startswith(f"curl -sS -i -X POST {server.url}/ok/Task -H ")
    assert "content-type: application/fhir+json" in line
    assert "--data-binary" in line and "patient-secret-in-body" not in line
    assert REDACTED in line
    assert "HTTP 201" in str(exchange)


def test_generic_redaction_without_registration() -> None:
    jwt_like = "eyJhbGciOiJSUzUxMiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl"
    text = (f"curl -H 'Authorization: Bearer tok-123' "
            f"-d 'grant_type=client_credentials&client_assertion={jwt_like}' "
            '{"access_token": "abc"} '
            "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----")
    shown = redact(text)
    for secret in ("tok-123", jwt_like, '"abc"', "MIIE"):
        assert secret not in shown
    assert "Authorization: Bearer <redacted>" in shown


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after(later) <= 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize(("url", "metadata", "refused"), [
    ("http://127.0.0.1:8080/fhir", {"software": {"name": "production"}}, False),
    ("http://localhost/fhir", None, False),
    ("http://[::1]:8080/fhir", None, False),
    ("https://fhir.example.org/fhir", {"software": {"name": "HAPI FHIR Server"}}, False),
    ("https://fhir-prod.example.org/fhir", None, True),
    ("https://fhir-server.koppeltaal.nl/fhir/DEFAULT", None, True),
    ("https://staging-fhir-server.koppeltaal.nl/fhir/DEFAULT", None, False),
    ("https://test.koppeltaal.nl/fhir", {"name": "Koppeltaal production"}, False),
    ("https://fhir.example.org/fhir", {"implementation": {"description": "Productie"}}, True),
    ("https://fhir.example.org/fhir", {"software": {"name": "Product X"}}, False),
])
def test_production_guard(url: str, metadata: object, refused: bool) -> None:
    if refused:
        with pytest.raises(UsageError, match="--allow-production"):
            guard_production(url, metadata, allow=False)
    else:
        guard_production(url, metadata, allow=False)
    guard_production(url, metadata, allow=True)  # the override always wins
