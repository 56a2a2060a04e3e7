"""Checks the HL7 validator (HAPI FHIR 8.2, org.hl7.fhir.validation 6.5.18) makes beyond the R4
definitions' regexes and invariants, found by auditing its source against the oracle: each class
with a conforming and a violating Task and the key the oracle reports. The validator's verdict on
every violating Task here was seen on the embedded HAPI server's `$validate`."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tasks import MINIMAL

from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec._profile import load_profile

Task = dict[str, Any]
EXT = "http://example.org/fhir/StructureDefinition/x"


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return Oracle(load_profile())


def task(**changes: Any) -> Task:
    out = copy.deepcopy(MINIMAL)
    out.update(copy.deepcopy(changes))
    return out


def ext(kind: str, value: Any) -> Task:
    return task(extension=[{"url": EXT, f"value{kind}": value}])


def keys(oracle: Oracle, t: Any) -> set[str]:
    return {i.key for i in oracle.errors(t)}


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
