"""The HL7 validator's own rules the oracle follows, beyond the profile's content (found by the
referee differential, tests/test_referee_differential.py), each with a conforming and a violating
Task and the key reported: `_x` companions as elements (no empty object, `id` a string), URIs as
`checkPrimitive` reads them, Identifier system and value (`checkIdentifier`), Extension.url and
canonicals absolute as `Utilities.isAbsoluteUrl` has it, conditional references' queries, and
FHIRPath that sees a primitive and its `_x` companion as one item."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tasks import MINIMAL, task
from tasks import error_keys as keys

from kt2conformance._errors import dump_json
from kt2conformance.oracle import _hl7checks as hl7
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec import _fhirpath as fhirpath
from kt2conformance.spec._lexical import is_absolute_url
from kt2conformance.spec._profile import load_profile
from kt2conformance.spec._ucum import ucum_problem

Task = dict[str, Any]
NOTE = {"url": "http://example.org/fhir/StructureDefinition/note", "valueString": "n"}


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return Oracle(load_profile())


def ident(system: str, value: str | None = "t-1", **more: Any) -> list[dict[str, Any]]:
    item: dict[str, Any] = {"system": system, **more}
    if value is not None:
        item["value"] = value
    return [item]


def ext(url: str, **more: Any) -> list[dict[str, Any]]:
    return [{"url": url, **({"valueString": "a"} if not more else more)}]


@pytest.mark.parametrize(("changes", "expected"), [
    ({"identifier": ident("http://example.org/ids", _system={"id": "s1"})}, set()),
    ({"identifier": ident("http://example.org/ids", _system={"extension": [NOTE]})}, set()),
    ({"identifier": ident("http://example.org/ids", _system={})}, {"Task.identifier/type"}),
    ({"_status": {}}, {"Task.status/type"}),
    ({"identifier": ident("http://example.org/ids", _system={"id": None})}, {"Task.identifier/type"}),
    ({"identifier": ident("http://example.org/ids", _system={"id": 5})}, {"Task.identifier/type"}),
    ({"identifier": ident("http://example.org/ids", _system={"id": ""})}, {"Task.identifier/format"}),
], ids=["id", "extension", "empty-with-value", "empty-status", "null-id", "number-id", "empty-id"])
def test_primitive_companion_is_an_element(oracle: Oracle, changes: dict[str, Any], expected: set[str]) -> None:
    """`_x` holds the primitive's Element part: never an empty object (FHIR JSON, R4 §2.6.2),
    and its `id` is a string like every element id."""
    assert keys(oracle, task(**changes)) == expected


@pytest.mark.parametrize(("system", "value", "expected"), [
    ("http://example.org/ids", "t-1", set()),
    ("https://example.org/ids", "t-1", set()),
    ("urn:oid:2.16.840.1.113883.2.4.6.3", "t-1", set()),
    ("ldap://example.org/ids", "t-1", set()),
    ("urn:ietf:rfc:3986", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520", set()),
    ("urn:ietf:rfc:3986", "http://example.org/tasks/1", set()),
    ("https://tools.ietf.org/html/rfc4122", "c757873d-ec9a-4326-a141-556f43239520", set()),
    ("mailto:ids@example.org", "t-1", {"Task.identifier/format"}),
    ("HTTP://example.org/ids", "t-1", {"Task.identifier/format"}),
    ("ftp://example.org/ids", "t-1", {"Task.identifier/format"}),
    ("urn:ietf:rfc:3986", "t-1", {"Task.identifier/format"}),
    ("urn:ietf:rfc:3986", "file:x", {"Task.identifier/format"}),
    ("https://tools.ietf.org/html/rfc4122", "t-1", {"Task.identifier/format"}),
])
def test_identifier_system_and_value(oracle: Oracle, system: str, value: str, expected: set[str]) -> None:
    assert keys(oracle, task(identifier=ident(system, value))) == expected


def test_identifier_rules_apply_to_every_identifier(oracle: Oracle) -> None:
    owner = {"identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:2.16.840.1.113883"}}
    assert keys(oracle, task(owner=owner)) == set()
    owner["identifier"]["value"] = "1234"
    assert keys(oracle, task(owner=owner)) == {"Task.owner/format"}


@pytest.mark.parametrize(("system", "expected"), [
    ("urn:oid:2.16.840.1.113883", set()),
    ("urn:oid:1.3.6", set()),
    ("urn:uuid:c757873d-ec9a-4326-a141-556f43239520", set()),
    ("urn:oid:1.2", {"Task.identifier/format"}),
    ("urn:oid:2.16.x", {"Task.identifier/format"}),
    ("urn:uuid:C757873D-EC9A-4326-A141-556F43239520", {"Task.identifier/format"}),
    ("urn:uuid:1234", {"Task.identifier/format"}),
    ("oid:2.16.840.1.113883", {"Task.identifier/format"}),
    ("uuid:c757873d-ec9a-4326-a141-556f43239520", {"Task.identifier/format"}),
    ("http://example.org/ids\u00a0", {"Task.identifier/format"}),
])
def test_uri_values_as_the_validator_reads_them(oracle: Oracle, system: str, expected: set[str]) -> None:
    """urn:oid: and urn:uuid: must hold a valid OID (of a plausible root) and a lower-case
    UUID; `oid:` and `uuid:` are no schemes; no whitespace, Java's (a no-break space) included."""
    assert keys(oracle, task(identifier=ident(system))) == expected


