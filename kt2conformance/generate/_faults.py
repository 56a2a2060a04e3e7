"""One fault per constraint kind: how a minimal valid Task is changed to break one constraint key.

`apply_fault` looks the fault up by the key's kind in a table of small functions, one per kind
(as hypothesis-jsonschema dispatches on keywords): the resource's own faults, an extension
slice's, any other element's (made present first), and a server rule's from its row in
kt2conformance._koppeltaal. Each breaks the element the way its kind says: a missing required
element or part, one occurrence too many, a
value of the wrong JSON type or lexical form, an unknown element, another code than the fixed or
bound one, a reference to a resource type the target profiles don't allow. FHIRPath invariants
can't be inverted in general; the invariants R4 and the profile use (inv-1, per-1, ref-1,
dom-2…dom-5, txt-1, txt-2) each have a recipe in `_break_invariant`; ele-1 and ext-1 are broken
structurally. The caller checks with the oracle that only the intended key broke.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kt2conformance._koppeltaal import rule
from kt2conformance._vocabulary import ConstraintKey, Kind
from kt2conformance.generate._catalogue import case_variants, invalid_classes, value_class
from kt2conformance.generate._values import (
    TIME_ZONES,
    WORDS,
    XHTML,
    Chooser,
    Task,
    TaskGenerator,
    render_datetime,
)
from kt2conformance.spec._constraints import required_parts
from kt2conformance.spec._tree import Node, TypeRef, datatype_invariants, datatype_template

# Edges of the ordering invariants (inv-1, per-1): the order broken plainly; broken while the
# local clock texts still look in order (offsets -14:00 and +14:00 hide it: a server comparing
# the text accepts); broken by one millisecond (a server keeping whole seconds accepts).
ORDER_EDGES = ("order:plain", "order:hidden-by-offsets", "order:one-millisecond")
_ORDER_INVARIANTS = frozenset({"inv-1", "per-1"})
# Edges of a type fault: a value of another JSON type ("x" for an object, a string for a
# number); the right value in the wrong JSON shape, as a lenient JSON binding takes it: a
# repeating element's one item without its array, a single element wrapped in a one-item array.
WRONG_JSON_TYPE = "json:wrong-type"
BARE_ITEM = "json:bare-item"
ONE_ITEM_ARRAY = "json:one-item-array"


def _locate(gen: TaskGenerator, c: Chooser, task: Task, element_id: str,
            clock: list[dt.datetime]) -> tuple[dict[str, Any], Node, list[dict[str, Any]]] | None:
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
            existing = [e for e in holder.get(name, []) if isinstance(e, dict)
                        and e.get("url") in child.slices and child.slices[e["url"]] is sl]
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


_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
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


def _primitive_parts(code: str) -> list[tuple[str, str]]:
    """(property, type) of the primitive parts of complex type `code` with invalid classes,
    the first part of each type (Identifier -> [("use", "code"), ("system", "uri"), ...])."""
    out: list[tuple[str, str]] = []
    for child in datatype_template(code).values():
        if child.name in ("id", "extension") or child.is_choice or not child.types:
            continue
        t = child.types[0].code
        if child.types[0].primitive is not None and invalid_classes(t) and all(t != seen for _, seen in out):
            out.append((child.name, t))
    return out


def fault_edges(gen: TaskGenerator, key: str) -> list[str]:
    """The edges of constraint `key` a run must try, each a way to break it just outside what
    is allowed: every invalid class of the element's primitive type (or of each primitive part
    of its datatype: `system=uri:whitespace-in-uri`), every case variant and every near code
    outside a bound value set, every target type the profile does not allow, both sides of an
    ordering invariant across offsets, a value of the wrong JSON type and the right value in the
    wrong JSON shape (array or not). [] where the kind has one way only (min, max…)."""
    if rule(key) is not None:
        return []
    parsed = ConstraintKey.parse(key)
    if parsed.kind is Kind.CONSTRAINT and parsed.detail in _ORDER_INVARIANTS:
        return list(ORDER_EDGES)
    node = _node_of(gen, parsed.element)
    if node is None or not node.types:
        return []
    tref = node.types[0]
    if parsed.kind is Kind.FORMAT:
        if tref.primitive is not None:
            return [v.key for t in node.types for v in invalid_classes(t.code)]
        fixed = {name for name, child in node.children.items() if child.fixed is not None}  # a slice's url
        return [f"{name}={v.key}" for name, code in _primitive_parts(tref.code) if name not in fixed
                for v in invalid_classes(code)]
    if parsed.kind in (Kind.BINDING, Kind.FIXED):
        expansion = gen.oracle.expansion(node.binding[1]) if node.binding else None
        codes = sorted(code for _, code in expansion or ())
        fixed_code = node.fixed[1] if node.fixed and isinstance(node.fixed[1], str) else None
        base = [fixed_code] if fixed_code else codes
        # every code upper-cased, the first also capitalised: a case-insensitive lookup lets any through
        variants = [v for i, code in enumerate(base) for v in case_variants(code)[: 2 if i == 0 else 1]]
        edges = [f"case:{v}" for v in dict.fromkeys(variants) if v not in codes]
        if parsed.kind is Kind.BINDING:
            return edges + [f"near:{code}" for code in _near_codes(gen, node)]
        return edges + [f"other:{code}" for code in codes if code != fixed_code]
    if parsed.kind is Kind.TARGET_PROFILE:
        return [f"target:{t}" for t in sorted(t for t in gen.refs if t not in tref.target_types)]
    if parsed.kind is Kind.TYPE and not node.is_choice and node.slice_name is None:
        return [WRONG_JSON_TYPE, BARE_ITEM if node.is_array else ONE_ITEM_ARRAY]
    return []


def _node_of(gen: TaskGenerator, element_id: str) -> Node | None:
    """The node of a (non-root) element id, slices included; None if the tree lacks it."""
    node = gen.tree
    for part in element_id.split(".")[1:]:
        name, _, slice_name = part.partition(":")
        child = node.children.get(name)
        if child is None:
            return None
        if slice_name:
            child = next((s for s in child.slices.values() if s.slice_name == slice_name), None)
            if child is None:
                return None
        node = child
    return None if node is gen.tree else node


def _near_codes(gen: TaskGenerator, node: Node) -> list[str]:
    """Codes of the bound value set's own code systems that the value set leaves out."""
    if node.binding is None:
        return []
    codes = gen.oracle.expansion(node.binding[1]) or frozenset()
    near: set[str] = set()
    for system in {s for s, _ in codes}:
        cs = gen.profile.code_system(system)
        for concept in (cs or {}).get("concept", []):
            if (system, concept.get("code")) not in codes:
                near.add(concept["code"])
    return sorted(near)


