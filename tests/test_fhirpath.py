"""fhirpathpy's gaps, measured, and kt2conformance.spec._fhirpath's mends, proven.

The `LIBRARY GAP` tests assert what raw fhirpathpy 2.2.4 does wrong. They are meant to fail the
day fhirpathpy is fixed: then the matching mend in kt2conformance/spec/_fhirpath.py can go (and the test
with it). The other tests show the mended evaluation follows the FHIRPath rules.

The property test at the end checks the oracle's structural ele-1/ext-1 checks (done on the JSON,
for speed) against FHIRPath evaluation of the published expressions.
"""

from __future__ import annotations

import copy
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.models import models
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tasks import MINIMAL

from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec import _fhirpath as fhirpath
from kt2conformance.spec._profile import datatype_definition, load_profile, r4_resources

R4 = models["r4"]
INV_1 = "lastModified.exists().not() or authoredOn.exists().not() or lastModified >= authoredOn"

def dated(authored: str, modified: str) -> dict[str, Any]:
    return {**copy.deepcopy(MINIMAL), "authoredOn": authored, "lastModified": modified}


def raw(resource: dict[str, Any], expression: str) -> list[Any]:
    """fhirpathpy as shipped: the R4 model, no user functions."""
    return fhirpathpy.evaluate(resource, expression, model=R4)


def mended(resource: dict[str, Any], expression: str) -> list[Any]:
    """The harness's evaluation, result as a collection (not reduced to holds/doesn't)."""
    return fhirpath.compile_expression(expression, True)(resource, {"resource": resource, "rootResource": resource})


# -- LIBRARY GAP: fhirpathpy 2.2.4 as shipped --------------------------------------------------


def test_library_gap_has_no_hasValue() -> None:
    """LIBRARY GAP: ele-1 and per-1 call hasValue(), which fhirpathpy doesn't implement."""
    with pytest.raises(Exception, match="Not implemented: hasValue"):
        raw(MINIMAL, "status.hasValue()")


def test_library_gap_has_no_htmlChecks() -> None:
    """LIBRARY GAP: txt-1/txt-2 are `htmlChecks()`, not in fhirpathpy."""
    with pytest.raises(Exception, match="Not implemented: htmlChecks"):
        raw({**MINIMAL, "text": {"status": "generated", "div": "<div/>"}}, "text.`div`.htmlChecks()")


def test_library_gap_ignores_time_zones() -> None:
    """LIBRARY GAP: 09:30Z is after 10:00+01:00 (= 09:00Z); fhirpathpy says it is not."""
    assert raw(dated("2023-01-01T10:00:00+01:00", "2023-01-01T09:30:00Z"), "lastModified >= authoredOn") == [False]


def test_library_gap_milliseconds_make_values_unequal() -> None:
    """LIBRARY GAP: `…:00Z` and `…:00.000Z` are the same instant (seconds and milliseconds are
    one precision in FHIRPath); fhirpathpy finds them unequal and `…:00.000Z` the earlier."""
    task = dated("2023-01-01T10:00:00Z", "2023-01-01T10:00:00.000Z")
    assert raw(task, "lastModified >= authoredOn") == [False]
    assert raw(task, "lastModified = authoredOn") == [False]


def test_library_gap_date_against_datetime_is_not_empty() -> None:
    """LIBRARY GAP: a date against a dateTime of the same day has no answer in FHIRPath (empty);
    fhirpathpy answers true."""
    assert raw(dated("2023-01-01", "2023-01-01T10:00:00Z"), "lastModified >= authoredOn") == [True]


def test_library_gap_as_on_a_collection_raises() -> None:
    """LIBRARY GAP: R4's dom-3 applies `as(canonical)` to descendants(); fhirpathpy raises where
    the HL7 engines filter. The harness compiles `as(` as `ofType(`."""
    task = {**MINIMAL, "instantiatesCanonical": "http://example.org/ActivityDefinition/ad-1"}
    with pytest.raises(ValueError, match="singleton"):
        raw(task, "descendants().as(canonical)")
    assert mended(task, "descendants().as(canonical)") == ["http://example.org/ActivityDefinition/ad-1"]