@pytest.mark.parametrize(("extension", "expected"), [
    (ext("http://example.org/fhir/StructureDefinition/e"), set()),
    (ext("urn:example:e"), set()),
    ([{"url": "http://example.org/e", "extension": ext("part")}], set()),  # a complex extension's part
    (ext("part"), {"Task.extension/format"}),
    (ext("HTTP://example.org/e"), {"Task.extension/format"}),
    (ext("a+b:e"), {"Task.extension/format"}),
    (ext("http:"), {"Task.extension/format"}),
], ids=["http", "urn", "relative-part", "relative", "upper-case-scheme", "plus-scheme", "no-tail"])
def test_extension_url_is_absolute(oracle: Oracle, extension: list[dict[str, Any]], expected: set[str]) -> None:
    assert keys(oracle, task(extension=extension)) == expected


@pytest.mark.parametrize(("canonical", "expected"), [
    ("http://example.org/fhir/ActivityDefinition/a", set()),
    ("a_b:x", set()),
    ("HTTP://example.org/fhir/ActivityDefinition/a", {"Task.instantiatesCanonical/format"}),
    ("ActivityDefinition/a", {"Task.instantiatesCanonical/format"}),
])
def test_canonical_is_absolute_or_a_fragment(oracle: Oracle, canonical: str, expected: set[str]) -> None:
    assert keys(oracle, task(instantiatesCanonical=canonical)) == expected


@pytest.mark.parametrize(("reference", "expected"), [
    ("Practitioner?identifier=http://example.org/ids|p-1", set()),
    ("Practitioner?identifier=a&name=b", set()),
    ("Practitioner?identifier", {"Task.owner/format"}),
    ("Practitioner?a=b=c", {"Task.owner/format"}),
    ("Practitioner?", {"Task.owner/format"}),
    ("Practitioner?a=1&", {"Task.owner/format"}),
])
def test_conditional_reference_query(oracle: Oracle, reference: str, expected: set[str]) -> None:
    assert keys(oracle, task(owner={"reference": reference})) == expected


def test_is_absolute_url_as_the_validator_has_it() -> None:
    assert is_absolute_url("http://example.org") and is_absolute_url("urn:iso:std:iso:3166")
    assert is_absolute_url("a_b1:x") and is_absolute_url("file:x")
    assert not is_absolute_url("HTTP://example.org") and not is_absolute_url("a.b:x")
    assert not is_absolute_url("http:") and not is_absolute_url("urn:a b")
    assert hl7.canonical_problem("#frag") is None and hl7.canonical_problem("Questionnaire/q") is not None


@pytest.mark.parametrize(("changes", "expected"), [
    ({"authoredOn": "2021-09-15T09:23:23+05:30", "lastModified": "2023-09-29T15:08:56.885+05:30",
      "_lastModified": {"extension": [NOTE]}}, set()),
    ({"authoredOn": "2021-09-15T09:23:23+05:30", "_authoredOn": {"id": "a"},
      "lastModified": "2023-09-29T15:08:56+05:30", "_lastModified": {"extension": [NOTE]}}, set()),
    ({"authoredOn": "2023-09-15T09:23:23+05:30", "lastModified": "2021-09-29T15:08:56+05:30",
      "_lastModified": {"extension": [NOTE]}}, {"Task/constraint:inv-1"}),
    ({"executionPeriod": {"_start": {"extension": [NOTE]}, "end": "2026-03-13T02:30:38-05:00"}}, set()),
    ({"authoredOn": "2021-09-15T09:23:23+05:30", "_lastModified": {"extension": [NOTE]}}, {"Task/constraint:inv-1"}),
], ids=["companion", "both-companions", "companion-violated", "per-1-start-without-value",
        "inv-1-modified-without-value"])
