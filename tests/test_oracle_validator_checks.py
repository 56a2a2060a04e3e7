"""Checks the HL7 validator (HAPI FHIR 8.2, org.hl7.fhir.validation 6.5.18) makes beyond the R4
definitions' regexes and invariants, found by auditing its source against the oracle: each class
with a conforming and a violating Task and the key the oracle reports. The validator's verdict on
every violating Task here was seen on the embedded HAPI server's `$validate`."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tasks import error_keys as keys
from tasks import task

from kt2conformance._errors import dump_json, load_json
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec._profile import load_profile

Task = dict[str, Any]
EXT = "http://example.org/fhir/StructureDefinition/x"


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return Oracle(load_profile())


def ext(kind: str, value: Any) -> Task:
    return task(extension=[{"url": EXT, f"value{kind}": value}])


# -- uri, url, canonical, oid, uuid: InstanceValidator.checkPrimitive ---------------------------

@pytest.mark.parametrize("good, bad", [
    ("urn:oid:2.16.840.1.113883", "oid:2.16.840.1.113883"),   # the scheme is urn:oid:
    ("urn:uuid:3e0a1b2c-1234-4abc-8def-0123456789ab", "uuid:3e0a1b2c-1234-4abc-8def-0123456789ab"),
    ("urn:uuid:3e0a1b2c-1234-4abc-8def-0123456789ab", "urn:uuid:3E0A1B2C-1234-4ABC-8DEF-0123456789AB"),
    ("urn:uuid:3e0a1b2c-1234-4abc-8def-0123456789ab", "urn:uuid:not-a-uuid"),
    ("urn:oid:1.3.6", "urn:oid:1.2.3"),  # a root of fewer than three arcs is no namespace (but 1.3)
    ("urn:oid:1.2.840.10008", "urn:oid:1.2.840.010008"),
    ("urn:oid:1.2.840.10008", "urn:oid:1..2.840"),
    ("http://example.org/a%20b", "http://example.org/a b"),
    ("http://example.org/x", "http://example.org/x\u00a0"),  # the validator's wider whitespace
])
def test_uri_rules_of_the_validator(oracle: Oracle, good: str, bad: str) -> None:
    assert not keys(oracle, task(implicitRules=good))
    assert "Task.implicitRules/format" in keys(oracle, task(implicitRules=bad))


def test_uri_rules_reach_identifier_system_and_meta_source(oracle: Oracle) -> None:
    ok = task(identifier=[{"system": "urn:oid:2.16.840.1.113883.2.4.6.3", "value": "1"}])
    assert not keys(oracle, ok)
    bad = task(identifier=[{"system": "urn:oid:2.16.840.01", "value": "1"}])
    assert "Task.identifier/format" in keys(oracle, bad)
    assert "Task.meta/format" in keys(oracle, task(meta={"source": "urn:uuid:ABC"}))


@pytest.mark.parametrize("kind, good, bad", [
    ("Oid", "urn:oid:2.16.840.1.113883", "2.16.840.1.113883"),
    ("Uuid", "urn:uuid:3e0a1b2c-1234-4abc-8def-0123456789ab", "3e0a1b2c-1234-4abc-8def-0123456789ab"),
    ("Url", "http://example.org/x", "urn:oid:0.1"),
    ("Canonical", "http://example.org/x|1.0", "urn:uuid:x"),
])
def test_uri_family_types(oracle: Oracle, kind: str, good: str, bad: str) -> None:
    assert not keys(oracle, ext(kind, good))
    assert "Task.extension/format" in keys(oracle, ext(kind, bad))


# -- code whitespace: passesCodeWhitespaceRules ---------------------------------------------------

@pytest.mark.parametrize("bad", ["nl\tNL", "\u00a0nl", "nl\u00a0", "nl\u2003NL"])
def test_code_whitespace_is_the_validators_wide_set(oracle: Oracle, bad: str) -> None:
    assert not keys(oracle, task(language="nl-NL"))
    assert not keys(oracle, ext("Code", "twee woorden"))
    assert "Task.language/format" in keys(oracle, task(language=bad))


def test_code_inner_nbsp_is_whitespace_to_the_validator(oracle: Oracle) -> None:
    assert "Task.extension/format" in keys(oracle, ext("Code", "a\u00a0b"))


# -- time: the validator's regex has no fraction ------------------------------------------------

def test_time_without_fraction(oracle: Oracle) -> None:
    assert not keys(oracle, ext("Time", "10:00:00"))
    assert "Task.extension/format" in keys(oracle, ext("Time", "10:00:00.5"))


# -- narrative XHTML as the validator reads it (spec/_xhtml.py) -----------------------------------

XNS = 'xmlns="http://www.w3.org/1999/xhtml"'


def narrative(div: str, **changes: Any) -> Task:
    return task(text={"status": "generated", "div": div}, **changes)


@pytest.mark.parametrize("good, bad", [
    # only the basic HTML elements and attributes (an allow-list, not a deny-list)
    ("<p>x</p>", "<foo>x</foo>"),
    ("<p class='a'>x</p>", "<p data-x='a'>x</p>"),
    ("<p>x</p>", "<P>x</P>"),
    # no block element inside a paragraph, however deep
    ("<p><span>x</span></p>", "<p><span><table><tr><td>x</td></tr></table></span></p>"),
    ("<div><p>x</p></div>", "<p>a<div>b</div></p>"),
    # links: no active or literal schemes, no empty href, valid URL characters
    ("<a href='https://example.org/a%20b'>x</a>", "<a href='javascript:alert(1)'>x</a>"),
    ("<a href='mailto:a@example.org'>x</a>", "<a href='urn:oid:1.2.3'>x</a>"),
    ("<a href='https://example.org'>x</a>", "<a href=''>x</a>"),
    ("<a href='https://example.org/a'>x</a>", "<a href='https://example.org/a b'>x</a>"),
    # data: image sources: a media type, one comma, base64 in fours
    ("<img src='data:image/png;base64,AAAA'/>", "<img src='data:image/png;base64,AAA'/>"),
    ("<img src='data:image/png;base64,AAAA'/>", "<img src='data:imagepng;base64,AAAA'/>"),
    # CDATA is not text to the validator's reader
    ("x", "<![CDATA[x]]>"),
    # namespaces: inner elements in XHTML only
    ("<p>x</p>", "<p xmlns='urn:x'>x</p>"),
    # the reader: end tags match exactly
    ("<p>x</p>", "<p>x</p >"),
])
def test_narrative_elements_attributes_and_links(oracle: Oracle, good: str, bad: str) -> None:
    assert not keys(oracle, narrative(f"<div {XNS}>{good}</div>"))
    assert keys(oracle, narrative(f"<div {XNS}>{bad}</div>")) & {
        "Task.text/format", "Task.text/constraint:txt-1", "Task.text/constraint:txt-2"}


def test_unknown_element_is_txt1(oracle: Oracle) -> None:
    found = keys(oracle, narrative(f"<div {XNS}><foo>x</foo></div>"))
    assert {"Task.text/constraint:txt-1", "Task.text/format"} <= found


def test_txt2_is_content_only(oracle: Oracle) -> None:
    """txt-2 is the validator's htmlChecks2(): text (a no-break space is text) or an image."""
    assert not keys(oracle, narrative(f"<div {XNS}>&#160;</div>"))
    assert not keys(oracle, narrative(f"<div {XNS}><img src='https://example.org/a.png'/></div>"))
    assert keys(oracle, narrative(f"<div {XNS}><!-- x --></div>")) == {"Task.text/constraint:txt-2"}


