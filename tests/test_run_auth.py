"""Whole runs of `kt2conformance run` with SMART Backend Services auth, as against a Koppeltaal
server: a fake authorization server (tests/fakes.py `SmartServer`: checks each client
assertion's signature against the registered public key, iss = sub = client id, aud = token URL,
exp at most 5 minutes ahead, jti never reused, grant_type and client_assertion_type) issues
short-lived access tokens, and an auth-checking proxy in front of the reference server
(tests/faulty_targets.py `AuthProxy`) lets through only requests with a token that server issued
and that has not expired (401 otherwise); it also serves `.well-known/smart-configuration`.

The unit tests (test_auth.py) show the pieces work; these show a run uses them end to end: the
token is fetched and sent on every request, a token that dies mid-run is replaced without losing
a case, and refused credentials end the run at once with one line that says what to fix.
Real HTTP on loopback, in a subprocess, as users run it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes import SmartServer, public_jwk, write_private_key
from faulty_targets import AuthProxy, resource_counts, run_harness
from hapi_divergences import HAPI_NOT_ENFORCED

from kt2conformance.target._server import ReferenceServer

pytestmark = pytest.mark.server

CLIENT_ID = "kt2-conformance-run-test"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Keys generated for this test run: two RSA keys (one registered, one not) and a P-384 key."""
    folder = tmp_path_factory.mktemp("keys")
    return {kind: write_private_key(folder / f"{kind}.pem", kind.split("-")[0])
            for kind in ("rsa", "rsa-unregistered", "ec384")}


@dataclass
class Koppeltaal:
    """The authorization server and the auth-checking proxy in front of the reference server."""

    auth: SmartServer
    proxy: AuthProxy

    @property
    def target(self) -> str:
        return self.proxy.url

    def tokens_used(self) -> set[str]:
        """The distinct access tokens the proxy accepted requests with."""
        return set(self.proxy.accepted)


@pytest.fixture
def koppeltaal(reference_server: ReferenceServer,
               keys: dict[str, Path]) -> Callable[..., Any]:
    """Starts the auth server (options passed on to `SmartServer`) with the RSA and EC keys
    registered for CLIENT_ID, and the proxy; checks afterwards that the run left the reference
    server as it found it."""

    @contextmanager
    def start(**options: Any) -> Iterator[Koppeltaal]:
        before = resource_counts(reference_server.base_url)
        with SmartServer(**options) as auth, \
                AuthProxy(reference_server.base_url, auth.accepts, auth.token_url) as proxy:
            auth.register(CLIENT_ID, public_jwk(keys["rsa"]))
            auth.register(CLIENT_ID, public_jwk(keys["ec384"]))
            yield Koppeltaal(auth, proxy)
        assert resource_counts(reference_server.base_url) == before

    return start


def _smart(key: Path, *more: str) -> list[str]:
    return ["--client-id", CLIENT_ID, "--private-key", str(key), *more]


def _summary(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "reports" / "summary.json").read_text())


def _other_refusals(kt: Koppeltaal, data: dict[str, Any]) -> list[str]:
    """What the proxy refused, less the bearer-token rule's own cases (a POST /Task without a
    token, the others with forged ones): those refusals are the rule enforced."""
    left = list(kt.proxy.refused)
    cases = [c for c in data["cases"] if c["constraint"] == "server/bearer-token"]
    for i, _ in enumerate(cases):
        why = "no bearer token" if i == 0 else "token not accepted"
        left.remove(f"POST /fhir/Task: {why}")
    return left


def _assert_conforms(result: Any, tmp_path: Path) -> dict[str, Any]:
    """The run went through: every case judged, and failures only on the keys HAPI (the
    reference server) is documented to let through (docs/hapi-divergences.md)."""
    data = _summary(tmp_path)
    failing = {c["constraint"] for c in data["cases"] if c["verdict"] != "pass"}
    assert failing <= set(HAPI_NOT_ENFORCED), failing
    assert result.returncode == (1 if failing else 0), result.stdout[-3000:] + result.stderr
    assert data["totals"]["errors"] == 0
    assert data["totals"]["cases"] == data["totals"]["passed"] + data["totals"]["failed"] > 0
    return data


