"""Checking the shape of the conformance resources a profile is made of, before anything reads
them: a StructureDefinition's snapshot elements, and the ValueSets and CodeSystems its required
bindings reach.

Everything downstream (the element tree, the constraint list, the oracle, the generators) reads
these resources as FHIR defines them, so a hand-edited or hostile definition with a wrongly typed
field would otherwise surface as a traceback deep inside a run. Here each such field is checked
once, and the first problem becomes a one-line usage error naming the file, the element and the
field (exit 2). Only the fields the harness reads are checked; the rest is left to the IG
Publisher's own validation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kt2conformance._errors import UsageError

Json = dict[str, Any]

_MAX = re.compile(r"^(\*|\d+)$")
_STRENGTHS = frozenset({"required", "extensible", "preferred", "example"})
_SEVERITIES = frozenset({"error", "warning"})
_CHOICE_VALUE = re.compile(r"^(fixed|pattern)[A-Z][A-Za-z0-9]*$")
# Nested concept hierarchies deeper than this are not a CodeSystem anyone wrote by hand.
_MAX_CONCEPT_DEPTH = 50


class _Problem(Exception):
    """One malformed field: `where` (element id or resource part) and what is wrong with it."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")


def check_structure_definition(sd: Json, source: Path | str, root_type: str | None = None) -> None:
    """Raise UsageError naming the first malformed field of `sd`'s snapshot the harness reads.
    `root_type`: the type the first element's path must name (default: the SD's `type`)."""
    try:
        _check_sd(sd, root_type)
    except _Problem as problem:
        raise UsageError(f"{source}: StructureDefinition {_name(sd.get('url'))} is malformed: "
                         f"{problem}") from None


def check_terminology(resource: Json, source: Path | str) -> None:
    """Raise UsageError when a ValueSet or CodeSystem a required binding reaches is malformed
    in a field the expansion reads."""
    try:
        for part in ("compose", "expansion", "concept", "content"):
            null = _null_in({part: resource[part]}) if part in resource else None
            if null:
                raise _Problem(null, "null (FHIR JSON has no null values)")
        if resource.get("resourceType") == "ValueSet":
            _check_value_set(resource)
        else:
            _check_code_system(resource)
    except _Problem as problem:
        raise UsageError(f"{source}: {resource.get('resourceType')} {_name(resource.get('url'))} "
                         f"is malformed: {problem}") from None


