"""The local oracle: does a Task conform to the profile, constraint by constraint?

`Oracle(profile).validate(task)` walks the Task against the profile's element tree once and
returns every issue with its constraint key (docs/contract.md). ele-1 and ext-1 are checked from the
JSON structure (what they say is structural; tests/test_fhirpath.py shows the two agree with the
FHIRPath evaluation); every other invariant is evaluated with FHIRPath (kt2conformance.spec._fhirpath).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Any, NamedTuple, cast

from kt2conformance._errors import load_json
from kt2conformance._vocabulary import ConstraintKey, Kind
from kt2conformance.oracle import _contained as contained_rules
from kt2conformance.oracle import _hl7checks as hl7
from kt2conformance.spec import _bcp47 as bcp47
from kt2conformance.spec import _fhirpath as fhirpath
from kt2conformance.spec import _terminology as terminology
from kt2conformance.spec import _xhtml as xhtml
from kt2conformance.spec._lexical import is_absolute_url
from kt2conformance.spec._profile import Profile, load_profile
from kt2conformance.spec._resource import resource_json
from kt2conformance.spec._tree import (
    RESOURCE_TYPES,
    STRUCTURAL_INVARIANTS,
    Invariant,
    Node,
    TypeRef,
    build_tree,
    datatype_invariants,
    datatype_template,
    resource_tree,
    resource_type_of_profile,
)
from kt2conformance.spec._tree import (
    build_tree_of as _tree_of,
)
from kt2conformance.spec._ucum import UCUM, ucum_problem

_REF = re.compile(r"(?:.*/)?([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?")
_EXTENSION = TypeRef("Extension")


@dataclass(frozen=True)
class Issue:
    severity: str  # "error" or "warning"
    key: ConstraintKey
    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "key": self.key, "path": self.path, "message": self.message}


def reference_type(ref: dict[str, Any], resource: dict[str, Any]) -> str | None:
    """The resource type a Reference points at: the type in a literal `reference` (relative or
    absolute) or of the contained resource it names, else its `type`; None when it names none."""
    found = literal_type(ref, resource)
    if found is None and isinstance(ref.get("type"), str):
        return cast(str, ref["type"])
    return found


def literal_type(ref: dict[str, Any], resource: dict[str, Any]) -> str | None:
    """The resource type a literal `reference` names (`Patient/1`, an absolute URL, `#id` of a
    contained resource); None when it names none."""
    literal = ref.get("reference")
    if not isinstance(literal, str):
        return None
    if literal.startswith("#"):
        for res in resource.get("contained") or []:
            if isinstance(res, dict) and res.get("id") == literal[1:]:
                rtype = res.get("resourceType")
                return rtype if isinstance(rtype, str) else None
        return None
    return _literal_type(literal)


@lru_cache(maxsize=4096)
def _literal_type(literal: str) -> str | None:
    """The resource type in a relative or absolute literal reference (`Patient/1`)."""
    m = _REF.fullmatch(literal)
    return m.group(1) if m and m.group(1) in RESOURCE_TYPES else None


def canonical_type(url: str) -> str | None:
    """The resource type in a canonical URL (`…/ActivityDefinition/x|1.0`), if it names one."""
    parts = url.split("|")[0].rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-2] in RESOURCE_TYPES else None


def matches_pattern(value: Any, pattern: Any) -> bool:
    """FHIR pattern[x] matching: every part of the pattern is present in the value."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(k in value and matches_pattern(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(matches_pattern(v, p) for v in value) for p in pattern)
    return bool(value == pattern)


# JSON nesting the FHIR servers' parsers accept: Jackson's default StreamReadConstraints
# (maxNestingDepth 1000), which HAPI's JSON parser uses. Deeper input is refused unparsed.
MAX_DEPTH = 1000
# Python frames the walk and the FHIRPath engine use per level of JSON nesting, measured with
# margin: the recursion limit is raised to this many per level for a deep (but legal) Task.
_FRAMES_PER_LEVEL = 12


def nesting_depth(value: Any, stop: int = MAX_DEPTH) -> int:
    """The JSON nesting depth of `value` (objects and arrays; a scalar is 0), found level by
    level without recursion; counting stops past `stop`."""
    depth = 0
    level = [value] if isinstance(value, (dict, list)) else []
    while level:
        depth += 1
        if depth > stop:
            return depth
        below: list[Any] = []
        for item in level:
            below.extend(v for v in (item.values() if isinstance(item, dict) else item) if type(v) in _CONTAINERS)
        level = below
    return depth


_CONTAINERS = (dict, list)