def test_fhirpath_sees_a_primitive_and_its_companion_as_one(oracle: Oracle, changes: dict[str, Any],
                                                             expected: set[str]) -> None:
    """inv-1 `lastModified >= authoredOn` on dates that carry extensions: one value each. A date
    with extensions and no value cannot be ordered: per-1 (`start.hasValue().not() or …`) holds
    as the HL7 engine short-circuits it, inv-1 (`lastModified.exists().not() or …`) fails."""
    assert keys(oracle, task(**changes)) == expected


def test_fhirpath_counts_a_primitive_with_a_companion_once() -> None:
    resource = {"resourceType": "Task", "status": "draft", "_status": {"extension": [NOTE]},
                "input": [{"valueString": "a", "_valueString": {"id": "x"}}]}
    assert fhirpath.holds("status.count() = 1", resource, resource)
    assert fhirpath.holds("status.startsWith('dr')", resource, resource)
    only_companion = {"resourceType": "Task", "_status": {"extension": [NOTE]}}
    assert fhirpath.holds("status.exists() and status.hasValue().not()", only_companion, only_companion)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"extension": ext("http://example.org/e", valueString="a", _url={"extension": [NOTE]})}, set()),
    ({"id": "t1", "_id": {"extension": [NOTE]}}, set()),
    ({"extension": ext("http://example.org/e", valueString="a", _url={})}, {"Task.extension/type"}),
    ({"extension": [{"valueString": "a", "_url": {"extension": [NOTE]}}]}, {"Task.extension/min"}),
    ({"owner": {"reference": "Practitioner/practitioner-1", "id": "o", "_id": {"extension": [NOTE]}}},
     {"Task.owner/unknown"}),
], ids=["extension-url", "resource-id", "empty-url-companion", "url-companion-without-url", "element-id"])
def test_attribute_companions(oracle: Oracle, changes: dict[str, Any], expected: set[str]) -> None:
    """An Extension's `_url` and a resource's `_id` may carry extensions, as the HL7 validator
    (and, for `_url`, R4's JSON schema) reads JSON; the companion never stands in for the url
    itself. Element.id is an XML attribute: no `_id` (a documented divergence from HAPI)."""
    assert keys(oracle, task(**changes)) == expected


@pytest.mark.parametrize("where", ["_status", "_description", "identifier"])
def test_reference_in_a_primitive_extension_counts_for_dom3(oracle: Oracle, where: str) -> None:
    """A contained resource referred to only from an extension on a primitive is referred to
    (the HL7 engine's descendants() reach a primitive's extensions); unreferenced it breaks dom-3."""
    ref = {"url": "http://example.org/fhir/StructureDefinition/subject", "valueReference": {"reference": "#c1"}}
    changes: dict[str, Any] = {"contained": [{"resourceType": "Patient", "id": "c1"}], "description": "d"}
    if where == "identifier":
        changes["identifier"] = ident("http://example.org/ids", _value={"extension": [ref]})
    else:
        changes[where] = {"extension": [ref]}
    assert keys(oracle, task(**changes)) == set()
    ref["valueReference"]["reference"] = "#other"
    assert "Task/constraint:dom-3" in keys(oracle, task(**changes))


@pytest.mark.parametrize(("changes", "expected"), [
    ({"meta": {"tag": [{"system": "http://example.org/tags", "code": "a"}]}}, set()),
    ({"meta": {"tag": [{"system": "ftp://example.org/tags", "display": "a"}]}}, set()),  # no code
    ({"extension": ext("http://example.org/e", valueCoding={"system": "urn:example:cs", "code": "a"})}, set()),
    ({"extension": ext("http://example.org/e", valueQuantity={"value": 1, "system": "http://unitsofmeasure.org",
                                                              "code": "mg"})}, set()),
    ({"extension": ext("http://example.org/e", valueCodeableConcept={"coding": [{"system": "ftp://x", "code": "a"}]})},
     set()),  # a CodeableConcept's codings are judged by their binding only
    ({"meta": {"tag": [{"system": "ftp://example.org/tags", "code": "a"}]}}, {"Task.meta/format"}),
    ({"extension": ext("http://example.org/e", valueCoding={"system": "ldap:x", "code": "a"})}, {"Task.extension/format"}),
    ({"extension": ext("http://example.org/e", valueQuantity={"value": 1, "system": "mailto:x", "code": "a"})},
     {"Task.extension/format"}),
], ids=["tag", "tag-without-code", "coding-urn", "quantity-ucum", "codeable-concept", "tag-ftp", "coding-ldap",
        "quantity-mailto"])
