"""The standing differential: the oracle against the HL7 validator (HAPI FHIR's `$validate` on the
embedded reference server, configured as production).

The same Tasks go to both: bulk-generated valid Tasks, every fault recipe for every key, the
IG's Task examples and the fixtures, and Hypothesis-fuzzed mutations of valid Tasks. For each,
the two must agree on validity, and for an invalid Task the validator must find an error on the
element of the oracle's key (run._referee.Comparison). A difference is either a bug to fix or a
justified divergence listed in DIVERGENCES with the spec text that decides it
(docs/differential.md); anything else fails. The figures (N, agreement %) are printed and kept
as JUnit properties.

KT_REFEREE_URL points the test at another HAPI server's FHIR base instead of the embedded one.
The nightly profile (HYPOTHESIS_PROFILE=nightly) runs about ten times the Tasks (5,000 seeded
mutations and 5,000 Hypothesis draws); KT_MUTATIONS=N sets the seeded mutations' count.
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from tasks import MINIMAL
from test_oracle_fuzz import mutated_tasks

from kt2conformance import _paths as paths
from kt2conformance.generate import _strategies as strategies
from kt2conformance.generate._strategies import Prerequisites
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.run._referee import Comparison, Referee, compare
from kt2conformance.spec._profile import load_profile

pytestmark = pytest.mark.server

NIGHTLY = os.environ.get("HYPOTHESIS_PROFILE") == "nightly"
PROFILE = load_profile()
ORACLE = Oracle(PROFILE)
VALID = 1000 if NIGHTLY else 60
PER_KEY = 10 if NIGHTLY else 2
# The fuzzed parts run in every CI run as a small, fixed slice (seeded mutations; Hypothesis
# derandomized by the "ci" profile), a few seconds against the embedded server; nightly (random
# Hypothesis draws) and KT_MUTATIONS=N explore more.
MUTATIONS = int(os.environ.get("KT_MUTATIONS", "5000" if NIGHTLY else "300"))
HYPOTHESIS_EXAMPLES = 5000 if NIGHTLY else 100


def _reason(text: str, *kinds: str) -> dict[str, str]:
    return dict.fromkeys(kinds, text)


# Where the oracle and HAPI's validator differ by design, by the oracle key's kind (the element
# part is any element). Each is explained, with the deciding spec text, in docs/differential.md.
DIVERGENCES: dict[str, str] = {
    **_reason("targetProfile of a literal reference to a resource that is not contained: HAPI's validator "
              "judges the target's type only when it can resolve the reference (it has no resolver "
              "here); R4 §2.3.0.1 Reference(X): the target SHALL be an X",
              "targetProfile"),
}


_EMPTY_META_PROFILE = ("an empty meta.profile array: HAPI's validator lets {\"profile\": []} pass (it refuses "
                       "other empty arrays: 'Array cannot be empty'); FHIR JSON (R4 §2.6.2): an array is "
                       "never empty, and a meta without content breaks ele-1")


_EMPTY_WITH_COMPANION = ("an empty string value whose `_x` companion has extensions (`\"start\": \"\", \"_start\": "
                         "{extension: …}`): HAPI's validator reads \"\" as no value and lets it pass (without the "
                         "companion it refuses: 'value cannot be empty'); R4 §2.1.28.0.1 / profiles-types.json: every "
                         "primitive's regex needs at least one character, and R4 §2.6.2 (JSON) leaves out a value that "
                         "is absent instead of writing \"\"")


_ELEMENT_ID_COMPANION = ("`_id` on an element (`\"owner\": {\"id\": \"o\", \"_id\": {extension: …}}`): HAPI's "
                         "validator accepts extensions on Element.id; R4 defines Element.id with representation "
                         "xmlAttr (\"In XML, this property is represented as an attribute not an element\", so it "
                         "can carry no extension), and R4's JSON schema (fhir.schema.json) has no `_id` on any element "
                         "or resource")


def _at(task: Any, path: str) -> tuple[Any, str] | None:
    """(holder, property) of an instance path in `task` (`Task.executionPeriod.start`)."""
    holder: Any = task
    steps = path.split(".")[1:]
    for i, step in enumerate(steps):
        name, _, index = step.partition("[")
        if not isinstance(holder, dict) or name not in holder:
            return None
        if i == len(steps) - 1 and not index:
            return holder, name
        holder = holder[name]
        if index:
            n = int(index.rstrip("]"))
            if not isinstance(holder, list) or n >= len(holder):
                return None
            holder = holder[n]
    return None


_BASE64 = ("a base64Binary that is not base64 (`AA AA`, `!!`): HAPI's Base64Util only counts the base64 "
           "characters; R4 base64Binary: RFC 4648 base64, regex `(\\s*([0-9a-zA-Z\\+\\=]){4}\\s*)+`")
_ABSTRACT = ("a contained resource of an abstract type (Resource, DomainResource): HAPI accepts it; R4 §2.3: "
             "those types are abstract, an instance is always of a concrete resource type")


def divergence(key: str | None, task: Any, path: str | None = None, message: str = "") -> str | None:
    """The documented reason the oracle and the validator may differ on `key` (an issue of
    the oracle's at instance `path`, with `message`) for `task`."""
    if key is None:
        return None
    if key.endswith("/format") and "base64Binary" in message:
        return _BASE64
    if key.endswith("/type") and ("got 'Resource'" in message or "got 'DomainResource'" in message):
        return _ABSTRACT
    meta = task.get("meta") if isinstance(task, dict) else None
    if key in ("Task.meta/type", "Task.meta/constraint:ele-1") and isinstance(meta, dict) and meta.get("profile") == []:
        return _EMPTY_META_PROFILE
    if path is not None and (path.endswith(".meta") or path.endswith(".meta.profile")):
        place = _at(task, path[: -len(".profile")] if path.endswith(".profile") else path)
        held = place[0][place[1]] if place is not None else None
        if isinstance(held, dict) and held.get("profile") == []:  # a contained resource's meta
            return _EMPTY_META_PROFILE
    if path is not None and key.endswith("/unknown") and path.endswith("._id") and path.count(".") > 1:
        return _ELEMENT_ID_COMPANION
    place = _at(task, path) if path is not None and key.endswith("/format") else None
    if place is not None and place[0][place[1]] == "" and isinstance(place[0].get(f"_{place[1]}"), dict) \
            and place[0][f"_{place[1]}"].get("extension"):
        return _EMPTY_WITH_COMPANION
    kind = key.split("/", 1)[1] if "/" in key else key
    return DIVERGENCES.get(kind)


@dataclass
class Tally:
    """Agreement figures for one source of Tasks."""

    cases: Counter[str] = field(default_factory=Counter)
    agreed: Counter[str] = field(default_factory=Counter)
    same_element: int = 0
    invalid_both: int = 0
    justified: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)

    def add(self, source: str, key: str | None, task: Any, c: Comparison) -> None:
        self.cases[source] += 1
        located = c.same_element(key) if not c.oracle_valid and not c.referee_valid else True
        if not c.oracle_valid and not c.referee_valid:
            self.invalid_both += 1
            self.same_element += located
        if c.agrees and located:
            self.agreed[source] += 1
            return
        reasons = ([divergence(i.key, task, i.path, i.message) for i in c.only_oracle if not key or i.key == key]
                   or [divergence(key, task)])
        line = (f"[{source}] {key or '(no key)'}: oracle {'valid' if c.oracle_valid else 'invalid'}, "
                f"HL7 validator {'valid' if c.referee_valid else 'invalid'}; only oracle "
                f"{[(i.key, i.path) for i in c.only_oracle][:3]}; only validator "
                f"{[(r.location, r.message[:120]) for r in c.only_referee][:3]}\n    {json.dumps(task)[:600]}")
        if all(reasons) and c.only_oracle and not c.only_referee:
            self.justified.append(f"{line}\n    justified: {reasons[0]}")
        else:
            self.unexplained.append(line)

    def summary(self) -> str:
        n, agreed = sum(self.cases.values()), sum(self.agreed.values())
        per = ", ".join(f"{s} {self.agreed[s]}/{self.cases[s]}" for s in self.cases)
        return (f"oracle vs HL7 validator: {n} Tasks, agreement {agreed}/{n} = {100 * agreed / max(n, 1):.1f}% "
                f"({per}); same element on {self.same_element}/{self.invalid_both} invalid Tasks; "
                f"{len(self.justified)} justified divergences, {len(self.unexplained)} unexplained")


