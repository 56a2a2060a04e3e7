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
from typing import Any, cast

from kt2conformance._vocabulary import ConstraintKey, Kind
from kt2conformance.spec import _fhirpath as fhirpath
from kt2conformance.spec import _terminology as terminology
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
)

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
    """The resource type a Reference points at: its `type`, the type in a literal `reference`
    (relative or absolute), or the contained resource it names; None when it names none."""
    if isinstance(ref.get("type"), str):
        return cast(str, ref["type"])
    literal = ref.get("reference")
    if not isinstance(literal, str):
        return None
    if literal.startswith("#"):
        for res in resource.get("contained") or []:
            if isinstance(res, dict) and res.get("id") == literal[1:]:
                rtype = res.get("resourceType")
                return rtype if isinstance(rtype, str) else None
        return None
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
    """The JSON nesting depth of `value` (objects and arrays; a scalar is 0), found without
    recursion; counting stops past `stop`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if deepest > stop:
                return deepest
        stack.extend((c, depth) for c in children if isinstance(c, (dict, list)))
    return deepest


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
    return any(k != "id" and v is not None and v != [] for k, v in obj.items())


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


class _Walk:
    """One validation: the issues found so far and the resource being walked."""

    def __init__(self, oracle: Oracle, resource: dict[str, Any]) -> None:
        self.oracle = oracle
        self.resource = resource
        self.issues: list[Issue] = []

    def add(self, key: str, kind: str, path: str, message: str, severity: str = "error") -> None:
        self.issues.append(Issue(severity, _key(key, kind), path, message))

    # -- objects and their properties -------------------------------------------------------

    def obj(self, obj: dict[str, Any], node: Node, key: str, path: str, is_resource: bool = False) -> None:
        props = node.properties
        counts: dict[str, int] = {}
        for prop, value in obj.items():
            if is_resource and prop == "resourceType":
                continue
            if prop.startswith("_") and len(prop) > 1:
                self.primitive_extension(obj, prop, value, node, key, path, counts)
                continue
            entry = props.get(prop)
            if entry is None:
                choice = node.choice_of(prop)
                if choice is not None:
                    counts[choice.name] = counts.get(choice.name, 0) + 1
                    allowed = ", ".join(t.code for t in choice.types)
                    self.add(choice.id if choice.owns_key else key, "type", f"{path}.{prop}",
                             f"{prop}: type not allowed for {choice.name} (allowed: {allowed})")
                else:
                    self.add(key, "unknown", f"{path}.{prop}", f"unknown element {prop!r}")
                continue
            child, tref = entry
            ckey = child.id if child.owns_key else key
            cpath = f"{path}.{prop}"
            if child.forbidden:
                counts[child.name] = counts.get(child.name, 0) + 1
                self.add(ckey, "max", cpath, f"{prop} is not allowed (max 0)")
                continue
            if child.name in counts and child.is_choice:
                self.add(ckey, "max", cpath, f"more than one type given for {child.name}")
            items = self.items(value, child, ckey, cpath)
            counts[child.name] = counts.get(child.name, 0) + len(items)
            if tref.code == "Extension" and child.name in ("extension", "modifierExtension"):
                self.extensions(items, child, ckey, cpath)
                continue
            for i, item in enumerate(items):
                self.value(item, child, tref, ckey, f"{cpath}[{i}]" if child.is_array else cpath)
        for child in node.bounded_children:
            n = counts.get(child.name, 0)
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
                            path: str, counts: dict[str, int]) -> None:
        """`_x`: the id and extensions of primitive `x` (FHIR JSON §2.6.2)."""
        entry = node.properties.get(prop[1:])
        if entry is None or entry[1].primitive is None or entry[0].attribute:
            self.add(key, "unknown", f"{path}.{prop}", f"unknown element {prop!r}")
            return
        child, tref = entry
        ckey = child.id if child.owns_key else key
        # The primitive type's own `extension` element (an array of Extension), not `child`.
        ext_node = datatype_template(tref.code).get("extension")
        values = obj.get(prop[1:])
        parts = self.items(value, child, ckey, f"{path}.{prop}")  # `_x` has the shape of `x`
        plain = values if isinstance(values, list) else [values]
        if prop[1:] not in obj:
            counts[child.name] = counts.get(child.name, 0) + len([p for p in parts if p is not None])
        for i, part in enumerate(parts):
            ppath = f"{path}.{prop}[{i}]" if child.is_array else f"{path}.{prop}"
            if part is None:
                continue
            if not isinstance(part, dict):
                self.add(ckey, "type", ppath, f"{prop} must be an object with id/extension")
                continue
            has_value = i < len(plain) and plain[i] is not None
            if not has_value and not _has_children(part):
                self.add(ckey, "constraint:ele-1", ppath, "element has neither a value nor children (ele-1)")
            for k, v in part.items():
                if k == "extension" and ext_node is not None:
                    epath = f"{ppath}.extension"
                    self.extensions(self.items(v, ext_node, ckey, epath), ext_node, ckey, epath, sliced=False)
                elif k != "id":
                    self.add(ckey, "unknown", f"{ppath}.{k}", f"unknown element {k!r} on a primitive")

    # -- extensions ------------------------------------------------------------------------

    def extensions(self, items: list[Any], node: Node, key: str, path: str, sliced: bool = True) -> None:
        """Extensions, sliced by url (open slicing: an unknown url is checked as an Extension)."""
        per_slice: dict[str, int] = {}
        for i, item in enumerate(items):
            ipath = f"{path}[{i}]"
            url = item.get("url") if isinstance(item, dict) else None
            slice_node = node.slices.get(url) if sliced and isinstance(url, str) else None
            if slice_node is not None:
                per_slice[slice_node.id] = per_slice.get(slice_node.id, 0) + 1
                self.value(item, slice_node, _EXTENSION, slice_node.id, ipath)
            else:
                self.value(item, node, _EXTENSION, key, ipath)
        if sliced:
            for sl in node.slices.values():
                n = per_slice.get(sl.id, 0)
                if n < sl.min:
                    self.add(sl.id, "min", path, f"extension {sl.slice_name} is required (min {sl.min})")
                if sl.max is not None and n > sl.max:
                    self.add(sl.id, "max", path, f"extension {sl.slice_name} occurs {n} times (max {sl.max})")

    # -- single values -----------------------------------------------------------------------

    def value(self, item: Any, node: Node, tref: TypeRef, key: str, path: str) -> None:
        if item is None:
            self.add(key, "type", path, "null is not a value in FHIR JSON")
            return
        prim = tref.primitive
        if prim is not None:
            problem = prim.check(item)
            if problem is not None:
                self.add(key, problem[0], path, problem[1])
                return
            if tref.target_types and tref.code == "canonical":
                self.target(canonical_type(item), tref, key, path)
        elif tref.code == "Resource":
            rtype = item.get("resourceType") if isinstance(item, dict) else None
            if not isinstance(rtype, str) or rtype not in RESOURCE_TYPES:
                self.add(key, "type", path, "contained entry is not a FHIR resource")
            return
        else:
            if not isinstance(item, dict):
                self.add(key, "type", path, f"expected a JSON object ({tref.code})")
                return
            if not _has_children(item):
                self.add(key, "constraint:ele-1", path, "element has neither a value nor children (ele-1)")
            if tref.code == "Extension":
                has_ext = bool(item.get("extension"))
                has_value = any(k.startswith("value") for k in item)
                if has_ext == has_value:
                    self.add(key, "constraint:ext-1", path, "an extension has either extensions or a value[x], not both (ext-1)")
            self.obj(item, self.oracle.as_type(node, tref), key, path)
            if tref.code == "Reference" and tref.target_types:
                self.target(reference_type(item, self.resource), tref, key, path)
        self.rules(item, node, tref, key, path)

    def target(self, rtype: str | None, tref: TypeRef, key: str, path: str) -> None:
        if rtype is None or "Resource" in tref.target_types or rtype in tref.target_types:
            return
        allowed = ", ".join(sorted(tref.target_types))
        self.add(key, "targetProfile", path, f"refers to a {rtype}; allowed: {allowed}")

    def rules(self, item: Any, node: Node, tref: TypeRef, key: str, path: str) -> None:
        """Fixed and pattern values, required bindings, FHIRPath invariants."""
        if node.fixed is not None and item != node.fixed[1]:
            self.add(key, "fixed", path, f"must be exactly {node.fixed[1]!r} ({node.fixed[0]})")
        if node.pattern is not None and not matches_pattern(item, node.pattern[1]):
            self.add(key, "pattern", path, f"must match {node.pattern[0]} {node.pattern[1]!r}")
        if node.binding is not None and node.binding[0] == "required":
            self.binding(item, node.binding[1], tref, key, path)
        for inv in self.oracle.invariants(node, tref):
            self.invariant(inv, item, key, path)

    def invariant(self, inv: Invariant, focus: Any, key: str, path: str) -> None:
        try:
            ok = fhirpath.holds(inv.expression, focus, self.resource)
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
            ok = item in {c for _, c in codes}
        elif tref.code == "Coding":
            ok = _coding(item) in codes
        elif tref.code == "CodeableConcept":
            coding = item.get("coding")
            ok = isinstance(coding, list) and any(_coding(c) in codes for c in coding)
        else:
            return
        if not ok:
            self.add(key, "binding", path, f"value is not in the required value set {vs_url.split('|')[0]}")


class Oracle:
    """Decides conformance of Tasks to one profile; build once, validate many."""

    def __init__(self, profile: Profile | None = None) -> None:
        self.profile = profile if profile is not None else load_profile()
        self.tree = build_tree(self.profile)
        self._expansions: dict[str, terminology.Codes | None] = {}
        self._invariants: dict[tuple[str, str], list[Invariant]] = {}
        self._as_type: dict[tuple[str, str], Node] = {}

    @cached_property
    def resource_type(self) -> str:
        return self.profile.type

    def expansion(self, url: str) -> terminology.Codes | None:
        if url not in self._expansions:
            self._expansions[url] = terminology.expand(self.profile, url)
        return self._expansions[url]

    def as_type(self, node: Node, tref: TypeRef) -> Node:
        """The element as the one type a value has: a choice of several types takes the children
        of the type its property names (`valueCodeableConcept` -> CodeableConcept's)."""
        if len(node.types) <= 1 or node.explicit_children:
            return node
        cache_key = (node.id, tref.code)
        if cache_key not in self._as_type:
            self._as_type[cache_key] = replace(node, types=[tref])
        return self._as_type[cache_key]

    def invariants(self, node: Node, tref: TypeRef) -> list[Invariant]:
        """FHIRPath invariants to evaluate on a value of `node`: its own and its datatype's,
        except the structural ones checked directly."""
        cache_key = (node.id, tref.code)
        if cache_key not in self._invariants:
            own = [i for i in node.invariants if i.key not in STRUCTURAL_INVARIANTS]
            inherited = datatype_invariants(tref.code) if tref.primitive is None else []
            seen = {i.key for i in own}
            self._invariants[cache_key] = own + [i for i in inherited if i.key not in seen]
        return self._invariants[cache_key]

    def validate(self, task: Any) -> list[Issue]:
        """Every issue of `task` against the profile (errors and warnings).

        `task` is JSON (a dict) or a fhir.resources model (judged as the JSON it serializes to).
        Any JSON value is accepted. Nesting beyond MAX_DEPTH is one error (a FHIR server's
        parser refuses such a body before validating it); anything shallower is validated in
        full, with the recursion limit raised for a deep Task."""
        task = resource_json(task)
        depth = nesting_depth(task)
        if depth > MAX_DEPTH:
            root = self.tree.id
            return [Issue("error", _key(root, "type"), root,
                          f"JSON nested more than {MAX_DEPTH} levels deep: not parsed by FHIR servers")]
        if depth * _FRAMES_PER_LEVEL + 200 < sys.getrecursionlimit():
            return self._validate(task)
        with _recursion_limit(1000 + depth * _FRAMES_PER_LEVEL):
            return self._validate(task)

    def _validate(self, task: Any) -> list[Issue]:
        root = self.tree.id
        if not isinstance(task, dict):
            return [Issue("error", _key(root, "type"), root, "a Task must be a JSON object")]
        walk = _Walk(self, task)
        if task.get("resourceType") != self.resource_type:
            walk.add(root, "type", root, f"resourceType must be {self.resource_type!r}, got {shown(task.get('resourceType'))}")
        walk.obj(task, self.tree, root, root, is_resource=True)
        for inv in self.tree.invariants:
            if inv.key in STRUCTURAL_INVARIANTS:
                continue
            walk.invariant(inv, task, root, root)
        return walk.issues

    def errors(self, task: Any) -> list[Issue]:
        return [i for i in self.validate(task) if i.severity == "error"]

    def is_valid(self, task: Any) -> bool:
        return not self.errors(task)
