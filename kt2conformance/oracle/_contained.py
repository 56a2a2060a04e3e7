"""dom-3 as the HL7 validator enforces it, and the ids of contained resources.

R4's dom-3 ("a contained resource SHALL be referred to from elsewhere in the resource or SHALL
refer to the containing resource") is published as a FHIRPath expression that the HL7 validator
does not run ("it takes too long (and is wrong)", InstanceValidator.checkInvariant); it enforces
the rule in code instead (checkContainedReferences), and that is what a Koppeltaal server does:

- the internal references (`#id`) of the containing resource are collected while it is walked,
  contained resources left out: literal references, `#` values of uri/url/canonical elements,
  and in the narrative `<a href="#id">` and `<img src="#id">`;
- a contained resource is referred to when its id is among those, or when it refers to its
  container itself (a reference `#`), or when another contained resource that is itself referred
  to refers to it (a chain from the container);
- two contained resources with the same id are an error ("Duplicate ID for contained resource");
- element ids (`id` on any element, a primitive's `_x` included, not the resources' own) are
  unique within a resource, the container and each contained resource apart ("Duplicate id
  value");
- a contained definition's canonical `url` (ActivityDefinition.url, ValueSet.url, …) must be an
  absolute URL ("Canonical URLs in contained resources must be absolute URLs if present").

So a reference from one contained resource to another with nothing reaching the first, or a
contained resource that only names itself, is an orphan; one named only in the narrative is not.
(What the validator records while it checks a contained resource as a reference's target counts
for the container: two contained resources referring only to each other pass.)
"""

from __future__ import annotations

from typing import Any

from kt2conformance.spec import _xhtml as xhtml
from kt2conformance.spec._lexical import is_absolute_url

__all__ = ["CANONICAL_RESOURCES", "duplicate_element_ids", "duplicate_ids", "orphans", "relative_canonical_urls"]

# VersionUtilities.getCanonicalResourceNames for R4: their `url` is a definition's identity
CANONICAL_RESOURCES = frozenset({
    "ActivityDefinition", "CapabilityStatement", "ChargeItemDefinition", "CodeSystem", "CompartmentDefinition",
    "ConceptMap", "EffectEvidenceSynthesis", "EventDefinition", "Evidence", "EvidenceVariable", "ExampleScenario",
    "GraphDefinition", "ImplementationGuide", "Library", "Measure", "MessageDefinition", "NamingSystem",
    "OperationDefinition", "PlanDefinition", "Questionnaire", "ResearchDefinition", "ResearchElementDefinition",
    "RiskEvidenceSynthesis", "SearchParameter", "StructureDefinition", "StructureMap", "TerminologyCapabilities",
    "TestScript", "ValueSet"})

# Elements whose `#fragment` values the validator records as internal references
# (validateReference on uri, url and canonical values; Reference.reference).
_URI_KEYS = frozenset({"reference", "valueUri", "valueUrl", "valueCanonical", "instantiatesCanonical",
                       "instantiatesUri", "implicitRules", "profile", "source", "url", "system",
                       "definition", "derivedFrom", "questionnaire", "valueSet", "targetProfile"})


def _references(value: Any, skip_contained: bool) -> set[str]:
    """The `#fragment` internal references in a resource (ids, without the `#`); "" for `#`."""
    found: set[str] = set()
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        for key, child in item.items():
            if skip_contained and key == "contained" and item is value:
                continue
            if isinstance(child, str):
                if key in _URI_KEYS and child.startswith("#"):
                    found.add(child[1:])
                elif key == "div":
                    found |= _narrative_references(child)
            elif isinstance(child, list) and key in _URI_KEYS:
                found |= {v[1:] for v in child if isinstance(v, str) and v.startswith("#")}
                stack.append(child)
            elif isinstance(child, (dict, list)):
                stack.append(child)
    return found


def _narrative_references(div: str) -> set[str]:
    root = xhtml.parse(div)
    if root is None:
        return set()
    found: set[str] = set()
    for node in root.elements():
        target = node.attributes.get("href") if node.name == "a" else \
            node.attributes.get("src") if node.name == "img" else None
        if target is not None and target.startswith("#") and (node.name == "img" or target != "#"):
            found.add(target[1:])
    return found