@pytest.fixture(scope="module")
def referee(request: pytest.FixtureRequest) -> Iterator[Referee]:
    url = os.environ.get("KT_REFEREE_URL")
    if url is None:
        url = request.getfixturevalue("reference_server").base_url
    probe = httpx.post(f"{url}/Task/$validate", content=json.dumps(MINIMAL),
                       headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}, timeout=120)
    if probe.status_code not in (200, 412, 422):
        # the embedded target before issue 12 (Medplum) has no $validate: nothing to compare with
        pytest.skip(f"no HL7 validator ($validate) behind {url}: {probe.status_code} {probe.text[:120]}")
    with Referee(url, PROFILE.url) as ref:
        yield ref


def _generated() -> Iterator[tuple[str, str | None, Any]]:
    for i, task in enumerate(strategies.generate_valid(PROFILE, Prerequisites(), 11)):
        if i >= VALID:
            break
        yield "valid", None, task
    for key in sorted(strategies.invalid_tasks(PROFILE, Prerequisites())):
        if key.startswith("server/"):
            continue  # Koppeltaal server rules: not the validator's
        gen = strategies.generate_invalid(PROFILE, key, Prerequisites(), 13)
        for _ in range(PER_KEY):
            yield "fault", key, next(gen)


def _examples() -> Iterator[tuple[str, str | None, Any]]:
    folders = [paths.FIXTURES_DIR, paths.DEFAULT_PROFILE_DIR / "examples"]
    for path in sorted(p for f in folders if f.is_dir() for p in f.glob("Task-*.json")):
        yield "example", None, json.loads(path.read_text(encoding="utf-8"))