def test_published_ref1_is_empty_without_a_reference() -> None:
    """R4's ref-1 as published is empty, so not met, on an identifier-only Reference; the HL7
    validator evaluates the repaired R4B form instead, and so does the harness."""
    expression = next(c["expression"] for c in datatype_definition("Reference")["snapshot"]["element"][0]["constraint"]
                      if c["key"] == "ref-1")
    ref = {"identifier": {"system": "http://example.org/ids", "value": "x"}}
    assert fhirpathpy.evaluate(ref, expression, {"rootResource": MINIMAL}, options={"traceFn": lambda *a: None}) == []
    assert fhirpath.holds(expression, ref, MINIMAL)
    assert not fhirpath.holds(expression, {"reference": "#missing"}, MINIMAL)


# -- the mends -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("2023-01-01T09:30:00Z", "2023-01-01T10:00:00+01:00", 1),
        ("2023-01-01T08:30:00Z", "2023-01-01T10:00:00+01:00", -1),
        ("2023-01-01T23:30:00-02:00", "2023-01-02T00:30:00Z", 1),  # crosses midnight in UTC
        ("2023-01-01T10:00:00Z", "2023-01-01T10:00:00.000Z", 0),
        ("2023-01-01T10:00:00.500Z", "2023-01-01T10:00:00Z", 1),  # one precision: ordered, not empty
        ("2023-01-01", "2023-01-01T10:00:00Z", None),  # same day, the date has no time: empty
        ("2023-01-02", "2023-01-01T23:59:59Z", 1),
        ("2022-12-31", "2023-01-01T00:00:00Z", -1),
        ("2023-01", "2023-01-15", None),
        ("2023-01", "2023-02-15", -1),
        ("2023-01-01T10:00", "2023-01-01T10:00:30", None),  # minutes vs seconds, same minute
        ("2023-01-01", "2023-01-01", 0),
    ],
)
def test_compare_dates(left: str, right: str, expected: int | None) -> None:
    assert fhirpath.compare_dates(left, right) == expected
    assert fhirpath.compare_dates(right, left) == (None if expected is None else -expected)


@pytest.mark.parametrize(
    ("authored", "modified", "result"),
    [
        ("2023-01-01T10:00:00+01:00", "2023-01-01T09:30:00Z", [True]),
        ("2023-01-01T10:00:00+01:00", "2023-01-01T08:30:00Z", [False]),
        ("2023-01-01T10:00:00.000Z", "2023-01-01T10:00:00Z", [True]),
        ("2023-01-01", "2023-01-01T10:00:00Z", []),
        ("2023-01-01", "2023-01-02T10:00:00Z", [True]),
    ],
)
def test_mended_ordering_operator(authored: str, modified: str, result: list[bool]) -> None:
    task = dated(authored, modified)
    assert mended(task, "lastModified >= authoredOn") == result
    # An invariant holds only on `true`: an empty answer leaves inv-1 unmet (as in the HL7 engine).
    assert fhirpath.holds(INV_1, task, task) == (result == [True])


def test_both_sides_of_equal_instants_hold() -> None:
    task = dated("2023-01-01T10:00:00.000Z", "2023-01-01T10:00:00Z")
    assert fhirpath.holds("lastModified >= authoredOn", task, task)
    assert fhirpath.holds("lastModified <= authoredOn", task, task)
    assert not fhirpath.holds("lastModified < authoredOn", task, task)


def test_non_date_operands_keep_fhirpathpy_semantics() -> None:
    assert mended(MINIMAL, "2 < 10") == [True]
    assert mended(MINIMAL, "'b' > 'a'") == [True]
    assert mended(MINIMAL, "identifier.value < 'u'") == [True]


