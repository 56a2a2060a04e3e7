"""End-to-end tests of the embedded reference Koppeltaal server (HAPI FHIR 8.2) over real HTTP.

Each of production's layers is checked by status code and OperationOutcome, in production's
order (a request that breaks two layers gets the earlier layer's answer), plus the server-managed
resource-origin, updates with and without If-Match, $validate, the life cycle of the process and
SMART Backend Services mode.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from kt2conformance._errors import UsageError
from kt2conformance._koppeltaal import KT2TASK_URL, RESOURCE_ORIGIN_URL
from kt2conformance._paths import FIXTURES_DIR
from kt2conformance.target import _server
from kt2conformance.target._origin import without_resource_origin
from kt2conformance.target._server import ReferenceServer

pytestmark = pytest.mark.server

FHIR_JSON = "application/fhir+json"
HEADERS = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
KT2 = "http://koppeltaal.nl/fhir/StructureDefinition/"
TASK_CODE_SYSTEM = "http://vzvz.nl/fhir/CodeSystem/koppeltaal-task-code"
FIRST_LINE = re.compile(r"^Serving FHIR R4 at http://127\.0\.0\.1:(\d+)/fhir$")
STATIC_CLIENT = "kt2conformance-client"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The error issues of an OperationOutcome response, after checking its shape."""
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"], body
    for issue in body["issue"]:
        assert issue["severity"] in {"fatal", "error", "warning", "information"}, issue
        assert issue["code"], issue
    return [i for i in body["issue"] if i["severity"] in {"error", "fatal"}]


def refused(response: httpx.Response, status: int, says: str | None = None) -> dict[str, Any]:
    """The response has this status and an OperationOutcome with an error issue (whose
    diagnostics contain `says`, when given); returns that issue."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    found = errors(response)
    assert found, response.text
    if says is None:
        return found[0]
    matching = [i for i in found if says in i.get("diagnostics", "")]
    assert matching, f"no error saying {says!r}: {response.text}"
    return matching[0]


def kt2(resource_type: str, **content: Any) -> dict[str, Any]:
    """An official KT2 example of this type from fixtures/ (valid against its KT2 profile), without
    the server's resource-origin and its id, plus content."""
    example = next(FIXTURES_DIR.glob(f"{resource_type}-*.json"))
    resource = without_resource_origin(json.loads(example.read_text(encoding="utf-8")))
    return {**{k: v for k, v in resource.items() if k != "id"}, **content}


@pytest.fixture(scope="module")
def client(reference_server: ReferenceServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=reference_server.base_url, headers=HEADERS, timeout=60.0) as c:
        yield c


@pytest.fixture(scope="module")
def refs(client: httpx.Client) -> dict[str, str]:
    """A Patient and a Practitioner on the server (server-assigned ids)."""
    out = {}
    for rtype in ("Patient", "Practitioner"):
        response = client.post(f"/{rtype}", json=kt2(rtype))
        assert response.status_code == 201, response.text
        out[rtype] = f"{rtype}/{response.json()['id']}"
    return out


