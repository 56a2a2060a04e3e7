"""The constraints a profile imposes, one stable key each (`<element id>/<kind>`, docs/contract.md),
read from the element tree, plus the rules a Koppeltaal server enforces beyond the profile.

What is listed:
- `min` for required elements, `max` where the profile narrows the base (every max 0, slice
  limits), `fixed`, `pattern`, `binding` (required strength only);
- `type` for every element (wrong JSON type or shape, a choice type not allowed), `format` for
  elements whose value is or contains primitives, `unknown` for elements with children,
  `targetProfile` for references and canonicals that restrict their target;
- `constraint:<key>` for every invariant of the element, of its datatype, and of the datatype's
  parts (txt-1 of Narrative.div is reported on `Task.text`).
Descendants of a forbidden (max 0) element are not listed: any presence already breaks its max.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from kt2conformance._koppeltaal import rules_for
from kt2conformance._vocabulary import ConstraintKey, Kind
from kt2conformance.spec._profile import Profile, r4_resources
from kt2conformance.spec._tree import Node, build_tree, datatype_invariants, datatype_template, walk


@dataclass(frozen=True)
class Constraint:
    key: ConstraintKey
    kind: Kind
    element: str
    description: str
    severity: str = "error"  # "warning": a SHOULD, not a conformance failure

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def server_rules(resource_type: str) -> list[Constraint]:
    """The server rules that apply to resources of this type, as constraints (their one home is
    kt2conformance._koppeltaal)."""
    return [Constraint(r.key, Kind.SERVER, Kind.SERVER.value, r.summary) for r in rules_for(resource_type)]


def _nested_invariants(code: str, seen: set[str]) -> list[tuple[str, str, str]]:
    """(key, severity, human) of invariants on a datatype and its parts, recursively; open
    choices (Extension.value[x] and its fifty types) and extensions are not followed: they say
    nothing about this profile."""
    if code in seen:
        return []
    seen.add(code)
    found = [(i.key, i.severity, i.human) for i in datatype_invariants(code)]
    for child in datatype_template(code).values():
        found += [(i.key, i.severity, i.human) for i in child.invariants if i.key not in ("ele-1", "ext-1")]
        if len(child.types) == 1 and child.types[0].primitive is None and child.types[0].code != "Extension":
            found += _nested_invariants(child.types[0].code, seen)
    return found


def _reaches_codes(code: str, seen: set[str]) -> bool:
    """Whether a value of datatype `code` can hold a code the oracle checks: a Coding (its
    system may be known in full), an element with a required binding, an open extension (it
    can hold a Coding) or a contained resource."""
    if code in ("Coding", "CodeableConcept", "Extension", "Resource"):
        return True
    if code in seen:
        return False
    seen.add(code)
    for child in datatype_template(code).values():
        if child.binding is not None and child.binding[0] == "required":
            return True
        if child.name not in ("extension", "modifierExtension") and any(
                t.primitive is None and _reaches_codes(t.code, seen) for t in child.types):
            return True
    return False


def _contained_constraints(node: Node, targets: set[str]) -> list[Constraint]:
    """A contained resource is checked against its R4 base definition; everything found inside
    it is reported on the element that holds it. Its invariants are listed for the resource
    types the profile's references can point at."""
    label = node.id
    out = [Constraint(ConstraintKey(label, kind), kind, label,
                      f"{what} (inside a contained resource, by its R4 definition)")
           for kind, what in ((Kind.MIN, "required elements present"), (Kind.MAX, "no more than allowed"),
                              (Kind.FORMAT, "primitive values in their lexical form"),
                              (Kind.UNKNOWN, "only elements its definition has"),
                              (Kind.TARGET_PROFILE, "references to allowed resource types"))]
    seen: set[str] = set()
    for rtype in sorted(targets):
        sd = r4_resources().get(rtype)
        for el in sd["snapshot"]["element"] if sd is not None else []:
            for inv in el.get("constraint", []):
                if inv["key"] not in seen and inv["key"] not in ("ele-1", "ext-1") and inv.get("expression"):
                    seen.add(inv["key"])
                    out.append(Constraint(ConstraintKey(label, Kind.CONSTRAINT, inv["key"]), Kind.CONSTRAINT, label,
                                          f"{inv.get('human', '')} ({inv['key']}, in a contained {rtype})",
                                          inv.get("severity", "error")))
    return out