def _name(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 100 else text[:99] + "…"


def _check_sd(sd: Json, root_type: str | None) -> None:
    for field in ("url", "type"):
        if not isinstance(sd.get(field), str) or not sd[field]:
            raise _Problem(field, "missing or not a string")
    if not isinstance(sd.get("snapshot"), dict):
        raise _Problem("snapshot", "missing or not an object")
    elements = sd["snapshot"].get("element")
    if not isinstance(elements, list) or not elements:
        raise _Problem("snapshot.element", "missing, empty or not a list")
    root = root_type or sd["type"]
    for index, element in enumerate(elements):
        if not isinstance(element, dict):
            raise _Problem(f"snapshot.element[{index}]", "not an object")
        _check_element(element, index, root)


def _check_element(element: Json, index: int, root: str) -> None:
    where = f"snapshot.element[{index}]"
    for field in ("id", "path"):
        if not isinstance(element.get(field), str) or not element[field].strip():
            raise _Problem(where, f"{field} missing or not a string")
    path, where = element["path"], element["id"]
    null = _null_in(element)
    if null:
        raise _Problem(where, f"{null} is null (FHIR JSON has no null values)")
    if index == 0 and path != root:
        raise _Problem(where, f"the first element's path is {path!r}, not {root!r}")
    if index > 0 and not path.startswith(root + "."):
        raise _Problem(where, f"path {path!r} is not inside {root}")
    if not all(part for part in path.split(".")):
        raise _Problem(where, f"path {path!r} has an empty part")
    minimum = _min(element.get("min"), where, "min")
    maximum = _max(element.get("max"), where, "max")
    if minimum is not None and maximum is not None and minimum > maximum:
        raise _Problem(where, f"min {minimum} is more than max {maximum} (eld-3)")
    base = element.get("base")
    if base is not None:
        if not isinstance(base, dict):
            raise _Problem(where, "base is not an object")
        _min(base.get("min"), where, "base.min")
        _max(base.get("max"), where, "base.max")
    for field in ("sliceName", "short", "definition", "contentReference"):
        if field in element and not isinstance(element[field], str):
            raise _Problem(where, f"{field} is not a string")
    if "slicing" in element and not isinstance(element["slicing"], dict):
        raise _Problem(where, "slicing is not an object")
    for kind in ("fixed", "pattern"):
        names = [k for k in element if k.startswith(kind) and k != kind + "s"]
        if len(names) > 1:
            raise _Problem(where, f"more than one {kind}[x] ({', '.join(sorted(names))})")
        if names and not _CHOICE_VALUE.match(names[0]):
            raise _Problem(where, f"{names[0]} names no type")
    _check_types(element.get("type"), where)
    if index > 0 and not element.get("type") and "contentReference" not in element:
        raise _Problem(where, "no type (every element but the first needs one in a snapshot)")
    _check_binding(element.get("binding"), where)
    _check_constraints(element.get("constraint"), where)


def _null_in(node: Any, prefix: str = "") -> str | None:
    """The first field inside `node` whose value is JSON null, as a dotted name."""
    if isinstance(node, dict):
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if value is None:
                return name
            found = _null_in(value, name)
            if found:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _null_in(value, f"{prefix}[{i}]") if value is not None else f"{prefix}[{i}]"
            if found:
                return found
    return None


def _min(value: Any, where: str, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Problem(where, f"{field} {value!r} is not a whole number of 0 or more")
    return value


def _max(value: Any, where: str, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _MAX.match(value):
        raise _Problem(where, f"{field} {value!r} is not \"*\" or a number (as a string)")
    return None if value == "*" else int(value)


def _strings(value: Any, where: str, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Problem(where, f"{field} is not a list of strings")


def _objects(value: Any, where: str, field: str) -> list[Json]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _Problem(where, f"{field} is not a list of objects")
    return value


def _check_types(types: Any, where: str) -> None:
    for i, type_ in enumerate(_objects(types, where, "type")):
        if not isinstance(type_.get("code"), str) or not type_["code"].strip():
            raise _Problem(where, f"type[{i}].code missing or not a string")
        _strings(type_.get("profile"), where, f"type[{i}].profile")
        _strings(type_.get("targetProfile"), where, f"type[{i}].targetProfile")
        for j, extension in enumerate(_objects(type_.get("extension"), where,
                                               f"type[{i}].extension")):
            if not isinstance(extension.get("url"), str):
                raise _Problem(where, f"type[{i}].extension[{j}].url missing or not a string")
            if "valueUrl" in extension and not isinstance(extension["valueUrl"], str):
                raise _Problem(where, f"type[{i}].extension[{j}].valueUrl is not a string")


def _check_binding(binding: Any, where: str) -> None:
    if binding is None:
        return
    if not isinstance(binding, dict):
        raise _Problem(where, "binding is not an object")
    if not isinstance(binding.get("strength"), str) or binding["strength"] not in _STRENGTHS:
        raise _Problem(where, f"binding.strength {binding.get('strength')!r} is not one of "
                              f"{', '.join(sorted(_STRENGTHS))}")
    value_set = binding.get("valueSet")
    if value_set is not None and (not isinstance(value_set, str) or not value_set.strip()):
        raise _Problem(where, "binding.valueSet is not a canonical URL")


def _check_constraints(constraints: Any, where: str) -> None:
    from kt2conformance.spec._fhirpath import compile_expression

    for i, constraint in enumerate(_objects(constraints, where, "constraint")):
        if not isinstance(constraint.get("key"), str) or not constraint["key"].strip():
            raise _Problem(where, f"constraint[{i}].key missing or not a string")
        key = constraint["key"]
        if "severity" in constraint and (not isinstance(constraint["severity"], str)
                                         or constraint["severity"] not in _SEVERITIES):
            raise _Problem(where, f"constraint {key}: severity {constraint['severity']!r} is not "
                                  f"error or warning")
        for field in ("human", "expression"):
            if field in constraint and not isinstance(constraint[field], str):
                raise _Problem(where, f"constraint {key}: {field} is not a string")
        expression = constraint.get("expression")
        if expression:
            for typed in (False, True):
                try:
                    compile_expression(expression, typed)
                except Exception as exc:  # noqa: BLE001 - the parser's errors have no common type
                    detail = " ".join(str(exc).split())[:80] or type(exc).__name__
                    raise _Problem(where, f"constraint {key}: expression {_name(expression)} "
                                          f"does not parse ({detail})") from None


def _check_value_set(vs: Json) -> None:
    compose = vs.get("compose")
    if compose is not None:
        if not isinstance(compose, dict):
            raise _Problem("compose", "not an object")
        for part_name in ("include", "exclude"):
            for i, part in enumerate(_objects(compose.get(part_name), "compose", part_name)):
                where = f"compose.{part_name}[{i}]"
                if "system" in part and not isinstance(part["system"], str):
                    raise _Problem(where, "system is not a string")
                for j, concept in enumerate(_objects(part.get("concept"), where, "concept")):
                    if not isinstance(concept.get("code"), str):
                        raise _Problem(where, f"concept[{j}].code missing or not a string")
                _strings(part.get("valueSet"), where, "valueSet")
                _objects(part.get("filter"), where, "filter")
    expansion = vs.get("expansion")
    if expansion is not None:
        if not isinstance(expansion, dict):
            raise _Problem("expansion", "not an object")
        for i, item in enumerate(_objects(expansion.get("contains"), "expansion", "contains")):
            if not isinstance(item.get("system"), str) or not isinstance(item.get("code"), str):
                raise _Problem(f"expansion.contains[{i}]", "system or code missing or not a string")


def _check_code_system(cs: Json) -> None:
    if "content" in cs and not isinstance(cs["content"], str):
        raise _Problem("content", "not a string")
    pending: list[tuple[Any, str, int]] = [(cs.get("concept"), "concept", 0)]
    while pending:
        concepts, where, depth = pending.pop()
        if depth > _MAX_CONCEPT_DEPTH:
            raise _Problem(where, f"concepts nested more than {_MAX_CONCEPT_DEPTH} deep")
        for i, concept in enumerate(_objects(concepts, where, "concept")):
            if not isinstance(concept.get("code"), str):
                raise _Problem(f"{where}[{i}]", "code missing or not a string")
            pending.append((concept.get("concept"), f"{where}[{i}].concept", depth + 1))
