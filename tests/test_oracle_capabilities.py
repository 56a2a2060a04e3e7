"""The checks a careful FHIR validator makes beyond the profile's own elements, each shown with a
conforming and a violating Task and the exact key reported: contained resources against their
R4 base definitions, dom-3, extension context and modifier placement, Reference.type against
the literal reference, FHIR JSON rules (nulls, `_x` companions), primitive limits and lexical
rules as XML Schema reads them, required bindings to R4 core ValueSets, codes of known complete
CodeSystems whatever the binding, and dates at the edges of the calendar."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tasks import error_keys as keys
from tasks import task

from kt2conformance import _paths as paths
from kt2conformance._koppeltaal import KT2TASK_URL
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec._profile import load_profile

Task = dict[str, Any]


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return Oracle(load_profile())


SUBJECT = "http://example.org/fhir/StructureDefinition/subject"


def with_contained(*resources: dict[str, Any], **changes: Any) -> Task:
    """A Task whose open extension refers to the first contained resource: a Reference(Any),
    so the resource is judged by its R4 definition alone (no target profile)."""
    ref = {"url": SUBJECT, "valueReference": {"reference": f"#{resources[0]['id']}"}}
    return task(contained=list(resources), extension=[ref], **changes)


PATIENT = {"resourceType": "Patient", "id": "p1"}
ORG = {"resourceType": "Organization", "id": "org", "name": "Zorgaanbieder"}


# -- contained resources against their own definitions ---------------------------------------


def test_contained_resources_that_conform(oracle: Oracle) -> None:
    patient = {**PATIENT, "gender": "female", "birthDate": "1980-02-29", "managingOrganization": {"reference": "#org"},
               "name": [{"family": "Jansen", "given": ["An"]}], "link": [{"other": {"reference": "Patient/x"},
                                                                           "type": "seealso"}]}
    assert keys(oracle, with_contained(patient, ORG)) == set()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"gender": "vrouw"}, "Task.contained/binding"),  # administrative-gender is required
        ({"birthDate": "1980-02-30"}, "Task.contained/format"),
        ({"gender": ["female"]}, "Task.contained/type"),
        ({"foo": 1}, "Task.contained/unknown"),
        ({"link": [{"type": "seealso"}]}, "Task.contained/min"),  # Patient.link.other is 1..1
        ({"multipleBirthBoolean": True, "multipleBirthInteger": 2}, "Task.contained/max"),
        ({"managingOrganization": {"reference": "#nowhere"}}, "Task.contained/constraint:ref-1"),
        ({"managingOrganization": {"reference": "Patient/p2"}}, "Task.contained/targetProfile"),
        ({"contact": [{"gender": "male"}]}, "Task.contained/constraint:pat-1"),
    ],
    ids=["binding", "format", "type", "unknown", "min", "choice-twice", "ref-1", "target", "pat-1"],
)
def test_contained_patient_breaks_its_definition(oracle: Oracle, changes: dict[str, Any], expected: str) -> None:
    assert keys(oracle, with_contained({**PATIENT, **changes})) == {expected}


def test_contained_organization_invariant_org_1(oracle: Oracle) -> None:
    patient = {**PATIENT, "managingOrganization": {"reference": "#org"}}
    assert keys(oracle, with_contained(patient, ORG)) == set()
    nameless = {"resourceType": "Organization", "id": "org", "active": True}
    assert keys(oracle, with_contained(patient, nameless)) == {"Task.contained/constraint:org-1"}


@pytest.mark.parametrize("rtype", ["Resource", "DomainResource", "Kitten", 7])
def test_contained_must_be_a_concrete_resource(oracle: Oracle, rtype: Any) -> None:
    assert "Task.contained/type" in keys(oracle, with_contained({"resourceType": rtype, "id": "p1"}))


def test_reference_to_contained_resource_checked_against_target(oracle: Oracle) -> None:
    assert keys(oracle, task(contained=[ORG], **{"for": {"reference": "#org"}})) == {"Task.for/targetProfile"}


def test_contained_resource_conforms_to_the_target_profile_at_hand(oracle: Oracle) -> None:
    """Task.for is a Reference(KT2Patient) and KT2Patient is in the package: a contained Patient
    it names must conform to it (R4's Patient alone is not enough)."""
    fixture = json.loads((paths.FIXTURES_DIR / "Patient-patient-botje-minimaal.json").read_text(encoding="utf-8"))
    kt2_patient = {k: v for k, v in fixture.items() if k not in ("meta", "text")} | {"id": "p1"}
    assert keys(oracle, task(contained=[kt2_patient], **{"for": {"reference": "#p1"}})) == set()
    assert keys(oracle, task(contained=[PATIENT], **{"for": {"reference": "#p1"}})) == {"Task.for/targetProfile"}
    nameless = {k: v for k, v in kt2_patient.items() if k != "name"}
    issues = [i for i in oracle.errors(task(contained=[nameless], **{"for": {"reference": "#p1"}}))]
    assert [i.key for i in issues] == ["Task.for/targetProfile"] and "name" in issues[0].message


def test_target_profile_check_leaves_the_base_definition_alone() -> None:
    """Checking a contained Patient against KT2Patient (Task.for) does not change how a contained
    Patient is judged by its R4 definition afterwards: KT2Patient's invariants (kt2pnu-2, a name
    needs a use) are not R4's, though both trees name the element Patient.name."""
    fresh = Oracle(load_profile())
    patient = {**PATIENT, "name": [{"family": "Jansen"}]}
    assert "Task.for/targetProfile" in keys(fresh, task(contained=[patient], **{"for": {"reference": "#p1"}}))
    assert keys(fresh, with_contained(patient)) == set()


# -- dom-3 -----------------------------------------------------------------------------------


def test_dom3_contained_resource_needs_an_id(oracle: Oracle) -> None:
    assert keys(oracle, with_contained(PATIENT)) == set()
    idless = {"resourceType": "Patient", "active": True}
    assert keys(oracle, task(contained=[idless])) == {"Task/constraint:dom-3"}


def test_dom3_unreferenced_contained_resource(oracle: Oracle) -> None:
    assert keys(oracle, with_contained(PATIENT, ORG)) == {"Task/constraint:dom-3"}


# -- extension context and modifier placement ------------------------------------------------

BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"  # context: Patient
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"  # context: Element
DO_NOT_PERFORM = "http://hl7.org/fhir/StructureDefinition/request-doNotPerform"  # modifier, NutritionOrder


def test_extension_allowed_by_its_context(oracle: Oracle) -> None:
    place = {"url": BIRTH_PLACE, "valueAddress": {"city": "Utrecht"}}
    assert keys(oracle, with_contained({**PATIENT, "extension": [place]})) == set()
    absent = {"url": DATA_ABSENT, "valueCode": "unknown"}
    assert keys(oracle, task(_authoredOn={"extension": [absent]})) == set()
    assert keys(oracle, task(identifier=[{"value": "x", "extension": [absent]}])) == set()


def test_extension_outside_its_context(oracle: Oracle) -> None:
    place = {"url": BIRTH_PLACE, "valueAddress": {"city": "Utrecht"}}
    assert keys(oracle, task(extension=[place])) == {"Task.extension/unknown"}
    assert keys(oracle, task(identifier=[{"value": "x", "extension": [place]}])) == {"Task.identifier/unknown"}


def test_modifier_extension_placement(oracle: Oracle) -> None:
    absent = {"url": DATA_ABSENT, "valueCode": "unknown"}
    assert keys(oracle, task(modifierExtension=[absent])) == {"Task.modifierExtension/unknown"}
    dnp = {"url": DO_NOT_PERFORM, "valueBoolean": True}
    issues = [i for i in oracle.errors(task(extension=[dnp])) if "modifier" in i.message]
    assert [i.key for i in issues] == ["Task.extension/unknown"]


def test_profile_extension_context_kept(oracle: Oracle) -> None:
    """KT2's instantiates has context Task: fine on the Task, not inside an identifier."""
    inst = {"url": "http://vzvz.nl/fhir/StructureDefinition/instantiates",
            "valueReference": {"reference": "ActivityDefinition/ad-1"}}
    assert keys(oracle, task(extension=[inst])) == set()
    assert keys(oracle, task(identifier=[{"value": "x", "extension": [inst]}])) == {"Task.identifier/unknown"}


# -- Reference.type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "expected"),
    [
        ({"reference": "Practitioner/1", "type": "Practitioner"}, set()),
        ({"reference": "https://example.org/fhir/Practitioner/1", "type": "Practitioner"}, set()),
        ({"reference": "Practitioner/1", "type": "Patient"}, {"Task.owner/type"}),
        ({"reference": "Device/1", "type": "Patient"}, {"Task.owner/type", "Task.owner/targetProfile"}),
    ],
    ids=["agrees", "absolute-agrees", "disagrees", "disagrees-and-wrong-target"],
)
def test_reference_type_agrees_with_literal(oracle: Oracle, owner: dict[str, Any], expected: set[str]) -> None:
    assert keys(oracle, task(owner=owner)) == expected