def required_parts(node: Node) -> list[str]:
    """The required parts of a datatype element (Narrative: status, div; Extension: url): a
    missing one is reported on the element, as `<element>/min`."""
    if node.forbidden or node.explicit_children or len(node.types) != 1 or node.types[0].primitive is not None:
        return []
    return [c.name for c in node.children.values() if c.min > 0]


def _node_constraints(node: Node, is_root: bool) -> list[Constraint]:
    out: list[Constraint] = []
    label = node.id

    def add(kind: Kind, description: str, severity: str = "error", detail: str | None = None) -> None:
        out.append(Constraint(ConstraintKey(node.id, kind, detail), kind, node.id, description, severity))

    if is_root:
        add(Kind.TYPE, f"the resource must be a JSON object with resourceType {node.id}")
        add(Kind.UNKNOWN, "only elements defined for the resource may appear")
    else:
        parts = required_parts(node)
        if node.min > 0 or parts:
            needs = [f"{label} is required (min {node.min})"] if node.min > 0 else []
            if parts:
                needs.append(f"{label} needs its {', '.join(parts)} ({node.types[0].code})")
            add(Kind.MIN, "; ".join(needs))
        narrowed = node.max is not None and (node.base_max is None or node.max < node.base_max)
        if node.forbidden or narrowed:
            add(Kind.MAX, f"{label} is not allowed" if node.forbidden else f"{label} may occur at most {node.max} time(s)")
        if node.forbidden:
            return out
        codes = [t.code for t in node.types]
        add(Kind.TYPE, f"{label} must be of type {' or '.join(codes)}")
        if node.fixed is not None:
            add(Kind.FIXED, f"{label} must be exactly {node.fixed[1]!r}")
        if node.pattern is not None:
            add(Kind.PATTERN, f"{label} must match {node.pattern[1]!r}")
        if node.binding is not None and node.binding[0] == "required":
            add(Kind.BINDING, f"{label} must come from the value set {node.binding[1].split('|')[0]}")
        elif any(_reaches_codes(t.code, set()) for t in node.types):
            add(Kind.BINDING, f"codes inside {label} must come from the value sets their elements require and "
                "from the code systems they name, when known in full")
        targets = sorted({tt for t in node.types for tt in t.target_types})
        if targets and "Resource" not in targets:
            add(Kind.TARGET_PROFILE, f"{label} must refer to {' or '.join(targets)}")
        if any(t.primitive is not None or t.code not in ("Resource", "BackboneElement") for t in node.types):
            add(Kind.FORMAT, f"primitive values in {label} must have a valid FHIR R4 lexical form")
        primitive = any(t.primitive is not None for t in node.types)
        if node.children and not primitive:
            add(Kind.UNKNOWN, f"only elements defined for {label} may appear")
        elif primitive and not node.attribute:
            add(Kind.UNKNOWN, f"only id and extension may appear in the _{node.name} of {label}")
    seen = set()
    for inv in node.invariants:
        seen.add(inv.key)
        add(Kind.CONSTRAINT, f"{inv.human} ({inv.key})", inv.severity, inv.key)
    for t in node.types:
        if t.primitive is None:
            for key, severity, human in _nested_invariants(t.code, set()):
                if key not in seen:
                    seen.add(key)
                    add(Kind.CONSTRAINT, f"{human} ({key})", severity, key)
    if not is_root and not node.attribute and "ext-1" not in seen and node.types \
            and all(t.code != "Resource" for t in node.types):  # contained resources: not walked
        add(Kind.CONSTRAINT, f"extensions on {label} have either a value or nested extensions, not both (ext-1)",
            detail="ext-1")
    return out


def derive_constraints(profile: Profile, tree: Node | None = None) -> list[Constraint]:
    """Every constraint of the profile, in snapshot order, then the server rules for its type."""
    root = tree if tree is not None else build_tree(profile)
    targets = {tt for node in walk(root) for t in node.types for tt in t.target_types} - {"Resource"}
    out: list[Constraint] = []
    for node in walk(root):
        out += _node_constraints(node, node is root)
        if not node.forbidden and any(t.code == "Resource" for t in node.types):
            out += _contained_constraints(node, targets)
    return out + server_rules(profile.type)
