"""SMART Backend Services and bearer auth against a real loopback authorization server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fakes import SmartServer
from joserfc.jwk import ECKey, RSAKey

from kt2conformance._errors import UsageError
from kt2conformance.target._auth import AuthError, BearerAuth, SmartBackendAuth, build_auth
from kt2conformance.target._client import FhirClient
from kt2conformance.target._redact import REDACTED

CLIENT_ID = "kt2-conformance-test"


def _write_key(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Test keys, generated per run so no private key is ever committed."""
    folder = tmp_path_factory.mktemp("keys")
    return {
        "rsa": _write_key(folder / "rsa.pem", rsa.generate_private_key(65537, 2048)),
        "rsa-other": _write_key(folder / "rsa-other.pem", rsa.generate_private_key(65537, 2048)),
        "ec384": _write_key(folder / "ec384.pem", ec.generate_private_key(ec.SECP384R1())),
        "ec256": _write_key(folder / "ec256.pem", ec.generate_private_key(ec.SECP256R1())),
    }


def _public_jwk(pem_path: Path) -> dict:
    pem = pem_path.read_bytes()
    is_ec = isinstance(serialization.load_pem_private_key(pem, None), ec.EllipticCurvePrivateKey)
    return (ECKey if is_ec else RSAKey).import_key(pem).as_dict(private=False)


@pytest.fixture
def server(keys: dict[str, Path]) -> Iterator[SmartServer]:
    with SmartServer() as fake:
        fake.register(CLIENT_ID, _public_jwk(keys["rsa"]))
        fake.register(CLIENT_ID, _public_jwk(keys["ec384"]))
        yield fake


def _client(server: SmartServer, auth: SmartBackendAuth) -> FhirClient:
    return FhirClient(server.fhir_base, auth=auth, timeout=(2, 5), backoff=0.01)


@pytest.mark.parametrize(("alg", "key"), [("RS512", "rsa"), ("RS384", "rsa"), ("ES384", "ec384")])
def test_token_is_fetched_with_a_valid_assertion_and_used(
        server: SmartServer, keys: dict[str, Path], alg: str, key: str) -> None:
    auth = SmartBackendAuth(CLIENT_ID, keys[key], alg=alg, fhir_base=server.fhir_base)
    with _client(server, auth) as client:
        exchange = client.read("Task", "1")
    assert exchange.status == 200, (exchange, server.rejections)
    assert exchange.json["id"] == "1"
    assert server.discoveries == 1  # token URL came from .well-known/smart-configuration
    assert server.token_requests == 1 and not server.rejections
    header = server.assertion_headers()[0]
    assert header["alg"] == alg and header["typ"] == "JWT" and "kid" not in header
    assert server.fhir_authorizations[-1].startswith("Bearer ")
    assert server.fhir_authorizations[-1].removeprefix("Bearer ") in server.issued


def test_token_is_cached_and_jti_unique(server: SmartServer, keys: dict[str, Path]) -> None:
    auth = SmartBackendAuth(CLIENT_ID, keys["rsa"], kid="key-1", token_url=server.token_url)
    with _client(server, auth) as client:
        statuses = [client.read("Task", str(i)).status for i in range(10)]
        statuses.append(client.create({"resourceType": "Task", "status": "requested"}).status)
    assert statuses == [200] * 10 + [201]
    assert server.token_requests == 1
    assert server.discoveries == 0  # --token-url given: no discovery
    assert server.assertion_headers()[0]["kid"] == "key-1"
    assertions = {auth.client_assertion() for _ in range(5)}
    assert len(assertions) == 5


def test_expired_token_is_replaced(keys: dict[str, Path]) -> None:
    with SmartServer(token_lifetime=1) as server:
        server.register(CLIENT_ID, _public_jwk(keys["rsa"]))
        auth = SmartBackendAuth(CLIENT_ID, keys["rsa"], fhir_base=server.fhir_base)
        with _client(server, auth) as client:
            assert client.read("Task", "1").status == 200
            time.sleep(1.1)
            assert client.read("Task", "2").status == 200
        assert server.token_requests == 2
        assert len(set(server.fhir_authorizations)) == 2
        assert not server.rejections  # the second assertion had a fresh jti


def test_401_gets_one_new_token_and_a_retry(server: SmartServer, keys: dict[str, Path]) -> None:
    auth = SmartBackendAuth(CLIENT_ID, keys["rsa"], fhir_base=server.fhir_base)
    with _client(server, auth) as client:
        assert client.read("Task", "1").status == 200
        server.revoke_all()
        exchange = client.read("Task", "2")
    assert exchange.status == 200
    assert server.token_requests == 2
    assert len(server.fhir_authorizations) == 3  # ok, 401, retried ok


