"""One fault per constraint kind: how a minimal valid Task is changed to break one constraint key.

`apply_fault` reads the key (`<element id>/<kind>`), makes the element present if needed and
breaks it the way its kind says: a missing required element or part, one occurrence too many, a
value of the wrong JSON type or lexical form, an unknown element, another code than the fixed or
bound one, a reference to a resource type the target profiles don't allow. FHIRPath invariants
can't be inverted in general; the invariants R4 and the profile use (inv-1, per-1, ref-1,
dom-2…dom-5, txt-1, txt-2) each have a recipe in `_break_invariant`; ele-1 and ext-1 are broken
structurally. The caller checks with the oracle that only the intended key broke.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from kt2conformance._koppeltaal import rule
from kt2conformance.spec._constraints import required_parts
from kt2conformance.generate._values import (
    TIME_ZONES,
    WORDS,
    XHTML,
    Chooser,
    Task,
    TaskGenerator,
    render_datetime,
)
from kt2conformance.spec._tree import Node, datatype_invariants, datatype_template

def _locate(gen: TaskGenerator, c: Chooser, task: Task, element_id: str, clock: list[dt.datetime]) -> tuple[dict[str, Any], Node, list[dict[str, Any]]] | None:
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


def _break_invariant(key: str, c: Chooser, gen: TaskGenerator, value: Any) -> Any:
    """A value of the element with invariant `key` broken, or None when there is no recipe."""
    inv = key.split(":", 1)[1]
    clock = c.moments(2, unique=True)
    later, earlier = render_datetime(clock[1], c.choose(TIME_ZONES), False), render_datetime(clock[0], c.choose(TIME_ZONES), False)
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
        "txt-1": lambda v: {"status": "generated", "div": XHTML.format("<script>alert(1)</script>x")},
        "txt-2": lambda v: {"status": "generated", "div": XHTML.format(" ")},
    }
    recipe = recipes.get(inv)
    return None if recipe is None else recipe(value)


def apply_fault(gen: TaskGenerator, key: str, c: Chooser, task: Task) -> Task | None:
    """Apply the one fault that breaks `key` to a minimal valid `task`; None if no recipe."""
    element_id, _, kind = key.partition("/")
    server_rule = rule(key)
    if server_rule is not None:
        return None if server_rule.fault is None else server_rule.fault(c, task)
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
    def companion(part: dict[str, Any]) -> Task:
        """Give primitive `prop` a `_prop` (its id and extensions), shaped like the value."""
        holder["_" + prop] = [part] + [None] * (len(value) - 1) if isinstance(value, list) else part
        return task

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
        if tref.primitive is not None:  # `_x` holds only id and extension
            return companion({"unknownElement": "x"})
        return put({**first, "unknownElement": "x"}) if isinstance(first, dict) else None
    if kind == "fixed":
        fixed = node.fixed[1] if node.fixed else None
        codes = gen.oracle.expansion(node.binding[1]) if node.binding else None
        options = sorted(c for _, c in codes if c != fixed) if codes else [w for w in WORDS if w != fixed]
        return put(c.choose(options))
    if kind == "pattern":
        return put({"coding": [{"system": "http://example.org/other", "code": c.choose(WORDS)}]}) if isinstance(first, dict) else put("other")
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
            return put(f"http://example.org/fhir/{rtype}/{c.choose(WORDS)}")
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
        if tref.code == "Extension":  # the extension itself gets both a value and extensions
            return put({**first, "extension": [ext]} if "extension" not in first else {k: v for k, v in first.items() if k != "extension"})
        both = {**ext, "extension": [ext]}  # an extension on the element, with both
        if tref.primitive is not None:
            return companion({"extension": [both]})
        return put({**first, "extension": [both]}) if isinstance(first, dict) else None
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