@pytest.mark.parametrize("div", [
    f"<div {XNS}>x</div>trailing",            # nothing after the root's end is read
    f"<div {XNS}>x",                          # an unclosed root ends with the text
    f"<div {XNS}><table><tr><td nowrap>x</td></tr></table></div>",  # attribute without value
    f"<div {XNS}><p class=a title='b'>x</p></div>",  # unquoted and single-quoted values
    f"<div {XNS}>a&#xZZ;b</div>",             # a bad character reference is dropped
    f"<div {XNS}><p id='a' id='b'>x</p></div>",  # a repeated attribute: the last one counts
])
def test_narrative_read_as_the_validator_reads_it(oracle: Oracle, div: str) -> None:
    assert not keys(oracle, narrative(div))


@pytest.mark.parametrize("div", [
    f"<div {XNS}>a &amp b</div>",          # an entity reference is ended by ;
    f"<div {XNS}>a&nbsp;b</div>",          # XHTML knows XML's five entities only
    f"<div {XNS}><p>x</div>",              # a mismatched end tag
    f"<div {XNS}>a < b</div>",             # a < that starts no tag
    f"<div {XNS}>a&#;</div>",
])
def test_narrative_the_validator_cannot_read(oracle: Oracle, div: str) -> None:
    assert "Task.text/format" in keys(oracle, narrative(div))


