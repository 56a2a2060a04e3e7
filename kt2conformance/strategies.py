"""Hypothesis strategies for Tasks, derived from the profile's element tree.

`valid_tasks` walks the tree: required elements always, allowed optional ones sometimes, values by
datatype, codes from the bound ValueSets, fixed values as fixed, references to prerequisite
resources of an allowed target type. `invalid_tasks` gives, per constraint key, Tasks that break
exactly that constraint: a minimal valid base (required elements only, so shrinking ends small)
plus one fault chosen by the key's kind; each example is checked against the oracle to hold that
key and no other error. A key no single JSON fault can break is reported by `unviolable`.

FHIRPath invariants can't be inverted in general; the violations of the invariants R4 and the
profile use (inv-1, per-1, ref-1, dom-2…dom-5, txt-1, txt-2) are a small table (`_BREAK`);
ele-1 and ext-1 are broken structurally.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
import random
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from hypothesis import strategies as st

from kt2conformance.constraints import derive_constraints, required_parts
from kt2conformance.model import Node, TypeRef, datatype_invariants, datatype_template
from kt2conformance.oracle import Oracle
from kt2conformance.profile import Profile

Task = dict[str, Any]
T = TypeVar("T")

_WORDS = ["alpha", "beta", "gamma", "delta", "zorg", "taak", "module", "oefening", "dagboek", "vragenlijst"]
_TZ = ["Z", "+01:00", "+02:00", "-05:00", "+05:30"]
_XHTML = '<div xmlns="http://www.w3.org/1999/xhtml">{}</div>'
# Elements the generic generator leaves out of valid Tasks: their realistic values depend on the
# server or on value sets not bundled (narrative, language), or servers may refuse them for
# reasons outside the profile (implicitRules, modifierExtension, contained). meta is set apart:
# it always declares the profile.
_NOT_GENERATED = {"id", "meta", "text", "contained", "modifierExtension", "implicitRules", "language"}
_SUBTASK_CODE = "view"


@dataclass(frozen=True)
class Prerequisites:
    """Relative references to resources that exist on the target (suites create them)."""

    patient: str = "Patient/patient-1"
    practitioner: str = "Practitioner/practitioner-1"
    care_team: str = "CareTeam/careteam-1"
    related_person: str = "RelatedPerson/relatedperson-1"
    activity_definition: str = "ActivityDefinition/activitydefinition-1"
    device: str = "Device/device-1"
    task: str | None = None

    def by_type(self) -> dict[str, str]:
        refs = [self.patient, self.practitioner, self.care_team, self.related_person,
                self.activity_definition, self.device] + ([self.task] if self.task else [])
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
        return " ".join(self.choose(_WORDS) for _ in range(self.integer(1, 3)))

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
        return self.draw(st.sampled_from(options))

    def flip(self) -> bool:
        return self.draw(st.booleans())

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

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


def _render(moment: dt.datetime, tz: str, millis: bool) -> str:
    offset = dt.timedelta() if tz == "Z" else (1 if tz[0] == "+" else -1) * dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    local = (moment + offset).replace(tzinfo=None)
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{local.microsecond // 1000:03d}" if millis else "")
    return text + tz


class _Gen:
    """Value generation for one profile and one set of prerequisites."""

    def __init__(self, profile: Profile, prereqs: Prerequisites) -> None:
        self.profile = profile
        self.prereqs = prereqs
        self.refs = prereqs.by_type()
        self.oracle = _oracle(profile)
        self.tree = self.oracle.tree

    # -- primitives ---------------------------------------------------------------------------

    def primitive(self, c: Chooser, code: str, node: Node, clock: list[dt.datetime]) -> Any:
        if node.fixed is not None:
            return node.fixed[1]
        if node.binding is not None:
            codes = self.oracle.expansion(node.binding[1])
            if codes:
                return c.choose(sorted(c for _, c in codes))
        if code in ("dateTime", "instant"):
            moment = clock.pop(0) if clock else c.moment()
            return _render(moment, c.choose(_TZ), c.flip())
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
            return "http://example.org/fhir/" + c.choose(_WORDS)
        if code == "id":
            return c.uuid()
        if code == "code":
            return c.choose(_WORDS)
        if code == "uuid":
            return f"urn:uuid:{c.uuid()}"
        if code == "xhtml":
            return _XHTML.format(c.words())
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
            return {"reference": f"{sorted(tref.target_types)[0]}/example-{c.choose(_WORDS)}"}
        rtype = c.choose(allowed)
        ref: dict[str, Any] = {"reference": self.refs[rtype]}
        if c.flip():
            ref["type"] = rtype
        return ref

    def complex(self, c: Chooser, node: Node, tref: TypeRef, clock: list[dt.datetime], full: bool, depth: int) -> dict[str, Any]:
        if tref.code == "Reference":
            return self.reference(c, tref)
        if tref.code == "Extension":  # an extension no slice describes: any url, a simple value
            return {"url": "http://example.org/fhir/StructureDefinition/" + c.choose(_WORDS),
                    "valueString": c.words()}
        children = node.children if (node.explicit_children or len(node.types) == 1) else datatype_template(tref.code)
        out = self.fill(c, children, clock, full and depth < 1, depth + 1, skip={"id", "extension", "modifierExtension"})
        if not any(k != "id" for k in out):
            # ele-1 wants a value or children: give every primitive part we can fill well
            # (an Identifier gets its system and value, a Period its start and end).
            for part in children.values():
                if part.types and part.types[0].primitive is not None and part.name != "id" and not part.forbidden \
                        and not part.is_choice and self.can_fill(part):
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
        if full and ext_node is not None:
            extensions = []
            for sl in ext_node.slices.values():
                upper = 2 if sl.max is None else min(sl.max, 2)
                for _ in range(c.integer(sl.min, upper)):
                    extensions.append(self.slice_instance(c, sl, clock))
            if c.flip():
                extensions.append(self.complex(c, ext_node, ext_node.types[0], clock, False, 1))
            if extensions:
                task["extension"] = extensions
        return self.server_rules(task)

    def server_rules(self, task: Task) -> Task:
        """The Koppeltaal server rule beyond the profile: a `view` Task is a subtask (partOf)."""
        codes = [c.get("code") for c in (task.get("code") or {}).get("coding", [])]
        if _SUBTASK_CODE in codes and not task.get("partOf"):
            if self.prereqs.task:
                task["partOf"] = [{"reference": self.prereqs.task}]
            else:
                task.pop("code")
        return task


@lru_cache(maxsize=8)
def _oracle(profile: Profile) -> Oracle:
    return Oracle(profile)


def valid_tasks(profile: Profile, prereqs: Prerequisites = Prerequisites()) -> st.SearchStrategy[Task]:
    """Tasks that conform to the profile (and to the Koppeltaal server rules)."""
    gen = _Gen(profile, prereqs)
    return st.composite(lambda draw: gen.task(HypothesisChooser(draw), full=True))().filter(gen.oracle.is_valid)


def minimal_tasks(profile: Profile, prereqs: Prerequisites = Prerequisites()) -> st.SearchStrategy[Task]:
    """Valid Tasks with only the required elements: the base the faults are added to."""
    gen = _Gen(profile, prereqs)
    return st.composite(lambda draw: gen.task(HypothesisChooser(draw), full=False))()


# -- faults --------------------------------------------------------------------------------------

def _locate(gen: _Gen, c: Chooser, task: Task, element_id: str, clock: list[dt.datetime]) -> tuple[dict[str, Any], Node, list[dict[str, Any]]] | None:
    """Make the element `element_id` present in `task` (creating parents as needed) and return
    (the object holding it, its node, its instances). Slices are extension instances."""
    parts = element_id.split(".")[1:]
    holder: dict[str, Any] = task
    node = gen.tree
    instances: list[dict[str, Any]] = [task]
    for part in parts:
        name, _, slice_name = part.partition(":")
        child = node.children.get(name)
        if child is None:
            return None
        if slice_name:
            sl = next((s for s in child.slices.values() if s.slice_name == slice_name), None)
            if sl is None:
                return None
            existing = [e for e in holder.get(name, []) if isinstance(e, dict) and e.get("url") in child.slices and child.slices[e["url"]] is sl]
            if not existing:
                inst = gen.slice_instance(c, sl, clock)
                holder.setdefault(name, []).append(inst)
                existing = [inst]
            node, instances = sl, existing
            holder = existing[0]
            continue
        if name not in holder and not (child.is_choice and any(k.startswith(name[:-3]) for k in holder)):
            tref = child.types[0]
            prop = name[:-3] + tref.code[0].upper() + tref.code[1:] if child.is_choice else name
            value = gen.value(c, child, tref, clock, False, 1)
            holder[prop] = [value] if child.is_array else value
        node = child
        if part == parts[-1]:
            return holder, child, instances
        value = holder[name]
        holder = value[0] if isinstance(value, list) else value
    return holder, node, instances


def _prop_of(holder: dict[str, Any], node: Node) -> str | None:
    if node.is_choice:
        return next((k for k in holder if k.startswith(node.name[:-3]) and k[len(node.name) - 3:][:1].isupper()), None)
    return node.name if node.name in holder else None


# The bad dateTime (no 29 February in 2019) lies before every generated moment (2020 on), so as
# a Period's start it never also breaks per-1 (start <= end).
_BAD_FORMAT = {
    "dateTime": "2019-02-29T10:00:00Z", "instant": "2023-01-01T10:00", "date": "2021-13-01",
    "code": " not a code", "id": "not an id!", "uri": "not a uri", "url": "not a url",
    "canonical": "not a canonical", "string": "", "markdown": "", "boolean": "yes",
    "positiveInt": 0, "unsignedInt": -1, "integer": 2**40, "oid": "1.2.3", "uuid": "urn:uuid:xyz",
    "base64Binary": "not base64!", "time": "25:00:00", "xhtml": "",
}
_WRONG_TYPE = {"boolean": "true", "integer": "1", "positiveInt": "1", "unsignedInt": "1", "decimal": "1.5"}


def _bad_primitive_part(code: str) -> tuple[str, str] | None:
    """(property, type) of a primitive part of complex type `code` that `_BAD_FORMAT` can spoil
    (Identifier -> ("system", "uri"))."""
    for child in datatype_template(code).values():
        if child.name in ("id", "extension") or child.is_choice or not child.types:
            continue
        t = child.types[0].code
        if child.types[0].primitive is not None and t in _BAD_FORMAT:
            return child.name, t
    return None


def _break_invariant(key: str, c: Chooser, gen: _Gen, value: Any) -> Any:
    """A value of the element with invariant `key` broken, or None when there is no recipe."""
    inv = key.split(":", 1)[1]
    clock = c.moments(2, unique=True)
    later, earlier = _render(clock[1], c.choose(_TZ), False), _render(clock[0], c.choose(_TZ), False)
    recipes: dict[str, Callable[[Any], Any]] = {
        "inv-1": lambda t: {**t, "authoredOn": later, "lastModified": earlier},
        "per-1": lambda v: {**v, "start": later, "end": earlier},
        "ref-1": lambda v: {**v, "reference": "#missing", **({} if "type" not in v else {"type": v["type"]})},
        "dom-2": lambda t: {**t, "contained": [{"resourceType": "Patient", "id": "c1", "contained": [{"resourceType": "Patient", "id": "c2"}]}],
                            "for": {"reference": "#c1"}},
        "dom-3": lambda t: {**t, "contained": [{"resourceType": "Patient", "id": "c1"}]},
        "dom-4": lambda t: {**t, "contained": [{"resourceType": "Patient", "id": "c1", "meta": {"versionId": "1"}}],
                            "for": {"reference": "#c1"}},
        "dom-5": lambda t: {**t, "contained": [{"resourceType": "Patient", "id": "c1",
                                                "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}}],
                            "for": {"reference": "#c1"}},
        "txt-1": lambda v: {"status": "generated", "div": _XHTML.format("<script>alert(1)</script>x")},
        "txt-2": lambda v: {"status": "generated", "div": _XHTML.format(" ")},
    }
    recipe = recipes.get(inv)
    return None if recipe is None else recipe(value)


def _fault(gen: _Gen, key: str, c: Chooser, task: Task) -> Task | None:
    """Apply the one fault that breaks `key` to a minimal valid `task`; None if no recipe."""
    element_id, _, kind = key.partition("/")
    if element_id == "server":
        return _server_fault(gen, kind, c, task)
    clock = c.moments(4)
    if element_id == gen.tree.id:  # the resource itself
        if kind == "type":
            other = c.choose(["Patient", "ServiceRequest", None])
            return {k: v for k, v in task.items() if k != "resourceType"} | ({"resourceType": other} if other else {})
        if kind == "unknown":
            return {**task, c.choose(["priorityCode", "comment", "assignee"]): "x"}
        if kind.startswith("constraint:"):
            return _break_invariant(kind, c, gen, task)
        return None
    located = _locate(gen, c, task, element_id, clock)
    if located is None:
        return None
    holder, node, instances = located
    prop = _prop_of(holder, node) if node.slice_name is None else None
    tref = node.types[0] if node.types else None
    if node.slice_name is not None and kind in ("unknown", "constraint:ext-1"):
        # holder is an extension of the slice: add an unknown element, or take away its value
        if kind == "unknown":
            holder["unknownElement"] = "x"
        else:
            for k in [k for k in holder if k.startswith("value")]:
                holder.pop(k)
        return task
    if kind == "min":
        if node.slice_name is not None:
            return None
        if node.min == 0 and prop is not None:  # a required part of the datatype goes missing
            value = holder[prop]
            first = value[0] if isinstance(value, list) else value
            parts = [p for p in required_parts(node) if isinstance(first, dict) and p in first]
            if not parts:
                return None
            lacking = {k: v for k, v in first.items() if k != c.choose(parts)}
            holder[prop] = [lacking] + value[1:] if isinstance(value, list) else lacking
            return task
        holder.pop(prop, None)
        return task
    if kind == "max":
        if node.slice_name is not None:  # copies of its first instance, next to it
            if element_id.count(".") != 1:
                return None  # a slice below the resource's own extensions: no recipe
            name = element_id.split(".")[1].split(":")[0]
            task[name] = task[name] + [dict(holder) for _ in range((node.max or 0) + 1 - len(instances))]
            return task
        if node.forbidden:
            return task  # _locate already made it present
        value = holder[prop]
        holder[prop] = [value] * ((node.max or 0) + 1) if node.is_array else value
        return task if node.is_array else None
    if prop is None or tref is None:
        return None
    value = holder[prop]
    first = value[0] if isinstance(value, list) and value else value
    def put(new: Any) -> Task:
        holder[prop] = [new] + value[1:] if isinstance(value, list) else new
        return task
    if kind == "type":
        if node.is_choice:
            holder.pop(prop)
            holder[node.name[:-3] + "String"] = "x" if all(t.code != "string" for t in node.types) else None
            return task if all(t.code != "string" for t in node.types) else None
        if tref.primitive is not None:
            return put(_WRONG_TYPE.get(tref.code, 12345))
        return put("x")
    if kind == "format":
        if tref.primitive is not None:
            return put(_BAD_FORMAT.get(tref.code, "")) if tref.code in _BAD_FORMAT else None
        part = _bad_primitive_part(tref.code)
        if part is None or not isinstance(first, dict):
            return None
        name, code = part
        return put({**first, name: _BAD_FORMAT[code]})
    if kind == "unknown":
        return put({**first, "unknownElement": "x"}) if isinstance(first, dict) else None
    if kind == "fixed":
        fixed = node.fixed[1] if node.fixed else None
        codes = gen.oracle.expansion(node.binding[1]) if node.binding else None
        options = sorted(c for _, c in codes if c != fixed) if codes else [w for w in _WORDS if w != fixed]
        return put(c.choose(options))
    if kind == "pattern":
        return put({"coding": [{"system": "http://example.org/other", "code": c.choose(_WORDS)}]}) if isinstance(first, dict) else put("other")
    if kind == "binding":
        bogus = c.choose(["bogus", "not-in-valueset", "unknown-code"])
        if tref.code == "code":
            return put(bogus)
        if tref.code == "Coding":
            return put({"system": "http://example.org/cs", "code": bogus})
        return put({"coding": [{"system": "http://example.org/cs", "code": bogus}]})
    if kind == "targetProfile":
        wrong = sorted(t for t in gen.refs if t not in tref.target_types)
        if not wrong:
            return None
        rtype = c.choose(wrong)
        if tref.code == "canonical":
            return put(f"http://example.org/fhir/{rtype}/{c.choose(_WORDS)}")
        return put({"reference": gen.refs[rtype]})
    if kind == "constraint:ele-1":
        if tref.primitive is not None:
            holder.pop(prop)
            holder["_" + prop] = [{}] if isinstance(value, list) else {}
            return task
        return put({})
    if kind == "constraint:ext-1":
        ext = {"url": "http://example.org/fhir/StructureDefinition/nested", "valueString": "x"}
        if node.slice_name is not None:
            holder.pop(next((k for k in holder if k.startswith("value")), ""), None)
            return task
        return put({**first, "extension": [ext]} if "extension" not in first else {k: v for k, v in first.items() if k != "extension"})
    if kind.startswith("constraint:") and isinstance(first, dict):
        inv = kind.split(":", 1)[1]
        path = _invariant_path(tref.code, inv)
        if path is None:  # declared on a part of the datatype (txt-1 on Narrative.div)
            broken = _break_invariant(kind, c, gen, first)
            return None if broken is None else put(broken)
        target = dict(first)
        inner = target
        for name, is_array in path:  # build the nested element that carries the invariant
            inner[name] = {}
            parent, inner = inner, inner[name]
            if is_array:
                parent[name] = [inner]
        broken = _break_invariant(kind, c, gen, inner)
        if broken is None:
            return None
        inner.clear()
        inner.update(broken)
        return put(target)
    return None


def _invariant_path(code: str, inv: str, seen: frozenset[str] = frozenset()) -> list[tuple[str, bool]] | None:
    """The properties leading from datatype `code` to the datatype whose root declares
    invariant `inv` (Identifier + per-1 -> [("period", False)]); [] when `code` declares it."""
    if any(i.key == inv for i in datatype_invariants(code)):
        return []
    for child in datatype_template(code).values():
        if len(child.types) != 1 or child.types[0].primitive is not None or child.name == "extension":
            continue
        sub = child.types[0].code
        if sub in seen:
            continue
        rest = _invariant_path(sub, inv, seen | {code})
        if rest is not None:
            return [(child.name, child.is_array)] + rest
    return None


def _server_fault(gen: _Gen, rule: str, c: Chooser, task: Task) -> Task | None:
    if rule == "meta.profile":
        return {**task, "meta": c.choose([{}, {"profile": ["http://hl7.org/fhir/StructureDefinition/Task"]}])}
    if rule == "subtask-partOf":
        task = {k: v for k, v in task.items() if k != "partOf"}
        return {**task, "code": {"coding": [{"system": "http://vzvz.nl/fhir/CodeSystem/koppeltaal-task-code", "code": _SUBTASK_CODE}]}}
    if rule == "reference-integrity":
        missing = f"Patient/missing-{c.uuid()}"
        return {**task, "for": {"reference": missing}}
    return None  # content-type and json-syntax are protocol faults: not a Task body


_CLASSIFY_PREREQS = Prerequisites(task="Task/parent-1")
_PROTOCOL_ONLY = {"server/content-type": "a transport fault (the Content-Type header), not a Task body",
                  "server/json-syntax": "a transport fault (a body that is not JSON), not a Task body"}


def _error_keys(oracle: Oracle, task: Any) -> set[str]:
    return {i.key for i in oracle.errors(task)}


def _breaks_only(oracle: Oracle, key: str, task: Any) -> bool:
    """Whether `task` breaks `key` and nothing else. Server rules are not profile errors: a Task
    breaking one must be valid to the profile."""
    if task is None:
        return False
    return _error_keys(oracle, task) == (set() if key.startswith("server/") else {key})


def fault_strategy(profile: Profile, key: str, prereqs: Prerequisites = Prerequisites()) -> st.SearchStrategy[Task]:
    """Tasks breaking exactly `key` (filtered by the oracle: single fault)."""
    gen = _Gen(profile, prereqs)

    @st.composite
    def build(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Task | None:
        c = HypothesisChooser(draw)
        return _fault(gen, key, c, gen.task(c, full=False))

    return build().filter(lambda t: _breaks_only(gen.oracle, key, t))


def _search(gen: _Gen, key: str, attempts: int) -> set[str] | None:
    """Try `attempts` seeded faults for `key`; None when one breaks only `key`, else the other
    keys the attempts broke (empty when no recipe applied)."""
    seen: set[str] = set()
    for seed in range(attempts):
        c = RandomChooser(random.Random(seed))
        task = _fault(gen, key, c, gen.task(c, full=False))
        if task is None:
            continue
        if _breaks_only(gen.oracle, key, task):
            return None
        seen.update(_error_keys(gen.oracle, task) - {key})
    return seen


@lru_cache(maxsize=8)
def _classify(profile: Profile) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(violable keys, (key, reason) for the rest), by searching for a single-fault example."""
    gen = _Gen(profile, _CLASSIFY_PREREQS)
    violable: list[str] = []
    reasons: list[tuple[str, str]] = []
    for constraint in derive_constraints(profile, gen.tree):
        if constraint.key in _PROTOCOL_ONLY:
            reasons.append((constraint.key, _PROTOCOL_ONLY[constraint.key]))
        elif constraint.severity != "error":
            reasons.append((constraint.key, "a warning (SHOULD): breaking it does not make a Task invalid"))
        else:
            others = _search(gen, constraint.key, 12)
            if others is None:
                violable.append(constraint.key)
            elif others:
                reasons.append((constraint.key, "breaking it always breaks " + ", ".join(sorted(others)) + " too"))
            else:
                reasons.append((constraint.key, "no JSON fault breaks it (it is what identifies the element, or no recipe exists)"))
    return tuple(violable), tuple(reasons)


