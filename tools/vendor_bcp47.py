"""Builds profiles/r4/bcp47-subtags.json: the BCP 47 language and region subtags HAPI FHIR's
validator looks `urn:ietf:bcp:47` codes up in, from the `registry.json` HAPI FHIR 8.2.0 ships in
`ca.uhn.hapi.fhir:hapi-fhir-validation` (its CommonCodeSystemsTerminologyService; the IANA
Language Subtag Registry as published by https://github.com/mattcg/language-subtag-registry,
ODC-BY).

    .venv/bin/python tools/vendor_bcp47.py \
        ~/.m2/repository/ca/uhn/hapi/fhir/hapi-fhir-validation/8.2.0/hapi-fhir-validation-8.2.0.jar

Only the subtags of type language and region with a description are kept (what the lookup
finds). Not run by CI or at run time: its output is committed.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "profiles" / "r4" / "bcp47-subtags.json"
REGISTRY = "org/hl7/fhir/common/hapi/validation/support/registry.json"


def main(jar: str) -> None:
    with zipfile.ZipFile(jar) as z:
        registry = json.loads(z.read(REGISTRY))
    kept = {kind: sorted({e["Subtag"] for e in registry if e.get("Type") == kind and e.get("Description")})
            for kind in ("language", "region")}
    data = {"source": f"{REGISTRY} in {Path(jar).name}", "languages": kept["language"], "regions": kept["region"]}
    OUT.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(kept['language'])} languages, {len(kept['region'])} regions")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: vendor_bcp47.py hapi-fhir-validation-<version>.jar")
    main(sys.argv[1])