def test_coding_and_quantity_system_is_absolute(oracle: Oracle, changes: dict[str, Any], expected: set[str]) -> None:
    """A Coding no value set judges (no binding, or an example one) and a Quantity: with a code,
    the system is http:, https: or urn: (InstanceValidator.checkCodedElement)."""
    assert keys(oracle, task(**changes)) == expected


@pytest.mark.parametrize(("code", "valid"), [
    ("mg", True), ("mmol/L", True), ("10*3/uL", True), ("kg/m2", True), ("ug/(24.h)", True), ("mm[Hg]", True),
    ("{beats}/min", True), ("/min", True), ("%", True), ("KiBy", True), ("m)", True),  # the library's own leniency
    ("xyz", False), ("mg.", False), ("m//", False), ("kin", False), ("(m", False), ("m{é}", False), ("m)x", False),
    ("k[in_i]", False),  # an inch is not metric: no prefix
])
def test_ucum_codes_as_the_validator_parses_them(code: str, valid: bool) -> None:
    assert (ucum_problem(code) is None) is valid


@pytest.mark.parametrize(("changes", "expected"), [
    ({"extension": ext("http://example.org/e", valueQuantity={"value": 1, "system": "http://unitsofmeasure.org",
                                                              "code": "mg/dL"})}, set()),
    ({"extension": ext("http://example.org/e", valueCoding={"system": "http://unitsofmeasure.org", "code": "mL"})},
     set()),
    ({"extension": ext("http://example.org/e", valueQuantity={"value": 1, "system": "http://unitsofmeasure.org",
                                                              "code": "mgg"})}, {"Task.extension/binding"}),
    ({"code": {"coding": [{"system": "http://unitsofmeasure.org", "code": "xyz!!"}]}}, {"Task.code/binding"}),
], ids=["quantity", "coding", "quantity-unknown-unit", "concept-unknown-unit"])
def test_ucum_code_in_a_coding_or_quantity(oracle: Oracle, changes: dict[str, Any], expected: set[str]) -> None:
    """UCUM is a code system HAPI's validator knows in full (with the UCUM library): a unit it
    cannot parse is an error whatever the binding."""
    assert keys(oracle, task(**changes)) == expected


def _careteam(member: str, *contained: dict[str, Any]) -> Task:
    team = {"resourceType": "CareTeam", "id": "team", "participant": [
        {"member": {"reference": member}, "onBehalfOf": {"reference": "Organization/organization-1"}}]}
    subject = {"url": "http://example.org/fhir/StructureDefinition/subject", "valueReference": {"reference": "#team"}}
    return task(contained=[team, *contained], extension=[subject])


def test_resolve_finds_contained_resources_only(oracle: Oracle) -> None:
    """ctm-1 `member.resolve().iif(empty(), true, ofType(Practitioner).exists())`: a reference
    the validator cannot resolve passes; a contained member must be a Practitioner."""
    assert keys(oracle, _careteam("Practitioner/practitioner-1")) == set()
    assert keys(oracle, _careteam("#pr", {"resourceType": "Practitioner", "id": "pr"})) == set()
    assert keys(oracle, _careteam("#pa", {"resourceType": "Patient", "id": "pa"})) == {"Task.contained/constraint:ctm-1"}


def test_ext1_counts_a_value_with_only_extensions(oracle: Oracle) -> None:
    """ext-1 (`extension.exists() != value.exists()`): a value[x] that has only its `_x`
    companion exists, as in FHIRPath."""
    companion_only = [{"url": "http://example.org/e", "_valueString": {"extension": [NOTE]}}]
    assert keys(oracle, task(extension=companion_only)) == set()
    both = [{"url": "http://example.org/e", "_valueString": {"extension": [NOTE]}, "extension": [NOTE]}]
    assert keys(oracle, task(extension=both)) == {"Task.extension/constraint:ext-1"}


def test_json_text_escapes_as_the_validator_reads_them(oracle: Oracle) -> None:
    """The HL7 validator's JSON reader refuses `\\b` and `\\f` escapes (JSON allows them); the
    same characters written `\\u0008`/`\\u000c` pass, and so does an escaped backslash before
    an f. dump_json (what the harness sends) writes them so."""
    base = json.dumps(MINIMAL)[:-1]
    refused = [i.key for i in oracle.validate_json(base + ', "description": "a\\fb"}') if i.severity == "error"]
    assert refused == ["Task/type"]
    for fine in ('"a\\u000cb"', '"a\\\\fb"'):
        assert [i for i in oracle.validate_json(base + f', "description": {fine}}}') if i.severity == "error"] == []
    text = dump_json(task(description="a\x0cb\x08"))
    assert "\\f" not in text and "\\b" not in text and json.loads(text)["description"] == "a\x0cb\x08"