def test_fragment_links_resolve_inside_the_resource(oracle: Oracle) -> None:
    contained = [{"resourceType": "Patient", "id": "p1"}]
    ok = [narrative(f"<div {XNS}><a href='#t1'>x</a></div>", id="t1"),
          narrative(f"<div {XNS}><a name='n1'>a</a><a href='#n1'>x</a></div>"),
          narrative(f"<div {XNS}><a href='#p1'>x</a></div>", contained=contained,
                    extension=[{"url": EXT, "valueReference": {"reference": "#p1"}}]),
          narrative(f"<div {XNS}><p id='i'>x</p><img src='#i'/></div>")]
    for t in ok:
        assert not keys(oracle, t)
    assert "Task.text/format" in keys(oracle, narrative(f"<div {XNS}><a href='#nope'>x</a></div>"))
    assert "Task.text/format" in keys(oracle, narrative(f"<div {XNS}><img src='#nope'/>x</div>"))
    twice = f"<div {XNS}><p id='i'>x</p><p id='i'>y</p><span idref='i'>z</span></div>"
    assert "Task.text/format" in keys(oracle, narrative(twice))


def test_contained_narrative_is_read_the_same_way(oracle: Oracle) -> None:
    patient = {"resourceType": "Patient", "id": "p1",
               "text": {"status": "generated", "div": f"<div {XNS}><p>x</p></div>"}}
    ref = [{"url": EXT, "valueReference": {"reference": "#p1"}}]
    assert not keys(oracle, task(contained=[patient], extension=ref))
    patient["text"]["div"] = f"<div {XNS}><a href='#nope'>x</a></div>"  # type: ignore[index]
    assert "Task.contained/format" in keys(oracle, task(contained=[patient], extension=ref))


# -- JSON text as a FHIR server reads it ----------------------------------------------------------

def test_repeated_property_is_an_error(oracle: Oracle) -> None:
    text = json.dumps(task())
    assert not [i for i in oracle.validate_json(text) if i.severity == "error"]
    repeated = text[:-1] + ', "status": "ready"}'
    errors = [i for i in oracle.validate_json(repeated) if i.severity == "error"]
    assert [(i.key, i.path) for i in errors] == [("Task/type", "Task")]
    inner = text.replace('"value": "t-1"', '"value": "t-1", "value": "t-2"')
    assert [i.path for i in oracle.errors(json.loads(inner))] == []  # as a dict it is lost
    assert [i.path for i in oracle.validate_json(inner) if i.severity == "error"] == ["Task.identifier[0]"]


def test_not_json_text_is_one_error(oracle: Oracle) -> None:
    assert [i.key for i in oracle.validate_json('{"resourceType": "Task",}')] == ["Task/type"]


def test_decimal_beyond_a_double_is_a_number(oracle: Oracle) -> None:
    """1e400 is a JSON number and a FHIR decimal (the validator reads its text); Python's float
    makes it infinite, which the oracle must not take for Infinity."""
    text = json.dumps(task(extension=[{"url": EXT, "valueDecimal": 1.5}])).replace("1.5", "1e400")
    assert not [i for i in oracle.validate_json(text) if i.severity == "error"]
    assert dump_json(load_json(text)) == text