def orphans(resource: dict[str, Any]) -> list[int]:
    """The indexes of the contained resources (with an id) nothing in the resource refers to,
    as the validator decides it."""
    contained = resource.get("contained")
    if not isinstance(contained, list):
        return []
    base = _references(resource, skip_contained=True)
    own = [_references(c, skip_contained=False) if isinstance(c, dict) else set() for c in contained]
    ids = [c.get("id") if isinstance(c, dict) and isinstance(c.get("id"), str) else None for c in contained]

    # A contained resource another one refers to is validated as that reference's target, and
    # what it refers to in turn is then recorded for the container (seen: two contained
    # resources that only refer to each other pass, one that only refers to itself does not).
    for j, id_ in enumerate(ids):
        if isinstance(id_, str) and any(i != j and id_ in own[i] for i in range(len(contained))):
            base |= own[j]
    reached = {i for i, id_ in enumerate(ids) if (id_ is not None and id_ in base) or "" in own[i]}
    frontier = list(reached)
    while frontier:  # a chain of references from a contained resource already reached
        i = frontier.pop()
        for j, id_ in enumerate(ids):
            if j not in reached and isinstance(id_, str) and id_ in own[i]:
                reached.add(j)
                frontier.append(j)
    return [i for i, id_ in enumerate(ids) if isinstance(id_, str) and i not in reached]


def duplicate_ids(resource: dict[str, Any]) -> list[int]:
    """The indexes of contained resources whose id an earlier contained resource already has."""
    contained = resource.get("contained")
    if not isinstance(contained, list):
        return []
    seen: set[str] = set()
    found = []
    for i, res in enumerate(contained):
        id_ = res.get("id") if isinstance(res, dict) else None
        if isinstance(id_, str):
            if id_ in seen:
                found.append(i)
            seen.add(id_)
    return found


def relative_canonical_urls(resource: dict[str, Any]) -> list[int]:
    """The indexes of contained canonical resources whose `url` is not absolute to the validator."""
    contained = resource.get("contained")
    if not isinstance(contained, list):
        return []
    return [i for i, res in enumerate(contained)
            if isinstance(res, dict) and isinstance(res.get("resourceType"), str)
            and res["resourceType"] in CANONICAL_RESOURCES
            and isinstance(res.get("url"), str) and res["url"] and not is_absolute_url(res["url"])]


def _repeats_an_id(resource: dict[str, Any]) -> bool:
    """Whether two elements of the resource (as duplicate_element_ids looks at them) share an id:
    the same walk without paths, so the common case (none) costs no path text per value."""
    seen: set[str] = set()
    stack: list[Any] = [v for k, v in resource.items() if k not in ("contained", "id") and isinstance(v, (dict, list))]
    push = stack.append
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            for v in value:  # loops, not generators: this visits every object of every Task
                if isinstance(v, (dict, list)):
                    push(v)
            continue
        id_ = value.get("id")
        if isinstance(id_, str) and id_:
            if id_ in seen:
                return True
            seen.add(id_)
        if "resourceType" not in value:
            for k, v in value.items():
                if isinstance(v, (dict, list)) and k != "id":
                    push(v)
    return False


def duplicate_element_ids(resource: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """(instance path, id) of each element whose id an earlier element of the same resource
    (its contained resources left out) already has."""
    if not _repeats_an_id(resource):
        return []
    seen: set[str] = set()
    found: list[tuple[str, str]] = []
    stack: list[tuple[Any, str]] = [(v, f"{path}.{k}") for k, v in reversed(list(resource.items()))
                                    if k not in ("contained", "id")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(value))))
        elif isinstance(value, dict):
            id_ = value.get("id")
            if isinstance(id_, str) and id_:
                if id_ in seen:
                    found.append((where, id_))
                seen.add(id_)
            if "resourceType" not in value:  # a resource inside (Bundle, Parameters) has its own ids
                stack.extend((v, f"{where}.{k}") for k, v in reversed(list(value.items())) if k != "id")
    return found