def _break_invariant(inv: str, c: Chooser, gen: TaskGenerator, value: Any, edge: str | None = None) -> Any:
    """A value of the element with invariant `inv` broken, or None when there is no recipe.
    `edge` (one of ORDER_EDGES) picks how an ordering invariant is broken."""
    clock = c.moments(2, unique=True)
    if inv in _ORDER_INVARIANTS and edge is None:
        edge = c.choose(ORDER_EDGES)
    if edge == "order:hidden-by-offsets":  # later in time, yet its local text is the smaller
        at = clock[0]
        later = render_datetime(at + dt.timedelta(hours=1), "-14:00", False)
        earlier = render_datetime(at, "+14:00", False)
    elif edge == "order:one-millisecond":
        at = clock[0].replace(microsecond=500000)
        later = render_datetime(at + dt.timedelta(milliseconds=1), "Z", True)
        earlier = render_datetime(at, "Z", True)
    else:
        later = render_datetime(clock[1], c.choose(TIME_ZONES), False)
        earlier = render_datetime(clock[0], c.choose(TIME_ZONES), False)
    recipes: dict[str, Callable[[Any], Any]] = {
        "inv-1": lambda t: {**t, "authoredOn": later, "lastModified": earlier},
        "per-1": lambda v: {**v, "start": later, "end": earlier},
        "ref-1": lambda v: {**v, "reference": "#missing", **({} if "type" not in v else {"type": v["type"]})},
        "dom-2": lambda t: {**t, "contained": [{"resourceType": "Patient", "id": "c1",
                                                "contained": [{"resourceType": "Patient", "id": "c2"}]}],
                            "for": {"reference": "#c1"}},
        "dom-3": lambda t: {**t, "contained": [{"resourceType": "Patient", "id": "c1"}]},
        "dom-4": lambda t: {**t, "contained": [{"resourceType": "Patient", "id": "c1", "meta": {"versionId": "1"}}],
                            "for": {"reference": "#c1"}},
        "dom-5": lambda t: {**t, "contained": [{"resourceType": "Patient", "id": "c1",
                                                "meta": {"security": [{"system": _CONFIDENTIALITY, "code": "R"}]}}],
                            "for": {"reference": "#c1"}},
        "txt-1": lambda v: {"status": "generated", "div": XHTML.format("<script>alert(1)</script>x")},
        "txt-2": lambda v: {"status": "generated", "div": XHTML.format(" ")},
    }
    recipe = recipes.get(inv)
    return None if recipe is None else recipe(value)