def test_cli_validate_reports_repeated_property(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    path.write_text(json.dumps(task())[:-1] + ', "status": "ready"}', encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "kt2conformance", "validate", "--format", "json", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert [i["key"] for i in json.loads(result.stdout)[0]["issues"] if i["severity"] == "error"] == ["Task/type"]


# -- codes: extensible bindings on a Coding, the validator's common code systems -------------------

CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def test_extensibly_bound_coding_is_judged_by_its_value_set_alone(oracle: Oracle) -> None:
    """meta.security (a Coding, extensible): an unknown code of a system the value set draws on,
    or a Coding without code, is the validator's warning, not an error."""
    assert not keys(oracle, task(meta={"security": [{"system": CONF, "code": "ZZ"}]}))
    assert not keys(oracle, task(meta={"security": [{"system": CONF}]}))


def test_extensibly_bound_codeable_concept_checks_each_code(oracle: Oracle) -> None:
    """Identifier.type (a CodeableConcept, extensible): an unknown code of a system known in full
    is an error, whether or not the value set draws on that system."""
    ok = task(identifier=[{"system": "http://example.org/ids", "value": "1",
                           "type": {"coding": [{"system": ACT, "code": "ACCTRECEIVABLE"}]}}])
    assert not keys(oracle, ok)
    bad = copy.deepcopy(ok)
    bad["identifier"][0]["type"]["coding"][0]["code"] = "ZZ"
    assert "Task.identifier/binding" in keys(oracle, bad)


@pytest.mark.parametrize("system, good, bad", [
    ("urn:iso:std:iso:4217", "EUR", "ZZZ"),
    ("urn:iso:std:iso:3166", "NL", "ZZ"),
    ("https://www.usps.com/", "CA", "ZZ"),
])
def test_common_code_systems_are_known_in_full(oracle: Oracle, system: str, good: str, bad: str) -> None:
    assert not keys(oracle, ext("Coding", {"system": system, "code": good}))
    assert "Task.extension/binding" in keys(oracle, ext("Coding", {"system": system, "code": bad}))


def test_money_currency_required_binding(oracle: Oracle) -> None:
    assert not keys(oracle, ext("Money", {"value": 1, "currency": "EUR"}))
    assert "Task.extension/binding" in keys(oracle, ext("Money", {"value": 1, "currency": "XXX1"}))


# -- contained resources: dom-3 as the validator enforces it, ids, claims, canonical urls -------

def _patient(id_: str, **more: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id_, **more}


def _link(target: str) -> dict[str, Any]:
    return {"link": [{"other": {"reference": target}, "type": "seealso"}]}


def _refer(*ids: str) -> list[dict[str, Any]]:
    return [{"url": EXT, "valueReference": {"reference": f"#{i}"}} for i in ids]


def test_dom3_follows_references_from_the_container(oracle: Oracle) -> None:
    chain = task(contained=[_patient("c1", **_link("#c2")), _patient("c2")], extension=_refer("c1"))
    assert not keys(oracle, chain)
    # c1 refers to c2, but nothing outside refers to c1: both are orphans to the validator
    dangling = task(contained=[_patient("c1", **_link("#c2")), _patient("c2")])
    assert [i.path for i in oracle.errors(dangling)] == ["Task.contained[0]", "Task.contained[1]"]
    # a contained resource that only refers to itself is not referred to
    assert "Task/constraint:dom-3" in keys(oracle, task(contained=[_patient("c1", **_link("#c1"))]))
    # one that refers to its container (#) is; and `#` resolves to the container's type there
    to_container = [{"url": EXT, "valueReference": {"reference": "#"}}]
    assert not keys(oracle, task(contained=[_patient("c1", extension=to_container)]))
    assert "Task.contained/targetProfile" in keys(oracle, task(contained=[_patient("c1", **_link("#"))]))


def test_reference_to_the_container_only_inside_a_contained_resource(oracle: Oracle) -> None:
    assert "Task.owner/constraint:ref-1" in keys(oracle, task(owner={"reference": "#"}))


def test_dom3_counts_narrative_links(oracle: Oracle) -> None:
    div = f"<div {XNS}><a href='#c1'>patiënt</a></div>"
    assert not keys(oracle, task(contained=[_patient("c1")], text={"status": "generated", "div": div}))
    assert "Task/constraint:dom-3" in keys(oracle, task(contained=[_patient("c1")]))


def test_contained_ids_are_unique(oracle: Oracle) -> None:
    two = [_patient("c1"), {"resourceType": "Practitioner", "id": "c1"}]
    assert [(i.key, i.path) for i in oracle.errors(task(contained=two, extension=_refer("c1")))] == [
        ("Task/constraint:dom-3", "Task.contained[1]")]


def test_contained_resource_is_held_to_the_profiles_it_claims(oracle: Oracle) -> None:
    claim = {"profile": ["http://koppeltaal.nl/fhir/StructureDefinition/KT2Patient"]}
    assert not keys(oracle, task(contained=[_patient("c1")], extension=_refer("c1")))
    found = oracle.errors(task(contained=[_patient("c1", meta=claim)], extension=_refer("c1")))
    assert {(i.key, i.path) for i in found} >= {("Task.contained/min", "Task.contained[0].identifier"),
                                               ("Task.contained/min", "Task.contained[0].name")}


def test_contained_definition_url_is_absolute(oracle: Oracle) -> None:
    ad = {"resourceType": "ActivityDefinition", "id": "c1", "status": "draft"}
    assert not keys(oracle, task(contained=[{**ad, "url": "http://example.org/ad/1"}], extension=_refer("c1")))
    assert "Task.contained/format" in keys(oracle, task(contained=[{**ad, "url": "ad/1"}], extension=_refer("c1")))


def test_element_ids_are_unique_within_a_resource(oracle: Oracle) -> None:
    ident = {"id": "x1", "system": "http://example.org/ids", "value": "1"}
    assert not keys(oracle, task(identifier=[ident], id="x1"))  # the resource's own id is apart
    assert "Task/type" in keys(oracle, task(identifier=[ident], extension=[{"id": "x1", "url": EXT, "valueString": "a"}]))
    assert "Task/type" in keys(oracle, task(_status={"id": "p"}, _intent={"id": "p"}))
    # a contained resource's element ids are its own
    patient = _patient("c1", name=[{"id": "x1", "family": "A"}])
    assert not keys(oracle, task(identifier=[ident], contained=[patient], extension=_refer("c1")))
    patient["name"].append({"id": "x1", "family": "B"})
    assert "Task.contained/type" in keys(oracle, task(contained=[patient], extension=_refer("c1")))


def test_claimed_profile_version_must_be_known(oracle: Oracle) -> None:
    kt2 = "http://koppeltaal.nl/fhir/StructureDefinition/KT2Task"
    assert not keys(oracle, task(meta={"profile": [f"{kt2}|0.8.1"]}))
    assert "Task.meta/unknown" in keys(oracle, task(meta={"profile": [f"{kt2}|9.9"]}))
    assert not keys(oracle, task(meta={"profile": ["http://hl7.org/fhir/StructureDefinition/Task|4.0.1"]}))
    assert "Task.meta/unknown" in keys(oracle, task(meta={"profile": ["http://hl7.org/fhir/StructureDefinition/Task|3.0.2"]}))


# -- extensions whose definition is at hand are held to it -----------------------------------------

CORE = "http://hl7.org/fhir/StructureDefinition/"


def _on_patient(*extensions: dict[str, Any]) -> Task:
    return task(contained=[_patient("c1", extension=list(extensions))], extension=_refer("c1"))


def test_core_extension_value_type(oracle: Oracle) -> None:
    assert not keys(oracle, _on_patient({"url": CORE + "patient-birthPlace", "valueAddress": {"city": "Utrecht"}}))
    assert "Task.contained/type" in keys(oracle, _on_patient({"url": CORE + "patient-birthPlace", "valueString": "x"}))


def test_core_complex_extension_parts(oracle: Oracle) -> None:
    code = {"url": "code", "valueCodeableConcept": {"text": "NL"}}
    assert not keys(oracle, _on_patient({"url": CORE + "patient-nationality", "extension": [code]}))
    twice = _on_patient({"url": CORE + "patient-nationality", "extension": [code, code]})
    assert "Task.contained/max" in keys(oracle, twice)
    unknown = _on_patient({"url": CORE + "patient-nationality", "extension": [{"url": "zzz", "valueString": "x"}]})
    assert "Task.contained/unknown" in keys(oracle, unknown)


def test_core_extension_on_a_primitive(oracle: Oracle) -> None:
    dar = CORE + "data-absent-reason"
    assert not keys(oracle, task(_description={"extension": [{"url": dar, "valueCode": "unknown"}]}))
    assert keys(oracle, task(_description={"extension": [{"url": dar, "valueCode": "zzz"}]}))
    assert keys(oracle, task(_description={"extension": [{"url": dar, "valueString": "unknown"}]}))


def _ids_repeat(resource: dict[str, Any]) -> bool:
    """An independent reading of "two elements share an id" (recursive, for small values):
    every object's id counts, below the root's own id and contained resources, not inside a
    resource nested in another."""
    ids: list[str] = []

    def visit(value: Any) -> None:
        if isinstance(value, list):
            for v in value:
                visit(v)
        elif isinstance(value, dict):
            if isinstance(value.get("id"), str) and value["id"]:
                ids.append(value["id"])
            if "resourceType" not in value:
                for k, v in value.items():
                    if k != "id":
                        visit(v)

    for k, v in resource.items():
        if k not in ("contained", "id"):
            visit(v)
    return len(ids) != len(set(ids))


_IDS = st.sampled_from(["a", "b", "", 1, None, {"id": "a"}])
_ELEMENTS = st.recursive(
    st.one_of(st.none(), st.just("a"), st.fixed_dictionaries({}, optional={"id": _IDS})),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
        st.sampled_from(["id", "x", "y", "resourceType", "contained"]), inner, max_size=3)),
    max_leaves=12)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "contained", "identifier", "note", "code"]), _ELEMENTS, max_size=4))
