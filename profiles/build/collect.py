"""Assemble the vendored KT2 package folder from a SUSHI build and the R4 core package.

Copies every conformance resource SUSHI wrote for the IG (StructureDefinitions with snapshots,
ValueSets, CodeSystems, SearchParameters, NamingSystems; not the ImplementationGuide), the IG's
example instances into `examples/`, and from hl7.fhir.r4.core the definitions the KT2 profiles
build on: the base resource StructureDefinition of each profile on a core type
(`base-StructureDefinition-<Type>-r4.json`) and, transitively, every ValueSet bound with strength
`required` in a KT2 profile or in an R4 datatype, with the CodeSystems and ValueSets it draws on,
and the core CodeSystems the KT2 ValueSets draw on.
Files are written with two-space indentation, so a rebuild from the same inputs is identical.

usage: python3 collect.py SUSHI_RESOURCES_DIR R4_CORE_PACKAGE_DIR R4_TYPES_BUNDLE DEST_DIR
"""

import json
import sys
from pathlib import Path
from typing import Any

CONFORMANCE = {"StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter", "NamingSystem"}
CORE = "http://hl7.org/fhir/StructureDefinition/"


def write(path: Path, resource: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(resource, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def required_value_sets(sd: dict[str, Any]) -> list[str]:
    urls = []
    for element in sd.get("snapshot", {}).get("element", []):
        binding = element.get("binding") or {}
        if binding.get("strength") == "required" and binding.get("valueSet"):
            urls.append(binding["valueSet"].split("|")[0])
    return urls


def drawn_on(value_set: dict[str, Any]) -> list[str]:
    """The CodeSystems and ValueSets a ValueSet's compose includes."""
    urls = []
    for include in value_set.get("compose", {}).get("include", []):
        urls += [include["system"]] if include.get("system") else []
        urls += [v.split("|")[0] for v in include.get("valueSet", [])]
    return urls


def main(sushi: Path, core_dir: Path, types_bundle: Path, dest: Path) -> None:
    core: dict[str, dict[str, Any]] = {}
    for path in core_dir.glob("*.json"):
        resource = json.loads(path.read_text(encoding="utf-8"))
        if resource.get("url") and resource.get("resourceType") in CONFORMANCE:
            core[resource["url"]] = resource
    kt2: list[dict[str, Any]] = []
    for path in sorted(sushi.glob("*.json")):
        resource = json.loads(path.read_text(encoding="utf-8"))
        kind = resource.get("resourceType")
        if kind in CONFORMANCE:
            write(dest / path.name, resource)
            kt2.append(resource)
        elif kind != "ImplementationGuide":
            write(dest / "examples" / path.name, resource)
    wanted: list[str] = []
    for sd in (r for r in kt2 if r["resourceType"] == "StructureDefinition"):
        base = sd.get("baseDefinition", "")
        if base.startswith(CORE) and base != CORE + "Extension":
            write(dest / f"base-StructureDefinition-{sd['type']}-r4.json", core[base])
            wanted += required_value_sets(core[base])
        wanted += required_value_sets(sd)
    for entry in json.loads(types_bundle.read_text(encoding="utf-8"))["entry"]:
        wanted += required_value_sets(entry["resource"])
    for value_set in (r for r in kt2 if r["resourceType"] == "ValueSet"):
        wanted += drawn_on(value_set)
    seen: set[str] = {r["url"] for r in kt2 if "url" in r}
    while wanted:
        url = wanted.pop()
        if url in seen or url not in core:
            continue
        seen.add(url)
        resource = core[url]
        write(dest / f"{resource['resourceType']}-{resource['id']}.json", resource)
        wanted += drawn_on(resource)


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:5]))
