"""Builds the oracle's vendored FHIR R4 core data (profiles/r4/core-*.json.gz) from HL7's
published R4 (4.0.1) definitions as HAPI FHIR ships them in the Maven artifact
`ca.uhn.hapi.fhir:hapi-fhir-validation-resources-r4` (the same files HAPI's validator loads).

    mvn -q dependency:get -Dartifact=ca.uhn.hapi.fhir:hapi-fhir-validation-resources-r4:8.2.0 -Dtransitive=false
    .venv/bin/python tools/vendor_r4_core.py \
        ~/.m2/repository/ca/uhn/hapi/fhir/hapi-fhir-validation-resources-r4/8.2.0/hapi-fhir-validation-resources-r4-8.2.0.jar

Not run by CI or at run time: its output is committed. Only what the oracle reads is kept (see
KEEP): the resource StructureDefinitions' snapshots (elements, cardinality, types, bindings,
invariants), the core extension definitions (context, value types), and the ValueSets and
CodeSystems (compose and codes, no displays or definitions), written as FHIR JSON.
"""

from __future__ import annotations

import gzip
import json
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

NS = "{http://hl7.org/fhir}"
OUT = Path(__file__).resolve().parent.parent / "profiles" / "r4"
PREFIX = "org/hl7/fhir/r4/model/"
# Elements kept, by where they sit, and which of them repeat (FHIR JSON writes those as arrays).
KEEP: dict[str, set[str]] = {
    "StructureDefinition": {"url", "name", "type", "kind", "abstract", "baseDefinition", "derivation", "snapshot",
                            "context", "contextInvariant", "version", "status"},
    "ValueSet": {"url", "version", "compose", "status"},
    "CodeSystem": {"url", "version", "content", "caseSensitive", "concept", "valueSet", "status"},
}
REPEATS = {"snapshot.element", "element.type", "type.targetProfile", "type.profile", "type.extension",
           "type.aggregation", "element.constraint", "StructureDefinition.context",
           "StructureDefinition.contextInvariant", "compose.include", "compose.exclude", "include.concept",
           "exclude.concept", "include.filter", "exclude.filter", "include.valueSet", "exclude.valueSet",
           "CodeSystem.concept", "concept.concept"}


def _repeats(path: str, tag: str) -> bool:
    return f"{path.rsplit('.', 1)[-1]}.{tag}" in REPEATS
ELEMENT_KEEP = {"id", "path", "sliceName", "min", "max", "base", "type", "contentReference", "constraint",
                "binding", "isModifier", "fixed", "pattern", "maxLength"}
DROP_ANYWHERE = {"display", "definition", "designation", "short", "comment", "requirements", "alias",
                 "mapping", "example", "meaning", "xpath", "source", "description",
                 "isSummary", "mustSupport", "isModifierReason", "orderMeaning", "representation",
                 "label", "code_", "condition"}


def _value(el: ET.Element) -> Any:
    v = el.get("value")
    tag = el.tag[len(NS):]
    if v is None:
        return None
    if tag in ("min", "maxLength"):
        return int(v)
    if v in ("true", "false") and tag in ("abstract", "isModifier", "caseSensitive", "inactive"):
        return v == "true"
    return v


def _convert(el: ET.Element, path: str) -> Any:
    """A FHIR XML element as FHIR JSON (the subset kept)."""
    out: dict[str, Any] = {}
    if el.get("id") is not None:
        out["id"] = el.get("id")
    if el.get("url") is not None:
        out["url"] = el.get("url")
    children = list(el)
    if not children:
        v = _value(el)
        return v if v is not None else out
    if el.get("value") is not None:
        return _value(el)
    for child in children:
        if not isinstance(child.tag, str) or not child.tag.startswith(NS):
            continue  # comments, xhtml
        tag = child.tag[len(NS):]
        if tag in DROP_ANYWHERE or (path.endswith(".element") and tag not in ELEMENT_KEEP and not
                                    tag.startswith(("fixed", "pattern"))):
            continue
        if tag == "extension" and not path.endswith(".type") and not path.endswith("element.type"):
            continue
        value = _convert(child, f"{path}.{tag}")
        if _repeats(path, tag):
            out.setdefault(tag, []).append(value)
        else:
            out[tag] = value
    return out


def _resources(jar: zipfile.ZipFile, name: str) -> list[dict[str, Any]]:
    root = ET.fromstring(jar.read(PREFIX + name))
    found = []
    for entry in root.findall(f"{NS}entry/{NS}resource"):
        res = next(iter(entry))
        kind = res.tag[len(NS):]
        if kind not in KEEP:
            continue
        out: dict[str, Any] = {"resourceType": kind}
        for child in res:
            if not isinstance(child.tag, str):
                continue
            tag = child.tag[len(NS):]
            if tag not in KEEP[kind]:
                continue
            value = _convert(child, f"{kind}.{tag}")
            if _repeats(kind, tag):
                out.setdefault(tag, []).append(value)
            else:
                out[tag] = value
        if "snapshot" in out:
            out["snapshot"] = {"element": out["snapshot"].get("element", [])}
        found.append(out)
    return found


def _write(name: str, resources: list[dict[str, Any]]) -> None:
    data = json.dumps({"resourceType": "Bundle", "type": "collection",
                       "entry": [{"resource": r} for r in resources]}, separators=(",", ":"), sort_keys=True)
    # mtime 0: the same input gives the same bytes
    with gzip.GzipFile(OUT / name, "wb", mtime=0) as f:
        f.write(data.encode("utf-8"))
    print(f"{name}: {len(resources)} resources, {(OUT / name).stat().st_size} bytes")


def main(jar_path: str) -> None:
    with zipfile.ZipFile(jar_path) as jar:
        sds = [r for r in _resources(jar, "profile/profiles-resources.xml")
               if r.get("kind") == "resource"]
        extensions = [r for r in _resources(jar, "extension/extension-definitions.xml")
                      if r["resourceType"] == "StructureDefinition"]
        terminology = []
        for name in ("valueset/valuesets.xml", "valueset/v3-codesystems.xml", "valueset/v2-tables.xml"):
            terminology += [r for r in _resources(jar, name) if r["resourceType"] in ("ValueSet", "CodeSystem")]
    _write("core-resources.json.gz", sds)
    _write("core-extensions.json.gz", extensions)
    _write("core-terminology.json.gz", terminology)


if __name__ == "__main__":
    main(sys.argv[1])
