"""The rules a Koppeltaal server enforces beyond the profile, each with hand-made requests built
from the example Task: a missing KT2Task profile claim, a wrong Content-Type, a body that is not
JSON, a `view` sub-Task without partOf, a reference to a resource that does not exist, a Task
that sets its own resource-origin (the server's extension), a write without valid credentials
(none, or the run's token forged)."""

import json
import uuid

import pytest

from kt2conformance._koppeltaal import BASE_TASK_URL as BASE_TASK
from kt2conformance._koppeltaal import PROFILE_CLAIMS, RESOURCE_ORIGIN_URL, SUBTASK_CODE, TASK_CODE_SYSTEM
from kt2conformance._vocabulary import Expectation
from kt2conformance.run._cases import Case
from kt2conformance.target._auth import counterfeits

VIEW = {"coding": [{"system": TASK_CODE_SYSTEM, "code": SUBTASK_CODE,
                    "display": "This task can be viewed"}]}


def _without(task, key):
    return {k: v for k, v in task.items() if k != key}


def _with_origin(task, device):
    origin = {"url": RESOURCE_ORIGIN_URL, "valueReference": {"reference": device, "type": "Device"}}
    return {**task, "extension": [*task.get("extension", []), origin]}


def _credentials(token):
    """The bearer-token rule's requests: the example Task, valid, with credentials a server
    must refuse (none; forged from the run's `token`). None when the run has none."""
    if token is None:
        return None
    return [("a valid Task sent without a bearer token", {"authorization": ""})] + [
        (f"a valid Task sent with {what}", {"authorization": f"Bearer {forged}"})
        for what, forged in counterfeits(token)]


def requests(task, device="Device/unknown", token=""):
    """rule -> [(description, keyword arguments of its Case)]: the example Task, broken once
    (the bearer-token rule's: None for a run without credentials)."""
    text = json.dumps(task)
    missing = f"missing-{uuid.UUID(int=0)}"
    credentials = _credentials(token)
    return {
        "server/bearer-token": None if credentials is None else [
            (description, {"body": task, **request}) for description, request in credentials],
        "server/meta.profile": [
            ("no meta at all", {"body": _without(task, "meta")}),
            ("meta.profile names only the base Task",
             {"body": {**task, "meta": {"profile": [BASE_TASK]}}}),
        ],
        "server/content-type": [
            ("a valid Task sent as text/plain", {"body": task, "content_type": "text/plain"}),
            ("a valid Task sent as a form",
             {"body": task, "content_type": "application/x-www-form-urlencoded"}),
        ],
        "server/json-syntax": [
            ("a Task cut off halfway", {"body": None, "text": text[: len(text) // 2]}),
            ("not JSON at all", {"body": None, "text": "this is not JSON"}),
        ],
        "server/subtask-partOf": [
            ("code view without partOf", {"body": {**_without(task, "partOf"), "code": VIEW}}),
        ],
        "server/reference-integrity": [
            ("for names a Patient that does not exist",
             {"body": {**task, "for": {"reference": f"Patient/{missing}", "type": "Patient"}}}),
            ("requester names a Practitioner that does not exist",
             {"body": {**task, "requester": {"reference": f"Practitioner/{missing}",
                                             "type": "Practitioner"}}}),
        ],
        "server/resource-origin": [
            ("resource-origin set by the client, naming an existing Device",
             {"body": _with_origin(task, device)}),
            ("resource-origin set by the client, naming a Device that does not exist",
             {"body": _with_origin(task, f"Device/{missing}")}),
        ],
    }


RULES = list(requests({}))


@pytest.mark.parametrize("key", RULES, ids=RULES)
def test_server_rule(kt, extras, key):
    made = requests(kt.created.example_task, kt.prereqs.device, kt.client.bearer_token())[key]
    if made is None:
        kt.skip(key, "the run has no credentials: nothing to withhold or forge (give --token "
                     "or --client-id/--private-key)")
    # ids apart from the generated cases of the same rule (`key#1`…) in the invalid suite
    cases = [Case(f"{key}#example-{i}", Expectation.REJECT, key, description, **request)
             for i, (description, request) in enumerate(made, 1)]
    kt.expect(extras, kt.check_all(cases))


def test_every_kt2_type_needs_its_profile_claim(kt, extras):
    """server/meta.profile for every KT2 type, not only Task: each official example the set-up
    created, sent again without meta and with only its base profile, is refused (412)."""
    cases = []
    for name, body in kt.created.sent.items():
        kind = body.get("resourceType")
        if kind not in PROFILE_CLAIMS or kind == "Task":  # Task: test_server_rule above
            continue
        base = f"http://hl7.org/fhir/StructureDefinition/{kind}"
        for i, (how, meta) in enumerate((("no meta", None), ("only the base profile", base)), 1):
            sent = _without(body, "meta") if meta is None else {**body, "meta": {"profile": [meta]}}
            cases.append(Case(f"server/meta.profile@{name}#example-{i}", Expectation.REJECT,
                              "server/meta.profile", f"{kind} example with {how}", sent,
                              resource_type=kind))
    if not cases:
        pytest.skip("the set-up created no example of a KT2 type other than Task")
    kt.expect(extras, kt.check_all(cases))
