"""Every set-up failure path with a target that quotes the credentials back: the one-line error
(and everything else the run prints or writes) never shows the token, an access token, a client
assertion or the private key, also when the key arrives as PEM text in KT2_PRIVATE_KEY, as CI
secrets do.

The target is a proxy in front of the reference server that fails exactly one set-up step, in
the way a careless server does: the refusal's OperationOutcome, and a WWW-Authenticate header,
quote the request's Authorization header."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes import SmartServer, public_jwk, write_private_key
from faulty_targets import AuthProxy, ForwardingProxy, Incoming, _ForwardingHandler, run_harness
from test_secrets import CLIENT_ID, TOKEN, assert_no_leak, jwt_pieces, pem_pieces, pieces, produced_text

from kt2conformance.target._server import ReferenceServer

pytestmark = pytest.mark.server

# step -> (method, path test, status): the one request of set-up that is refused
STEPS: dict[str, tuple[str, Callable[[str], bool], int]] = {
    "metadata-401": ("GET", lambda path: path == "/fhir/metadata", 401),
    "metadata-403": ("GET", lambda path: path == "/fhir/metadata", 403),
    "prerequisite-400": ("POST", lambda path: path == "/fhir/Patient", 400),
    "prerequisite-422": ("POST", lambda path: path == "/fhir/Practitioner", 422),
    "prerequisite-401": ("POST", lambda path: path == "/fhir/CareTeam", 401),
    "prerequisite-403": ("POST", lambda path: path == "/fhir/Device", 403),
    "example-task-403": ("POST", lambda path: path == "/fhir/Task", 403),
}


class Quoting(ForwardingProxy):
    """Refuses one set-up step (see STEPS), quoting the credentials it received."""

    def __init__(self, upstream: str, step: str) -> None:
        super().__init__(upstream)
        self.method, self.matches, self.status = STEPS[step]
        self.quoted = 0

    def intercept(self, handler: _ForwardingHandler, request: Incoming) -> bool:
        if request.method != self.method or not self.matches(request.path):
            return False
        credentials = request.headers.get("Authorization", "(none)")
        with self.lock:
            self.quoted += 1
        handler.answer(self.status, {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "security",
             "diagnostics": f"request with {credentials} refused: {credentials}"}]},
            {"Content-Type": "application/fhir+json",
             "WWW-Authenticate": f'Bearer error="invalid_token", was="{credentials}"'})
        return True


def _assert_one_line_setup_error(result: object, folder: Path) -> None:
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr  # type: ignore[attr-defined]
    last = result.stderr.strip().splitlines()[-1]  # type: ignore[attr-defined]
    assert last.startswith("kt2conformance: error: "), last


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_private_key(tmp_path_factory.mktemp("keys") / "rsa.pem", "rsa").read_text()


@pytest.mark.parametrize("step", list(STEPS))
def test_a_bearer_token_quoted_back_at_set_up_never_appears(
        tmp_path: Path, reference_server: ReferenceServer, step: str) -> None:
    with Quoting(reference_server.base_url, step) as target:
        result = run_harness(tmp_path, "--target", target.url, "--token", TOKEN,
                             "--examples", "1", timeout=120)
        quoted = target.quoted
    assert quoted >= 1
    _assert_one_line_setup_error(result, tmp_path)
    assert_no_leak(produced_text(tmp_path, result), {"the bearer token": pieces(TOKEN)})


@pytest.mark.parametrize("step", ["metadata-401", "prerequisite-422", "example-task-403"])
def test_smart_credentials_quoted_back_at_set_up_never_appear(
        tmp_path: Path, reference_server: ReferenceServer, pem: str, step: str) -> None:
    """The private key arrives as PEM text in KT2_PRIVATE_KEY, as a CI secret does."""
    key_file = tmp_path.parent / f"{tmp_path.name}-key.pem"
    key_file.write_text(pem)
    with SmartServer() as auth, \
            AuthProxy(reference_server.base_url, auth.accepts, auth.token_url) as resource, \
            Quoting(resource.url, step) as target:
        auth.register(CLIENT_ID, public_jwk(key_file))
        result = run_harness(tmp_path, "--target", target.url, "--examples", "1", timeout=120,
                             env={"KT2_CLIENT_ID": CLIENT_ID, "KT2_PRIVATE_KEY": pem})
        access_tokens, assertions, quoted = list(auth.issued), auth.assertions(), target.quoted
    key_file.unlink()
    assert quoted >= 1 and access_tokens and assertions and not auth.rejections
    _assert_one_line_setup_error(result, tmp_path)
    assert_no_leak(produced_text(tmp_path, result), {
        "an access token": (p for token in access_tokens for p in pieces(token)),
        "a client assertion": (p for a in assertions for p in jwt_pieces(a)),
        "the private key": pem_pieces(pem),
    })


def _pem_variants(pem: str) -> Iterator[tuple[str, str]]:
    yield "PEM text", pem
    yield "PEM with escaped line breaks", pem.replace("\n", "\\n")


def test_a_private_key_given_as_pem_text_signs_a_whole_run(
        tmp_path: Path, reference_server: ReferenceServer, pem: str) -> None:
    key_file = tmp_path.parent / f"{tmp_path.name}-key.pem"
    key_file.write_text(pem)
    for label, value in _pem_variants(pem):
        folder = tmp_path / label.replace(" ", "-")
        folder.mkdir()
        with SmartServer() as auth, \
                AuthProxy(reference_server.base_url, auth.accepts, auth.token_url) as target:
            auth.register(CLIENT_ID, public_jwk(key_file))
            result = run_harness(folder, "--target", target.url, "--examples", "1", "--",
                                 "-k", "example", timeout=120,
                                 env={"KT2_CLIENT_ID": CLIENT_ID, "KT2_PRIVATE_KEY": value})
            accepted = sum(target.accepted.values())
        assert result.returncode == 0, (label, result.stdout[-2000:] + result.stderr)
        assert accepted > 0
        assert json.loads((folder / "reports" / "summary.json").read_text())["complete"] is True
        assert_no_leak(produced_text(folder, result), {"the private key": pem_pieces(pem)})
    key_file.unlink()


@pytest.mark.parametrize(("value", "message"), [
    ("KEY", "the private key given as PEM text (--private-key / KT2_PRIVATE_KEY) is not a "
            "PEM private key (RSA or EC)"),
    ("LONG", "--private-key / KT2_PRIVATE_KEY is neither a file nor PEM text "
             "(-----BEGIN ... PRIVATE KEY-----)"),
])
def test_an_unusable_key_in_the_environment_is_named_never_quoted(
        tmp_path: Path, pem: str, value: str, message: str) -> None:
    broken = pem.replace(pem.splitlines()[3], "not base64 at all!") if value == "KEY" \
        else "".join(pem.splitlines()[1:-1])  # the base64 body alone: no PEM markers
    result = run_harness(tmp_path, "--target", "http://127.0.0.1:9/fhir", timeout=60,
                         env={"KT2_CLIENT_ID": CLIENT_ID, "KT2_PRIVATE_KEY": broken})
    assert result.returncode == 2
    assert result.stderr == f"kt2conformance: error: {message}\n"
    assert_no_leak(produced_text(tmp_path, result), {"the private key": pem_pieces(pem)})