def _places(value: Any) -> list[tuple[Any, Any]]:
    """(container, key or index) of every value inside `value`, resourceType left out."""
    out: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        pairs = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        for k, v in pairs:
            if k != "resourceType":
                out.append((item, k))
            stack.append(v)
    return out


def _mutations(seed: int = 5) -> Iterator[tuple[str, str | None, Any]]:
    """Valid Tasks with one random change: a value replaced by another element's, dropped, or
    given a sibling, so that every kind of element sees wrong values of every shape."""
    rng = random.Random(seed)
    bases = list(islice(strategies.generate_valid(PROFILE, Prerequisites(), 17), 20))
    for _ in range(MUTATIONS):
        task = copy.deepcopy(rng.choice(bases))
        places = _places(task)
        holder, at = rng.choice(places)
        donor_holder, donor_at = rng.choice(places)
        how = rng.choice(["swap", "drop", "sibling", "empty"])
        if how == "swap":
            holder[at] = copy.deepcopy(donor_holder[donor_at])
        elif how == "drop":
            del holder[at]
        elif how == "sibling" and isinstance(holder, dict):
            holder[rng.choice(["extra", "value", "text", "id", "_" + str(at)])] = copy.deepcopy(donor_holder[donor_at])
        else:
            holder[at] = rng.choice([{}, [], "", 0, None, [None]])
        yield "mutation", None, task


def _run(referee: Referee, sources: list[Callable[[], Iterator[tuple[str, str | None, Any]]]],
         record_property: Callable[[str, Any], None]) -> Tally:
    tally = Tally()
    for source in sources:
        for name, key, task in source():
            tally.add(name, key, task, compare(ORACLE.validate(task), referee.validate(task), ORACLE.tree.id))
    print(tally.summary())
    for line in tally.justified[:20]:
        print(line)
    record_property("agreement", tally.summary())
    return tally


def test_generated_and_official_tasks_agree_with_the_hl7_validator(
        referee: Referee, record_property: Callable[[str, Any], None]) -> None:
    tally = _run(referee, [_generated, _examples], record_property)
    assert not tally.unexplained, "\n".join([tally.summary(), *tally.unexplained])


def test_fuzzed_mutations_agree_with_the_hl7_validator(
        referee: Referee, record_property: Callable[[str, Any], None]) -> None:
    tally = _run(referee, [_mutations], record_property)
    assert not tally.unexplained, "\n".join([tally.summary(), *tally.unexplained])


def test_the_comparison_can_fail(referee: Referee) -> None:
    """The comparison sees a difference: an oracle with a profile copy that drops the required
    `owner` does not agree with the validator on a Task without an owner."""
    task = {k: v for k, v in MINIMAL.items() if k != "owner"}
    c = compare(ORACLE.validate(task), referee.validate(task), ORACLE.tree.id)
    assert c.agrees and c.same_element("Task.owner/min")
    lax = compare([], referee.validate(task), ORACLE.tree.id)
    assert not lax.agrees and lax.only_referee


@pytest.mark.parametrize("path", sorted(Path(paths.DEFAULT_PROFILE_DIR / "examples").glob("Task-*.json")),
                         ids=lambda p: p.stem)
def test_official_task_examples_are_valid_to_both(referee: Referee, path: Path) -> None:
    task = json.loads(path.read_text(encoding="utf-8"))
    c = compare(ORACLE.validate(task), referee.validate(task), ORACLE.tree.id)
    assert (c.oracle_valid, c.referee_valid) == (c.referee_valid, c.oracle_valid)
    assert c.agrees, [(i.key, i.message) for i in c.only_oracle] + [(r.location, r.message) for r in c.only_referee]


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(task=mutated_tasks())
def test_hypothesis_mutations_agree_with_the_hl7_validator(referee: Referee, task: Any) -> None:
    """Hypothesis' mutations (any JSON value anywhere in a valid Task; shrunk on failure)."""
    tally = Tally()
    tally.add("hypothesis", None, task, compare(ORACLE.validate(task), referee.validate(task), ORACLE.tree.id))
    assert not tally.unexplained, tally.unexplained[0]