def test_persistent_401_is_an_auth_error(server: SmartServer, keys: dict[str, Path]) -> None:
    auth = SmartBackendAuth(CLIENT_ID, keys["rsa"], fhir_base=server.fhir_base)
    server.token_lifetime = -1  # every token issued is already expired for the FHIR endpoint
    with _client(server, auth) as client, pytest.raises(AuthError, match="401 even with a fresh"):
        client.read("Task", "1")
    assert server.token_requests == 2


def test_wrong_key_is_refused_with_a_clear_message(server: SmartServer,
                                                   keys: dict[str, Path]) -> None:
    auth = SmartBackendAuth(CLIENT_ID, keys["rsa-other"], fhir_base=server.fhir_base)
    with _client(server, auth) as client, pytest.raises(AuthError) as info:
        client.read("Task", "1")
    message = str(info.value)
    assert "token endpoint refused the client assertion (invalid_client" in message
    assert "check --client-id and --private-key" in message
    assert "\n" not in message
    assert isinstance(info.value, UsageError)


def test_unknown_client_is_refused(server: SmartServer, keys: dict[str, Path]) -> None:
    auth = SmartBackendAuth("someone-else", keys["rsa"], fhir_base=server.fhir_base)
    with _client(server, auth) as client, pytest.raises(AuthError, match="invalid_client"):
        client.read("Task", "1")


def test_missing_discovery_asks_for_token_url(keys: dict[str, Path]) -> None:
    with SmartServer() as server:
        auth = SmartBackendAuth(CLIENT_ID, keys["rsa"], fhir_base=server.url + "/nothing")
        with _client(server, auth) as client, pytest.raises(AuthError, match="pass --token-url"):
            client.read("Task", "1")


def test_secrets_never_reach_the_exchange(server: SmartServer, keys: dict[str, Path]) -> None:
    auth = SmartBackendAuth(CLIENT_ID, keys["rsa"], fhir_base=server.fhir_base)
    with _client(server, auth) as client:
        exchanges = [client.read("Task", "1"), client.create({"resourceType": "Task"})]
    secrets = list(server.issued) + [f["client_assertion"] for f in server.forms]
    secrets.append(keys["rsa"].read_text())
    for exchange in exchanges:
        assert exchange.request_headers["authorization"] == f"Bearer {REDACTED}"
        shown = [exchange.curl(), str(exchange), repr(exchange), str(exchange.request_headers)]
        assert "authorization: bearer <redacted>" in exchange.curl().lower()
        for text in shown:
            for secret in secrets:
                assert secret not in text


def test_bearer_token_is_sent_and_redacted() -> None:
    with SmartServer() as server:
        server.issued["static-token-1234"] = time.time() + 60
        with FhirClient(server.fhir_base, auth=BearerAuth("static-token-1234")) as client:
            exchange = client.read("Task", "7")
    assert exchange.status == 200
    assert server.fhir_authorizations == ["Bearer static-token-1234"]
    assert "static-token-1234" not in exchange.curl() + str(exchange) + repr(exchange)


def test_build_auth_chooses_and_validates(keys: dict[str, Path], tmp_path: Path) -> None:
    assert build_auth("http://x/fhir", None, None, None) is None
    assert isinstance(build_auth("http://x/fhir", "tok", None, None), BearerAuth)
    smart = build_auth("http://x/fhir", None, CLIENT_ID, str(keys["ec384"]), alg="ES384")
    assert isinstance(smart, SmartBackendAuth)
    cases = [
        (("tok", CLIENT_ID, str(keys["rsa"]), "RS512"), "not both"),
        ((None, CLIENT_ID, None, "RS512"), "--client-id needs --private-key"),
        ((None, None, str(keys["rsa"]), "RS512"), "--private-key needs --client-id"),
        ((None, CLIENT_ID, str(tmp_path / "missing.pem"), "RS512"), "cannot read private key"),
        ((None, CLIENT_ID, str(keys["ec384"]), "RS512"), "needs an RSA private key"),
        ((None, CLIENT_ID, str(keys["rsa"]), "ES384"), "needs an EC P-384 private key"),
        ((None, CLIENT_ID, str(keys["ec256"]), "ES384"), "secp256r1"),
        ((None, CLIENT_ID, str(keys["rsa"]), "HS256"), "unsupported --alg"),
    ]
    for (token, client_id, key, alg), expected in cases:
        with pytest.raises(UsageError, match=expected):
            build_auth("http://x/fhir", token, client_id, key, alg=alg)
    not_a_key = tmp_path / "cert.txt"
    not_a_key.write_text("hello")
    with pytest.raises(UsageError, match="not a PEM private key"):
        build_auth("http://x/fhir", None, CLIENT_ID, str(not_a_key))