@pytest.mark.parametrize(("alg", "key", "token_url_given"), [
    ("RS512", "rsa", False),  # the default algorithm; token URL from smart-configuration
    ("ES384", "ec384", True),
])
def test_a_full_smart_run_passes(tmp_path: Path, koppeltaal: Callable[..., Any],
                                 keys: dict[str, Path], alg: str, key: str,
                                 token_url_given: bool) -> None:
    """Every suite, through the auth proxy: the run conforms, every request carried a token the
    auth server issued (none was refused), and the assertions were signed with `alg`."""
    with koppeltaal() as kt:
        options = _smart(keys[key])
        if alg != "RS512":
            options += ["--alg", alg]
        if token_url_given:
            options += ["--token-url", kt.auth.token_url]
        result = run_harness(tmp_path, "--target", kt.target, *options, "--examples", "1",
                             "--no-cover")
        data = _assert_conforms(result, tmp_path)
        assert data["totals"]["cases"] > 100
        assert not kt.auth.rejections and not _other_refusals(kt, data)
        # the bearer-token rule was checked: no token and forged ones, each refused
        assert data["constraints"]["server/bearer-token"]["enforced"] is True
        assert kt.auth.token_requests >= 1
        assert {h["alg"] for h in kt.auth.assertion_headers()} == {alg}
        assert kt.tokens_used() and kt.tokens_used() <= set(kt.auth.issued)
        assert sum(kt.proxy.accepted.values()) > data["totals"]["cases"]  # set-up, reads, deletes
        # discovered only when not given
        assert (kt.proxy.discoveries == 0) if token_url_given else (kt.proxy.discoveries >= 1)


def test_short_lived_tokens_are_renewed_during_the_run(
        tmp_path: Path, koppeltaal: Callable[..., Any], keys: dict[str, Path]) -> None:
    """Tokens that live 1 s (and say so) during a run of several seconds: the harness fetches
    new ones before they run out, and no case is lost to an expired token."""
    with koppeltaal(token_lifetime=1) as kt:
        result = run_harness(tmp_path, "--target", kt.target, *_smart(keys["rsa"]),
                             "--examples", "4", "--no-cover")
        data = _assert_conforms(result, tmp_path)
        assert data["duration_s"] > 3  # the tokens really ran out several times
        assert not kt.auth.rejections
        assert kt.auth.token_requests >= 4 and len(kt.tokens_used()) >= 4
        # renewed ahead of expiry, as expires_in asks, not only after a 401 (the precheck and
        # the run each fetch a first token; a request near the edge may still meet a 401)
        renewals = kt.auth.token_requests - 2
        assert len(_other_refusals(kt, data)) < renewals / 2, kt.proxy.refused


def test_tokens_dying_before_their_time_are_replaced_on_401(
        tmp_path: Path, koppeltaal: Callable[..., Any], keys: dict[str, Path]) -> None:
    """The auth server announces 300 s but its tokens die after 1 s: the proxy answers 401
    mid-run, and the harness fetches a fresh token and repeats the request, so every case
    still passes."""
    with koppeltaal(token_lifetime=300, honoured_lifetime=1) as kt:
        result = run_harness(tmp_path, "--target", kt.target, *_smart(keys["rsa"]),
                             "--examples", "4", "--no-cover")
        data = _assert_conforms(result, tmp_path)
        assert data["duration_s"] > 3
        refused = _other_refusals(kt, data)
        assert refused  # the proxy did turn expired tokens away ...
        assert all(r.endswith("token not accepted") for r in refused)
        assert kt.auth.token_requests >= 3 + 1  # ... and each 401 got a fresh one
        assert len(kt.tokens_used()) >= 3


def _one_line_error(result: Any) -> str:
    """The run's only output: one error line on stderr."""
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kt2conformance: error: ")
    return lines[0]


