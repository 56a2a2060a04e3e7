"""Fuzzing `Oracle.validate`: no input crashes it, hangs it or makes it exhaust memory.

Three sources of input: arbitrary JSON values (any type anywhere, huge numbers, lone surrogates
in keys and text), mutations of valid generated Tasks (a random place replaced, dropped, wrapped
or given a random sibling), and deep nesting (thousands of levels, at the root and inside the
elements that legitimately recurse: extensions, Reference.identifier.assigner, contained).
Every answer must be a list of issues whose text can be written out (JSON and UTF-8 text).

The regular suite runs a small slice; the nightly profile (HYPOTHESIS_PROFILE=nightly) runs at
least 100,000 inputs in all (`-m fuzz`).
"""

from __future__ import annotations

import copy
import json
import os
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tasks import MINIMAL

from kt2conformance.generate._values import Prerequisites, RandomChooser, TaskGenerator
from kt2conformance.oracle._oracle import Issue, Oracle
from kt2conformance.spec._profile import load_profile

NIGHTLY = os.environ.get("HYPOTHESIS_PROFILE") == "nightly"
# Inputs per test: three tests, so the nightly run sees 3 x 40,000 = 120,000 inputs.
# KT_FUZZ_EXAMPLES overrides the count (a longer local run).
EXAMPLES = int(os.environ.get("KT_FUZZ_EXAMPLES", "40000" if NIGHTLY else "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

_ORACLE = Oracle(load_profile())
_GEN = TaskGenerator(_ORACLE.profile, Prerequisites())
# Valid Tasks to mutate: generated once, from fixed seeds.
_BASES = [_GEN.task(RandomChooser(random.Random(seed)), full=True) for seed in range(40)] + [MINIMAL]

# Any character, lone surrogates included (JSON can carry them as \ud800 escapes).
_CHARS = st.characters(codec=None, categories=None)
_TEXT = st.text(_CHARS, max_size=12)
_NAMES = st.one_of(_TEXT, st.sampled_from(
    ["resourceType", "id", "extension", "modifierExtension", "url", "valueString", "valueReference",
     "reference", "type", "identifier", "contained", "coding", "system", "code", "_status", "status",
     "div", "text", "meta", "profile", "start", "end", "value", "_value", "period", "assigner"]))
_SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True), _TEXT,
    st.sampled_from(["Task", "Patient", "#p", "Patient/1", "2023-01-01", "2023-01-01T10:00:00+14:00",
                     "0001-01-01T00:00:00-14:00", "\u00a0", "\ud800", "", " ", "Resource", "#"]),
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_NAMES, inner, max_size=5)),
    max_leaves=30,
)


