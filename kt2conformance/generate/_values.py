"""Making Tasks from the profile's element tree: the values, and the choices behind them.

`TaskGenerator.task` walks the tree: required elements always, allowed optional ones sometimes,
values by datatype, codes from the bound ValueSets, fixed values as fixed, references to
prerequisite resources of an allowed target type, every dateTime of a Task drawn in element
order from one sorted set of instants (so inv-1 and per-1 hold by construction). Every choice
goes through a `Chooser`: Hypothesis' (shrinkable) or a seeded random one (fast, for bulk).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar, cast

from hypothesis import strategies as st

from kt2conformance._koppeltaal import SUBTASK_CODE
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec._profile import Profile
from kt2conformance.spec._tree import Node, TypeRef, datatype_template

Task = dict[str, Any]
T = TypeVar("T")

WORDS = ["alpha", "beta", "gamma", "delta", "zorg", "taak", "module", "oefening", "dagboek", "vragenlijst"]
TIME_ZONES = ["Z", "+01:00", "+02:00", "-05:00", "+05:30"]
XHTML = '<div xmlns="http://www.w3.org/1999/xhtml">{}</div>'
# Elements the generic generator leaves out of valid Tasks: their realistic values depend on the
# server or on value sets not bundled (narrative, language), or servers may refuse them for
# reasons outside the profile (implicitRules, modifierExtension, contained). meta is set apart:
# it always declares the profile.
_NOT_GENERATED = {"id", "meta", "text", "contained", "modifierExtension", "implicitRules", "language"}


@dataclass(frozen=True)
class Prerequisites:
    """Relative references to resources that exist on the target (suites create them)."""

    patient: str = "Patient/patient-1"
    practitioner: str = "Practitioner/practitioner-1"
    care_team: str = "CareTeam/careteam-1"
    related_person: str = "RelatedPerson/relatedperson-1"
    activity_definition: str = "ActivityDefinition/activitydefinition-1"
    device: str = "Device/device-1"
    organization: str = "Organization/organization-1"
    endpoint: str = "Endpoint/endpoint-1"
    task: str | None = None

    def by_type(self) -> dict[str, str]:
        refs = [self.patient, self.practitioner, self.care_team, self.related_person,
                self.activity_definition, self.device, self.organization, self.endpoint] \
            + ([self.task] if self.task else [])
        return {r.split("/")[0]: r for r in refs}


_EPOCH, _SPAN_S = dt.datetime(2020, 1, 1), 11 * 365 * 86400


class Chooser:
    """Every choice the generators make, behind one small interface with two makers:
    `HypothesisChooser` (draws through Hypothesis, so failing examples shrink to small Tasks) and
    `RandomChooser` (a seeded `random.Random`: the same Tasks for the same seed, thousands per
    second, for `generate`, the suites' case lists and the benchmarks)."""

    def choose(self, options: Sequence[T]) -> T:
        raise NotImplementedError

    def flip(self) -> bool:
        raise NotImplementedError

    def integer(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def uuid(self) -> str:
        raise NotImplementedError

    def moment(self) -> dt.datetime:
        """A UTC instant between 2020 and 2030, to the millisecond."""
        raise NotImplementedError

    def words(self) -> str:
        return " ".join(self.choose(WORDS) for _ in range(self.integer(1, 3)))

    def moments(self, n: int, unique: bool = False) -> list[dt.datetime]:
        """`n` instants in order (strictly increasing when `unique`)."""
        out = sorted(self.moment() for _ in range(n))
        if unique:
            out = [m + dt.timedelta(seconds=i) for i, m in enumerate(out)]
        return out


class HypothesisChooser(Chooser):
    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self.draw = draw

    def choose(self, options: Sequence[T]) -> T:
        return cast("T", self.draw(st.sampled_from(options)))

    def flip(self) -> bool:
        return cast(bool, self.draw(st.booleans()))

    def integer(self, lo: int, hi: int) -> int:
        return cast(int, self.draw(st.integers(lo, hi)))

    def uuid(self) -> str:
        return str(self.draw(st.uuids()))

    def moment(self) -> dt.datetime:
        return _EPOCH + dt.timedelta(milliseconds=self.draw(st.integers(0, _SPAN_S * 1000)))


class RandomChooser(Chooser):
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choose(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def flip(self) -> bool:
        return self.rng.random() < 0.5

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def moment(self) -> dt.datetime:
        return _EPOCH + dt.timedelta(milliseconds=self.rng.randrange(_SPAN_S * 1000))


def render_datetime(moment: dt.datetime, tz: str, millis: bool) -> str:
    offset = dt.timedelta() if tz == "Z" else (1 if tz[0] == "+" else -1) * dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    local = (moment + offset).replace(tzinfo=None)
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{local.microsecond // 1000:03d}" if millis else "")
    return text + tz


class TaskGenerator:
    """Value generation for one profile and one set of prerequisites."""

    def __init__(self, profile: Profile, prereqs: Prerequisites) -> None:
        self.profile = profile
        self.prereqs = prereqs
        self.refs = prereqs.by_type()
        self.oracle = oracle_for(profile)
        self.tree = self.oracle.tree
        self.sliced_codes = _sliced_codes(profile)

    # -- primitives ---------------------------------------------------------------------------

    def primitive(self, c: Chooser, code: str, node: Node, clock: list[dt.datetime]) -> Any:
        if node.fixed is not None:
            return node.fixed[1]
        if node.pattern is not None:
            return node.pattern[1]
        if node.binding is not None:
            codes = self.oracle.expansion(node.binding[1])
            if codes:
                return c.choose(sorted(c for _, c in codes))
        if code in ("dateTime", "instant"):
            moment = clock.pop(0) if clock else c.moment()
            return render_datetime(moment, c.choose(TIME_ZONES), c.flip())
        if code == "date":
            return c.moment().strftime("%Y-%m-%d")
        if code == "boolean":
            return c.flip()
        if code in ("integer", "unsignedInt", "positiveInt"):
            return c.integer(1, 1000)
        if code == "decimal":
            return c.integer(0, 10000) / 100
        if code in ("uri", "url", "canonical"):
            target = sorted(t for tr in node.types for t in tr.target_types if t in self.refs)
            if code == "canonical" and target:
                return f"http://example.org/fhir/{self.refs[target[0]]}"
            return "http://example.org/fhir/" + c.choose(WORDS)
        if code == "id":
            return c.uuid()
        if code == "code":
            return c.choose(WORDS)
        if code == "uuid":
            return f"urn:uuid:{c.uuid()}"
        if code == "xhtml":
            return XHTML.format(c.words())
        if code == "base64Binary":
            return base64.b64encode(c.words().encode()).decode()
        if code == "time":
            return c.moment().strftime("%H:%M:%S")
        if code == "oid":
            return f"urn:oid:2.16.528.1.{c.integer(1, 9999)}"
        return c.words()

    # -- complex values -----------------------------------------------------------------------

    def targets(self, tref: TypeRef) -> list[str]:
        """Prerequisite resource types a reference of this type may point at."""
        if not tref.target_types or "Resource" in tref.target_types:
            return sorted(self.refs)
        return [t for t in sorted(tref.target_types) if t in self.refs]

    def reference(self, c: Chooser, tref: TypeRef) -> dict[str, Any]:
        allowed = self.targets(tref)
        if not allowed:  # only for elements a fault adds (Task.encounter): no such prerequisite
            return {"reference": f"{sorted(tref.target_types)[0]}/example-{c.choose(WORDS)}"}
        rtype = c.choose(allowed)
        ref: dict[str, Any] = {"reference": self.refs[rtype]}
        if c.flip():
            ref["type"] = rtype
        return ref

    def coded(self, c: Chooser, node: Node, tref: TypeRef) -> dict[str, Any] | None:
        """A Coding or CodeableConcept from the ValueSet the element is bound to (required or
        extensible: weaker bindings keep the generic values), when it can be expanded."""
        binding = node.binding
        codes = self.oracle.expansion(binding[1]) if binding and binding[0] in ("required", "extensible") else None
        if not codes or tref.code not in ("Coding", "CodeableConcept"):
            return None
        allowed = sorted(set(codes) - self.sliced_codes.get(node.id, set()))
        if not allowed:
            return None
        system, code = c.choose(allowed)
        coding = {"system": system, "code": code}
        return coding if tref.code == "Coding" else {"coding": [coding]}

    def complex(self, c: Chooser, node: Node, tref: TypeRef, clock: list[dt.datetime], full: bool, depth: int) -> dict[str, Any]:
        # fixed and pattern values are given as they are: a pattern is itself a matching value
        if node.fixed is not None:
            return copy.deepcopy(node.fixed[1])
        if node.pattern is not None:
            return copy.deepcopy(node.pattern[1])
        if tref.code == "Reference":
            return self.reference(c, tref)
        if (coded := self.coded(c, node, tref)) is not None:
            return coded
        if tref.code == "Extension":  # an extension no slice describes: any url, a simple value
            return {"url": "http://example.org/fhir/StructureDefinition/" + c.choose(WORDS),
                    "valueString": c.words()}
        children = node.children if (node.explicit_children or len(node.types) == 1) else datatype_template(tref.code)
        out = self.fill(c, children, clock, full and depth < 1, depth + 1, skip={"id", "extension", "modifierExtension"})
        if not any(k != "id" for k in out):
            # ele-1 wants a value or children: give primitive parts we can fill well (an
            # Identifier its system and value, a Period its start and end), each drawn, at least
            # one: some pairs exclude each other (AuditEvent.entity's name and query, sev-1).
            parts = [part for part in children.values()
                     if part.types and part.types[0].primitive is not None and part.name != "id"
                     and not part.forbidden and not part.is_choice and self.can_fill(part)]
            # one part in a minimal value, a drawn subset in a full one
            chosen = [c.choose(parts)] if parts and not full else \
                [p for p in parts if c.flip()] or parts[-1:]
            for part in chosen:
                out[part.name] = self.primitive(c, part.types[0].code, part, clock)
        return out

    def can_fill(self, node: Node) -> bool:
        """False for a code bound (required) to a value set we can't expand: any code we made
        up would be wrong to a server that can."""
        return not (node.binding and node.binding[0] == "required" and not self.oracle.expansion(node.binding[1]))

    def value(self, c: Chooser, node: Node, tref: TypeRef, clock: list[dt.datetime], full: bool, depth: int) -> Any:
        if tref.primitive is not None:
            return self.primitive(c, tref.code, node, clock)
        return self.complex(c, node, tref, clock, full, depth)

    def fill(self, c: Chooser, children: dict[str, Node], clock: list[dt.datetime], full: bool, depth: int,
             skip: set[str]) -> dict[str, Any]:
        """Values for the allowed children: required ones always, optional ones when `full`
        and drawn so, each with a type it allows."""
        out: dict[str, Any] = {}
        for child in children.values():
            if child.forbidden or child.name in skip or not child.types:
                continue
            if not self.can_fill(child) and child.min == 0:
                continue
            if child.min == 0 and child.types[0].code == "Reference" and not self.targets(child.types[0]):
                continue  # no prerequisite of a type it may refer to (partOf without a parent Task)
            present = child.min > 0 or (full and c.flip())
            if not present:
                continue
            tref = c.choose(child.types) if len(child.types) > 1 else child.types[0]
            prop = child.name[:-3] + tref.code[0].upper() + tref.code[1:] if child.is_choice else child.name
            if child.is_array:
                upper = 2 if child.max is None else min(child.max, 2)
                n = c.integer(max(child.min, 1), max(upper, 1))
                out[prop] = [self.value(c, child, tref, clock, full, depth) for _ in range(n)]
            else:
                out[prop] = self.value(c, child, tref, clock, full, depth)
        return out

    def slice_instance(self, c: Chooser, sl: Node, clock: list[dt.datetime]) -> dict[str, Any]:
        """One extension of a slice: its required parts, and a value (ext-1 wants a value or
        nested extensions, and the slice may make its value optional)."""
        out = self.fill(c, sl.children, clock, False, 1, skip={"id"})
        value = sl.children.get("value[x]")
        if value is not None and not value.forbidden and not any(k.startswith("value") for k in out):
            tref = value.types[0]
            out["value" + tref.code[0].upper() + tref.code[1:]] = self.value(c, value, tref, clock, False, 1)
        return out

    # -- whole Tasks --------------------------------------------------------------------------

    def task(self, c: Chooser, full: bool) -> Task:
        clock = c.moments(6)
        task: Task = {"resourceType": self.profile.type, "meta": {"profile": [self.profile.url]}}
        task.update(self.fill(c, self.tree.children, clock, full, 0, skip=_NOT_GENERATED | {"extension"}))
        ext_node = self.tree.children.get("extension")
        if ext_node is not None:  # required slices always (KT2ActivityDefinition's endpoint), others when full
            extensions = []
            for sl in ext_node.slices.values():
                if sl.forbidden or not (full or sl.min > 0):
                    continue
                upper = 2 if sl.max is None else min(sl.max, 2)
                for _ in range(c.integer(sl.min, upper) if full else sl.min):
                    extensions.append(self.slice_instance(c, sl, clock))
            if full and c.flip():
                extensions.append(self.complex(c, ext_node, ext_node.types[0], clock, False, 1))
            if extensions:
                task["extension"] = extensions
        return self.server_rules(task)

    def server_rules(self, task: Task) -> Task:
        """The Koppeltaal server rule beyond the profile: a `view` Task is a subtask (partOf)."""
        codes = [c.get("code") for c in (task.get("code") or {}).get("coding", [])]
        if SUBTASK_CODE in codes and not task.get("partOf"):
            if self.prereqs.task:
                task["partOf"] = [{"reference": self.prereqs.task}]
            else:
                task.pop("code")
        return task


def _sliced_codes(profile: Profile) -> dict[str, set[tuple[str, str]]]:
    """Codes that put an element into a slice the element tree does not model (slices other than
    extensions', e.g. KT2ActivityDefinition's useContext:koppeltaal-expansion, chosen by the
    pattern on its `code`): element id (sliced element's child) -> (system, code) patterns. The
    generators keep out of those slices, whose own rules the oracle does not judge."""
    out: dict[str, set[tuple[str, str]]] = {}
    for el in profile.elements:
        head, _, part = str(el.get("id", "")).rpartition(".")
        if ":" not in head.rsplit(".", 1)[-1] or "extension:" in head:
            continue
        for key in ("patternCoding", "fixedCoding"):
            value = el.get(key)
            if isinstance(value, dict) and value.get("code"):
                out.setdefault(f"{head.split(':')[0]}.{part}", set()).add(
                    (str(value.get("system")), str(value["code"])))
    return out


@lru_cache(maxsize=8)
def oracle_for(profile: Profile) -> Oracle:
    """One oracle per profile for all generators: building its tree is the costly part."""
    return Oracle(profile)
