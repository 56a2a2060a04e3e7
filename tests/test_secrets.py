"""No secret of a run reaches a file or the terminal (docs/contract.md: tokens, private keys and client
assertions never appear in any report or log).

Each test runs `kt2conformance run` in a subprocess with real credentials, then searches every
file the run produced (everything under its working folder, reports and hidden files included)
and its captured stdout and stderr for each secret, and for pieces of it, since a truncated or
re-wrapped secret leaks just as well. To give the redaction something to do, the target is
careless: a proxy (tests/faulty_targets.py `HostileTarget`, mode `echo`) refuses the generated
Tasks with an OperationOutcome that quotes the request's Authorization header back, so the
credentials come back in response bodies, failure reasons, the minimal failing example and the
JUnit messages; and an authorization server that quotes the client assertion back in its refusal
puts it into the one-line set-up error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import SmartServer, public_jwk, write_private_key
from faulty_targets import AuthProxy, HostileTarget, run_harness

from kt2conformance.target._server import ReferenceServer

pytestmark = pytest.mark.server

TOKEN = "kt2-bearer-SECRET-3f9c1a7e5b2d4c6a8e0f"  # the bearer token test_setup_secrets sends
CLIENT_ID = "kt2-conformance-secrets-test"
# Pieces of at least WINDOW characters are searched for, every STEP characters along a secret:
# any leaked run of WINDOW + STEP characters of it is found.
WINDOW, STEP = 20, 8
# A valid-Task property (fails on the echoing target, so it is shrunk and reported in detail),
# an invalid-Task property (passes, with the echo in its reason) and the official examples.
SELECTION = "valid_tasks or Task.note or example"


def pieces(secret: str, skip: int = 0) -> Iterator[str]:
    """The secret and its WINDOW-long pieces from `skip` on (skip a prefix that is the same for
    every secret of its kind, such as the DER header of a PEM key)."""
    yield secret
    distinctive = secret[skip:]
    for start in range(0, max(1, len(distinctive) - WINDOW + 1), STEP):
        yield distinctive[start:start + WINDOW]


def pem_pieces(pem: str) -> Iterator[str]:
    """The PEM text, its base64 body in one line, and pieces of the body past its first line
    (the first line starts with the ASN.1 header all keys of a kind share)."""
    lines = [line for line in pem.strip().splitlines() if not line.startswith("-----")]
    yield pem.strip()
    yield "".join(lines)
    for line in lines[1:]:
        if len(line) >= WINDOW:
            yield from pieces(line)


def jwt_pieces(token: str) -> Iterator[str]:
    """A JWT and pieces of its claims and signature (its header is the same for every assertion
    of the same algorithm)."""
    yield from pieces(token, skip=token.index(".") + 1)


def produced_text(folder: Path, result: Any) -> dict[str, str]:
    """Every file under `folder` (recursively, hidden ones too) and the captured output, by name."""
    texts = {"stdout": result.stdout, "stderr": result.stderr}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            texts[str(path.relative_to(folder))] = path.read_bytes().decode("utf-8", "replace")
    return texts


def assert_no_leak(texts: dict[str, str], secrets: dict[str, Iterable[str]]) -> None:
    """None of the named secrets' pieces appears in any of the texts."""
    leaks = [f"{name} in {where}: ...{piece}..."
             for name, found in secrets.items() for piece in found
             for where, text in texts.items() if piece in text]
    assert not leaks, "\n".join(sorted(set(leaks))[:20])


def _cases(tmp_path: Path) -> list[dict[str, Any]]:
    return json.loads((tmp_path / "reports" / "summary.json").read_text())["cases"]


def _echoed(tmp_path: Path) -> None:
    """The echo reached the records, so the search below had something to find: the reasons
    quote the Authorization header, its value redacted."""
    reasons = [c["reason"] for c in _cases(tmp_path) if c["id"].startswith(("valid#", "Task."))]
    assert reasons and all("client with Bearer <redacted> may not create Tasks" in r
                           for r in reasons), reasons


@pytest.fixture(scope="module")
def private_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated for this test run, outside the runs' working folders (so only a leak puts it
    there)."""
    return write_private_key(tmp_path_factory.mktemp("keys") / "rsa.pem", "rsa")


def test_a_bearer_token_never_appears(tmp_path: Path, token_server: ReferenceServer) -> None:
    """A server requiring a token, behind the echoing proxy: the run finds the refused valid
    Tasks (exit 1) and not one file or line of output holds the token."""
    token = str(token_server.token)
    with HostileTarget(token_server.base_url, "echo") as target:
        result = run_harness(tmp_path, "--target", target.url, "--token", token,
                             "--examples", "2", "--no-cover", "--", "-k", SELECTION)
        echoed = target.misbehaved
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    assert echoed >= 3  # 2 valid, 2 invalid Tasks and the shrinking probes
    _echoed(tmp_path)
    assert "minimal failing example" in (tmp_path / "reports" / "report.html").read_text()
    assert_no_leak(produced_text(tmp_path, result), {"the bearer token": pieces(token)})


def test_smart_credentials_never_appear(
        tmp_path: Path, reference_server: ReferenceServer, private_key: Path) -> None:
    """SMART Backend Services behind the echoing proxy: no access token the auth server issued,
    no client assertion it received and no part of the private key appears anywhere."""
    with SmartServer(token_lifetime=1) as auth, \
            AuthProxy(reference_server.base_url, auth.accepts, auth.token_url) as resource, \
            HostileTarget(resource.url, "echo") as target:
        auth.register(CLIENT_ID, public_jwk(private_key))
        result = run_harness(tmp_path, "--target", target.url, "--client-id", CLIENT_ID,
                             "--private-key", str(private_key), "--examples", "2", "--no-cover",
                             "--", "-k", SELECTION)
        access_tokens, assertions = list(auth.issued), auth.assertions()
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    assert access_tokens and assertions and not auth.rejections
    _echoed(tmp_path)
    assert_no_leak(produced_text(tmp_path, result), {
        "an access token": (p for token in access_tokens for p in pieces(token)),
        "a client assertion": (p for a in assertions for p in jwt_pieces(a)),
        "the private key": pem_pieces(private_key.read_text()),
    })


def test_a_client_assertion_quoted_back_by_the_token_endpoint_never_appears(
        tmp_path: Path, reference_server: ReferenceServer, private_key: Path) -> None:
    """The token endpoint refuses (the key is not registered) and quotes the assertion in its
    error_description: the one-line set-up error still names the refusal, not the assertion."""
    with SmartServer(echo_errors=True) as auth, \
            AuthProxy(reference_server.base_url, auth.accepts, auth.token_url) as target:
        result = run_harness(tmp_path, "--target", target.url, "--client-id", CLIENT_ID,
                             "--private-key", str(private_key), timeout=60)
        assertions = auth.assertions()
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "token endpoint refused the client assertion" in result.stderr
    assert assertions and auth.rejections
    assert_no_leak(produced_text(tmp_path, result), {
        "a client assertion": (p for a in assertions for p in jwt_pieces(a)),
        "the private key": pem_pieces(private_key.read_text()),
    })