@pytest.mark.parametrize(
    ("resource", "expression", "expected"),
    [
        (MINIMAL, "status.hasValue()", [True]),
        ({**MINIMAL, "status": None, "_status": {"extension": [{"url": "http://x", "valueCode": "unknown"}]}},
         "status.hasValue()", [False]),
        (MINIMAL, "identifier.hasValue()", [False]),  # complex: no primitive value
        ({**MINIMAL, "executionPeriod": {"start": "2023-02-01", "end": "2023-01-01"}},
         "executionPeriod.all(start.hasValue().not() or end.hasValue().not() or (start <= end))", [False]),
    ],
    ids=["primitive", "extension-only-primitive", "complex", "per-1"],
)
def test_mended_has_value(resource: dict[str, Any], expression: str, expected: list[bool]) -> None:
    resource = {k: v for k, v in resource.items() if v is not None}
    assert mended(resource, expression) == expected


@pytest.mark.parametrize(
    ("div", "ok"),
    [
        ('<div xmlns="http://www.w3.org/1999/xhtml"><p>Hallo <b>wereld</b></p></div>', True),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><img src="x.png"/></div>', True),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><script>x</script>t</div>', False),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><a onclick="x()">t</a></div>', False),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><foo>t</foo></div>', False),
        ('<div xmlns="http://www.w3.org/1999/xhtml" data-x="1">t</div>', False),
        # txt-1 is about names only: a p root is the validator's root-name check, not txt-1
        ('<p xmlns="http://www.w3.org/1999/xhtml">t</p>', True),
    ],
)
def test_html_checks(div: str, ok: bool) -> None:
    """txt-1 (`htmlChecks()`) as the HL7 validator evaluates it: allowed names only."""
    result = fhirpath.holds("htmlChecks()", div, {"resourceType": "Task"})
    assert result is ok


# -- property: the oracle's structural ele-1 / ext-1 agree with FHIRPath -------------------------


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return Oracle(load_profile())


def _published(type_code: str, key: str) -> str:
    """An invariant's expression as published in the R4 datatype definitions."""
    for el in datatype_definition(type_code)["snapshot"]["element"]:
        for c in el.get("constraint", []):
            if c["key"] == key:
                return c["expression"]
    raise LookupError(key)


# Counted inside the expression: fhirpathpy drops objects whose only key is `extension` from a
# returned collection (it takes them for primitive extensions). The oracle reports each element
# that breaks ele-1 or ext-1 once, so the counts must agree, not just the presence.
ELE_1_VIOLATIONS = f"descendants().where(({_published('Identifier', 'ele-1')}).not()).count()"
EXT_1_VIOLATIONS = f"descendants().ofType(Extension).where(({_published('Extension', 'ext-1')}).not()).count()"

