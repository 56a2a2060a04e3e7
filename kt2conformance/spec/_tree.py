"""The profile as a tree of element nodes, built once from the snapshot, that the oracle walks
and the constraint list and generators are read from.

Nodes come from three places:
- the profile's snapshot (`Task.owner`, `Task.restriction.period`): they own their constraint key;
- an extension slice's own StructureDefinition, grafted under the slice
  (`Task.extension:instantiates.value[x]`): they own their key too;
- the R4 datatype definitions, for the inside of a datatype (`Identifier.system`): shared
  templates whose issues are reported under the nearest owning element (`Task.identifier/format`),
  so the set of keys stays the profile's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, cast

from fhirpathpy.models import models

from kt2conformance.spec._primitives import Primitive, primitive
from kt2conformance.spec._profile import Json, Profile, datatype_definition, r4_resources

_FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
_SD_BASE = "http://hl7.org/fhir/StructureDefinition/"
RESOURCE_TYPES: frozenset[str] = frozenset(
    name for name, parent in models["r4"]["type2Parent"].items() if parent in ("DomainResource", "Resource")
) | {"Resource", "DomainResource"}
STRUCTURAL_INVARIANTS = ("ele-1", "ext-1")


@dataclass(frozen=True)
class Invariant:
    key: str
    severity: str
    human: str
    expression: str


def validator_expression(constraint: dict[str, Any]) -> str:
    """An invariant's expression as the HL7 validator evaluates it: its FHIRPathExpressionFixer
    mends published expressions it knows to be wrong; of those the oracle can meet, R4 publishes
    txt-2 ("some non-whitespace content") as `htmlChecks()`, the same text as txt-1, and the
    validator evaluates it as `htmlChecks2()`."""
    if constraint.get("key") == "txt-2" and constraint.get("expression") == "htmlChecks()":
        return "htmlChecks2()"
    return str(constraint["expression"])


@dataclass(frozen=True)
class TypeRef:
    """One allowed type of an element: its code, and for references and canonicals the resource
    types its target profiles resolve to (empty: any)."""

    code: str
    target_types: frozenset[str] = frozenset()
    profiles: tuple[str, ...] = ()
    # the target profiles themselves: a contained target is checked against those at hand
    target_profiles: tuple[str, ...] = ()

    @cached_property
    def primitive(self) -> Primitive | None:
        return primitive(self.code)


@dataclass
class Node:
    """One element definition. `name` is the JSON property (`value[x]` for a choice)."""

    id: str
    name: str
    min: int
    max: int | None  # None: unbounded
    base_max: int | None
    types: list[TypeRef]
    owns_key: bool
    fixed: tuple[str, Any] | None = None
    pattern: tuple[str, Any] | None = None
    binding: tuple[str, str] | None = None  # (strength, value set url)
    invariants: list[Invariant] = field(default_factory=list)
    explicit_children: dict[str, Node] | None = None
    slices: dict[str, Node] = field(default_factory=dict)  # extension url -> slice node
    slice_name: str | None = None
    # Typed with a FHIRPath system type (Resource.id, Element.id, Extension.url): a plain JSON
    # attribute, which has no `_x` companion and so carries no extensions.
    attribute: bool = False
    # the element's base path (`Address.line` for a profile's `Patient.address.line`): where an
    # extension's context names it
    base_path: str | None = None
    # What the oracle compiles from this element once, so that its walk does no generic lookups
    # per value (kt2conformance.oracle._oracle); not copied by dataclasses.replace.
    compiled: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def is_choice(self) -> bool:
        return self.name.endswith("[x]")

    @cached_property
    def is_array(self) -> bool:
        """Whether JSON writes this element as an array (its base cardinality is repeating)."""
        return self.base_max is None or self.base_max > 1

    @cached_property
    def forbidden(self) -> bool:
        return self.max == 0

    @cached_property
    def children(self) -> dict[str, Node]:
        """Child nodes by JSON name: the snapshot's own, else the single datatype's template."""
        if self.explicit_children:
            return self.explicit_children
        if len(self.types) == 1 and self.types[0].primitive is None:
            return datatype_template(self.types[0].code)
        return {}

    @cached_property
    def bounded_children(self) -> list[Node]:
        """Children whose count is checked after a walk: required ones and limited ones (a
        forbidden one is reported where it appears)."""
        return [c for c in self.children.values() if c.min > 0 or (c.max is not None and not c.forbidden and c.is_array)]

    @cached_property
    def properties(self) -> dict[str, tuple[Node, TypeRef]]:
        """Every JSON property name a child may use, with the child and the type it implies
        (`valueReference` -> (value[x], Reference))."""
        out: dict[str, tuple[Node, TypeRef]] = {}
        for child in self.children.values():
            if child.is_choice:
                stem = child.name[:-3]
                for t in child.types:
                    out[stem + t.code[0].upper() + t.code[1:]] = (child, t)
            elif child.types:
                out[child.name] = (child, child.types[0])
        return out


    def choice_of(self, prop: str) -> Node | None:
        """The choice child a property name belongs to by its stem (`valueString` -> value[x]),
        whether or not the type it names is allowed."""
        for child in self.children.values():
            stem = child.name[:-3]
            if child.is_choice and prop.startswith(stem) and prop[len(stem):][:1].isupper():
                return child
        return None


def _fhir_type(type_el: Json, element_path: str) -> str:
    code = type_el["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        # Resource.id is an `id` (R4 §2.1.1); Element.id (Extension.id…) is a string; other
        # System.String elements say their FHIR type.
        if element_path.count(".") == 1 and element_path.endswith(".id") and element_path[:-3] in RESOURCE_TYPES:
            return "id"
        ext = next((x.get("valueUrl") for x in type_el.get("extension", []) if x["url"] == _FHIR_TYPE_EXT), None)
        return cast(str | None, ext) or "string"
    return cast(str, code)


def resource_type_of_profile(profile: Profile | None, url: str) -> str | None:
    """The resource type a target profile constrains: from its definition when bundled, from a
    core URL, else from its name (`…/KT2Patient` -> Patient: the longest resource type the name
    ends with)."""
    base = url.split("|")[0]
    sd = profile.structure_definition(base) if profile else None
    if sd is not None:
        return sd.get("type")
    name = base.rstrip("/").rsplit("/", 1)[-1]
    if base.startswith(_SD_BASE) and name in RESOURCE_TYPES:
        return name
    for i in range(len(name)):
        if name[i:] in RESOURCE_TYPES:
            return name[i:]
    return None


def _type_refs(profile: Profile | None, el: Json) -> list[TypeRef]:
    refs = []
    for t in el.get("type", []):
        targets = tuple(t.get("targetProfile", []))
        types = frozenset(filter(None, (resource_type_of_profile(profile, u) for u in targets)))
        refs.append(TypeRef(_fhir_type(t, el["path"]), types, tuple(t.get("profile", [])), targets))
    return refs


def _max(value: str | None) -> int | None:
    return None if value in (None, "*") else int(value)


def _node(profile: Profile | None, el: Json, node_id: str, owns_key: bool) -> Node:
    fixed = next(((k, v) for k, v in el.items() if k.startswith("fixed")), None)
    pattern = next(((k, v) for k, v in el.items() if k.startswith("pattern")), None)
    binding = el.get("binding")
    base = el.get("base", {})
    name = el["path"].rsplit(".", 1)[-1]
    return Node(
        id=node_id,
        name=name,
        min=int(el.get("min", 0)),
        max=_max(el.get("max")),
        base_max=_max(base.get("max", el.get("max"))),
        types=_type_refs(profile, el),
        owns_key=owns_key,
        fixed=fixed,
        pattern=pattern,
        binding=(binding["strength"], binding["valueSet"]) if binding and binding.get("valueSet") else None,
        invariants=[Invariant(c["key"], c.get("severity", "error"), c.get("human", ""), validator_expression(c))
                    for c in el.get("constraint", []) if c.get("expression")],
        slice_name=el.get("sliceName"),
        attribute=any(t["code"].startswith("http://hl7.org/fhirpath/System.") for t in el.get("type", [])),
        base_path=base.get("path"),
    )


def _tree(profile: Profile | None, elements: list[Json], id_prefix: str | None, owns_key: bool) -> Node:
    """Build a node tree from snapshot elements. With `id_prefix`, the root's id is replaced by it
    (an extension definition grafted under its slice)."""
    root_id = elements[0]["id"]

    def rename(eid: str) -> str:
        return eid if id_prefix is None else id_prefix + eid[len(root_id):]

    nodes: dict[str, Node] = {}
    root = _node(profile, elements[0], rename(root_id), owns_key)
    nodes[root_id] = root
    slices: list[tuple[Node, Node]] = []
    references: list[tuple[Node, str]] = []
    for el in elements[1:]:
        eid = el["id"]
        parent_id, _, last = eid.rpartition(".")
        if ":" in last:
            # A slice is a sibling in the id (`Task.extension:x`) but belongs to its element.
            parent_id, last = f"{parent_id}.{last.split(':')[0]}", last
        parent = nodes.get(parent_id)
        if parent is None:
            continue  # below an element this walk doesn't know: a malformed id
        node = _node(profile, el, rename(eid), owns_key)
        nodes[eid] = node
        if el.get("contentReference", "").startswith("#"):
            references.append((node, el["contentReference"][1:]))
        if ":" in last:
            slices.append((parent, node))
            continue
        if parent.explicit_children is None:
            parent.explicit_children = {}
        parent.explicit_children[node.name] = node
    for node, target_id in references:
        # `Questionnaire.item.item` is defined as `#Questionnaire.item`: same type and children
        target = nodes.get(target_id)
        if target is not None:
            node.types = target.types
            node.explicit_children = target.explicit_children
    for parent, node in slices:
        if node.types and node.types[0].profiles and profile is not None:
            _graft_extension(profile, parent, node)
        elif parent.name == "extension" and node.explicit_children and "url" in node.explicit_children:
            # a complex extension's part (`Extension.extension:lang`), named by its fixed url
            fixed = node.explicit_children["url"].fixed
            if fixed is not None and isinstance(fixed[1], str):
                parent.slices[fixed[1]] = node
    return root


def _graft_extension(profile: Profile, parent: Node, slice_node: Node) -> None:
    """Attach an extension slice: its children come from the extension's own definition."""
    url = slice_node.types[0].profiles[0]
    sd = profile.structure_definition(url)
    if sd is None or "snapshot" not in sd:
        return  # unresolvable: validated as a plain extension
    if slice_node.explicit_children is None:  # the profile's snapshot didn't spell them out
        slice_node.explicit_children = _tree(profile, sd["snapshot"]["element"], slice_node.id, True).explicit_children
    parent.slices[url.split("|")[0]] = slice_node