@dataclass
class _Site:
    """The element a fault breaks, made present in the Task: the object holding it, its node,
    its instances (for a slice) and the property its value sits under (None for a slice)."""

    gen: TaskGenerator
    c: Chooser
    task: Task
    kind: Kind
    detail: str | None
    holder: dict[str, Any]
    node: Node
    instances: list[dict[str, Any]]
    prop: str | None
    edge: str | None = None  # one of fault_edges: the edge to break it at

    @property
    def tref(self) -> TypeRef:
        return self.node.types[0]

    @property
    def value(self) -> Any:
        assert self.prop is not None
        return self.holder[self.prop]

    @property
    def first(self) -> Any:
        """The value, or its first item when the element repeats."""
        value = self.value
        return value[0] if isinstance(value, list) and value else value

    def put(self, new: Any) -> Task:
        """The Task with the (first) value replaced by `new`."""
        assert self.prop is not None
        value = self.value
        self.holder[self.prop] = [new] + value[1:] if isinstance(value, list) else new
        return self.task

    def companion(self, part: dict[str, Any]) -> Task:
        """The Task with primitive `prop` given a `_prop` (its id and extensions), shaped like
        the value."""
        assert self.prop is not None
        value = self.value
        self.holder["_" + self.prop] = ([part] + [None] * (len(value) - 1)
                                        if isinstance(value, list) else part)
        return self.task


_Fault = Callable[[_Site], "Task | None"]


# -- the resource itself ---------------------------------------------------------------------

def _resource_type(gen: TaskGenerator, c: Chooser, task: Task, detail: str | None,
                   edge: str | None = None) -> Task | None:
    other = c.choose(["Patient", "ServiceRequest", None])
    return ({k: v for k, v in task.items() if k != "resourceType"}
            | ({"resourceType": other} if other else {}))


def _resource_unknown(gen: TaskGenerator, c: Chooser, task: Task,
                      detail: str | None, edge: str | None = None) -> Task | None:
    return {**task, c.choose(["priorityCode", "comment", "assignee"]): "x"}


def _resource_invariant(gen: TaskGenerator, c: Chooser, task: Task,
                        detail: str | None, edge: str | None = None) -> Task | None:
    assert detail is not None
    broken: Task | None = _break_invariant(detail, c, gen, task, edge)
    return broken


_RESOURCE_FAULTS: dict[Kind, Callable[[TaskGenerator, Chooser, Task, str | None, str | None], Task | None]] = {
    Kind.TYPE: _resource_type,
    Kind.UNKNOWN: _resource_unknown,
    Kind.CONSTRAINT: _resource_invariant,
}


# -- an extension slice (the holder is its first instance) ------------------------------------

def _slice_unknown(site: _Site) -> Task | None:
    site.holder["unknownElement"] = "x"
    return site.task


def _slice_ext1(site: _Site) -> Task | None:
    """A slice instance without its value (ext-1: a value or nested extensions)."""
    if site.detail != "ext-1":
        return None
    for k in [k for k in site.holder if k.startswith("value")]:
        site.holder.pop(k)
    return site.task


def _slice_max(site: _Site) -> Task | None:
    """Copies of the slice's first instance, next to it."""
    element = site.node.id
    if element.count(".") != 1:
        return None  # a slice below the resource's own extensions: no recipe
    name = element.split(".")[1].split(":")[0]
    copies = (site.node.max or 0) + 1 - len(site.instances)
    site.task[name] = site.task[name] + [dict(site.holder) for _ in range(copies)]
    return site.task


_SLICE_FAULTS: dict[Kind, _Fault] = {
    Kind.UNKNOWN: _slice_unknown,
    Kind.CONSTRAINT: _slice_ext1,
    Kind.MAX: _slice_max,
}


# -- any other element ----------------------------------------------------------------------