# -- FHIR JSON rules ------------------------------------------------------------------------

KT2 = KT2TASK_URL
EXT = [{"url": "http://example.org/why", "valueString": "x"}]


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"profile": [KT2, None], "_profile": [None, {"extension": EXT}]}, set()),
        ({"profile": [KT2, None]}, {"Task.meta/type"}),
        ({"profile": [KT2, None], "_profile": [None, None]}, {"Task.meta/type"}),
        ({"profile": [KT2], "_profile": [None, {"extension": EXT}]}, {"Task.meta/type"}),
        ({"profile": []}, {"Task.meta/type", "Task.meta/constraint:ele-1"}),
    ],
    ids=["placeholder", "null-without-companion", "null-in-both", "misaligned", "empty-array"],
)
def test_null_only_as_array_placeholder(oracle: Oracle, meta: dict[str, Any], expected: set[str]) -> None:
    assert keys(oracle, task(meta=meta)) == expected


def test_single_null_and_empty_object(oracle: Oracle) -> None:
    assert keys(oracle, task(description=None, _description=None)) == set()
    t = task()
    t["_status"] = None
    assert keys(oracle, t) == {"Task.status/type"}
    t = task()
    t["description"] = None
    assert keys(oracle, t) == {"Task.description/type"}
    assert keys(oracle, task(executionPeriod={})) == {"Task.executionPeriod/constraint:ele-1"}