def check(value: Any) -> list[Issue]:
    issues = _ORACLE.validate(value)
    assert isinstance(issues, list)
    for issue in issues:
        assert isinstance(issue, Issue) and issue.severity in ("error", "warning")
        json.dumps(issue.as_dict())  # the JSON output
        f"{issue.key} {issue.path}: {issue.message}".encode("utf-8", "backslashreplace")  # the text output
    return issues


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _places(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _places(v, path + (i,))
    return out


def _set(root: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    parent = root
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = new
    return root


@st.composite
def mutated_tasks(draw: st.DrawFn) -> Any:
    task = copy.deepcopy(draw(st.sampled_from(_BASES)))
    for _ in range(draw(st.integers(1, 3))):
        places = _places(task)
        path = draw(st.sampled_from(places))
        parent = task
        for step in path:
            parent = parent[step]
        how = draw(st.sampled_from(["replace", "drop", "wrap", "sibling", "copy", "empty"]))
        if how == "replace":
            task = _set(task, path, draw(JSON_VALUES))
        elif how == "drop" and path:
            container = task
            for step in path[:-1]:
                container = container[step]
            del container[path[-1]]
        elif how == "wrap":
            task = _set(task, path, draw(st.sampled_from([[parent], {"value": parent}, [[parent]], [None, parent]])))
        elif how == "sibling" and isinstance(parent, dict):
            parent[draw(_NAMES)] = draw(JSON_VALUES)
        elif how == "copy":
            task = _set(task, path, copy.deepcopy(draw(st.sampled_from(places and [task]))))
        elif how == "empty":
            task = _set(task, path, draw(st.sampled_from([{}, [], "", [{}], [[]], {"extension": []}])))
    return task


def _deep(depth: int, shape: str, leaf: Any) -> Any:
    """`depth` levels of one recursive shape, built without recursion."""
    value = leaf
    for i in range(depth):
        if shape == "list":
            value = [value]
        elif shape == "dict":
            value = {"a": value}
        elif shape == "extension":
            value = {"url": f"http://example.org/e{i}", "extension": [value]}
        elif shape == "assigner":
            value = {"identifier": {"system": "http://example.org", "assigner": value}}
        elif shape == "coding":
            value = {"coding": [value]}
    return value


@st.composite
def deep_tasks(draw: st.DrawFn) -> Any:
    depth = draw(st.sampled_from([10, 100, 150, 199, 500, 999, 1000, 1001, 5000, 30_000]))
    shape = draw(st.sampled_from(["list", "dict", "extension", "assigner", "coding"]))
    leaf = draw(st.sampled_from([None, "x", 1, {}, {"url": "http://example.org/x", "valueString": "v"},
                                 {"reference": "Patient/1"}]))
    nested = _deep(depth, shape, leaf)
    where = draw(st.sampled_from(["root", "extension", "owner", "contained", "text", "code", "valueExt"]))
    task = copy.deepcopy(MINIMAL)
    if where == "root":
        return nested
    if where == "extension":
        task["extension"] = [nested] if shape == "extension" else [{"url": "http://example.org/x", "extension": [nested]}]
    elif where == "owner":
        task["owner"] = nested if shape == "assigner" else {"reference": "Practitioner/1", "identifier": nested}
    elif where == "contained":
        task["contained"] = [{"resourceType": "Patient", "id": "p", "extension": [nested]}]
        task["for"] = {"reference": "#p"}
    elif where == "text":
        task["text"] = {"status": "generated", "div": nested}
    elif where == "code":
        task["code"] = nested
    else:
        task["extension"] = [{"url": "http://example.org/x", "valueCodeableConcept": nested}]
    return task


@pytest.mark.fuzz
@FUZZ
@given(JSON_VALUES | st.dictionaries(_NAMES, JSON_VALUES, max_size=8).map(lambda d: {"resourceType": "Task", **d}))
def test_random_json_never_crashes(value: Any) -> None:
    check(value)


@pytest.mark.fuzz
@FUZZ
@given(mutated_tasks())
def test_mutated_tasks_never_crash(task: Any) -> None:
    check(task)


@pytest.mark.fuzz
@settings(FUZZ, max_examples=EXAMPLES if NIGHTLY or "KT_FUZZ_EXAMPLES" in os.environ else 40)
@given(deep_tasks())
def test_deep_nesting_never_crashes(task: Any) -> None:
    check(task)


@pytest.mark.parametrize("shape", ["list", "dict", "extension", "assigner"])
def test_depth_beyond_the_limit_is_an_issue_not_an_exception(shape: str) -> None:
    """Nesting deeper than the JSON parsers of FHIR servers accept is reported as an error."""
    task = copy.deepcopy(MINIMAL)
    task["extension"] = [{"url": "http://example.org/x", "extension": [_deep(20_000, shape, "x")]}]
    issues = check(task)
    assert any(i.severity == "error" for i in issues)
    # where the walk goes all the way down (nested extensions), the depth itself is reported
    if shape == "extension":
        assert any("nest" in i.message for i in issues)


def test_legitimate_depth_is_validated_not_refused() -> None:
    """Extensions nested 300 deep are valid FHIR: validated like any other, no depth issue."""
    task = copy.deepcopy(MINIMAL)
    task["extension"] = [_deep(300, "extension", {"url": "http://example.org/leaf", "valueString": "v"})]
    assert _ORACLE.errors(task) == []
    task["extension"] = [_deep(300, "extension", {"url": "http://example.org/leaf", "valueString": 1})]
    assert {i.key for i in _ORACLE.errors(task)} == {"Task.extension/type"}


@pytest.mark.parametrize("value", [[], 1, None, "Resource", "Unknown", {"a": 1}, True, 1e308, 10**5000],
                         ids=["list", "int", "null", "abstract", "unknown", "object", "bool", "float", "huge-int"])
def test_contained_with_any_resource_type(value: Any) -> None:
    task = copy.deepcopy(MINIMAL)
    task["contained"] = [{"resourceType": value, "id": "p"}]
    task["for"] = {"reference": "#p"}
    keys = {i.key for i in check(task) if i.severity == "error"}
    assert keys  # not a resource: never valid


def test_huge_integer_is_out_of_range() -> None:
    task = copy.deepcopy(MINIMAL)
    task["extension"] = [{"url": "http://example.org/n", "valueInteger": 10**5000}]
    assert {i.key for i in check(task) if i.severity == "error"} == {"Task.extension/format"}


def test_lone_surrogates_in_keys_and_values() -> None:
    task = copy.deepcopy(MINIMAL)
    task["\ud800x"] = "\udfff"
    task["description"] = "a\ud83d"
    issues = check(task)
    assert "Task/unknown" in {i.key for i in issues}