def _min(site: _Site) -> Task | None:
    """The element goes missing, or, for an optional datatype element, a required part of it."""
    node, prop = site.node, site.prop
    if node.min == 0 and prop is not None:
        value, first = site.value, site.first
        parts = [p for p in required_parts(node) if isinstance(first, dict) and p in first]
        if not parts:
            return None
        lacking = {k: v for k, v in first.items() if k != site.c.choose(parts)}
        site.holder[prop] = [lacking] + value[1:] if isinstance(value, list) else lacking
        return site.task
    if prop is not None:
        site.holder.pop(prop, None)
    return site.task


def _max(site: _Site) -> Task | None:
    """One occurrence too many (a forbidden element is already present)."""
    node = site.node
    if node.forbidden:
        return site.task
    assert site.prop is not None
    value = site.value
    site.holder[site.prop] = [value] * ((node.max or 0) + 1) if node.is_array else value
    return site.task if node.is_array else None


def _type(site: _Site) -> Task | None:
    node, tref = site.node, site.tref
    if node.is_choice:
        assert site.prop is not None
        site.holder.pop(site.prop)
        no_string = all(t.code != "string" for t in node.types)
        site.holder[node.name[:-3] + "String"] = "x" if no_string else None
        return site.task if no_string else None
    if site.edge in (BARE_ITEM, ONE_ITEM_ARRAY):
        assert site.prop is not None
        value = site.value
        if not node.is_array:
            site.holder[site.prop] = [value]
        elif isinstance(value, list) and value:
            site.holder[site.prop] = value[0]
        else:
            return None
        return site.task
    if tref.primitive is not None:
        return site.put(_WRONG_TYPE.get(tref.code, 12345))
    return site.put("x")


def _format(site: _Site) -> Task | None:
    tref = site.tref
    if site.edge is not None:  # `[part=]type:class`: an invalid class of the catalogue
        name, _, klass = site.edge.rpartition("=")
        code, _, cls = klass.partition(":")
        bad = value_class(code, cls)
        if bad is None:
            return None
        if not name:
            return site.put(bad.make()) if tref.primitive is not None else None
        first = site.first
        return site.put({**first, name: bad.make()}) if isinstance(first, dict) else None
    if tref.primitive is not None:
        return site.put(_BAD_FORMAT[tref.code]) if tref.code in _BAD_FORMAT else None
    part = _bad_primitive_part(tref.code)
    first = site.first
    if part is None or not isinstance(first, dict):
        return None
    name, code = part
    return site.put({**first, name: _BAD_FORMAT[code]})


def _unknown(site: _Site) -> Task | None:
    if site.tref.primitive is not None:  # `_x` holds only id and extension
        return site.companion({"unknownElement": "x"})
    first = site.first
    return site.put({**first, "unknownElement": "x"}) if isinstance(first, dict) else None


def _near_code(site: _Site) -> Task | None:
    """A code just outside: a case variant, a code of the same code system the value set
    leaves out, or another code of the value set than the fixed one (the edge names it)."""
    assert site.edge is not None
    code = site.edge.split(":", 1)[1]
    if site.tref.code == "code":
        return site.put(code)
    expansion = site.gen.oracle.expansion(site.node.binding[1]) if site.node.binding else None
    system = min((s for s, _ in expansion or ()), default="http://example.org/cs")
    coding = {"system": system, "code": code}
    return site.put(coding if site.tref.code == "Coding" else {"coding": [coding]})


def _fixed(site: _Site) -> Task | None:
    if site.edge is not None:
        return _near_code(site)
    node = site.node
    fixed = node.fixed[1] if node.fixed else None
    codes = site.gen.oracle.expansion(node.binding[1]) if node.binding else None
    options = (sorted(code for _, code in codes if code != fixed) if codes
               else [w for w in WORDS if w != fixed])
    return site.put(site.c.choose(options))


def _pattern(site: _Site) -> Task | None:
    if isinstance(site.first, dict):
        return site.put({"coding": [{"system": "http://example.org/other",
                                     "code": site.c.choose(WORDS)}]})
    return site.put("other")


def _binding(site: _Site) -> Task | None:
    if site.edge is not None:
        return _near_code(site)
    bogus = site.c.choose(["bogus", "not-in-valueset", "unknown-code"])
    code = site.tref.code
    binding = site.node.binding
    if binding is None or binding[0] != "required":
        # no binding of its own: a code inside it (a required-bound part, or a Coding of a code
        # system known in full)
        inner = _bad_inner_code(code, bogus)
        if inner is None:
            return None
        first = site.first
        if code == "Extension":
            url = first.get("url") if isinstance(first, dict) else None
            return site.put({"url": url or "http://example.org/fhir/StructureDefinition/coded", "valueCoding": inner})
        return site.put({**first, **inner} if isinstance(first, dict) and code != "Coding" else inner)
    if code == "code":
        return site.put(bogus)
    if code == "Coding":
        return site.put({"system": "http://example.org/cs", "code": bogus})
    return site.put({"coding": [{"system": "http://example.org/cs", "code": bogus}]})


