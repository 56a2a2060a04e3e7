"""The local oracle, constraint kind by constraint kind.

Every case states the exact set of error keys the oracle must report: a conforming Task gives the
empty set, a violating one exactly the key(s) of what it breaks. An exact set (not "contains")
catches both a missed violation and a spurious one, which are equally wrong for a conformance
oracle whose verdicts the suites compare server responses against.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from tasks import MINIMAL, error_keys, task

from kt2conformance import _paths as paths
from kt2conformance._koppeltaal import KT2TASK_URL
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec._profile import load_profile

Task = dict[str, Any]

RESOURCE_ORIGIN = "http://koppeltaal.nl/fhir/StructureDefinition/resource-origin"
INSTANTIATES = "http://vzvz.nl/fhir/StructureDefinition/instantiates"
KT_TASK_CODE = "http://vzvz.nl/fhir/CodeSystem/koppeltaal-task-code"
XHTML_DIV = '<div xmlns="http://www.w3.org/1999/xhtml">Vragenlijst invullen</div>'

@pytest.fixture(scope="session")
def oracle() -> Oracle:
    """One oracle for the whole run: building it reads and indexes the profile."""
    return Oracle(load_profile())


def ext(url: str, **value: Any) -> dict[str, Any]:
    return {"url": url, **value}


def test_minimal_task_is_valid(oracle: Oracle) -> None:
    assert error_keys(oracle, task()) == set()


def test_full_task_with_every_allowed_element_is_valid(oracle: Oracle) -> None:
    """Every element KT2Task allows, filled the way a Koppeltaal application fills it: guards
    against the oracle rejecting something legitimate (a false 'reject' would fail conforming
    servers)."""
    full = task(
        id="task-1",
        meta={"versionId": "1", "lastUpdated": "2023-01-01T10:00:00.123+01:00",
              "profile": [KT2TASK_URL]},
        implicitRules="http://example.org/rules",
        language="nl",
        text={"status": "generated", "div": XHTML_DIV},
        contained=[{"resourceType": "Patient", "id": "p1", "active": True}],
        extension=[
            ext(RESOURCE_ORIGIN, valueReference={"reference": "Device/device-1"}),
            ext(INSTANTIATES, valueReference={"reference": "ActivityDefinition/ad-1"}),
            ext(INSTANTIATES, valueReference={"reference": "ActivityDefinition/ad-2"}),
            ext("http://example.org/fhir/StructureDefinition/note", valueString="vrij"),
            ext("http://example.org/fhir/StructureDefinition/topic",
                valueCodeableConcept={"coding": [{"system": "http://example.org/topics", "code": "t1"}]}),
        ],
        modifierExtension=[ext("http://example.org/fhir/StructureDefinition/flag", valueBoolean=True)],
        identifier=[{"use": "official", "system": "http://example.org/task-ids", "value": "t-1",
                     "period": {"start": "2023-01-01"}}],
        instantiatesCanonical="http://example.org/fhir/ActivityDefinition/ad-1|1.0",
        partOf=[{"reference": "Task/parent-1"}],
        status="in-progress",
        _status={"extension": [ext("http://example.org/fhir/StructureDefinition/why", valueString="x")]},
        intent="plan",
        priority="routine",
        code={"coding": [{"system": KT_TASK_CODE, "code": "view"}], "text": "bekijken"},
        description="Vragenlijst invullen",
        executionPeriod={"start": "2023-01-01T09:00:00Z", "end": "2023-01-31"},
        authoredOn="2023-01-01T10:00:00+01:00",
        lastModified="2023-01-02T10:00:00Z",
        requester={"reference": "Practitioner/practitioner-1", "display": "Dr. Jansen"},
        owner={"reference": "CareTeam/careteam-1"},
        **{"for": {"reference": "Patient/patient-1"}},
    )
    # the contained Patient is named by an open extension (Reference(Any)): Task.for would
    # demand a KT2Patient
    full["extension"].append(ext("http://example.org/fhir/StructureDefinition/subject",
                                 valueReference={"reference": "#p1"}))
    assert error_keys(oracle, full) == set()


# -- min ------------------------------------------------------------------------------------


@pytest.mark.parametrize("element", ["owner", "identifier", "for", "status", "intent"])
def test_required_element_missing(oracle: Oracle, element: str) -> None:
    assert error_keys(oracle, task(**{element: None})) == {f"Task.{element}/min"}


# -- max ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("element", "value"),
    [
        ("note", [{"text": "n"}]),
        ("basedOn", [{"reference": "ServiceRequest/1"}]),
        ("input", [{"type": {"text": "t"}, "valueString": "v"}]),
        ("statusReason", {"text": "reason"}),
        ("instantiatesUri", "http://example.org/protocol"),
    ],
)
def test_forbidden_element_present(oracle: Oracle, element: str, value: Any) -> None:
    """Only `max` is reported: nothing inside a forbidden element is checked further."""
    assert error_keys(oracle, task(**{element: value})) == {f"Task.{element}/max"}


def test_resource_origin_slice_allows_one(oracle: Oracle) -> None:
    one = ext(RESOURCE_ORIGIN, valueReference={"reference": "Device/d1"})
    assert error_keys(oracle, task(extension=[one])) == set()
    assert error_keys(oracle, task(extension=[one, copy.deepcopy(one)])) == {"Task.extension:resource-origin/max"}


def test_instantiates_slice_repeats(oracle: Oracle) -> None:
    many = [ext(INSTANTIATES, valueReference={"reference": f"ActivityDefinition/ad-{i}"}) for i in range(3)]
    assert error_keys(oracle, task(extension=many)) == set()


def test_nested_extension_forbidden_in_instantiates(oracle: Oracle) -> None:
    """The instantiates definition sets Extension.extension to max 0; having both a nested
    extension and a value also breaks ext-1."""
    bad = ext(INSTANTIATES, valueReference={"reference": "ActivityDefinition/ad-1"},
              extension=[ext("http://example.org/x", valueString="s")])
    assert error_keys(oracle, task(extension=[bad])) == {
        "Task.extension:instantiates.extension/max",
        "Task.extension:instantiates/constraint:ext-1",
    }


# -- fixed, pattern, bindings --------------------------------------------------------------


def test_priority_fixed_to_routine(oracle: Oracle) -> None:
    assert error_keys(oracle, task(priority="routine")) == set()
    # "urgent" is in request-priority, so only the fixed value is broken.
    assert error_keys(oracle, task(priority="urgent")) == {"Task.priority/fixed"}


def test_priority_outside_value_set_breaks_fixed_and_binding(oracle: Oracle) -> None:
    assert error_keys(oracle, task(priority="bogus")) == {"Task.priority/fixed", "Task.priority/binding"}


@pytest.mark.parametrize("element", ["status", "intent"])
def test_required_binding(oracle: Oracle, element: str) -> None:
    assert error_keys(oracle, task(**{element: "bogus"})) == {f"Task.{element}/binding"}


def test_intent_from_imported_request_intent_codes(oracle: Oracle) -> None:
    """task-intent includes part of request-intent by listed concepts: `plan` is in, `directive`
    (a request-intent code not listed) is not."""
    assert error_keys(oracle, task(intent="plan")) == set()
    assert error_keys(oracle, task(intent="directive")) == {"Task.intent/binding"}


def test_preferred_binding_is_not_enforced(oracle: Oracle) -> None:
    """Task.code is bound `preferred`: another code is allowed."""
    code = {"coding": [{"system": "http://example.org/codes", "code": "something-else"}]}
    assert error_keys(oracle, task(code=code)) == set()


@pytest.fixture(scope="module")
def pattern_oracle(tmp_path_factory: pytest.TempPathFactory) -> Oracle:
    """KT2Task has no pattern[x]; a copy of the profile folder with a patternCodeableConcept on
    Task.code shows the oracle enforces patterns read from any profile."""
    folder = tmp_path_factory.mktemp("pattern-profile")
    for f in paths.DEFAULT_PROFILE_DIR.glob("*.json"):
        (folder / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    sd_file = folder / "StructureDefinition-KT2Task.json"
    sd = json.loads(sd_file.read_text(encoding="utf-8"))
    code_el = next(e for e in sd["snapshot"]["element"] if e["id"] == "Task.code")
    code_el["patternCodeableConcept"] = {"coding": [{"system": KT_TASK_CODE, "code": "view"}]}
    sd_file.write_text(json.dumps(sd), encoding="utf-8")
    return Oracle(load_profile(folder))


def test_pattern_matches_when_value_contains_it(pattern_oracle: Oracle) -> None:
    code = {"coding": [{"system": "http://example.org/codes", "code": "x"},
                       {"system": KT_TASK_CODE, "code": "view", "display": "Bekijken"}],
            "text": "extra parts are fine"}
    assert error_keys(pattern_oracle, task(code=code)) == set()


def test_pattern_violated(pattern_oracle: Oracle) -> None:
    code = {"coding": [{"system": "http://example.org/codes", "code": "view"}]}
    assert error_keys(pattern_oracle, task(code=code)) == {"Task.code/pattern"}


# -- JSON types and choice types -----------------------------------------------------------


def test_code_given_as_number(oracle: Oracle) -> None:
    assert error_keys(oracle, task(status=3)) == {"Task.status/type"}


def test_repeating_element_given_as_object(oracle: Oracle) -> None:
    assert error_keys(oracle, task(identifier={"value": "t-1"})) == {"Task.identifier/type"}


def test_single_element_given_as_array(oracle: Oracle) -> None:
    assert error_keys(oracle, task(owner=[{"reference": "Practitioner/1"}])) == {"Task.owner/type"}


def test_choice_type_not_allowed_in_slice(oracle: Oracle) -> None:
    assert error_keys(oracle, task(extension=[ext(INSTANTIATES, valueString="ad-1")])) == {
        "Task.extension:instantiates.value[x]/type"
    }


# -- targetProfile ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"owner": {"reference": "Device/d1"}}, {"Task.owner/targetProfile"}),
        ({"owner": {"type": "Device"}}, {"Task.owner/targetProfile"}),
        ({"owner": {"reference": "https://example.org/fhir/Device/d1/_history/2"}}, {"Task.owner/targetProfile"}),
        ({"for": {"reference": "Practitioner/pr1"}}, {"Task.for/targetProfile"}),
        ({"requester": {"reference": "Patient/p1"}}, {"Task.requester/targetProfile"}),
        ({"partOf": [{"reference": "Patient/p1"}]}, {"Task.partOf/targetProfile"}),
        ({"instantiatesCanonical": "http://example.org/fhir/Questionnaire/q1"},
         {"Task.instantiatesCanonical/targetProfile"}),
    ],
    ids=["owner-device", "owner-type-only", "owner-absolute-device", "for-practitioner",
         "requester-patient", "partOf-patient", "canonical-questionnaire"],
)
def test_reference_to_wrong_type(oracle: Oracle, changes: dict[str, Any], expected: set[str]) -> None:
    assert error_keys(oracle, task(**changes)) == expected


@pytest.mark.parametrize(
    "owner",
    [
        {"reference": "CareTeam/ct1"},
        {"reference": "RelatedPerson/rp1"},
        {"reference": "Patient/p1"},
        {"type": "Practitioner", "display": "Dr. Jansen"},
        {"reference": "https://example.org/fhir/CareTeam/ct1"},
        {"identifier": {"system": "http://example.org/ids", "value": "x"}},
        {"reference": "urn:uuid:9a6f3c1e-2b4d-4c8e-9f00-1a2b3c4d5e6f"},
    ],
    ids=["careteam", "relatedperson", "patient", "type-only", "absolute", "identifier-only", "urn-uuid"],
)
def test_reference_allowed_or_not_typed(oracle: Oracle, owner: dict[str, Any]) -> None:
    """A reference naming no type (identifier-only, urn:uuid) can't break targetProfile; R4's
    ref-1 must not fire either (it only concerns `#` references)."""
    assert error_keys(oracle, task(owner=owner)) == set()


def test_contained_reference_resolves_to_its_type(oracle: Oracle) -> None:
    contained = [{"resourceType": "Practitioner", "id": "x"}]
    assert error_keys(oracle, task(contained=contained, **{"for": {"reference": "#x"}})) == {"Task.for/targetProfile"}


# -- extensions ----------------------------------------------------------------------------


def test_unknown_extension_url_allowed(oracle: Oracle) -> None:
    """Task.extension is sliced open: any other extension is a plain Extension."""
    assert error_keys(oracle, task(extension=[ext("http://example.org/any", valueString="x")])) == set()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"valueCodeableConcept": {"coding": [{"system": "http://example.org/s", "code": "c"}]}}, set()),
        ({"valueReference": {"reference": "Device/d1", "display": "any type"}}, set()),
        ({"valuePeriod": {"start": "2023-01-01", "end": "2023-02-01"}}, set()),
        ({"valueCodeableConcept": {"coding": [{}]}}, {"Task.extension/constraint:ele-1"}),
        ({"valueCodeableConcept": {"text": "t", "foo": 1}}, {"Task.extension/unknown"}),
        ({"valuePeriod": {"start": "2023-13-01"}}, {"Task.extension/format"}),
        ({"valuePeriod": {"start": "2023-02-01", "end": "2023-01-01"}}, {"Task.extension/constraint:per-1"}),
    ],
    ids=["codeable", "reference", "period", "empty-coding", "unknown-child", "bad-date", "per-1"],
)
def test_complex_value_of_open_extension(oracle: Oracle, value: dict[str, Any], expected: set[str]) -> None:
    """Extension.value[x] has fifty types: a complex value is checked as the type its property
    names. (Regression: every child of such a value used to be reported unknown.)"""
    assert error_keys(oracle, task(extension=[ext("http://example.org/e", **value)])) == expected


def test_resource_origin_without_value(oracle: Oracle) -> None:
    assert error_keys(oracle, task(extension=[ext(RESOURCE_ORIGIN)])) == {"Task.extension:resource-origin/constraint:ext-1"}


def test_resource_origin_to_patient(oracle: Oracle) -> None:
    bad = ext(RESOURCE_ORIGIN, valueReference={"reference": "Patient/p1"})
    assert error_keys(oracle, task(extension=[bad])) == {"Task.extension:resource-origin.value[x]/targetProfile"}


def test_instantiates_to_device(oracle: Oracle) -> None:
    bad = ext(INSTANTIATES, valueReference={"reference": "Device/d1"})
    assert error_keys(oracle, task(extension=[bad])) == {"Task.extension:instantiates.value[x]/targetProfile"}


def test_primitive_extension_without_value(oracle: Oracle) -> None:
    """`_status` with only an extension stands for the element (data-absent style): it counts for
    cardinality (no Task.status/min), and its extension is an Extension of the primitive, not of
    Task.status. (Regression: the oracle used to check it against the `code` element itself.)
    Without a code it breaks status's required binding, as the HL7 validator holds
    (checkPrimitive: "No code provided, and a code is required from the value set")."""
    why = ext("http://hl7.org/fhir/StructureDefinition/data-absent-reason", valueCode="unknown")
    assert error_keys(oracle, task(status=None, _status={"extension": [why]})) == {"Task.status/binding"}
    assert error_keys(oracle, task(_status={"extension": [why]})) == set()
    assert error_keys(oracle, task(description=None, _description={"extension": [why]})) == set()
    assert error_keys(oracle, task(_status={"extension": [ext("http://example.org/x")]})) == {"Task.status/constraint:ext-1"}
    assert error_keys(oracle, task(status=None, _status={"id": "s"})) == {"Task.status/constraint:ele-1",
                                                                          "Task.status/binding"}


def test_primitive_extension_has_the_shape_of_its_element(oracle: Oracle) -> None:
    """`_x` is an array exactly when `x` is (FHIR JSON §2.6.2)."""
    assert error_keys(oracle, task(_status=[{"id": "s"}])) == {"Task.status/type"}
    meta = {"profile": [KT2TASK_URL], "_profile": [{"id": "p"}]}
    assert error_keys(oracle, task(meta=meta)) == set()
    assert error_keys(oracle, task(meta={**meta, "_profile": {"id": "p"}})) == {"Task.meta/type"}


# -- unknown elements ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"foo": "bar"}, {"Task/unknown"}),
        ({"identifier": [{"value": "t-1", "foo": 1}]}, {"Task.identifier/unknown"}),
        ({"meta": {"project": "x"}}, {"Task.meta/unknown"}),  # R4 Meta has no `project`
        ({"_foo": {"id": "x"}}, {"Task/unknown"}),
    ],
    ids=["top-level", "in-identifier", "meta-project", "primitive-extension-of-nothing"],
)
def test_unknown_element(oracle: Oracle, changes: dict[str, Any], expected: set[str]) -> None:
    assert error_keys(oracle, task(**changes)) == expected


# -- primitive formats ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"authoredOn": "2023-01-01T10:00:00+01:00"}, set()),
        ({"authoredOn": "2023-01"}, set()),
        ({"authoredOn": "2020-02-29"}, set()),
        ({"authoredOn": "2023-01-01T10:00:00"}, {"Task.authoredOn/format"}),  # time without zone
        ({"authoredOn": "2023-01-01T10:00Z"}, {"Task.authoredOn/format"}),  # seconds are required
        ({"authoredOn": "2021-02-30"}, {"Task.authoredOn/format"}),
        ({"authoredOn": "2023-02-29T10:00:00Z"}, {"Task.authoredOn/format"}),
        ({"meta": {"lastUpdated": "2023-01-01T10:00:00Z"}}, set()),
        ({"meta": {"lastUpdated": "2023-01-01"}}, {"Task.meta/format"}),  # instant needs a time
        ({"id": "task-1.A"}, set()),
        ({"id": "a b"}, {"Task.id/format"}),
        ({"status": " requested"}, {"Task.status/format"}),
        ({"description": ""}, {"Task.description/format"}),
        ({"implicitRules": "a b"}, {"Task.implicitRules/format"}),
        ({"extension": [ext("http://example.org/n", valuePositiveInt=1)]}, set()),
        ({"extension": [ext("http://example.org/n", valuePositiveInt=0)]}, {"Task.extension/format"}),
        ({"extension": [ext("http://example.org/n", valuePositiveInt="1")]}, {"Task.extension/type"}),
        ({"extension": [ext("http://example.org/n", valueBoolean="true")]}, {"Task.extension/type"}),
        ({"identifier": [{"value": "t-1", "period": {"start": "2023-13-01"}}]}, {"Task.identifier/format"}),
    ],
)
def test_primitive_format(oracle: Oracle, changes: dict[str, Any], expected: set[str]) -> None:
    assert error_keys(oracle, task(**changes)) == expected


# -- invariants ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authored", "modified", "expected"),
    [
        ("2023-01-01T10:00:00Z", "2023-01-02T10:00:00Z", set()),
        ("2023-01-02T10:00:00Z", "2023-01-01T10:00:00Z", {"Task/constraint:inv-1"}),
        # 10:00+01:00 is 09:00Z: a later instant despite the smaller clock reading.
        ("2023-01-01T10:00:00+01:00", "2023-01-01T09:30:00Z", set()),
        ("2023-01-01T10:00:00+01:00", "2023-01-01T08:30:00Z", {"Task/constraint:inv-1"}),
        ("2023-01-01T10:00:00Z", "2023-01-01T10:00:00.000Z", set()),
        ("2023-01-02", "2023-01-01T10:00:00Z", {"Task/constraint:inv-1"}),
        # Same day, date vs dateTime: FHIRPath's answer is empty, which does not satisfy inv-1.
        ("2023-01-01", "2023-01-01T10:00:00Z", {"Task/constraint:inv-1"}),
    ],
)
def test_inv1_last_modified_not_before_authored(oracle: Oracle, authored: str, modified: str, expected: set[str]) -> None:
    assert error_keys(oracle, task(authoredOn=authored, lastModified=modified)) == expected


def test_inv1_needs_both_dates(oracle: Oracle) -> None:
    assert error_keys(oracle, task(authoredOn="2023-01-02T10:00:00Z")) == set()
    assert error_keys(oracle, task(lastModified="2023-01-02T10:00:00Z")) == set()


@pytest.mark.parametrize(
    ("period", "expected"),
    [
        ({"start": "2023-01-01", "end": "2023-01-01"}, set()),
        ({"start": "2023-01-01T10:00:00+02:00", "end": "2023-01-01T09:00:00Z"}, set()),
        ({"start": "2023-02-01", "end": "2023-01-01"}, {"Task.executionPeriod/constraint:per-1"}),
        ({"start": "2023-02-01"}, set()),
    ],
)
def test_per1_on_execution_period(oracle: Oracle, period: dict[str, str], expected: set[str]) -> None:
    assert error_keys(oracle, task(executionPeriod=period)) == expected


def test_ele1_empty_identifier(oracle: Oracle) -> None:
    assert error_keys(oracle, task(identifier=[{}])) == {"Task.identifier/constraint:ele-1"}
    assert error_keys(oracle, task(identifier=[{"id": "only-an-id"}])) == {"Task.identifier/constraint:ele-1"}


def test_ele1_reported_on_the_empty_element_only(oracle: Oracle) -> None:
    """An empty object is a child of its parent (FHIRPath children()): the parent keeps ele-1;
    only the empty element breaks it. (Regression: the parent was reported too.)"""
    issues = oracle.errors(task(owner={"reference": "Practitioner/pr1", "identifier": {}}))
    assert [(i.key, i.path) for i in issues] == [("Task.owner/constraint:ele-1", "Task.owner.identifier")]
    issues = oracle.errors(task(owner={"identifier": {}}))
    assert [(i.key, i.path) for i in issues] == [("Task.owner/constraint:ele-1", "Task.owner.identifier")]


def test_ref1_local_reference_must_be_contained(oracle: Oracle) -> None:
    assert error_keys(oracle, task(owner={"reference": "#missing"})) == {"Task.owner/constraint:ref-1"}


PATIENT = {"resourceType": "Patient", "id": "p1"}


@pytest.mark.parametrize(
    ("contained", "expected"),
    [
        (PATIENT, set()),
        # the nested one is also unreferenced inside the contained Patient (its own dom-3)
        ({**PATIENT, "contained": [{"resourceType": "Patient", "id": "p2"}]},
         {"Task/constraint:dom-2", "Task.contained/constraint:dom-3"}),
        ({**PATIENT, "meta": {"versionId": "1"}}, {"Task/constraint:dom-4"}),
        ({**PATIENT, "meta": {"lastUpdated": "2023-01-01T00:00:00Z"}}, {"Task/constraint:dom-4"}),
        ({**PATIENT, "meta": {"security": [{"code": "R"}]}}, {"Task/constraint:dom-5"}),
    ],
    ids=["referenced", "dom-2-nested", "dom-4-versionId", "dom-4-lastUpdated", "dom-5-security"],
)
def test_contained_resource_rules(oracle: Oracle, contained: dict[str, Any], expected: set[str]) -> None:
    subject = ext("http://example.org/fhir/StructureDefinition/subject", valueReference={"reference": "#p1"})
    t = task(contained=[contained], extension=[subject])
    assert error_keys(oracle, t) == expected


def test_dom3_contained_must_be_referenced(oracle: Oracle) -> None:
    assert error_keys(oracle, task(contained=[PATIENT])) == {"Task/constraint:dom-3"}


def test_dom6_missing_narrative_is_a_warning_only(oracle: Oracle) -> None:
    issues = oracle.validate(task())
    assert [(i.severity, i.key) for i in issues] == [("warning", "Task/constraint:dom-6")]
    assert oracle.is_valid(task())
    assert "Task/constraint:dom-6" not in {i.key for i in oracle.validate(task(text={"status": "generated", "div": XHTML_DIV}))}


@pytest.mark.parametrize(
    ("div", "expected"),
    [
        ('<div xmlns="http://www.w3.org/1999/xhtml">x<script>alert(1)</script></div>',
         {"Task.text/constraint:txt-1", "Task.text/format"}),
        # the root's attributes are txt-1's alone (the validator's inner-name check starts below it)
        ('<div xmlns="http://www.w3.org/1999/xhtml" onclick="f()">x</div>', {"Task.text/constraint:txt-1"}),
        ("<div>no namespace</div>", {"Task.text/format"}),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><p>unclosed</div>',
         {"Task.text/constraint:txt-1", "Task.text/constraint:txt-2", "Task.text/format"}),
        ('<div xmlns="http://www.w3.org/1999/xhtml">   </div>', {"Task.text/constraint:txt-2"}),
    ],
    ids=["script", "event-attribute", "no-namespace", "not-well-formed", "no-content"],
)
def test_narrative_rules(oracle: Oracle, div: str, expected: set[str]) -> None:
    """As the HL7 validator reports them: txt-1 (names), txt-2 (content) and its own XHTML checks
    (reading, namespace, root, elements below the root) as `format` (spec/_xhtml.py)."""
    t = task(text={"status": "generated", "div": div})
    assert error_keys(oracle, t) == expected


# -- the resource itself -------------------------------------------------------------------


def test_resource_type_missing_or_other(oracle: Oracle) -> None:
    assert error_keys(oracle, task(resourceType=None)) == {"Task/type"}
    assert error_keys(oracle, task(resourceType="ServiceRequest")) == {"Task/type"}


def test_not_a_json_object(oracle: Oracle) -> None:
    assert error_keys(oracle, [MINIMAL]) == {"Task/type"}


@pytest.mark.parametrize("fixture", sorted(paths.FIXTURES_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_fixture_resources(oracle: Oracle, fixture: Path) -> None:
    """The fixtures are the IG's example resources: its Task examples must conform, and the
    prerequisite resources (Patient, Practitioner, ...) must be rejected as not Tasks, without
    the oracle crashing on elements Task doesn't have."""
    resource = json.loads(fixture.read_text(encoding="utf-8"))
    if resource["resourceType"] == "Task":
        assert error_keys(oracle, resource) == set()
    else:
        assert "Task/type" in error_keys(oracle, resource)