def test_repeated_ids_found_as_the_full_walk_finds_them(resource: dict[str, Any]) -> None:
    """duplicate_element_ids first asks a walk without paths whether any id repeats; that walk
    must agree with the rule itself, or a repeated id would go unreported."""
    from kt2conformance.oracle._contained import _repeats_an_id, duplicate_element_ids

    assert _repeats_an_id(resource) == _ids_repeat(resource)
    assert bool(duplicate_element_ids(resource, "Task")) == _ids_repeat(resource)


# -- BCP 47 languages in a Coding no value set judges, looked up as HAPI looks them up --------------

BCP47 = "urn:ietf:bcp:47"


@pytest.mark.parametrize("good", ["nl", "nl-NL", "NL-nl", "nl_NL", "en-419", "de-CH"])
def test_bcp47_languages_found(oracle: Oracle, good: str) -> None:
    assert not keys(oracle, ext("Coding", {"system": BCP47, "code": good}))


@pytest.mark.parametrize("bad", ["zz-qq", "zh-Hant", "nl-NL-x-foo", "x-klingon", "qaa", "-nl"])
def test_bcp47_languages_not_found(oracle: Oracle, bad: str) -> None:
    assert "Task.extension/binding" in keys(oracle, ext("Coding", {"system": BCP47, "code": bad}))
    # a CodeableConcept's codings are not looked up this way (HAPI leaves them)
    assert not keys(oracle, ext("CodeableConcept", {"coding": [{"system": BCP47, "code": bad}]}))