# A CodeSystem R4 defines in full: a Coding naming it must use one of its codes.
KNOWN_SYSTEM = "http://hl7.org/fhir/administrative-gender"


def _bad_inner_code(code: str, bogus: str, seen: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """A value of datatype `code` (its changed parts only) holding a wrong code: a part bound
    to a required ValueSet given a code outside it, or a Coding of KNOWN_SYSTEM with a code
    that system lacks. None when the datatype holds no code."""
    coding = {"system": KNOWN_SYSTEM, "code": bogus}
    if code in ("Coding", "Extension"):
        return coding
    if code == "CodeableConcept":
        return {"coding": [coding]}
    children = [ch for ch in datatype_template(code).values()
                if ch.name not in ("id", "extension", "modifierExtension") and not ch.is_choice and ch.types]
    for child in children:
        if child.binding is not None and child.binding[0] == "required" and child.types[0].code == "code":
            return {child.name: [bogus] if child.is_array else bogus}
    for child in children:
        sub = child.types[0].code
        if child.binding is not None and child.binding[0] == "extensible":
            continue  # judged against its value set only: another system's code is no error there
        if child.types[0].primitive is None and sub not in seen:
            inner = _bad_inner_code(sub, bogus, seen | {code})
            if inner is not None:
                return {child.name: [inner] if child.is_array else inner}
    return None


# One fault per kind inside a contained Patient that an open extension refers to (a
# Reference(Any), so only R4's Patient applies, not KT2Patient as for `for`).
_CONTAINED_FAULTS: dict[str, Callable[[Chooser], dict[str, Any]]] = {
    "min": lambda c: {"link": [{"type": "seealso"}]},
    "max": lambda c: {"multipleBirthBoolean": True, "multipleBirthInteger": 2},
    "format": lambda c: {"birthDate": c.choose(["1980-02-30", "1980-13-01", "80-01-01"])},
    "unknown": lambda c: {c.choose(["nickname", "shoeSize"]): "x"},
    "binding": lambda c: {"gender": c.choose(["vrouw", "man", "bogus"])},
    "targetProfile": lambda c: {"managingOrganization": {"reference": "Group/" + c.choose(WORDS)}},
    "constraint:pat-1": lambda c: {"contact": [{"gender": c.choose(["male", "female"])}]},
    "constraint:ref-1": lambda c: {"managingOrganization": {"reference": "#missing"}},
    "constraint:per-1": lambda c: {"name": [{"family": "Jansen", "period": {"start": "2021-01-01", "end": "2020-01-01"}}]},
}


def _contained_fault(kind: str, c: Chooser, task: Task, name: str) -> Task | None:
    """A contained Patient, referred to by an open extension, that breaks `kind` of its R4
    definition."""
    fault = _CONTAINED_FAULTS.get(kind)
    if fault is None:
        return None
    subject = {"url": "http://example.org/fhir/StructureDefinition/subject", "valueReference": {"reference": "#c1"}}
    return {**task, name: [{"resourceType": "Patient", "id": "c1", **fault(c)}],
            "extension": [*task.get("extension", []), subject]}


def _target_profile(site: _Site) -> Task | None:
    tref = site.tref
    wrong = sorted(t for t in site.gen.refs if t not in tref.target_types)
    if not wrong:
        return None
    named = site.edge.split(":", 1)[1] if site.edge and site.edge.startswith("target:") else None
    rtype = named if named in wrong else site.c.choose(wrong)
    if tref.code == "canonical":
        return site.put(f"http://example.org/fhir/{rtype}/{site.c.choose(WORDS)}")
    return site.put({"reference": site.gen.refs[rtype]})


def _ele1(site: _Site) -> Task | None:
    """An element with neither a value nor children."""
    if site.tref.primitive is not None:
        assert site.prop is not None
        value = site.holder.pop(site.prop)
        site.holder["_" + site.prop] = [{}] if isinstance(value, list) else {}
        return site.task
    return site.put({})


def _ext1(site: _Site) -> Task | None:
    """An extension with both a value and nested extensions."""
    ext = {"url": "http://example.org/fhir/StructureDefinition/nested", "valueString": "x"}
    first = site.first
    if site.tref.code == "Extension":  # the extension itself gets both a value and extensions
        return site.put({**first, "extension": [ext]} if "extension" not in first
                        else {k: v for k, v in first.items() if k != "extension"})
    both = {**ext, "extension": [ext]}  # an extension on the element, with both
    if site.tref.primitive is not None:
        return site.companion({"extension": [both]})
    return site.put({**first, "extension": [both]}) if isinstance(first, dict) else None


def _invariant(site: _Site) -> Task | None:
    """Any other invariant: built where the datatype declares it, then broken by its recipe."""
    first, inv = site.first, site.detail
    assert inv is not None
    if not isinstance(first, dict):
        return None
    path = _invariant_path(site.tref.code, inv)
    if path is None:  # declared on a part of the datatype (txt-1 on Narrative.div)
        broken = _break_invariant(inv, site.c, site.gen, first, site.edge)
        return None if broken is None else site.put(broken)
    target = dict(first)
    inner = target
    for name, is_array in path:  # build the nested element that carries the invariant
        inner[name] = {}
        parent, inner = inner, inner[name]
        if is_array:
            parent[name] = [inner]
    broken = _break_invariant(inv, site.c, site.gen, inner, site.edge)
    if broken is None:
        return None
    inner.clear()
    inner.update(broken)
    return site.put(target)


# ele-1 and ext-1 are broken structurally; every other invariant through its recipe.
_INVARIANT_FAULTS: dict[str, _Fault] = {"ele-1": _ele1, "ext-1": _ext1}


def _constraint(site: _Site) -> Task | None:
    assert site.detail is not None
    return _INVARIANT_FAULTS.get(site.detail, _invariant)(site)


_ELEMENT_FAULTS: dict[Kind, _Fault] = {
    Kind.MIN: _min,
    Kind.MAX: _max,
    Kind.TYPE: _type,
    Kind.FORMAT: _format,
    Kind.UNKNOWN: _unknown,
    Kind.FIXED: _fixed,
    Kind.PATTERN: _pattern,
    Kind.BINDING: _binding,
    Kind.TARGET_PROFILE: _target_profile,
    Kind.CONSTRAINT: _constraint,
}
# Kinds that need the element's value in place (min and max also work on what is absent).
_NEEDS_VALUE = frozenset(_ELEMENT_FAULTS) - {Kind.MIN, Kind.MAX}


def apply_fault(gen: TaskGenerator, key: str, c: Chooser, task: Task,
                edge: str | None = None) -> Task | None:
    """Apply the one fault that breaks `key` to a minimal valid `task`; None if no recipe.
    The fault is looked up by the key's kind: a Koppeltaal server rule's own fault (its row in
    kt2conformance._koppeltaal), else the recipe for the resource, a slice or an element.
    `edge` (one of `fault_edges`) says where to break it; without one, half the time the
    chooser draws an edge, else the kind's everyday fault."""
    server_rule = rule(key)
    if server_rule is not None:
        return None if server_rule.fault is None else server_rule.fault(c, task)
    if edge is None:
        edges = fault_edges(gen, key)
        edge = c.choose(edges) if edges and c.flip() else None
    parsed = ConstraintKey.parse(key)
    clock = c.moments(4)
    if parsed.element == gen.tree.id:  # the resource itself
        resource_fault = _RESOURCE_FAULTS.get(parsed.kind)
        return None if resource_fault is None else resource_fault(gen, c, task, parsed.detail, edge)
    element = gen.tree.children.get(parsed.element.split(".", 1)[1]) if parsed.element.count(".") == 1 else None
    if element is not None and any(t.code == "Resource" for t in element.types) and parsed.kind != Kind.TYPE:
        name = f"{parsed.kind}:{parsed.detail}" if parsed.detail else str(parsed.kind)
        return _contained_fault(name, c, task, element.name)
    located = _locate(gen, c, task, parsed.element, clock)
    if located is None:
        return None
    holder, node, instances = located
    is_slice = node.slice_name is not None
    prop = None if is_slice else _prop_of(holder, node)
    fault = (_SLICE_FAULTS if is_slice else _ELEMENT_FAULTS).get(parsed.kind)
    if fault is None:
        return None
    if not is_slice and parsed.kind in _NEEDS_VALUE and (prop is None or not node.types):
        return None
    return fault(_Site(gen, c, task, parsed.kind, parsed.detail, holder, node, instances, prop, edge))


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