def minimal_task(refs: dict[str, str], **changes: Any) -> dict[str, Any]:
    """The smallest valid KT2Task on this server, plus changes."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": {"profile": [KT2TASK_URL]},
        "identifier": [{"system": "http://example.org/task", "value": "1"}],
        "status": "ready",
        "intent": "order",
        "for": {"reference": refs["Patient"]},
        "owner": {"reference": refs["Practitioner"]},
    }
    task.update(changes)
    return task


def view_code() -> dict[str, Any]:
    return {"coding": [{"system": TASK_CODE_SYSTEM, "code": "view"}]}


def with_origin(task: dict[str, Any], device: str = f"Device/{STATIC_CLIENT}") -> dict[str, Any]:
    origin = {"url": RESOURCE_ORIGIN_URL, "valueReference": {"reference": device, "type": "Device"}}
    return {**task, "extension": [origin]}


# --- start-up, life cycle and the serve command ------------------------------------------------


def java_command(*args: str) -> list[str]:
    return [_server.find_java(), *_server.JVM_OPTIONS, "-jar", str(_server.ensure_jar()), *args]


def test_jar_prints_first_line_with_real_port_and_exits_0_on_sigterm() -> None:
    process = subprocess.Popen(java_command("--port", "0"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().rstrip("\n")  # type: ignore[union-attr]
        match = FIRST_LINE.match(line)
        assert match, line
        assert httpx.get(f"http://127.0.0.1:{match.group(1)}/fhir/metadata", timeout=30).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_port_in_use_is_one_line_on_stderr_and_nonzero_exit() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(java_command("--port", str(port)), capture_output=True, text=True,
                                timeout=120, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == [f"reference server: port {port} is in use: choose another --port"], result.stderr


@pytest.mark.parametrize("args, message", [
    (["--port", "x"], "invalid --port x"),
    (["--frobnicate", "1"], "unknown option --frobnicate"),
    (["--smart-client-id", "c1"], "needs both --smart-client-id and --smart-client-key"),
])
def test_bad_options_are_one_line_with_exit_2(args: list[str], message: str) -> None:
    result = subprocess.run(java_command(*args), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_a_folder_without_definitions_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no StructureDefinition, ValueSet or CodeSystem found"):
        ReferenceServer(profiles_dir=tmp_path).start()


def test_missing_java_is_a_usage_error_naming_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(UsageError, match="Java 17 or newer not found: install a JDK 17"):
        ReferenceServer().start()


def test_stale_jar_is_rebuilt_and_a_failed_build_names_the_fix(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setattr(_server, "JAR", tmp_path / "missing.jar")
    monkeypatch.setattr(_server, "REFERENCE_SERVER_DIR", tmp_path)
    (tmp_path / "build.sh").write_text("echo '[ERROR] no compiler here' >&2; exit 1\n")
    with pytest.raises(UsageError, match=r"reference server build failed \(\[ERROR\] no compiler here\): "
                                         r"run bash reference_server/build.sh"):
        _server.ensure_jar()


def test_an_installation_without_the_server_sources_says_so(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """From an installed wheel there is no reference_server/ to build: one line says what to do."""
    monkeypatch.setattr(_server, "JAR", tmp_path / "missing.jar")
    monkeypatch.setattr(_server, "REFERENCE_SERVER_DIR", tmp_path / "absent")
    with pytest.raises(UsageError, match=r"not part of this installation.*--target URL"):
        _server.ensure_jar()


def test_stop_kills_the_process_and_is_idempotent() -> None:
    server = ReferenceServer().start()
    pid = server.pid
    assert pid is not None
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.stop()
    with pytest.raises(UsageError):
        _ = server.base_url


def test_serve_command_prints_first_line_and_exits_0_on_sigint() -> None:
    process = subprocess.Popen([sys.executable, "-m", "kt2conformance", "serve", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().rstrip("\n")  # type: ignore[union-attr]
        assert FIRST_LINE.match(line), line
        base = line.removeprefix("Serving FHIR R4 at ")
        assert httpx.get(f"{base}/metadata", timeout=30).status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/metadata")
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


# --- metadata ------------------------------------------------------------------------------------


def test_metadata_is_an_r4_capability_statement_that_states_its_offline_limits(client: httpx.Client) -> None:
    response = client.get("/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert "HAPI FHIR 8.2.0" in statement["software"]["name"]
    assert KT2TASK_URL in statement["description"]
    assert KT2 + "KT2Patient" in statement["description"] and KT2 + "KT2Endpoint" in statement["description"]
    assert "nl-core packages (their extensions, ValueSets and base profiles) are not available offline" \
        in statement["description"]
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert {"Task", "Patient", "Practitioner", "RelatedPerson", "CareTeam", "Organization", "Device",
            "Endpoint", "ActivityDefinition", "AuditEvent", "Subscription"} <= types


# --- the layers, one by one ----------------------------------------------------------------------


def test_created_task_is_201_with_location_etag_and_injected_resource_origin(
        client: httpx.Client, refs: dict[str, str]) -> None:
    response = client.post("/Task", json=minimal_task(refs))
    assert response.status_code == 201, response.text
    stored = response.json()
    task_id = stored["id"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", task_id)
    assert response.headers["location"].endswith(f"/fhir/Task/{task_id}/_history/1")
    assert response.headers["etag"] == 'W/"1"'
    assert stored["meta"]["versionId"] == "1" and stored["meta"]["lastUpdated"]
    origins = [e for e in stored["extension"] if e["url"] == RESOURCE_ORIGIN_URL]
    assert origins == [{"url": RESOURCE_ORIGIN_URL,
                        "valueReference": {"reference": f"Device/{STATIC_CLIENT}", "type": "Device"}}]
    device = client.get(f"/Device/{STATIC_CLIENT}").json()
    assert device["identifier"][0]["value"] == STATIC_CLIENT
    assert client.get(f"/Task/{task_id}").json() == stored


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(client: httpx.Client, refs: dict[str, str], content_type: str) -> None:
    response = client.post("/Task", content=json.dumps(minimal_task(refs)),
                           headers={"Content-Type": content_type})
    refused(response, 415, "provided in header [Content-Type]")


def test_unacceptable_accept_is_406_and_json_variants_are_fine(client: httpx.Client) -> None:
    refused(client.get("/metadata", headers={"Accept": "text/plain"}), 406, "provided in header [Accept]")
    for accept in ("application/json", "application/fhir+json; charset=utf-8", "*/*"):
        assert client.get("/metadata", headers={"Accept": accept}).status_code == 200


@pytest.mark.parametrize("body", ['{"resourceType": "Task",', "not JSON", "[1, 2]", '{"a": 1} trailing'])
def test_body_that_is_not_a_json_object_is_400(client: httpx.Client, body: str) -> None:
    refused(client.post("/Task", content=body), 400, "Invalid JSON syntax")


def test_profile_violation_is_422_with_the_validators_issues(client: httpx.Client, refs: dict[str, str]) -> None:
    issue = refused(client.post("/Task", json=minimal_task(refs, status="bogus")), 422)
    assert "bogus" in issue["diagnostics"]
    missing = refused(client.post("/Task", json=without(minimal_task(refs), "identifier")), 422)
    assert "Task.identifier: minimum required = 1" in missing["diagnostics"]


@pytest.mark.parametrize("resource_type", ["Task", "Patient", "Practitioner", "Device", "Endpoint",
                                           "Organization", "ActivityDefinition"])
def test_kt2_type_without_its_kt2_profile_is_412(client: httpx.Client, refs: dict[str, str],
                                                 resource_type: str) -> None:
    body = minimal_task(refs) if resource_type == "Task" else kt2(resource_type)
    body = {**body, "meta": {"profile": [f"http://hl7.org/fhir/StructureDefinition/{resource_type}"]}}
    refused(client.post(f"/{resource_type}", json=body), 412,
            f"does not declare conformance to profile from: [{KT2}KT2{resource_type}]")


def test_reference_to_a_missing_resource_is_400_naming_the_path(client: httpx.Client,
                                                                refs: dict[str, str]) -> None:
    missing = f"Practitioner/{uuid.uuid4()}"
    refused(client.post("/Task", json=minimal_task(refs, owner={"reference": missing})), 400,
            f"Resource {missing} not found, specified in path: Task.owner")


def test_view_task_without_partof_is_422(client: httpx.Client, refs: dict[str, str]) -> None:
    issue = refused(client.post("/Task", json=minimal_task(refs, code=view_code())), 422)
    assert issue["diagnostics"] == "Task with code 'view' should have a 'partOf' reference"


def test_view_task_with_partof_is_created(client: httpx.Client, refs: dict[str, str]) -> None:
    parent = client.post("/Task", json=minimal_task(refs)).json()["id"]
    task = minimal_task(refs, code=view_code(), partOf=[{"reference": f"Task/{parent}"}])
    assert client.post("/Task", json=task).status_code == 201


@pytest.mark.parametrize("device", [f"Device/{STATIC_CLIENT}", f"Device/{uuid.uuid4()}"],
                         ids=["own-device", "other-device"])  # ids the same in every xdist worker
def test_client_set_resource_origin_is_400(client: httpx.Client, refs: dict[str, str], device: str) -> None:
    refused(client.post("/Task", json=with_origin(minimal_task(refs), device)), 400,
            f"Not allowed to set extension with system {RESOURCE_ORIGIN_URL}")


def test_update_needs_if_match_and_refuses_a_stale_version(client: httpx.Client, refs: dict[str, str]) -> None:
    created = client.post("/Task", json=minimal_task(refs)).json()
    changed = {**created, "status": "in-progress"}
    url = f"/Task/{created['id']}"
    refused(client.put(url, json=changed), 412, "If-Match header is required on updates")
    assert client.get(url).json()["meta"]["versionId"] == "1"  # nothing stored
    response = client.put(url, json=changed, headers={"If-Match": 'W/"1"'})
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == 'W/"2"'
    assert response.json()["status"] == "in-progress"
    refused(client.put(url, json=changed, headers={"If-Match": 'W/"1"'}), 409, "not the current version")


def test_update_keeps_the_servers_resource_origin(client: httpx.Client, refs: dict[str, str]) -> None:
    created = client.post("/Task", json=minimal_task(refs)).json()
    url = f"/Task/{created['id']}"
    no_origin = {**created, "status": "in-progress"}
    del no_origin["extension"]
    kept = client.put(url, json=no_origin, headers={"If-Match": 'W/"1"'}).json()
    assert kept["extension"] == created["extension"]
    other = with_origin({**kept, "status": "ready"}, f"Device/{uuid.uuid4()}")
    refused(client.put(url, json=other, headers={"If-Match": 'W/"2"'}), 403)


def test_update_of_an_unknown_resource_is_404(client: httpx.Client, refs: dict[str, str]) -> None:
    missing = str(uuid.uuid4())
    task = minimal_task(refs, id=missing)
    assert client.put(f"/Task/{missing}", json=task, headers={"If-Match": 'W/"1"'}).status_code == 404


def test_delete_of_a_referenced_resource_is_409_until_the_referrer_is_gone(client: httpx.Client) -> None:
    patient = client.post("/Patient", json=kt2("Patient")).json()["id"]
    practitioner = client.post("/Practitioner", json=kt2("Practitioner")).json()["id"]
    refs = {"Patient": f"Patient/{patient}", "Practitioner": f"Practitioner/{practitioner}"}
    task = client.post("/Task", json=minimal_task(refs)).json()["id"]
    refused(client.delete(f"/Patient/{patient}"), 409,
            f"First reference found was resource Task/{task} in path Task.for")
    assert client.delete(f"/Task/{task}").status_code == 200
    assert client.get(f"/Task/{task}").status_code == 410
    assert client.delete(f"/Task/{task}").status_code == 410
    assert client.delete(f"/Patient/{patient}").status_code == 200


# --- production's order: of two faults, the earlier layer answers ---------------------------------


def test_layers_answer_in_productions_order(client: httpx.Client, refs: dict[str, str]) -> None:
    view_with_origin_and_no_profile = without(with_origin(minimal_task(refs, code=view_code())), "meta")
    bad = {**view_with_origin_and_no_profile, "status": "bogus"}
    text = json.dumps(bad)
    # media type before JSON syntax, JSON syntax before validation
    assert client.post("/Task", content=text[:20], headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.post("/Task", content=text[:20]).status_code == 400
    # validation (422) before resource-origin (400), the sub-task rule (422) and the profile claim (412)
    assert "bogus" in refused(client.post("/Task", json=bad), 422)["diagnostics"]
    # resource-origin (400) before the sub-task rule (422) and the profile claim (412)
    refused(client.post("/Task", json=view_with_origin_and_no_profile), 400, "Not allowed to set extension")
    # sub-task rule (422) before the profile claim (412) at storage
    refused(client.post("/Task", json=without(minimal_task(refs, code=view_code()), "meta")), 422, "partOf")
    # profile claim (412) before referential integrity (400)
    dangling = without(minimal_task(refs, owner={"reference": f"Practitioner/{uuid.uuid4()}"}), "meta")
    refused(client.post("/Task", json=dangling), 412, "does not declare conformance")


# --- $validate --------------------------------------------------------------------------------------


def test_validate_answers_the_validators_outcome_without_storing(client: httpx.Client,
                                                                  refs: dict[str, str]) -> None:
    before = client.get("/Task", params={"_summary": "count"}).json()["total"]
    ok = client.post("/Task/$validate", json=minimal_task(refs))
    assert ok.status_code == 200, ok.text
    assert ok.json()["resourceType"] == "OperationOutcome" and not errors(ok)
    bad = client.post("/Task/$validate", json=minimal_task(refs, status="bogus", foo=1))
    assert bad.status_code == 412
    said = " ".join(i["diagnostics"] for i in errors(bad))
    assert "bogus" in said and "foo" in said
    wrapped = {"resourceType": "Parameters", "parameter": [{"name": "resource",
                                                            "resource": minimal_task(refs, status="bogus")}]}
    assert client.post("/Task/$validate", json=wrapped).status_code == 412
    assert client.get("/Task", params={"_summary": "count"}).json()["total"] == before


def test_validate_against_a_named_profile(client: httpx.Client, refs: dict[str, str]) -> None:
    no_claim = without(minimal_task(refs), "meta")
    assert client.post("/Task/$validate", json=without(no_claim, "identifier")).status_code == 200
    answer = client.post("/Task/$validate", params={"profile": KT2TASK_URL}, json=without(no_claim, "identifier"))
    assert answer.status_code == 412
    assert any("Task.identifier: minimum required = 1" in i["diagnostics"] for i in errors(answer))


def without(resource: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != key}


# --- static token ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(token_server: ReferenceServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=token_server.base_url, headers=HEADERS, timeout=60.0) as c:
        yield c


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic {token}", "Bearer"])
def test_requests_without_the_token_are_401(secured: httpx.Client, token_server: ReferenceServer,
                                            authorization: str | None) -> None:
    # As production (HAPI's AuthenticationException): 401, a Bearer challenge, a plain-text body.
    token = str(token_server.token)
    headers = {"Authorization": authorization.format(token=token)} if authorization else {}
    response = secured.post("/Task", json={"resourceType": "Task"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert token not in response.text
    assert secured.get("/Task", headers=headers).status_code == 401


def test_metadata_needs_no_token_and_the_token_opens_the_rest(secured: httpx.Client,
                                                              token_server: ReferenceServer) -> None:
    assert secured.get("/metadata").status_code == 200
    auth = {"Authorization": f"Bearer {token_server.token}"}
    assert secured.get("/Task", headers=auth).status_code == 200
    assert secured.post("/Patient", json=kt2("Patient"), headers=auth).status_code == 201


def test_media_type_is_checked_before_the_token_and_the_token_before_json(secured: httpx.Client) -> None:
    assert secured.post("/Task", content="x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert secured.post("/Task", content="{broken").status_code == 401


# --- SMART Backend Services -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smart(reference_server_factory: Callable[..., ReferenceServer],
          tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A SMART-mode server with one registered client holding an RSA and an EC key (JWKS)."""
    folder = tmp_path_factory.mktemp("smart")
    rsa_key = RSAKey.import_key(rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ec_key = ECKey.import_key(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    jwks = {"keys": [rsa_key.as_dict(private=False), ec_key.as_dict(private=False)]}
    (folder / "jwks.json").write_text(json.dumps(jwks))
    server = reference_server_factory(smart_client_id="test-client", smart_client_key=folder / "jwks.json")
    config = httpx.get(f"{server.base_url}/.well-known/smart-configuration", timeout=30).json()
    return {"base": server.base_url, "token_url": config["token_endpoint"], "config": config,
            "RS512": rsa_key, "RS384": rsa_key, "ES384": ec_key}


def assertion(smart: dict[str, Any], alg: str = "RS512", **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": "test-client", "sub": "test-client", "aud": smart["token_url"], "exp": now + 240,
            "iat": now, "jti": str(uuid.uuid4()), **claims}
    return jwt.encode({"alg": alg}, {k: v for k, v in body.items() if v is not None}, smart[alg],
                      algorithms=[alg])


def token_request(smart: dict[str, Any], signed: str) -> httpx.Response:
    return httpx.post(smart["token_url"], data={"grant_type": "client_credentials",
                                                "client_assertion_type": ASSERTION_TYPE,
                                                "client_assertion": signed}, timeout=30)


def test_smart_configuration_names_the_token_endpoint(smart: dict[str, Any]) -> None:
    config = smart["config"]
    assert config["token_endpoint"].endswith("/oauth2/token")
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS512", "RS384", "ES384"}
    jwks = httpx.get(config["jwks_uri"], timeout=30).json()
    assert jwks["keys"][0]["alg"] == "RS512"


@pytest.mark.parametrize("alg", ["RS512", "RS384", "ES384"])
def test_token_for_a_signed_assertion_opens_the_server_as_the_clients_device(smart: dict[str, Any],
                                                                              alg: str) -> None:
    response = token_request(smart, assertion(smart, alg))
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 300
    header = json.loads(jwt_part(token["access_token"], 0))
    claims = json.loads(jwt_part(token["access_token"], 1))
    assert header["alg"] == "RS512" and claims["azp"] == "test-client"
    auth = {**HEADERS, "Authorization": f"Bearer {token['access_token']}"}
    created = httpx.post(f"{smart['base']}/Patient", json=kt2("Patient"), headers=auth, timeout=60)
    assert created.status_code == 201, created.text
    origin = [e for e in created.json()["extension"] if e["url"] == RESOURCE_ORIGIN_URL]
    assert origin[0]["valueReference"]["reference"] == "Device/test-client"


def jwt_part(token: str, index: int) -> str:
    import base64

    part = token.split(".")[index]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()


@pytest.mark.parametrize("claims, why", [
    ({"aud": "https://elsewhere.example/token"}, "aud must be the token endpoint"),
    ({"exp": int(time.time()) + 3600}, "at most 5 minutes"),
    ({"exp": int(time.time()) - 60}, "expired"),
    ({"iss": "someone-else"}, "unknown client"),
    ({"jti": None}, "jti is required"),
])
def test_bad_assertions_are_refused(smart: dict[str, Any], claims: dict[str, Any], why: str) -> None:
    response = token_request(smart, assertion(smart, **claims))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client" and why in response.json()["error_description"]


def test_a_replayed_jti_is_refused(smart: dict[str, Any]) -> None:
    signed = assertion(smart)
    assert token_request(smart, signed).status_code == 200
    replay = token_request(smart, signed)
    assert replay.status_code == 401 and "used before" in replay.json()["error_description"]


def test_an_assertion_signed_by_another_key_is_refused(smart: dict[str, Any]) -> None:
    stranger = RSAKey.generate_key(2048)
    now = int(time.time())
    signed = jwt.encode({"alg": "RS512"}, {"iss": "test-client", "sub": "test-client", "aud": smart["token_url"],
                                           "exp": now + 60, "jti": str(uuid.uuid4())}, stranger,
                        algorithms=["RS512"])
    assert token_request(smart, signed).status_code == 401


def test_fhir_requests_need_a_token_the_server_issued(smart: dict[str, Any]) -> None:
    forged = jwt.encode({"alg": "RS512"}, {"azp": "test-client", "exp": int(time.time()) + 60},
                        RSAKey.generate_key(2048), algorithms=["RS512"])
    for header in ({}, {"Authorization": f"Bearer {forged}"}):
        response = httpx.post(f"{smart['base']}/Patient", json=kt2("Patient"), headers={**HEADERS, **header},
                              timeout=30)
        assert response.status_code == 401