@contextmanager
def _recursion_limit(limit: int) -> Iterator[None]:
    """Python 3.11+ runs Python-to-Python calls without growing the C stack, so a higher limit
    for one deep Task is safe; the previous limit comes back afterwards."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def shown(value: Any, limit: int = 60) -> str:
    """A value for a message: shortened, and safe for any value JSON can carry (integers
    beyond Python's str conversion limit included)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"{'-' if value < 0 else ''}<integer of about {int(value.bit_length() * 0.30103)} digits>"
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _has_children(obj: dict[str, Any]) -> bool:
    """ele-1 on a complex element: some child other than `id` (FHIRPath `children().count() >
    id.count()`); an empty array or null child is no child. An empty object is a child (one that
    breaks ele-1 itself, reported there, not again on its parent)."""
    for k, v in obj.items():  # a loop, not any(): this runs on every object of every Task
        if k != "id" and v is not None and v != []:
            return True
    return False


_INDEX = re.compile(r"\[\d+\]")
_JSON_ESCAPE = re.compile(r"\\(.)")  # every escape of JSON text, read left to right


class _Holder(NamedTuple):
    """The element an extension sits on, as its context is judged: its definition's id
    (`Task.identifier`, `Reference.identifier`), its type (or resource type), whether it is a
    resource root, and the url of the extension it is part of (a nested extension). A tuple:
    made for every extension array and hashed for every lookup of a placement."""

    node_id: str
    type_code: str | None
    is_resource: bool
    extension_url: str | None


@lru_cache(maxsize=4096)
def _logical_path(path: str) -> str:
    return _INDEX.sub("", path).replace("._", ".")


def _coding(value: Any) -> tuple[str, str] | None:
    """(system, code) of a Coding, None unless both are strings."""
    if isinstance(value, dict):
        system, code = value.get("system"), value.get("code")
        if isinstance(system, str) and isinstance(code, str):
            return system, code
    return None


@lru_cache(maxsize=8192)
def _key(element: str, kind: str) -> ConstraintKey:
    """The constraint key of an element and a kind as the walk names it (`format`,
    `constraint:ele-1`); one object per key, made once."""
    head, _, detail = kind.partition(":")
    return ConstraintKey(element, Kind(head), detail or None)


class _Check:
    """What checking one value of an element as one of its types involves, worked out once per
    (element, type) so the walk tests precomputed flags instead of looking things up per value."""

    __slots__ = ("node", "tref", "code", "prim", "uri", "canonical_target", "resource", "extension",
                 "typed", "coding", "rules", "invariants", "bare")

    def __init__(self, node: Node, tref: TypeRef) -> None:
        self.node, self.tref, self.code, self.prim = node, tref, tref.code, tref.primitive
        self.uri = tref.code == "canonical"  # uri_rules apply
        self.canonical_target = bool(tref.target_types) and tref.code == "canonical"
        self.resource = self.prim is None and tref.code == "Resource"
        self.extension = tref.code == "Extension"
        # the element as the one type a value has: a choice of several types takes the children
        # of the type its property names (`valueCodeableConcept` -> CodeableConcept's)
        self.typed = node if len(node.types) <= 1 or node.explicit_children else replace(node, types=[tref])
        self.coding = tref.code == "Coding" and node.id != "CodeableConcept.coding"
        # FHIRPath invariants to evaluate: the element's own and its datatype's, except the
        # structural ones checked directly
        own = [i for i in node.invariants if i.key not in STRUCTURAL_INVARIANTS]
        inherited = datatype_invariants(tref.code) if self.prim is None else []
        seen = {i.key for i in own}
        self.invariants = [(i, fhirpath.NATIVE.get(i.expression)) for i in own + [i for i in inherited if i.key not in seen]]
        self.rules = bool(node.fixed is not None or node.pattern is not None or self.invariants
                          or (node.binding is not None and node.binding[0] == "required"))
        # a primitive whose lexical check is all there is: a valid value needs no more
        self.bare = self.prim if self.prim is not None and not (self.uri or self.canonical_target or self.rules) \
            else None


def _check(node: Node, tref: TypeRef) -> _Check:
    """The compiled check of `node` as type `tref`, made once and kept on the node."""
    found = node.compiled.get(tref.code)
    if found is None or found.tref is not tref:
        found = node.compiled[tref.code] = _Check(node, tref)
    return cast(_Check, found)


class _Prop:
    """One JSON property name an element's object may use: the child element it names, the
    type it implies (`valueReference` -> value[x] as Reference) and what the walk needs of it."""

    __slots__ = ("child", "tref", "name", "owns_key", "forbidden", "is_array", "is_choice", "extensions",
                 "companion", "check", "counted", "bare")

    def __init__(self, parent: Node, child: Node, tref: TypeRef) -> None:
        self.child, self.tref, self.name = child, tref, child.name
        self.owns_key, self.forbidden, self.is_array, self.is_choice = (
            child.owns_key, child.forbidden, child.is_array, child.is_choice)
        self.extensions = tref.code == "Extension" and child.name in ("extension", "modifierExtension")
        self.companion = child.is_array and tref.primitive is not None  # `_x` may hold placeholders' parts
        self.check = _check(child, tref)
        # whether its occurrences are counted: for its cardinality, or to tell a second choice
        self.counted = child.is_choice or any(c is child for c in parent.bounded_children)
        # a single primitive with nothing to check but its lexical form (most of a Task): a
        # valid value is done with in one lookup
        simple = not (child.forbidden or child.is_array or child.is_choice or self.extensions)
        self.bare = self.check.bare if simple else None


def _props(node: Node) -> dict[str, _Prop]:
    """Every JSON property name `node`'s object may use (Node.properties), compiled once."""
    found = node.compiled.get("")
    if found is None:
        found = node.compiled[""] = {prop: _Prop(node, child, tref) for prop, (child, tref) in node.properties.items()}
    return cast(dict[str, _Prop], found)


class _Walk:
    """One validation: the issues found so far and the resource being walked."""

    def __init__(self, oracle: Oracle, resource: dict[str, Any]) -> None:
        self.oracle = oracle
        self.resource = resource  # the Task: %rootResource, and what `#id` references resolve in
        self.current = resource  # the resource being walked (a contained one inside it): %resource
        # (instance path of the contained resource, its type) while one is walked
        self.contained_at: tuple[str, str] | None = None
        # contained resources being checked against a target profile (a reference cycle ends here)
        self.checking: set[tuple[str, tuple[str, ...]]] = set()
        # extension definitions being applied (an extension that nests itself ends here)
        self.defining: frozenset[str] = frozenset()
        self.issues: list[Issue] = []

    def add(self, key: str, kind: str, path: str, message: str, severity: str = "error") -> None:
        self.issues.append(Issue(severity, _key(key, kind), path, message))

    # -- objects and their properties -------------------------------------------------------

    def obj(self, obj: dict[str, Any], node: Node, key: str, path: str, is_resource: bool = False) -> None:
        props = node.compiled.get("") or _props(node)
        counts: dict[str, int] = {}
        for prop, value in obj.items():
            if is_resource and prop == "resourceType":
                continue
            entry = props.get(prop)
            if entry is None:
                if prop.startswith("_") and len(prop) > 1:
                    self.primitive_extension(obj, prop, value, node, key, path, counts, is_resource)
                    continue
                choice = node.choice_of(prop)
                if choice is not None:
                    counts[choice.name] = counts.get(choice.name, 0) + 1
                    allowed = ", ".join(t.code for t in choice.types)
                    self.add(choice.id if choice.owns_key else key, "type", f"{path}.{prop}",
                             f"{prop}: type not allowed for {choice.name} (allowed: {allowed})")
                else:
                    self.add(key, "unknown", f"{path}.{prop}", f"unknown element {prop!r}")
                continue
            name = entry.name
            bare = entry.bare
            if bare is not None and value is not None and bare.check(value) is None:
                if entry.counted:
                    counts[name] = counts.get(name, 0) + 1
                continue  # valid, and nothing else to check: as the general path would find
            ckey = entry.child.id if entry.owns_key else key
            cpath = f"{path}.{prop}"
            if entry.forbidden:
                counts[name] = counts.get(name, 0) + 1
                self.add(ckey, "max", cpath, f"{prop} is not allowed (max 0)")
                continue
            if entry.is_choice and name in counts:
                self.add(ckey, "max", cpath, f"more than one type given for {name}")
            # the occurrences, reporting a wrong JSON shape (array vs single value): as items()
            if entry.is_array:
                if isinstance(value, list):
                    items = value
                    if not value:
                        self.add(ckey, "type", cpath, f"{name} is an empty array (absent elements are omitted in FHIR JSON)")
                else:
                    self.add(ckey, "type", cpath, f"{name} must be a JSON array")
                    items = [value]
            elif isinstance(value, list):
                self.add(ckey, "type", cpath, f"{name} must be a single value, not an array")
                items = value
            elif not entry.extensions:
                counts[name] = counts.get(name, 0) + 1
                self.value(value, entry.check, ckey, cpath)
                continue
            counts[name] = counts.get(name, 0) + len(items)
            if entry.extensions:
                rtype, url = obj.get("resourceType"), obj.get("url")
                holder = _Holder(node.id, (rtype if isinstance(rtype, str) else None) if is_resource else
                                 (node.types[0].code if len(node.types) == 1 else None),
                                 is_resource, url if isinstance(url, str) else None)
                self.extensions(items, entry.child, ckey, cpath, holder=holder,
                                modifier=name == "modifierExtension", at=path)
                continue
            check = entry.check
            if not entry.is_array:
                for item in items:
                    self.value(item, check, ckey, cpath)
                continue
            companion = obj.get(f"_{prop}") if entry.companion else None
            for i, item in enumerate(items):
                if item is None and isinstance(companion, list) and i < len(companion) \
                        and companion[i] is not None:
                    continue  # a placeholder: this repetition has only an id/extensions (`_x[i]`)
                self.value(item, check, ckey, f"{cpath}[{i}]")
        for child in node.bounded_children:
            n = counts.get(child.name, 0)
            if n < child.min or (child.max is not None and n > child.max and not child.forbidden):
                self.cardinality(child, n, key, path)

    def cardinality(self, child: Node, n: int, key: str, path: str) -> None:
        """A child occurring `n` times, fewer than its min or more than its max."""
        ckey = child.id if child.owns_key else key
        if n < child.min:
            self.add(ckey, "min", f"{path}.{child.name}", f"{child.name} is required (min {child.min})")
        if child.max is not None and n > child.max and not child.forbidden:
            self.add(ckey, "max", f"{path}.{child.name}", f"{child.name} occurs {n} times (max {child.max})")

    def items(self, value: Any, child: Node, key: str, path: str) -> list[Any]:
        """The occurrences of a property, reporting a wrong JSON shape (array vs single value)."""
        if child.is_array:
            if not isinstance(value, list):
                self.add(key, "type", path, f"{child.name} must be a JSON array")
                return [value]
            if not value:
                self.add(key, "type", path, f"{child.name} is an empty array (absent elements are omitted in FHIR JSON)")
            return value
        if isinstance(value, list):
            self.add(key, "type", path, f"{child.name} must be a single value, not an array")
            return value
        return [value]

    def primitive_extension(self, obj: dict[str, Any], prop: str, value: Any, node: Node, key: str,
                            path: str, counts: dict[str, int], is_resource: bool = False) -> None:
        """`_x`: the id and extensions of primitive `x` (FHIR JSON §2.6.2). An attribute (Element.id,
        Extension.url: `xmlAttr` in R4) has none, except as the HL7 validator reads JSON: an
        Extension's `_url` (R4's JSON schema has it too) and a resource's `_id` (Resource.id is
        an element in XML, with room for extensions)."""
        entry = node.properties.get(prop[1:])
        extensible = prop == "_url" or (prop == "_id" and is_resource)
        if entry is None or entry[1].primitive is None or (entry[0].attribute and not extensible):
            self.add(key, "unknown", f"{path}.{prop}", f"unknown element {prop!r}")
            return
        child, tref = entry
        ckey = child.id if child.owns_key else key
        # The primitive type's own `extension` element (an array of Extension), not `child`.
        ext_node = datatype_template(tref.code).get("extension")
        id_node = datatype_template(tref.code).get("id")
        values = obj.get(prop[1:])
        parts = self.items(value, child, ckey, f"{path}.{prop}")  # `_x` has the shape of `x`
        plain = values if isinstance(values, list) else [values]
        if prop[1:] not in obj and not child.attribute:  # an attribute's value is what counts
            counts[child.name] = counts.get(child.name, 0) + len([p for p in parts if p is not None])
        elif child.is_array and isinstance(values, list) and isinstance(value, list) and len(values) != len(value):
            self.add(ckey, "type", f"{path}.{prop}",
                     f"{prop} has {len(value)} entries, {prop[1:]} {len(values)}: they must be aligned")
        for i, part in enumerate(parts):
            ppath = f"{path}.{prop}[{i}]" if child.is_array else f"{path}.{prop}"
            if part is None:
                if not (child.is_array and i < len(plain) and plain[i] is not None):
                    self.add(ckey, "type", ppath, "null is only allowed as a placeholder in an array "
                             "whose companion has a value at the same place")
                continue
            if not isinstance(part, dict):
                self.add(ckey, "type", ppath, f"{prop} must be an object with id/extension")
                continue
            has_value = i < len(plain) and plain[i] is not None
            if not has_value and child.binding is not None and child.binding[0] == "required":
                # checkPrimitive: a primitive without a value breaks a required binding
                self.add(ckey, "binding", ppath, f"{prop[1:]} has extensions but no code, and its binding "
                         f"to {child.binding[1]} is required")
            if has_value and child.fixed is not None and part.get("extension"):
                # checkFixedValue: a fixed value without extensions admits none on the instance
                self.add(ckey, "fixed", ppath, f"{prop[1:]} has a fixed value, which carries no extensions")
            if not has_value and not _has_children(part):
                self.add(ckey, "constraint:ele-1", ppath, "element has neither a value nor children (ele-1)")
            elif not part:
                # FHIR JSON (R4 §2.6.2) writes no empty object, a companion of a value included
                # (the HL7 validator: "Object must have some content")
                self.add(ckey, "type", ppath, f"{prop} is an empty object (left out when it has no id or extensions)")
            for k, v in part.items():
                if k == "id" and id_node is not None:
                    # the Element.id of the primitive: a string, checked as every element id is
                    self.value(v, _check(id_node, id_node.types[0]), ckey, f"{ppath}.id")
                elif k == "extension" and ext_node is not None:
                    epath = f"{ppath}.extension"
                    self.extensions(self.items(v, ext_node, ckey, epath), ext_node, ckey, epath, sliced=False,
                                    holder=_Holder(child.base_path or child.id, tref.code, False, None), modifier=False,
                                    at=f"{path}.{prop[1:]}")
                elif k != "id":
                    self.add(ckey, "unknown", f"{ppath}.{k}", f"unknown element {k!r} on a primitive")

    # -- extensions ------------------------------------------------------------------------

    def extensions(self, items: list[Any], node: Node, key: str, path: str, sliced: bool = True, *,
                   holder: _Holder, modifier: bool, at: str) -> None:
        """Extensions, sliced by url (open slicing: an unknown url is checked as an Extension);
        an extension whose definition is known must be used where its context allows and in
        `modifierExtension` exactly when it is a modifier."""
        per_slice: dict[str, int] = {}
        logical = self.logical(at)
        for i, item in enumerate(items):
            ipath = f"{path}[{i}]"
            url = item.get("url") if isinstance(item, dict) else None
            if isinstance(url, str) and url and holder.extension_url is None and not is_absolute_url(url):
                # only a complex extension's parts may have a relative url (InstanceValidator)
                self.add(key, "format", f"{ipath}.url", f"Extension.url must be an absolute URL, not {shown(url)}")
            elif isinstance(url, str):
                problem = self.oracle.placement(url, logical, holder, modifier)
                if problem is not None:
                    self.add(key, "unknown", ipath, problem)
            if isinstance(url, str) and holder.extension_url is not None and node.slices \
                    and url not in node.slices and not is_absolute_url(url):
                self.add(key, "unknown", ipath, f"sub-extension url {shown(url)} is not defined by the "
                         f"extension {holder.extension_url}")
            slice_node = node.slices.get(url) if sliced and isinstance(url, str) else None
            defined = self.oracle.extension_tree(url) if slice_node is None and isinstance(url, str) else None
            if slice_node is not None:
                per_slice[slice_node.id] = per_slice.get(slice_node.id, 0) + 1
                self.value(item, _check(slice_node, _EXTENSION), slice_node.id, ipath)
            elif defined is not None and isinstance(url, str) and url not in self.defining:
                self.defined_extension(item, defined, url, key, ipath)
            else:
                self.value(item, _check(node, _EXTENSION), key, ipath)
        if sliced:
            for sl in node.slices.values():
                n = per_slice.get(sl.id, 0)
                if n < sl.min:
                    self.add(sl.id, "min", path, f"extension {sl.slice_name} is required (min {sl.min})")
                if sl.max is not None and n > sl.max:
                    self.add(sl.id, "max", path, f"extension {sl.slice_name} occurs {n} times (max {sl.max})")

    def defined_extension(self, item: Any, tree: Node, url: str, key: str, path: str) -> None:
        """An extension whose definition is at hand (R4 core's, the package's) but which no slice
        names is validated against that definition, as the validator does with every extension
        it can resolve (its value types, its parts and their cardinality); what breaks it is
        reported on the element holding it."""
        sub = _Walk(self.oracle, self.resource)
        sub.current, sub.contained_at, sub.checking = self.current, self.contained_at, self.checking
        sub.defining = self.defining | {url}
        sub.value(item, _check(tree, _EXTENSION), key, path)
        for issue in sub.issues:
            kind = f"{issue.key.kind.value}:{issue.key.detail}" if issue.key.detail else issue.key.kind.value
            self.issues.append(Issue(issue.severity, _key(key, kind), issue.path, issue.message))

    # -- single values -----------------------------------------------------------------------

    def value(self, item: Any, check: _Check, key: str, path: str) -> None:
        if item is None:
            self.add(key, "type", path, "null is not a value in FHIR JSON")
            return
        prim = check.prim
        if prim is not None:
            problem = prim.check(item)
            if problem is not None:
                self.add(key, problem[0], path, problem[1])
                return
            if check.uri and not self.uri_rules(item, check.node, check.tref, key, path):
                return
            if check.canonical_target:
                self.target(canonical_type(item), check.tref, key, path)
        elif check.resource:
            rtype = item.get("resourceType") if isinstance(item, dict) else None
            tree = resource_tree(rtype) if isinstance(rtype, str) else None
            if tree is None or not isinstance(item, dict) or not isinstance(rtype, str):
                self.add(key, "type", path, "not a FHIR resource (an object with the resourceType "
                         f"of a concrete R4 resource), got {shown(rtype)}")
                return
            self.contained(item, tree, rtype, key, path)
            return
        else:
            if not isinstance(item, dict):
                self.add(key, "type", path, f"expected a JSON object ({check.code})")
                return
            for k, v in item.items():  # _has_children, inlined: this runs on every object
                if k != "id" and v is not None and v != []:
                    break
            else:
                self.add(key, "constraint:ele-1", path, "element has neither a value nor children (ele-1)")
            if check.extension:
                has_ext = bool(item.get("extension"))
                # a value[x] with only its `_x` companion (extensions, no value) exists as well
                has_value = any(k.startswith(("value", "_value")) for k in item)
                if has_ext == has_value:
                    self.add(key, "constraint:ext-1", path, "an extension has either extensions or a value[x], not both (ext-1)")
            self.obj(item, check.typed, key, path)
            code = check.code
            if code == "Reference":
                self.reference(item, check.tref, key, path)
            elif code == "Identifier":
                for child, text in hl7.identifier_problems(item):
                    self.add(key, "format", f"{path}.{child}", text)
            elif check.coding:
                binding = check.node.binding
                if binding is None or binding[0] == "example":  # no value set check stands in for it
                    self.coded_system(item, key, path)
                    language = _coding(item)
                    unknown = bcp47.language_problem(language[1]) if language and language[0] == bcp47.SYSTEM else None
                    if unknown is not None:
                        self.add(key, "binding", f"{path}.code", unknown)
                self.coding(item, check.node, key, path)
            elif code == "Quantity":
                self.coded_system(item, key, path)
                pair = _coding(item)
                if pair is not None and pair[0] == UCUM:
                    self.ucum(pair[1], key, f"{path}.code")
            elif code == "CodeableConcept" and isinstance(item.get("coding"), list):
                for i, coding in enumerate(item["coding"]):
                    self.coding(coding, check.node, key, f"{path}.coding[{i}]", in_concept=True)
        if check.rules:
            self.rules(item, check, key, path)

    def ucum(self, code: str, key: str, path: str) -> None:
        """A UCUM code must parse into known units (HAPI knows UCUM in full, with its library)."""
        problem = ucum_problem(code)
        if problem is not None:
            self.add(key, "binding", path, problem)

    def coded_system(self, item: dict[str, Any], key: str, path: str) -> None:
        """checkCodedElement on a Coding or Quantity with a system and a code that no value set
        judges: the system names a code system absolutely (http:, https: or urn:)."""
        problem = hl7.coded_system_problem(item)
        if problem is not None:
            self.add(key, "format", f"{path}.system", problem)

    def uri_rules(self, item: str, node: Node, tref: TypeRef, key: str, path: str) -> bool:
        """What the HL7 validator demands of a canonical beyond its lexical form: absolute (as
        its Utilities.isAbsoluteUrl has it) or a `#fragment`; a profile claimed in meta.profile is
        one it knows, for this resource type. False when broken."""
        problem = hl7.canonical_problem(item)
        if problem is not None:
            self.add(key, "format", path, problem)
            return False
        if node.id == "Meta.profile":
            unclaimable = self.oracle.claimed_profile(item, self.current.get("resourceType"))
            if unclaimable is not None:
                self.add(key, "unknown", path, unclaimable)
                return False
        return True

    def reference(self, ref: dict[str, Any], tref: TypeRef, key: str, path: str) -> None:
        """The target type, and `type` agreeing with the type a literal reference names."""
        literal = literal_type(ref, self.resource)
        declared = ref.get("type")
        if literal is not None and isinstance(declared, str) and declared != literal:
            self.add(key, "type", f"{path}.type", f"type {shown(declared)} disagrees with the reference "
                     f"{shown(ref.get('reference'))} (a {literal})")
        if tref.target_types:
            self.target(literal if literal is not None else declared if isinstance(declared, str) else None,
                        tref, key, path)
        reference = ref.get("reference")
        if reference == "#":
            # the container itself: only a contained resource has one to refer to (the validator
            # resolves `#` there, and checks the container's type against the target types)
            if self.contained_at is None:
                self.add(key, "constraint:ref-1", f"{path}.reference",
                         "a reference '#' names the containing resource: only a contained resource has one")
            elif tref.target_types and literal is None:
                rtype = self.resource.get("resourceType")
                self.target(rtype if isinstance(rtype, str) else None, tref, key, path)
        elif isinstance(reference, str) and reference.startswith("#") and tref.target_profiles:
            self.contained_target(reference[1:], tref, key, path)
        if isinstance(reference, str):
            problem = hl7.conditional_reference_problem(reference, RESOURCE_TYPES)
            if problem is not None:
                self.add(key, "format", f"{path}.reference", problem)

    def contained_target(self, local_id: str, tref: TypeRef, key: str, path: str) -> None:
        """A contained resource a reference names must conform to one of the element's target
        profiles whose definition is at hand (KT2Patient for Task.for); R4 core profiles are its
        base definition, checked where it is contained."""
        target = next((r for r in self.resource.get("contained") or []
                       if isinstance(r, dict) and r.get("id") == local_id), None)
        rtype = target.get("resourceType") if target is not None else None
        profiles = [self.oracle.profile_tree(u) for u in tref.target_profiles]
        # a profile of another type: the reference's target type is already wrong (self.target)
        trees = [t for t in profiles if t is not None and t.name == rtype]
        if target is None or not isinstance(rtype, str) or not trees or len(trees) < len(
                [u for u in tref.target_profiles if resource_type_of_profile(self.oracle.profile, u) == rtype]) \
                or (local_id, tref.target_profiles) in self.checking:
            return
        self.checking.add((local_id, tref.target_profiles))
        try:
            failures = []
            for tree in trees:
                sub = _Walk(self.oracle, self.resource)
                sub.checking = self.checking
                sub.contained(target, tree, rtype, "profile", f"#{local_id}")
                errors = [i for i in sub.issues if i.severity == "error"]
                if not errors:
                    return
                failures.append(errors[0])
        finally:
            self.checking.discard((local_id, tref.target_profiles))
        names = ", ".join(u.rsplit("/", 1)[-1] for u in tref.target_profiles)
        self.add(key, "targetProfile", path, f"the contained resource #{local_id} does not conform to {names}: "
                 f"{failures[0].path}: {failures[0].message}")

    def coding(self, item: Any, node: Node, key: str, path: str, in_concept: bool = False) -> None:
        """A code of a CodeSystem known in full must be one of its codes, whatever the binding
        strength, as the HL7 validator checks it: except in a Coding element (not one inside a
        CodeableConcept) bound extensibly, which the validator judges against the value set
        alone, and being outside an extensible one is a warning (meta.security with an unknown
        v3-Confidentiality code, or a v2 code). A CodeableConcept bound extensibly has each
        coding checked against its CodeSystem (Identifier.type with an unknown code)."""
        if not in_concept and node.binding is not None and node.binding[0] == "extensible":
            return
        pair = _coding(item)
        if pair is None:
            system = item.get("system") if isinstance(item, dict) else None
            if not isinstance(system, str) or "code" in item or "_code" in item:
                return
            pair = (system, "")  # a system known in full and no code: HAPI's "Unknown code '…#null'"
        if pair[0] == UCUM and pair[1]:
            self.ucum(pair[1], key, f"{path}.code")
            return
        codes = self.oracle.known_system(pair[0])
        if codes is not None and pair[1] not in codes:
            what = f"{shown(pair[1])} is not a code of" if pair[1] else "a Coding without a code names"
            self.add(key, "binding", f"{path}.code", f"{what} {pair[0]}")

    def contained(self, item: dict[str, Any], tree: Node, rtype: str, key: str, path: str) -> None:
        """A contained resource against its R4 base definition; issues go to `key` (the element
        holding it). Its invariants see it as %resource and the Task as %rootResource."""
        outer = (self.current, self.contained_at)
        self.current, self.contained_at = item, (_INDEX.sub("", path), rtype)
        try:
            self.obj(item, tree, key, path, is_resource=True)
            for inv in tree.invariants:
                if inv.key not in STRUCTURAL_INVARIANTS:
                    self.invariant(inv, item, key, path)
        finally:
            self.current, self.contained_at = outer

    def logical(self, path: str) -> str:
        """The element path of an instance path: no indexes, `_x` as `x`, and inside a
        contained resource rooted at its type (`Task.contained[0].name` -> `Organization.name`)."""
        logical = _logical_path(path)
        if self.contained_at is not None and logical.startswith(self.contained_at[0]):
            logical = self.contained_at[1] + logical[len(self.contained_at[0]):]
        return logical

    def target(self, rtype: str | None, tref: TypeRef, key: str, path: str) -> None:
        if rtype is None or "Resource" in tref.target_types or rtype in tref.target_types:
            return
        allowed = ", ".join(sorted(tref.target_types))
        self.add(key, "targetProfile", path, f"refers to a {rtype}; allowed: {allowed}")

    def rules(self, item: Any, check: _Check, key: str, path: str) -> None:
        """Fixed and pattern values, required bindings, FHIRPath invariants."""
        node = check.node
        if node.fixed is not None and item != node.fixed[1]:
            self.add(key, "fixed", path, f"must be exactly {node.fixed[1]!r} ({node.fixed[0]})")
        if node.pattern is not None and not matches_pattern(item, node.pattern[1]):
            self.add(key, "pattern", path, f"must match {node.pattern[0]} {node.pattern[1]!r}")
        if node.binding is not None and node.binding[0] == "required":
            self.binding(item, node.binding[1], check.tref, key, path)
        for inv, native in check.invariants:
            if native is None or native(item) is not True:  # a published one that holds is done with
                self.invariant(inv, item, key, path)

    def invariant(self, inv: Invariant, focus: Any, key: str, path: str) -> None:
        try:
            ok = fhirpath.holds(inv.expression, focus, self.current, self.resource)
        except RecursionError:
            raise  # a deep Task: validate() measures it and tries again with a higher limit
        except Exception as exc:
            # The HL7 validator reports an invariant it cannot evaluate as an issue of the
            # invariant's own severity: an evaluation failure never passes as "holds".
            self.add(key, f"constraint:{inv.key}", path,
                     f"{inv.key} could not be evaluated ({type(exc).__name__}): {inv.human or inv.expression}", inv.severity)
            return
        if not ok:
            self.add(key, f"constraint:{inv.key}", path, f"{inv.human or inv.expression} ({inv.key})", inv.severity)

    def binding(self, item: Any, vs_url: str, tref: TypeRef, key: str, path: str) -> None:
        codes = self.oracle.expansion(vs_url)
        if codes is None:
            self.add(key, "binding", path, f"cannot check the binding to {vs_url}: value set not expandable offline", "warning")
            return
        if tref.code in ("code", "string", "uri"):
            ok = item in self.oracle.codes(vs_url)
        elif tref.code == "Coding":
            ok = _coding(item) in codes
        elif tref.code == "CodeableConcept":
            coding = item.get("coding")
            ok = isinstance(coding, list) and any(_coding(c) in codes for c in coding)
        else:
            return
        if not ok:
            self.add(key, "binding", path, f"value is not in the required value set {vs_url.split('|')[0]}")


_SIMPLE_PATH = re.compile(r"[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*(\[x\])?)*")


def _strip_slices(element_id: str) -> str:
    return ".".join(part.split(":")[0] for part in element_id.split("."))


def _placement(profile: Profile, url: str, logical_path: str, holder: _Holder, modifier: bool) -> str | None:
    sd = profile.structure_definition(url)
    name = url.split("|")[0]
    if sd is not None and sd.get("type") != "Extension":
        return f"{name} defines a {sd.get('type')}, not an extension"
    if sd is None or not sd.get("snapshot", {}).get("element"):
        return None
    is_modifier = bool(sd["snapshot"]["element"][0].get("isModifier"))
    if is_modifier and not modifier:
        return f"{name} is a modifier extension: it belongs in modifierExtension"
    if modifier and not is_modifier:
        return f"{name} is not a modifier extension: it belongs in extension, not modifierExtension"
    contexts = sd.get("context") or []
    if not contexts:
        return None
    names = {logical_path, _strip_slices(holder.node_id), "Element"}
    if holder.type_code:
        names.add(holder.type_code)
    if holder.is_resource:
        names |= {"Resource", "DomainResource"}
    for ctx in contexts:
        expression = str(ctx.get("expression", ""))
        kind = ctx.get("type")
        if kind == "element" and expression in names:
            return None
        if kind == "extension" and holder.extension_url is not None and expression.split("|")[0] == holder.extension_url:
            return None
        if kind == "fhirpath":
            terms = [t.strip() for t in expression.split("|")]
            if not all(_SIMPLE_PATH.fullmatch(t) for t in terms) or names.intersection(terms):
                return None  # a FHIRPath context this check can't judge is given the benefit of the doubt
        if kind not in ("element", "extension", "fhirpath"):
            return None
    allowed = ", ".join(str(c.get("expression")) for c in contexts)
    if len(allowed) > 120:
        allowed = allowed[:119] + "…"
    return f"{name} is not allowed on {logical_path} (its context: {allowed})"


class Oracle:
    """Decides conformance of Tasks to one profile; build once, validate many."""

    def __init__(self, profile: Profile | None = None) -> None:
        self.profile = profile if profile is not None else load_profile()
        self.tree = build_tree(self.profile)
        self._expansions: dict[str, terminology.Codes | None] = {}
        self._codes: dict[str, frozenset[str]] = {}
        self._placements: dict[tuple[str, str, _Holder, bool], str | None] = {}
        self._systems: dict[str, frozenset[str] | None] = {}
        self._profile_trees: dict[str, Node | None] = {}
        self._extension_trees: dict[str, Node | None] = {}
        self._claims: dict[tuple[str, str | None], str | None] = {}

    @cached_property
    def resource_type(self) -> str:
        return self.profile.type

    def expansion(self, url: str) -> terminology.Codes | None:
        if url not in self._expansions:
            self._expansions[url] = terminology.expand(self.profile, url)
        return self._expansions[url]

    def codes(self, url: str) -> frozenset[str]:
        """The codes of an expandable ValueSet, whatever their system (a `code` element's value)."""
        if url not in self._codes:
            self._codes[url] = frozenset(c for _, c in self.expansion(url) or ())
        return self._codes[url]

    def extension_tree(self, url: str) -> Node | None:
        """The element tree of an extension definition at hand (R4 core's or the package's)."""
        base = url.split("|")[0]
        if base not in self._extension_trees:
            sd = self.profile.structure_definition(base)
            usable = sd is not None and sd.get("type") == "Extension" and sd.get("snapshot", {}).get("element")
            self._extension_trees[base] = _tree_of(self.profile, sd) if sd is not None and usable else None
        return self._extension_trees[base]

    def profile_tree(self, url: str) -> Node | None:
        """The element tree of a resource profile the package defines (KT2Patient), to check a
        contained resource against; None for R4 core's and for what is not at hand."""
        base = url.split("|")[0]
        if base not in self._profile_trees:
            sd = self.profile.structure_definitions.get(base)
            usable = (sd is not None and sd.get("kind") == "resource" and sd.get("derivation") == "constraint"
                      and sd.get("snapshot", {}).get("element"))
            self._profile_trees[base] = _tree_of(self.profile, sd) if sd is not None and usable else None
        return self._profile_trees[base]

    def claimed_profile(self, url: str, resource_type: Any) -> str | None:
        """Why a resource may not claim this profile in meta.profile: the validator checks a
        resource against every profile it claims, and refuses one it cannot find; None when
        the profile is known and is for this resource type."""
        cache_key = (url, resource_type if isinstance(resource_type, str) else None)
        if cache_key not in self._claims:
            self._claims[cache_key] = self._claimed_profile(url, cache_key[1])
        return self._claims[cache_key]

    def _claimed_profile(self, url: str, resource_type: str | None) -> str | None:
        sd = self.profile.structure_definition(url)
        if sd is None:
            base = url.split("|")[0]
            name = base.rsplit("/", 1)[-1]
            if base == f"http://hl7.org/fhir/StructureDefinition/{name}" and name in RESOURCE_TYPES:
                sd = {"type": name, "version": "4.0.1"}
        version = url.partition("|")[2]
        if sd is not None and version and sd.get("version") != version:
            # the validator looks a versioned canonical up by url and version
            return f"the profile {shown(url)} is not known in that version ({sd.get('version')} is)"
        if sd is None:
            return f"the profile {shown(url)} is not known, so the resource cannot be checked against it"
        if isinstance(resource_type, str) and sd.get("type") != resource_type:
            return f"the profile {shown(url)} is for {sd.get('type')}, not {resource_type}"
        return None

    def known_system(self, system: str) -> frozenset[str] | None:
        """The codes of a CodeSystem known in full (the profile's or R4 core's), else None."""
        if system not in self._systems:
            self._systems[system] = terminology.known_system(self.profile, system)
        return self._systems[system]

    def placement(self, url: str, logical_path: str, holder: _Holder, modifier: bool) -> str | None:
        """Why an extension with this url may not sit here (its definition's context, modifier
        or not), or None when it may or its definition is unknown."""
        cache_key = (url, logical_path, holder, modifier)
        if cache_key not in self._placements:
            self._placements[cache_key] = _placement(self.profile, url, logical_path, holder, modifier)
        return self._placements[cache_key]

    def validate(self, task: Any) -> list[Issue]:
        """Every issue of `task` against the profile (errors and warnings).

        `task` is JSON (a dict) or a fhir.resources model (judged as the JSON it serializes to).
        Any JSON value is accepted. A Task deep enough to exhaust the recursion limit is
        measured (without recursion): nesting beyond MAX_DEPTH is one error (a FHIR server's
        parser refuses such a body before validating it); anything shallower is validated again
        in full with the limit raised. (Deep nesting where the walk does not go, inside an
        element that is not allowed, is reported as that element.)"""
        task = resource_json(task)
        try:
            return self._validate(task)
        except RecursionError:
            pass
        root = self.tree.id
        depth = nesting_depth(task)
        if depth > MAX_DEPTH:
            return [Issue("error", _key(root, "type"), root,
                          f"JSON nested more than {MAX_DEPTH} levels deep: not parsed by FHIR servers")]
        with _recursion_limit(1000 + depth * _FRAMES_PER_LEVEL):
            try:
                return self._validate(task)
            except RecursionError:  # the frames per level were underestimated: never a crash
                return [Issue("error", _key(root, "type"), root, f"JSON nested {depth} levels deep: too deep to check")]

    def _validate(self, task: Any) -> list[Issue]:
        root = self.tree.id
        if not isinstance(task, dict):
            return [Issue("error", _key(root, "type"), root, "a Task must be a JSON object")]
        walk = _Walk(self, task)
        if task.get("resourceType") != self.resource_type:
            walk.add(root, "type", root, f"resourceType must be {self.resource_type!r}, got {shown(task.get('resourceType'))}")
        walk.obj(task, self.tree, root, root, is_resource=True)
        self._contained_ids(walk, task)
        self._element_ids(walk, task)
        self._narratives(walk, task)
        for inv in self.tree.invariants:
            if inv.key in STRUCTURAL_INVARIANTS or inv.key == "dom-3":
                continue  # dom-3: as the validator enforces it (_contained_ids)
            walk.invariant(inv, task, root, root)
        return walk.issues

    def _element_ids(self, walk: _Walk, task: dict[str, Any]) -> None:
        """Element ids are unique within a resource (the validator's "Duplicate id value"): the
        Task's, and each contained resource's among its own."""
        root = self.tree.id
        for where, id_ in contained_rules.duplicate_element_ids(task, root):
            walk.add(root, "type", where, f"a second element with id {shown(id_)}: element ids are unique in a resource")
        contained = task.get("contained")
        if isinstance(contained, list):
            entry = self.tree.properties.get("contained")
            key = entry[0].id if entry is not None and entry[0].owns_key else root
            for i, res in enumerate(contained):
                if isinstance(res, dict):
                    for where, id_ in contained_rules.duplicate_element_ids(res, f"{root}.contained[{i}]"):
                        walk.add(key, "type", where, f"a second element with id {shown(id_)}: element ids are "
                                 "unique in a resource")

    def _contained_ids(self, walk: _Walk, task: dict[str, Any]) -> None:
        """dom-3 as the HL7 validator enforces it, in code rather than by its FHIRPath text
        (oracle/_contained.py): a contained resource needs an id, a unique one, and a chain of
        references to it from the container."""
        contained = task.get("contained")
        dom3 = next((i for i in self.tree.invariants if i.key == "dom-3"), None)
        if not isinstance(contained, list) or dom3 is None:
            return
        root = self.tree.id
        for i, res in enumerate(contained):
            if isinstance(res, dict) and not isinstance(res.get("id"), str):
                walk.add(root, "constraint:dom-3", f"{root}.contained[{i}]",
                         "a contained resource needs an id, by which it is referenced (dom-3)")
        for i in contained_rules.duplicate_ids(task):
            walk.add(root, "constraint:dom-3", f"{root}.contained[{i}]",
                     f"a second contained resource with id {shown(contained[i].get('id'))}: ids must be unique")
        key = self.tree.properties["contained"][0] if "contained" in self.tree.properties else None
        for i in contained_rules.relative_canonical_urls(task):
            walk.add(key.id if key is not None and key.owns_key else root, "format", f"{root}.contained[{i}].url",
                     f"a contained {contained[i]['resourceType']}'s canonical url must be absolute, "
                     f"not {shown(contained[i]['url'])}")
        self._claimed_by_contained(walk, task, key.id if key is not None and key.owns_key else root)
        for i in contained_rules.orphans(task):
            walk.add(root, "constraint:dom-3", f"{root}.contained[{i}]",
                     f"{dom3.human or 'a contained resource must be referred to'} (dom-3)", dom3.severity)

    def _claimed_by_contained(self, walk: _Walk, task: dict[str, Any], key: str) -> None:
        """A contained resource is also validated against each profile its meta.profile claims
        that the package defines for its type (a contained Patient claiming KT2Patient needs
        KT2Patient's identifier, name, gender…), as the validator does with every claim."""
        seen = {(i.key, i.path, i.message) for i in walk.issues}
        for i, res in enumerate(task.get("contained") or []):
            meta = res.get("meta") if isinstance(res, dict) else None
            claims = meta.get("profile") if isinstance(meta, dict) else None
            rtype = res.get("resourceType") if isinstance(res, dict) else None
            if not isinstance(claims, list) or not isinstance(rtype, str):
                continue
            for url in claims:
                tree = self.profile_tree(url) if isinstance(url, str) else None
                if tree is None or tree.name != rtype:
                    continue
                sub = _Walk(self, task)
                sub.contained(res, tree, rtype, key, f"{self.tree.id}.contained[{i}]")
                for issue in sub.issues:
                    if issue.severity == "error" and (issue.key, issue.path, issue.message) not in seen:
                        seen.add((issue.key, issue.path, issue.message))
                        walk.issues.append(replace(issue, message=f"{issue.message} (claimed profile "
                                                                  f"{url.rsplit('/', 1)[-1]})"))

    def _narratives(self, walk: _Walk, task: dict[str, Any]) -> None:
        """The narrative (the Task's and each contained resource's) as the HL7 validator reads
        and checks its XHTML (spec/_xhtml.py), the links into the resource included; besides
        txt-1 and txt-2, which the walk evaluates."""
        root = self.tree.id
        text = self.tree.properties.get("text")
        contained = self.tree.properties.get("contained")
        places: list[tuple[str, str, Any]] = []
        if text is not None:
            places.append((text[0].id if text[0].owns_key else root, root, task))
        if contained is not None and isinstance(task.get("contained"), list):
            key = contained[0].id if contained[0].owns_key else root
            places += [(key, f"{root}.contained[{i}]", r) for i, r in enumerate(task["contained"])]
        for key, path, resource in places:
            narrative = resource.get("text") if isinstance(resource, dict) else None
            div = narrative.get("div") if isinstance(narrative, dict) else None
            if isinstance(div, str):
                # `#` links resolve in the whole Task, a contained resource's narrative included
                for problem in xhtml.problems(div) + xhtml.fragment_problems(div, task):
                    walk.add(key, "format", f"{path}.text.div", problem)

    def validate_json(self, text: str) -> list[Issue]:
        """Every issue of a Task given as JSON text, read as a FHIR server reads a request body:
        besides what `validate` finds, a property name repeated within an object is an error
        (the HL7 validator: "The JSON property … is a duplicate"; a JSON object's names SHOULD be
        unique, RFC 8259 §4, and Python would silently keep the last). Text that is not JSON is
        one `type` error."""
        duplicates: list[tuple[int, str]] = []
        root = self.tree.id
        escapes = {m.group(1) for m in _JSON_ESCAPE.finditer(text)} if "\\" in text else set()
        if escapes & {"b", "f"}:
            # JSON allows them; the HL7 validator's JSON reader (JsonLexer) knows \" \\ \/ \n \r \t and
            # \uXXXX only (HAPI FHIR 8.2: "unknown escape sequence")
            return [Issue("error", _key(root, "type"), root, "a \\b or \\f escape in the JSON text: the HL7 "
                          "validator's JSON reader refuses the body (write \\u0008, \\u000c)")]
        try:
            task = load_json(text, duplicates)
        except (ValueError, RecursionError):
            return [Issue("error", _key(root, "type"), root, "not JSON text (a FHIR server refuses the body unread)")]
        return self.validate(task) + self.duplicate_issues(task, duplicates)

    def duplicate_issues(self, task: Any, duplicates: list[tuple[int, str]]) -> list[Issue]:
        """One error per repeated property name, on the object that repeats it (`duplicates`
        as `load_json` collects them for `task`)."""
        if not duplicates:
            return []
        root = self.tree.id
        paths: dict[int, str] = {}
        stack: list[tuple[Any, str]] = [(task, root)]
        while stack:
            value, path = stack.pop()
            if isinstance(value, dict):
                paths[id(value)] = path
                stack.extend((v, f"{path}.{k}") for k, v in value.items())
            elif isinstance(value, list):
                stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value))
        return [Issue("error", _key(root, "type"), paths.get(obj, root),
                      f"the JSON property {shown(name)} appears more than once in this object")
                for obj, name in duplicates]

    def errors(self, task: Any) -> list[Issue]:
        return [i for i in self.validate(task) if i.severity == "error"]

    def is_valid(self, task: Any) -> bool:
        return not self.errors(task)
