"""Builds profiles/r4/ucum-essence.json: the UCUM prefixes and units HAPI FHIR's validator knows,
from the `ucum-essence.xml` inside the `org.fhir:ucum` artifact the production server runs
(1.0.9, a dependency of HAPI FHIR 8.2.0's validator; UCUM essence version 1.9). Only what
checking a unit code's syntax needs is kept: the prefix codes, the base unit codes, and each
defined unit's code with whether it is metric (may take a prefix).

    mvn -q dependency:get -Dartifact=org.fhir:ucum:1.0.9 -Dtransitive=false
    .venv/bin/python tools/vendor_ucum.py ~/.m2/repository/org/fhir/ucum/1.0.9/ucum-1.0.9.jar

Not run by CI or at run time: its output is committed.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "profiles" / "r4" / "ucum-essence.json"
NS = "{http://unitsofmeasure.org/ucum-essence}"


def main(jar: str) -> None:
    with zipfile.ZipFile(jar) as archive:
        root = ET.fromstring(archive.read("ucum-essence.xml"))
    tag = {el: el.tag.removeprefix(NS) for el in root}
    data = {
        "source": f"ucum-essence.xml version {root.get('version')} from {Path(jar).name} (org.fhir:ucum); "
                  "UCUM is copyright Regenstrief Institute, Inc. and The UCUM Organization, "
                  "https://ucum.org/license",
        "prefixes": [el.get("Code") for el in root if tag[el] == "prefix"],
        "base_units": [el.get("Code") for el in root if tag[el] == "base-unit"],
        "units": {el.get("Code"): el.get("isMetric") == "yes" for el in root if tag[el] == "unit"},
    }
    OUT.write_text(json.dumps(data, indent=1, ensure_ascii=True) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(data['prefixes'])} prefixes, {len(data['base_units'])} base units, {len(data['units'])} units")


if __name__ == "__main__":
    main(sys.argv[1])
