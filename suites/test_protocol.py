"""The rules a Koppeltaal server enforces beyond the profile, each with hand-made requests built
from the example Task: a missing KT2Task profile claim, a wrong Content-Type, a body that is not
JSON, a `view` sub-Task without partOf, a reference to a resource that does not exist."""

import json
import uuid

import pytest

from kt2conformance.cases import REJECT, Case

VIEW = {"coding": [{"system": "http://vzvz.nl/fhir/CodeSystem/koppeltaal-task-code",
                    "code": "view", "display": "This task can be viewed"}]}


def _without(task, key):
    return {k: v for k, v in task.items() if k != key}


def requests(task):
    """rule -> [(description, body, content type)]; bodies are the example Task, broken once."""
    text = json.dumps(task)
    missing = f"missing-{uuid.UUID(int=0)}"
    return {
        "server/meta.profile": [
            ("no meta at all", _without(task, "meta"), None),
            ("meta.profile names only the base Task",
             {**task, "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/Task"]}},
             None),
        ],
        "server/content-type": [
            ("a valid Task sent as text/plain", text, "text/plain"),
            ("a valid Task sent as application/x-www-form-urlencoded", text,
             "application/x-www-form-urlencoded"),
        ],
        "server/json-syntax": [
            ("a Task cut off halfway", text[: len(text) // 2], None),
            ("not JSON at all", "this is not JSON", None),
        ],
        "server/subtask-partOf": [
            ("code view without partOf", {**_without(task, "partOf"), "code": VIEW}, None),
        ],
        "server/reference-integrity": [
            ("for names a Patient that does not exist",
             {**task, "for": {"reference": f"Patient/{missing}", "type": "Patient"}}, None),
            ("requester names a Practitioner that does not exist",
             {**task, "requester": {"reference": f"Practitioner/{missing}",
                                    "type": "Practitioner"}}, None),
        ],
    }


RULES = list(requests({}))


@pytest.mark.parametrize("key", RULES, ids=RULES)
def test_server_rule(kt, extras, key):
    cases = [Case(f"{key}#{i}", REJECT, key, description, body,
                  **({"content_type": content_type} if content_type else {}))
             for i, (description, body, content_type)
             in enumerate(requests(kt.created.example_task)[key], 1)]
    kt.expect(extras, kt.check_all(cases))