def test_an_unregistered_private_key_is_a_one_line_setup_error(
        tmp_path: Path, koppeltaal: Callable[..., Any], keys: dict[str, Path]) -> None:
    """A well-formed key the auth server does not know: the token endpoint refuses the
    assertion, and the run stops before any case, naming the options to fix."""
    with koppeltaal() as kt:
        result = run_harness(tmp_path, "--target", kt.target,
                             *_smart(keys["rsa-unregistered"]), timeout=60)
        line = _one_line_error(result)
        assert "token endpoint refused the client assertion" in line
        assert "check --client-id and --private-key" in line
        assert kt.auth.rejections == ["signature does not verify with the registered keys"]
        assert not kt.proxy.accepted  # nothing reached the FHIR server


def test_a_key_of_the_wrong_kind_for_the_algorithm_is_a_one_line_setup_error(
        tmp_path: Path, koppeltaal: Callable[..., Any], keys: dict[str, Path]) -> None:
    """An EC key with the default RS512: caught before any request, with the fix named."""
    with koppeltaal() as kt:
        result = run_harness(tmp_path, "--target", kt.target, *_smart(keys["ec384"]),
                             timeout=60)
        line = _one_line_error(result)
        assert "--alg RS512 needs an RSA private key" in line and "EC secp384r1" in line
        assert kt.auth.token_requests == 0 and not kt.proxy.accepted


def test_a_bad_bearer_token_is_a_one_line_setup_error(
        tmp_path: Path, koppeltaal: Callable[..., Any]) -> None:
    """`--token` the server does not accept: 401 on the first request, exit 2, one line."""
    with koppeltaal() as kt:
        result = run_harness(tmp_path, "--target", kt.target, "--token", "not-a-real-token-42",
                             timeout=60)
        line = _one_line_error(result)
        assert "answered HTTP 401" in line and "check --token" in line
        assert kt.proxy.refused and not kt.proxy.accepted


def test_a_whole_run_against_the_reference_server_in_smart_mode(tmp_path: Path,
                                                                keys: dict[str, Path]) -> None:
    """The embedded server's own SMART Backend Services (no fake, no proxy): the harness finds
    the token endpoint in smart-configuration, trades RS512 client assertions for access tokens
    that live 3 seconds, and keeps replacing them, so a run of many seconds loses no case to a
    401; the resources it creates carry the server's resource-origin."""
    with ReferenceServer(smart_client_id=CLIENT_ID, smart_client_key=public_pem(keys["rsa"]),
                         token_lifetime=3) as server:
        result = run_harness(tmp_path, "--target", server.base_url, *_smart(keys["rsa"]),
                             "--examples", "2", "--", "-k", "valid or example or server_rule or Task.note",
                             timeout=300)
        data = _assert_conforms(result, tmp_path)
    assert data["duration_s"] > 6  # longer than two token lifetimes: tokens were replaced
    assert not [c for c in data["cases"] if c["status"] == 401
                and c["constraint"] != "server/bearer-token"]
    # the embedded server checks its tokens: none, unknown, forged signature, alg none refused
    assert data["constraints"]["server/bearer-token"]["enforced"] is True
    assert str(keys["rsa"]) not in result.stdout + result.stderr


def test_run_without_target_starts_the_reference_server_in_smart_mode(tmp_path: Path,
                                                                      keys: dict[str, Path]) -> None:
    """`run --client-id ID --private-key PEM` without --target: the embedded server registers
    that client with the key's public half, so the run authenticates as against production."""
    result = run_harness(tmp_path, *_smart(keys["ec384"], "--alg", "ES384"), "--examples", "1",
                         "--", "-k", "example or server_rule", timeout=300)
    data = _assert_conforms(result, tmp_path)
    assert any(c["id"].startswith("server/resource-origin") for c in data["cases"])


def public_pem(private: Path) -> Path:
    """The public half of a private key PEM, next to it."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    out = private.with_suffix(".pub.pem")
    out.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return out
