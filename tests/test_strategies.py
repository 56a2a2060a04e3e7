"""Property tests of the Task generators (kt2conformance.generate).

The conformance suites trust the generators blindly: a "valid" Task the profile forbids, or an
"invalid" one that breaks a second constraint too, would make a correct server look wrong. So
every generated Task is checked here against the oracle (and the server rules), per constraint
key, and shrinking is shown to end at small Tasks a person can read in a report.

Example counts come from the Hypothesis profile (tests/conftest.py): "ci" by default,
HYPOTHESIS_PROFILE=nightly for ten times more.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from sampling import sample

from kt2conformance._koppeltaal import KT2TASK_URL, RESOURCE_ORIGIN_URL
from kt2conformance.generate import _strategies as strategies
from kt2conformance.generate._strategies import Prerequisites
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec._profile import load_profile
from kt2conformance.target._origin import has_resource_origin

PROFILE = load_profile()
ORACLE = Oracle(PROFILE)
# With a parent Task the generators may also fill partOf; all examples refer to these.
PREREQS = Prerequisites(task="Task/parent-1")
INVALID = strategies.invalid_tasks(PROFILE, PREREQS)
# Valid Tasks get the profile's full example budget; each of the ~145 keys a 25th of it (8 in
# "ci"), which keeps this file well under a minute and still shows a key's recipe holds.
PER_KEY = max(5, settings().max_examples // 25)
VIEW = "view"
# Allowed elements the generator leaves out on purpose (see generation._NOT_GENERATED: values
# depend on the server or on unbundled value sets); meta is always there, set apart.
NOT_GENERATED = {"id", "text", "contained", "modifierExtension", "implicitRules", "language"}
_LITERAL = re.compile(r"^([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}$")


def error_keys(task: Any) -> set[str]:
    return {i.key for i in ORACLE.errors(task)}


def literal_references(value: Any) -> list[str]:
    """Every relative literal reference `Type/id` in a Task (what a server resolves)."""
    if isinstance(value, list):
        return [r for item in value for r in literal_references(item)]
    if not isinstance(value, dict):
        return []
    own = [value["reference"]] if isinstance(value.get("reference"), str) and _LITERAL.match(value["reference"]) else []
    return own + [r for v in value.values() for r in literal_references(v)]


def declares_kt2task(task: dict[str, Any]) -> bool:
    meta = task.get("meta")
    return isinstance(meta, dict) and isinstance(meta.get("profile"), list) and KT2TASK_URL in meta["profile"]


def view_without_part_of(task: dict[str, Any]) -> bool:
    code = task.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    codes = [c.get("code") for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []
    return VIEW in codes and not task.get("partOf")


def dangling(task: dict[str, Any], prereqs: Prerequisites) -> list[str]:
    """References that name no prerequisite, i.e. would not resolve on the target."""
    existing = set(prereqs.by_type().values())
    return [r for r in literal_references(task) if r not in existing]


def broken_server_rules(task: dict[str, Any], prereqs: Prerequisites) -> set[str]:
    broken = set()
    if not declares_kt2task(task):
        broken.add("server/meta.profile")
    if view_without_part_of(task):
        broken.add("server/subtask-partOf")
    if dangling(task, prereqs):
        broken.add("server/reference-integrity")
    if has_resource_origin(task):
        broken.add("server/resource-origin")
    return broken


@given(strategies.valid_tasks(PROFILE, PREREQS))
def test_valid_tasks_pass_the_oracle_and_the_server_rules(task: dict[str, Any]) -> None:
    assert ORACLE.errors(task) == []
    assert broken_server_rules(task, PREREQS) == set()


def test_valid_tasks_use_every_allowed_element() -> None:
    """Passing the oracle is easy for a generator that makes only minimal Tasks; the suites need
    the optional elements and both extension slices exercised too."""
    tasks = sample(strategies.valid_tasks(PROFILE, PREREQS), 60, seed=3)
    allowed = {name for name, node in ORACLE.tree.children.items() if not node.forbidden}
    seen = set().union(*(set(t) for t in tasks)) - {"resourceType"}
    companions = {k for k in seen if k.startswith("_")}  # primitive extensions, now and then
    assert seen - companions == allowed - NOT_GENERATED
    assert companions and {k[1:] for k in companions} <= allowed
    extension_urls = {e["url"] for t in tasks for e in t.get("extension", [])}
    # every slice but the server's resource-origin, which a client never sets
    assert set(ORACLE.tree.children["extension"].slices) - extension_urls == {RESOURCE_ORIGIN_URL}


@given(strategies.minimal_tasks(PROFILE, PREREQS))
@settings(max_examples=PER_KEY * 5)
def test_minimal_tasks_are_valid_with_only_required_elements(task: dict[str, Any]) -> None:
    required = {name for name, node in ORACLE.tree.children.items() if node.min > 0}
    assert set(task) == {"resourceType", "meta"} | required
    assert ORACLE.errors(task) == []


@pytest.mark.parametrize("key", sorted(INVALID))
@settings(max_examples=PER_KEY)
@given(data=st.data())
def test_invalid_tasks_break_exactly_their_key(key: str, data: st.DataObject) -> None:
    task = data.draw(INVALID[key], label=key)
    if key.startswith("server/"):
        # valid to the profile, broken only by the Koppeltaal server rule
        assert error_keys(task) == set()
        assert broken_server_rules(task, PREREQS) == {key}
        return
    assert error_keys(task) == {key}
    # No server rule broken on the side, except where the fault itself makes that inevitable:
    # meta that is not a Meta cannot declare KT2Task, and a forbidden reference element can only
    # name a type of which no prerequisite exists.
    if not key.startswith("Task.meta/"):
        assert declares_kt2task(task)
    assert not view_without_part_of(task)
    prereq_types = set(PREREQS.by_type())
    assert [r for r in dangling(task, PREREQS) if r.split("/")[0] in prereq_types] == []


def test_shrinking_ends_at_the_required_elements_plus_the_fault() -> None:
    """A failing case in a report should read at a glance: the minimal Task breaking
    Task.note/max is the required elements, one item each, plus a single note."""
    example = find(strategies.fault_strategy(PROFILE, "Task.note/max", PREREQS), lambda _: True)
    required = {name for name, node in ORACLE.tree.children.items() if node.min > 0}
    assert set(example) == {"resourceType", "meta"} | required | {"note"}
    assert all(len(v) == 1 for v in example.values() if isinstance(v, list))
    assert len(json.dumps(example)) < 400, json.dumps(example, indent=2)
    assert error_keys(example) == {"Task.note/max"}
    assert ORACLE.errors({k: v for k, v in example.items() if k != "note"}) == []


def test_every_listed_constraint_is_violable_or_explained() -> None:
    """What `constraints` promises to users is what the generators cover: each key has invalid
    Tasks, or a reason why no single JSON fault can break it, never both, never neither."""
    listed = subprocess.run([sys.executable, "-m", "kt2conformance", "constraints", "--format", "json"],
                            capture_output=True, text=True, timeout=120, check=True)
    keys = {c["key"] for c in json.loads(listed.stdout)}
    reasons = strategies.unviolable(PROFILE)
    assert set(INVALID).isdisjoint(reasons)
    assert keys == set(INVALID) | set(reasons), {"uncovered": keys - set(INVALID) - set(reasons),
                                                 "unknown": (set(INVALID) | set(reasons)) - keys}
    assert all(reason.strip() for reason in reasons.values())
    # the generators must not give up on the bulk of the profile (ele-1 and ext-1 on a code with
    # a required binding or a fixed value can't be broken alone: a code without a value breaks
    # the binding, an extension on a fixed value the fixed value)
    assert len(INVALID) > 3.5 * len(reasons)
