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

from kt2conformance._koppeltaal import RESOURCE_ORIGIN_URL, SUBTASK_CODE
from kt2conformance.generate._catalogue import PLAIN, ValueClass, valid_classes, value_class
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
# The envelope a covering set also walks (TaskGenerator._envelope): languages (BCP-47, as the
# R4 all-languages binding takes them), and meta tags, security labels and a source.
_LANGUAGES = ("nl", "nl-NL", "en-US")
_ENVELOPE_META: dict[str, Callable[[Any, int], Any]] = {
    "tag": lambda c, n: [{"system": "http://example.org/fhir/CodeSystem/tags",
                          "code": f"{c.choose(WORDS)}-{i}", "display": c.words()} for i in range(n)],
    "security": lambda c, n: [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                               "code": "N"}],
    "source": lambda c, n: f"urn:uuid:{uuid.UUID(int=c.integer(0, 2**64))}",
}
# Element classes (next to the value classes of kt2conformance.catalogue): an optional element
# left out, given once, given as often as allowed (up to MANY); each type of a choice, each
# target type of a reference, each code of a bound value set.
ABSENT, PRESENT, REPEATED, EXTENDED = "absent", "present", "repeated", "extended"
# The R4 JSON schema (fhir.schema.json) has no `_x` companion for canonical elements, so a server
# validating JSON with it refuses one: left out, so a valid Task is valid by every R4 artefact.
_NO_COMPANION = frozenset({"canonical"})
# The extension an `extended` primitive carries in its `_x` companion.
PRIMITIVE_EXTENSION = "http://example.org/fhir/StructureDefinition/primitive-note"
MANY = 3
# ... and, for an element without an upper bound, once given LOTS times (class `many`): a server
# that caps repeats at a handful (a fixed-size table, a list limit) refuses those.
MANY_TIMES, LOTS = "many", 25
TYPE, TARGET, CODE = "type:", "target:", "code:"


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
        # The classes the Task being made must take (path -> class key), and those it took:
        # set by `task`, read by the walk below (generation is single-threaded).
        self.plan: dict[str, str] = {}
        self.realized: list[tuple[str, str]] = []
        self._catalogue: dict[str, tuple[str, ...]] | None = None
        self.left_out: dict[str, tuple[str, ...]] = {}  # see `catalogue`
        self.variety = False  # unplanned values may take random classes (full Tasks only)

    def _took(self, path: str, klass: str) -> None:
        self.realized.append((path, klass))

    def _planned(self, path: str) -> str | None:
        return self.plan.get(path)

    def _wanted_below(self, path: str) -> bool:
        """Whether the plan names something inside `path` (so the element must be present)."""
        prefix = path + "."
        return any(p.startswith(prefix) or (p == path and k != ABSENT) for p, k in self.plan.items())

    # -- primitives ---------------------------------------------------------------------------

    def primitive(self, c: Chooser, code: str, node: Node, clock: list[dt.datetime], path: str = "") -> Any:
        if node.fixed is not None:
            return node.fixed[1]
        if node.pattern is not None:
            return node.pattern[1]
        if node.binding is not None:
            codes = self.oracle.expansion(node.binding[1])
            if codes:
                options = sorted(c for _, c in codes)
                planned = self._planned(path)
                value = planned[len(CODE):] if planned and planned.startswith(CODE) and planned[len(CODE):] in options \
                    else c.choose(options)
                self._took(path, CODE + value)
                return value
        if code == "canonical":
            target = sorted(t for tr in node.types for t in tr.target_types if t in self.refs)
            if target:  # a canonical of a target type points at the prerequisite of that type
                return f"http://example.org/fhir/{self.refs[target[0]]}"
        klass = self._value_class(c, code, path)
        if klass is not None and klass.name != PLAIN:
            self._took(path, klass.key)
            moment = (clock.pop(0) if clock else c.moment()) if klass.temporal is not None else None
            return klass.make(moment)
        if klass is not None:
            self._took(path, klass.key)
        return self._plain(c, code, clock)

    def _value_class(self, c: Chooser, code: str, path: str) -> ValueClass | None:
        """The planned class of the value at `path`, else in a full Task (half the time) a random
        valid class of its type short enough to send often, else the plain class. Shrinking ends
        at plain (flip shrinks to False); minimal Tasks, the base of the faults, stay plain."""
        planned = self._planned(path)
        if planned is not None and planned.startswith(code + ":"):
            found = value_class(code, planned[len(code) + 1:])
            if found is not None and found.valid:
                return found
        classes = valid_classes(code)
        if not classes:
            return None
        light = [v for v in classes[1:] if v.light]
        if planned is None and self.variety and light and c.flip():
            return c.choose(light)
        return classes[0]

    def _plain(self, c: Chooser, code: str, clock: list[dt.datetime]) -> Any:
        """An everyday value of a primitive type."""
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

    def reference(self, c: Chooser, tref: TypeRef, path: str = "") -> dict[str, Any]:
        allowed = self.targets(tref)
        if not allowed:  # only for elements a fault adds (Task.encounter): no such prerequisite
            return {"reference": f"{sorted(tref.target_types)[0]}/example-{c.choose(WORDS)}"}
        planned = self._planned(path)
        rtype = planned[len(TARGET):] if planned and planned.startswith(TARGET) and planned[len(TARGET):] in allowed \
            else c.choose(allowed)
        self._took(path, TARGET + rtype)
        ref: dict[str, Any] = {"reference": self.refs[rtype]}
        if c.flip():
            ref["type"] = rtype
        display = self._planned(f"{path}.display")
        if display in (ABSENT, PRESENT):  # the covering set only: random Tasks draw as before
            self._took(f"{path}.display", display)
            if display == PRESENT:
                ref["display"] = f"{c.words()} ({rtype})"
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

    def complex(self, c: Chooser, node: Node, tref: TypeRef, clock: list[dt.datetime], full: bool, depth: int,
                path: str = "") -> dict[str, Any]:
        # fixed and pattern values are given as they are: a pattern is itself a matching value
        if node.fixed is not None:
            return copy.deepcopy(node.fixed[1])
        if node.pattern is not None:
            return copy.deepcopy(node.pattern[1])
        if tref.code == "Reference":
            return self.reference(c, tref, path)
        if (coded := self.coded(c, node, tref)) is not None:
            return coded
        if tref.code == "Extension":  # an extension no slice describes: any url, a simple value
            return {"url": "http://example.org/fhir/StructureDefinition/" + c.choose(WORDS),
                    "valueString": c.words()}
        children = node.children if (node.explicit_children or len(node.types) == 1) else datatype_template(tref.code)
        out = self.fill(c, children, clock, full and depth < 1, depth + 1, skip={"id", "extension", "modifierExtension"},
                        path=path)
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
                out[part.name] = self.primitive(c, part.types[0].code, part, clock, f"{path}.{part.name}")
        return out

    def can_fill(self, node: Node) -> bool:
        """False for a code bound (required) to a value set we can't expand: any code we made
        up would be wrong to a server that can."""
        return not (node.binding and node.binding[0] == "required" and not self.oracle.expansion(node.binding[1]))

    def value(self, c: Chooser, node: Node, tref: TypeRef, clock: list[dt.datetime], full: bool, depth: int,
              path: str = "") -> Any:
        if tref.primitive is not None:
            return self.primitive(c, tref.code, node, clock, path)
        return self.complex(c, node, tref, clock, full, depth, path)

    @staticmethod
    def extensible(child: Node) -> bool:
        """Whether a primitive element may carry extensions in its `_x` companion: not an
        attribute (Resource.id, Extension.url), not a fixed value (exact: "missing elements/
        attributes must also be missing", R4 ElementDefinition.fixed[x])."""
        return any(t.primitive is not None for t in child.types) and not child.attribute and child.fixed is None

    def generable(self, child: Node, skip: set[str]) -> bool:
        """Whether `fill` may give this child a value (the catalogue walks the same children)."""
        if child.forbidden or child.name in skip or not child.types:
            return False
        if not self.can_fill(child) and child.min == 0:
            return False
        # no prerequisite of a type it may refer to (partOf without a parent Task)
        return not (child.min == 0 and child.types[0].code == "Reference" and not self.targets(child.types[0]))

    def fill(self, c: Chooser, children: dict[str, Node], clock: list[dt.datetime], full: bool, depth: int,
             skip: set[str], path: str = "") -> dict[str, Any]:
        """Values for the allowed children: required ones always, optional ones when `full`
        and drawn so (or planned), each with a type it allows."""
        out: dict[str, Any] = {}
        for child in children.values():
            if not self.generable(child, skip):
                continue
            where = f"{path}.{child.name}"
            planned = self._planned(where)
            if child.min == 0 and planned == ABSENT and not self._wanted_below(where):
                self._took(where, ABSENT)
                continue
            present = child.min > 0 or self._wanted_below(where) or (full and c.flip())
            if not present:
                continue
            types = child.types
            if planned and planned.startswith(TYPE):
                types = [t for t in child.types if t.code == planned[len(TYPE):]] or child.types
            tref = c.choose(types) if len(types) > 1 else types[0]
            if len(child.types) > 1:
                self._took(where, TYPE + tref.code)
            prop = child.name[:-3] + tref.code[0].upper() + tref.code[1:] if child.is_choice else child.name
            if child.is_array:
                upper = MANY if child.max is None else min(child.max, MANY)
                if planned == MANY_TIMES and child.max is None:
                    n = LOTS
                else:
                    n = upper if planned == REPEATED else c.integer(max(child.min, 1), max(upper, 1))
                if child.min == 0 or upper > 1:
                    self._took(where, MANY_TIMES if n == LOTS else REPEATED if n > 1 else PRESENT)
                if n == LOTS:  # one value LOTS times: 25 drawn ones would rarely all be valid
                    first = self.value(c, child, tref, clock, full, depth, where)
                    out[prop] = [copy.deepcopy(first) for _ in range(n)]
                else:
                    out[prop] = [self.value(c, child, tref, clock, full, depth, where) for _ in range(n)]
            else:
                if child.min == 0:
                    self._took(where, PRESENT)
                out[prop] = self.value(c, child, tref, clock, full, depth, where)
            if tref.primitive is not None and self.extensible(child) and tref.code not in _NO_COMPANION and (
                    planned == EXTENDED or (self.variety and c.integer(0, 7) == 7)):  # shrinks to 0: none
                # the value's `_x` companion carries an extension (R4 JSON: primitive extensions)
                note = {"extension": [{"url": PRIMITIVE_EXTENSION, "valueString": c.words()}]}
                out["_" + prop] = [note] * len(out[prop]) if child.is_array else note
                self._took(where, EXTENDED)
        return out

    def slice_instance(self, c: Chooser, sl: Node, clock: list[dt.datetime]) -> dict[str, Any]:
        """One extension of a slice: its required parts, and a value (ext-1 wants a value or
        nested extensions, and the slice may make its value optional)."""
        out = self.fill(c, sl.children, clock, False, 1, skip={"id"}, path=sl.id)
        value = sl.children.get("value[x]")
        if value is not None and not value.forbidden and not any(k.startswith("value") for k in out):
            tref = value.types[0]
            out["value" + tref.code[0].upper() + tref.code[1:]] = self.value(c, value, tref, clock, False, 1,
                                                                              f"{sl.id}.value[x]")
        return out

    # -- whole Tasks --------------------------------------------------------------------------

    def task(self, c: Chooser, full: bool, plan: dict[str, str] | None = None) -> Task:
        """A Task: required elements, and when `full` optional ones as drawn; `plan` (path ->
        class key, see `catalogue`) forces classes. `realized` lists the classes it took."""
        self.plan, self.realized, self.variety = dict(plan or {}), [], full
        clock = c.moments(6)
        root = self.tree.id
        task: Task = {"resourceType": self.profile.type, "meta": {"profile": [self.profile.url]}}
        task.update(self.fill(c, self.tree.children, clock, full, 0, skip=_NOT_GENERATED | {"extension"}, path=root))
        ext_node = self.tree.children.get("extension")
        if ext_node is not None:  # required slices always (KT2ActivityDefinition's endpoint), others when full
            extensions = []
            for url, sl in ext_node.slices.items():
                if sl.forbidden or not (full or sl.min > 0) or url == RESOURCE_ORIGIN_URL:
                    continue  # (resource-origin is the server's: a Koppeltaal server refuses a client-set one)
                upper = MANY if sl.max is None else min(sl.max, MANY)
                planned = self._planned(sl.id)
                if not full:
                    count = sl.min
                elif planned == ABSENT and sl.min == 0:
                    count = 0
                elif planned == REPEATED or (planned == PRESENT and upper == 1):
                    count = upper
                elif planned == PRESENT or self._wanted_below(sl.id):
                    count = max(sl.min, 1)
                else:
                    count = c.integer(sl.min, min(upper, 2))
                if full:
                    self._took(sl.id, ABSENT if count == 0 else REPEATED if count > 1 else PRESENT)
                for _ in range(count):
                    extensions.append(self.slice_instance(c, sl, clock))
            other = f"{ext_node.id}.value[x]"
            if full and (self._planned(other) is not None or (self._planned(ext_node.id) != ABSENT and c.flip())):
                extensions.append(self.other_extension(c, ext_node, clock, other))
            if extensions:
                task["extension"] = extensions
        if full:
            self._envelope(c, task)
        return self.server_rules(task)

    def _envelope(self, c: Chooser, task: Task) -> None:
        """The envelope elements the generic fill leaves out, where the plan asks for them (the
        covering set): a narrative, a language, meta tags, a security label and a source. Every
        server must take them; one that refuses or drops them is caught."""
        root = self.tree.id
        for path, classes in self._envelope_classes().items():
            planned = self._planned(path)
            if planned is None or planned not in classes:
                continue
            self._took(path, planned)
            if planned == ABSENT:
                continue
            name = path[len(root) + 1:]
            if name == "text":
                task["text"] = {"status": "generated", "div": XHTML.format(f"<p>{c.words()}</p>")}
            elif name == "language":
                task["language"] = planned[len(CODE):]
            else:
                part = name.split(".", 1)[1]
                meta = task.setdefault("meta", {})
                count = 2 if planned == REPEATED else 1
                meta[part] = _ENVELOPE_META[part](c, count)

    def _envelope_classes(self) -> dict[str, tuple[str, ...]]:
        """path -> classes of the envelope elements this profile allows."""
        root, children = self.tree.id, self.tree.children
        out: dict[str, tuple[str, ...]] = {}
        text, language, meta = children.get("text"), children.get("language"), children.get("meta")
        if text is not None and not text.forbidden:
            out[f"{root}.text"] = (ABSENT, PRESENT)
        if language is not None and not language.forbidden:
            out[f"{root}.language"] = (ABSENT, *(CODE + code for code in _LANGUAGES))
        if meta is not None and not meta.forbidden:
            out[f"{root}.meta.tag"] = (ABSENT, PRESENT, REPEATED)
            out[f"{root}.meta.security"] = (ABSENT, PRESENT)
            out[f"{root}.meta.source"] = (ABSENT, PRESENT)
        return out

    def other_extension(self, c: Chooser, ext_node: Node, clock: list[dt.datetime], path: str) -> dict[str, Any]:
        """An extension no slice describes: any url, a value of any type Extension allows (the
        planned one, else a string), stored by a conformant server as it came."""
        value_node = datatype_template("Extension").get("value[x]")
        planned = self._planned(path)
        tref = next((t for t in (value_node.types if value_node else []) if planned == TYPE + t.code), None)
        out: dict[str, Any] = {"url": "http://example.org/fhir/StructureDefinition/" + c.choose(WORDS)}
        if tref is None or value_node is None:
            out["valueString"] = c.words()
            return out
        self._took(path, TYPE + tref.code)
        value = self.value(c, value_node, tref, clock, False, 1, f"{path}:{tref.code}")
        out["value" + tref.code[0].upper() + tref.code[1:]] = value
        return out

    def catalogue(self) -> dict[str, tuple[str, ...]]:
        """Every class a valid Task can take, by element path: what a default run must cover.
        Walks what `task` fills: each optional element absent, present and repeated, each type
        of a choice, each target of a reference, each code of a bound value set, each valid
        value class of a primitive (kt2conformance.catalogue) — for the resource's elements and
        the parts of their datatypes, its extension slices, and an extension of every type.
        A class no valid Task takes on its own (the oracle refuses it there: a relative URI as
        Identifier.system must be absolute) is left out, and listed in `left_out`."""
        if self._catalogue is None:
            listed = self._listed()
            self._catalogue, self.left_out = {}, {}
            for path, classes in listed.items():
                kept = tuple(k for k in classes if self._takes(path, k))
                self._catalogue[path] = kept
                if len(kept) < len(classes):
                    self.left_out[path] = tuple(k for k in classes if k not in kept)
        return dict(self._catalogue)

    def _takes(self, path: str, klass: str, attempts: int = 16) -> bool:
        """Whether a valid Task takes `klass` at `path` (the plan holding only it)."""
        chooser = RandomChooser(random.Random(f"{path}|{klass}"))
        for _ in range(attempts):
            task = self.task(chooser, full=True, plan={path: klass})
            if (path, klass) in self.realized and self.oracle.is_valid(task):
                return True
        return False

    def _listed(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = dict(self._envelope_classes())
        self._catalogue_children(self.tree.children, self.tree.id, 0, _NOT_GENERATED | {"extension"}, out)
        ext_node = self.tree.children.get("extension")
        if ext_node is not None:
            for sl in ext_node.slices.values():
                counts = ([ABSENT] if sl.min == 0 else []) + [PRESENT] + ([REPEATED] if sl.max is None or sl.max > 1 else [])
                out[sl.id] = tuple(counts)
                self._catalogue_children(sl.children, sl.id, 1, {"id"}, out)
            value_node = datatype_template("Extension").get("value[x]")
            if value_node is not None:
                types = [t for t in value_node.types if t.primitive is not None and valid_classes(t.code)]
                out[f"{ext_node.id}.value[x]"] = tuple(TYPE + t.code for t in types)
        return out

    def _catalogue_children(self, children: dict[str, Node], path: str, depth: int, skip: set[str],
                            out: dict[str, tuple[str, ...]]) -> None:
        for child in children.values():
            if not self.generable(child, skip):
                continue
            where = f"{path}.{child.name}"
            classes: list[str] = []
            if child.min == 0:
                classes += [ABSENT, PRESENT]
            if child.is_array and (child.max is None or child.max > 1):
                classes.append(REPEATED)
            if child.is_array and child.max is None:
                classes.append(MANY_TIMES)
            if len(child.types) > 1:
                classes += [TYPE + t.code for t in child.types]
            if self.extensible(child) and any(t.primitive is not None and t.code not in _NO_COMPANION
                                              for t in child.types):
                classes.append(EXTENDED)
            for tref in child.types:
                classes += self._value_classes(child, tref, where, depth, out)
            if classes:
                out[where] = tuple(dict.fromkeys(classes))

    def _value_classes(self, node: Node, tref: TypeRef, where: str, depth: int,
                       out: dict[str, tuple[str, ...]]) -> list[str]:
        if tref.primitive is not None:
            if node.fixed is not None:
                return []
            codes = self.oracle.expansion(node.binding[1]) if node.binding else None
            if codes:
                return [CODE + code for code in sorted(c for _, c in codes)]
            if tref.code == "canonical" and any(t in self.refs for t in tref.target_types):
                return []
            return [v.key for v in valid_classes(tref.code)]
        if tref.code == "Reference":
            # the display text next to the reference: a server that resolves or clears it
            # loses what the client wrote
            out[f"{where}.display"] = (ABSENT, PRESENT)
            return [TARGET + t for t in self.targets(tref)]
        if tref.code == "Extension" or depth >= 1:
            return []
        children = node.children if (node.explicit_children or len(node.types) == 1) else datatype_template(tref.code)
        self._catalogue_children(children, where, depth + 1, {"id", "extension", "modifierExtension"}, out)
        return []

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


@lru_cache(maxsize=16)
def catalogue_for(profile: Profile, prereqs: Prerequisites) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """(catalogue, left out) of `TaskGenerator.catalogue` for a profile and prerequisites:
    checking each class with the oracle takes seconds, and a run asks twice."""
    gen = TaskGenerator(profile, prereqs)
    return gen.catalogue(), dict(gen.left_out)


@lru_cache(maxsize=8)
def oracle_for(profile: Profile) -> Oracle:
    """One oracle per profile for all generators: building its tree is the costly part."""
    return Oracle(profile)
