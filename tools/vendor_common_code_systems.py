"""Builds profiles/r4/common-code-systems.json: the code systems HAPI FHIR's validator knows
without a terminology server, from its `CommonCodeSystemsTerminologyService` (the
`ca.uhn.hapi.fhir:hapi-fhir-validation` artifact the production server runs, 8.2.0), where they
are written out in the source: ISO 3166 country codes (`urn:iso:std:iso:3166`) and ISO 4217
currency codes (`urn:iso:std:iso:4217`) and US postal state codes (`https://www.usps.com/`),
all three served as complete CodeSystems.

    mvn -q dependency:get -Dartifact=ca.uhn.hapi.fhir:hapi-fhir-validation:8.2.0:jar:sources -Dtransitive=false
    .venv/bin/python tools/vendor_common_code_systems.py \
        ~/.m2/repository/ca/uhn/hapi/fhir/hapi-fhir-validation/8.2.0/hapi-fhir-validation-8.2.0-sources.jar

Not run by CI or at run time: its output is committed.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "profiles" / "r4" / "common-code-systems.json"
SOURCE = "org/hl7/fhir/common/hapi/validation/support/CommonCodeSystemsTerminologyService.java"
SYSTEMS = {"buildIso3166Codes": "urn:iso:std:iso:3166", "buildIso4217Codes": "urn:iso:std:iso:4217",
           "buildUspsCodes": "https://www.usps.com/"}
_PUT = re.compile(r'\w*[cC]odes\.put\("([^"]+)",\s*"((?:[^"\\]|\\.)*)"\)')


def codes_of(source: str, builder: str) -> list[str]:
    """The codes one `buildXxxCodes()` method puts in its map, in source order."""
    start = source.index(f"HashMap<String, String> {builder}()")
    end = source.index("return ", start)
    seen: dict[str, None] = {}
    for code, _ in _PUT.findall(source[start:end]):
        seen.setdefault(code, None)
    return list(seen)


def main(jar: str) -> None:
    with zipfile.ZipFile(jar) as z:
        source = z.read(SOURCE).decode("utf-8")
    entries = [{"resource": {"resourceType": "CodeSystem", "url": url, "status": "active", "content": "complete",
                             "caseSensitive": True, "concept": [{"code": c} for c in codes_of(source, builder)]}}
               for builder, url in SYSTEMS.items()]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    OUT.write_text(json.dumps(bundle, indent=1) + "\n", encoding="utf-8")
    print(f"{OUT}: " + ", ".join(f"{e['resource']['url']} {len(e['resource']['concept'])} codes" for e in entries))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: vendor_common_code_systems.py hapi-fhir-validation-<version>-sources.jar")
    main(sys.argv[1])