@pytest.fixture(scope="module")
def singleton_oracle(tmp_path_factory: pytest.TempPathFactory) -> Oracle:
    """A copy of the profile with an invariant that needs a single identifier value: on two
    identifiers the FHIRPath engine cannot evaluate it (a singleton was expected)."""
    folder = tmp_path_factory.mktemp("singleton-profile")
    for f in paths.DEFAULT_PROFILE_DIR.glob("*.json"):
        (folder / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    sd_file = folder / "StructureDefinition-KT2Task.json"
    sd = json.loads(sd_file.read_text(encoding="utf-8"))
    sd["snapshot"]["element"][0].setdefault("constraint", []).append(
        {"key": "kt-single", "severity": "error", "human": "identifier value after 'a'",
         "expression": "identifier.value > 'a'"})
    sd_file.write_text(json.dumps(sd), encoding="utf-8")
    return Oracle(load_profile(folder))


def test_invariant_that_cannot_be_evaluated_is_an_error(singleton_oracle: Oracle) -> None:
    """An evaluation failure never passes as 'holds' nor as a mere warning (the HL7 validator
    reports it at the invariant's severity)."""
    one = task(identifier=[{"system": "http://example.org/ids", "value": "b"}])
    assert error_keys(singleton_oracle, one) == set()
    assert error_keys(singleton_oracle, task(identifier=[{"value": "a"}])) == {"Task/constraint:kt-single"}
    two = task(identifier=[{"value": "b"}, {"value": "c"}])
    assert error_keys(singleton_oracle, two) == {"Task/constraint:kt-single"}
    assert not singleton_oracle.is_valid(two)