# Generated fragments use only elements the profile allows (the oracle doesn't look inside
# unknown or forbidden ones), no `_x` primitive extensions (fhirpathpy's descendants() yields
# `_x` as a node of its own rather than merging it into the primitive, so FHIRPath over the JSON
# isn't the FHIR model there; the oracle's `_x` handling has unit tests in test_oracle.py), and no
# extension slice urls (their Extension.extension is forbidden). Empty objects and empty arrays
# are drawn often: they are what ele-1 and ext-1 are about.
TEXT = st.sampled_from(["a", "http://example.org/x", "2023-01-01"])
URL = st.sampled_from(["http://example.org/e1", "http://example.org/e2"])


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def _items(of: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(of, max_size=2)


CODING = st.one_of(st.just({}), _optional(id=TEXT, system=TEXT, code=TEXT, display=TEXT))
PERIOD = _optional(id=TEXT, start=st.just("2023-01-01"), end=st.just("2023-02-01"))
EXTENSION = st.recursive(
    _optional(id=TEXT, url=URL, valueString=TEXT, valuePeriod=PERIOD,
              valueCodeableConcept=_optional(coding=_items(CODING), text=TEXT)),
    lambda inner: _optional(url=URL, valueCoding=CODING, extension=_items(inner)),
    max_leaves=4,
)
CODEABLE = _optional(coding=_items(CODING), text=TEXT, extension=_items(EXTENSION))
IDENTIFIER = _optional(id=TEXT, system=TEXT, value=TEXT, period=PERIOD, type=CODEABLE, extension=_items(EXTENSION))
FRAGMENTS = _optional(
    identifier=_items(IDENTIFIER),
    code=CODEABLE,
    executionPeriod=PERIOD,
    extension=_items(EXTENSION),
    modifierExtension=_items(EXTENSION),
    owner=_optional(reference=st.just("Practitioner/pr1"), identifier=IDENTIFIER, display=TEXT),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FRAGMENTS)
def test_structural_invariants_agree_with_fhirpath(oracle: Oracle, fragments: dict[str, Any]) -> None:
    task = {**copy.deepcopy(MINIMAL), **fragments}
    keys = [i.key for i in oracle.errors(task)]
    assert mended(task, ELE_1_VIOLATIONS) == [sum(k.endswith("/constraint:ele-1") for k in keys)]
    assert mended(task, EXT_1_VIOLATIONS) == [sum(k.endswith("/constraint:ext-1") for k in keys)]


def test_property_generator_reaches_both_outcomes(oracle: Oracle) -> None:
    """The property above would pass vacuously if the two sides never disagreed because nothing
    violated; these hand-picked draws of the same shapes show both verdicts occur."""
    empty_identifier = {**MINIMAL, "identifier": [{"id": "a"}]}
    valueless_extension = {**MINIMAL, "extension": [{"url": "http://example.org/e1"}]}
    assert mended(empty_identifier, ELE_1_VIOLATIONS) == [1]
    assert "Task.identifier/constraint:ele-1" in {i.key for i in oracle.errors(empty_identifier)}
    assert mended(valueless_extension, EXT_1_VIOLATIONS) == [1]
    assert "Task.extension/constraint:ext-1" in {i.key for i in oracle.errors(valueless_extension)}
    assert mended(MINIMAL, ELE_1_VIOLATIONS) == [0] and mended(MINIMAL, EXT_1_VIOLATIONS) == [0]


# -- the direct evaluation of the order form (inv-1, per-1) agrees with FHIRPath ----------------

_DATES = st.one_of(
    st.none(),
    st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}", st.integers(2022, 2023), st.integers(1, 2), st.integers(1, 3)),
    st.builds(lambda y, m, d, h, tz, ms: f"{y:04d}-{m:02d}-{d:02d}T{h:02d}:30:00{ms}{tz}",
              st.integers(2022, 2023), st.integers(1, 2), st.integers(1, 3), st.integers(0, 23),
              st.sampled_from(["Z", "+01:00", "-05:00", "+14:00"]), st.sampled_from(["", ".000", ".5"])),
)


_COMPANION = st.one_of(st.none(), st.just({"extension": [{"url": "http://example.org/x", "valueString": "n"}]}),
                       st.just({"id": "a"}))


@settings(max_examples=600, deadline=None)
@given(_DATES, _DATES, _COMPANION, _COMPANION, st.sampled_from([
    "lastModified.exists().not() or authoredOn.exists().not() or lastModified >= authoredOn",
    "start.hasValue().not() or end.hasValue().not() or (start <= end)",
]))
def test_order_form_fast_path_agrees_with_fhirpath(a: str | None, b: str | None, a_ext: Any, b_ext: Any,
                                                   expression: str) -> None:
    """holds() answers inv-1/per-1 shapes without fhirpathpy, `_x` companions beside the values
    included; the answer must be FHIRPath's (fhirpathpy with the mended ordering operators), on
    an element and on a resource root (typed)."""
    from kt2conformance.spec._fhirpath import _evaluate, _order_fast, _order_form

    form = _order_form(expression)
    assert form is not None
    left, _, right = form
    focus: dict[str, Any] = {k: v for k, v in ((left, a), (right, b)) if v is not None}
    focus |= {f"_{k}": v for k, v in ((left, a_ext), (right, b_ext)) if v is not None}
    fast = _order_fast(form, focus)
    if fast is None:  # a companion without a value: left to fhirpathpy
        assert (a is None and a_ext is not None) or (b is None and b_ext is not None)
        return
    assert fast == _evaluate(expression, focus, focus, focus, False)
    task = {"resourceType": "Task", **focus}
    assert fast == _evaluate(expression, task, task, task, True)