def unviolable(profile: Profile) -> dict[str, str]:
    """Constraint keys no single JSON fault can break, with the reason."""
    return dict(_classify(profile)[1])


_MAX_MISSES = 200


def generate_valid(profile: Profile, prereqs: Prerequisites = Prerequisites(), seed: int = 0) -> Iterator[Task]:
    """Valid Tasks without Hypothesis' engine: the same stream for the same seed."""
    gen = _Gen(profile, prereqs)
    c = RandomChooser(random.Random(seed))
    while True:
        task = gen.task(c, full=True)
        if gen.oracle.is_valid(task):
            yield task


def generate_invalid(profile: Profile, key: str, prereqs: Prerequisites = Prerequisites(), seed: int = 0) -> Iterator[Task]:
    """Tasks breaking exactly `key`, without Hypothesis' engine; ValueError for a key no fault
    breaks alone (see `unviolable`)."""
    gen = _Gen(profile, prereqs)
    c = RandomChooser(random.Random(seed))
    misses = 0
    while misses < _MAX_MISSES:
        task = _fault(gen, key, c, gen.task(c, full=False))
        if _breaks_only(gen.oracle, key, task):
            misses = 0
            yield task
        else:
            misses += 1
    raise ValueError(f"no single-fault Task for {key}")


def invalid_tasks(profile: Profile, prereqs: Prerequisites = Prerequisites()) -> dict[str, st.SearchStrategy[Task]]:
    """For every violable constraint key, Tasks breaking exactly that constraint."""
    return {key: fault_strategy(profile, key, prereqs) for key in _classify(profile)[0]}