# -- primitives: limits and XML Schema regexes ------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"identifier": [{"system": "http://example.org/ids", "value": "a\u00a0b"}]}, set()),  # NBSP is no \s
        ({"description": "x\u2003y"}, set()),
        ({"id": "a\u00a0b"}, {"Task.id/format"}),
        ({"description": "x" * (1024 * 1024)}, set()),
        ({"description": "x" * (1024 * 1024 + 1)}, {"Task.description/format"}),
        # astral characters count twice, as Java counts them
        ({"description": "\U0001f600" * (512 * 1024 + 1)}, {"Task.description/format"}),
        ({"extension": [{"url": "http://example.org/n", "valueInteger": 2**31 - 1}]}, set()),
        ({"extension": [{"url": "http://example.org/n", "valueInteger": 2**31}]}, {"Task.extension/format"}),
        ({"extension": [{"url": "http://example.org/n", "valueInteger": -(2**31)}]}, set()),
        ({"extension": [{"url": "http://example.org/n", "valueDecimal": float("nan")}]}, {"Task.extension/format"}),
    ],
    ids=["nbsp-in-string", "em-space", "nbsp-in-id", "1MiB", "1MiB+1", "astral", "int-max", "int-max+1",
         "int-min", "nan"],
)
def test_primitive_rules(oracle: Oracle, changes: dict[str, Any], expected: set[str]) -> None:
    assert keys(oracle, task(**changes)) == expected


# -- terminology ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"identifier": [{"use": "official", "value": "x"}]}, set()),
        ({"identifier": [{"use": "bogus", "value": "x"}]}, {"Task.identifier/binding"}),
        ({"text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}}, set()),
        ({"text": {"status": "made-up", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'}},
         {"Task.text/binding"}),
    ],
    ids=["identifier-use", "identifier-use-bad", "narrative-status", "narrative-status-bad"],
)
def test_required_bindings_of_core_value_sets(oracle: Oracle, changes: dict[str, Any], expected: set[str]) -> None:
    assert keys(oracle, task(**changes)) == expected


V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"code": {"coding": [{"system": "http://vzvz.nl/fhir/CodeSystem/koppeltaal-task-code", "code": "view"}]}},
         set()),
        ({"code": {"coding": [{"system": "http://vzvz.nl/fhir/CodeSystem/koppeltaal-task-code", "code": "edit"}]}},
         {"Task.code/binding"}),
        ({"code": {"coding": [{"system": "http://example.org/own-codes", "code": "edit"}]}}, set()),
        ({"identifier": [{"type": {"coding": [{"system": V2_0203, "code": "MR"}]}, "value": "x"}]}, set()),
        ({"identifier": [{"type": {"coding": [{"system": V2_0203, "code": "NOPE"}]}, "value": "x"}]},
         {"Task.identifier/binding"}),
        ({"meta": {"tag": [{"system": "http://hl7.org/fhir/task-status", "code": "made-up"}]}}, {"Task.meta/binding"}),
        # a system known in full and no code: HAPI reports "Unknown code '…#null'"
        ({"identifier": [{"type": {"coding": [{"system": V2_0203}]}, "value": "x"}]}, {"Task.identifier/binding"}),
        # meta.security is bound extensible to security labels, which draw on no v2 table: judged
        # against that value set only, where another system's code is allowed
        ({"meta": {"security": [{"system": V2_0203, "code": "NOPE"}]}}, set()),
    ],
    ids=["kt-code", "kt-code-unknown", "own-system", "v2-known", "v2-unknown", "meta-tag", "no-code",
         "extensible-other-system"],
)
def test_codes_of_known_complete_code_systems(oracle: Oracle, changes: dict[str, Any], expected: set[str]) -> None:
    assert keys(oracle, task(**changes)) == expected


# -- calendar edges -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authored", "modified", "expected"),
    [
        ("0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", set()),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", {"Task/constraint:inv-1"}),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59-14:00", set()),
        ("9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59Z", {"Task/constraint:inv-1"}),
        ("2023-01-01T00:00:00+14:00", "2022-12-31T10:00:00Z", set()),  # the same instant
        ("2023-01-01T00:00:00-12:00", "2023-01-01T11:59:59Z", {"Task/constraint:inv-1"}),
    ],
)
def test_dates_at_the_edges_of_the_calendar(oracle: Oracle, authored: str, modified: str, expected: set[str]) -> None:
    assert keys(oracle, task(authoredOn=authored, lastModified=modified)) == expected