# -- the published invariants answered directly (NATIVE) agree with FHIRPath --------------------

_ANY = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from(
    ["", "#", "#p", "#q", "Patient/1", "http://example.org/fhir/Patient/1", "x",
     '<div xmlns="http://www.w3.org/1999/xhtml">x</div>']),
    st.just([]), st.just({}), st.just([None]), st.just({"id": "p"}), st.just([{"id": "x"}]),
    st.just([["#p"]]), st.just({"reference": "#p"}), st.just({"valueCanonical": "#p"}), st.just([{"reference": "#"}]))
_MEMBERS = st.dictionaries(
    st.sampled_from(["contained", "_contained", "text", "_text", "reference", "_reference", "type", "id",
                     "status", "note", "_status"]),
    st.one_of(_ANY, st.fixed_dictionaries({}, optional={"div": _ANY, "_div": _ANY, "status": _ANY}),
              st.lists(st.fixed_dictionaries({"resourceType": st.just("Patient")}, optional={
                  "id": _ANY, "meta": st.just({"versionId": "1"}), "contained": _ANY}), max_size=2)),
    max_size=4)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_MEMBERS, st.sampled_from(sorted(fhirpath.NATIVE)))
def test_native_invariants_agree_with_fhirpath(members: dict[str, Any], expression: str) -> None:
    """holds() answers dom-2…dom-6 and ref-1 on their common shapes without fhirpathpy; when it
    does (not None), the answer must be fhirpathpy's on the same focus (a resource root for the
    dom-n, typed by the R4 model; a Reference inside a Task for ref-1)."""
    native = fhirpath.NATIVE[expression]
    if expression == fhirpath._R4_REF_1:
        focus: Any = {k: v for k, v in members.items() if k in ("reference", "_reference", "type", "id")}
        task = {**copy.deepcopy(MINIMAL), "contained": [{"resourceType": "Patient", "id": "p"}]}
        answer = native(focus)
        if answer is not None:
            assert answer == fhirpath._evaluate(expression, focus, task, task, False)
        return
    focus = {"resourceType": "Task", **members}
    answer = native(focus)
    if answer is not None:
        assert answer == fhirpath._evaluate(expression, focus, focus, focus, True)


def test_native_invariants_are_the_published_ones() -> None:
    """Each expression answered directly is one R4 publishes (on DomainResource or a datatype),
    so a profile that changes an invariant's text is evaluated by fhirpathpy."""
    reference = datatype_definition("Reference")
    assert reference is not None
    elements = r4_resources()["DomainResource"]["snapshot"]["element"] + reference["snapshot"]["element"]
    published = {c["expression"] for el in elements for c in el.get("constraint", [])}
    assert set(fhirpath.NATIVE) <= published


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.fixed_dictionaries({"resourceType": st.sampled_from(["Patient", "Organization"]),
                                       "id": st.sampled_from(["p", "q"])},
                                      optional={"managingOrganization": st.just({"reference": "#q"})}),
                min_size=1, max_size=3),
       st.lists(st.tuples(st.sampled_from(["#p", "#q", "#", "Patient/p", "p"]),
                          st.sampled_from(["reference", "valueCanonical", "valueUri", "valueString"])), max_size=3))
def test_native_dom_3_agrees_with_fhirpath(contained: list[dict[str, Any]], mentions: list[tuple[str, str]]) -> None:
    """dom-3 answered directly (every contained resource referred to, or one named nowhere)
    agrees with fhirpathpy, whatever else names the contained resources (canonicals, uris,
    strings, a reference to the container, references between contained resources)."""
    focus = {"resourceType": "Task", "contained": contained, "status": "draft",
             "extension": [{"url": "http://example.org/x", member: text} for text, member in mentions[1:]]}
    if mentions:  # one in the companion of a primitive
        focus["_status"] = {mentions[0][1]: mentions[0][0]}
    answer = fhirpath.NATIVE[fhirpath._DOM_3](focus)
    if answer is not None:
        assert answer == fhirpath._evaluate(fhirpath._DOM_3, focus, focus, focus, True)