_TEMPLATES: dict[str, dict[str, Node]] = {}


def datatype_template(code: str) -> dict[str, Node]:
    """The children of datatype `code` from the R4 definitions (shared, not key owners)."""
    if code not in _TEMPLATES:
        sd = datatype_definition(code)
        if sd is None:
            _TEMPLATES[code] = {}
        else:
            _TEMPLATES[code] = {}  # guards recursion (Identifier.assigner -> Reference.identifier)
            root = _tree(None, sd["snapshot"]["element"], None, False)
            _TEMPLATES[code] = root.explicit_children or {}
    return _TEMPLATES[code]


_RESOURCES: dict[str, Node | None] = {}


def resource_tree(resource_type: str) -> Node | None:
    """The element tree of an R4 resource type from its base definition (what a contained
    resource is validated against); its nodes own no key: issues inside it are reported under
    the element that holds the resource. None for an abstract or unknown type."""
    if resource_type not in _RESOURCES:
        sd = r4_resources().get(resource_type)
        usable = sd is not None and not sd.get("abstract") and "snapshot" in sd
        _RESOURCES[resource_type] = _tree(None, sd["snapshot"]["element"], None, False) if sd and usable else None
    return _RESOURCES[resource_type]


def datatype_invariants(code: str) -> list[Invariant]:
    """Invariants on the root of a datatype (per-1 on Period, ref-1 on Reference)."""
    sd = datatype_definition(code)
    if sd is None:
        return []
    root = sd["snapshot"]["element"][0]
    return [Invariant(c["key"], c.get("severity", "error"), c.get("human", ""), validator_expression(c))
            for c in root.get("constraint", []) if c.get("expression") and c["key"] not in STRUCTURAL_INVARIANTS]


def build_tree(profile: Profile) -> Node:
    """The profile's element tree, rooted at the resource."""
    return _tree(profile, profile.elements, None, True)


def build_tree_of(profile: Profile, sd: Json) -> Node:
    """The element tree of another resource profile of the package (KT2Patient), whose nodes own
    no key: what breaks it is reported on the element that refers to the resource."""
    return _tree(profile, sd["snapshot"]["element"], None, False)


def walk(node: Node, include_forbidden: bool = False) -> Iterator[Node]:
    """Key-owning nodes, depth first; descendants of a forbidden (max 0) element are skipped:
    any presence of the element already breaks its max."""
    yield node
    if node.forbidden and not include_forbidden:
        return
    for child in (node.explicit_children or {}).values():
        if child.owns_key:
            yield from walk(child, include_forbidden)
    for sl in node.slices.values():
        yield from walk(sl, include_forbidden)
