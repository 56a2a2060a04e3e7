"""Write metadata-only stand-ins for the Nictiz nl-core profiles the KT2 IG derives from.

No package registry reachable here serves nictiz.fhir.nl.r4.nl-core / zib2020, so SUSHI gets a
stand-in for each nl-core parent: the right canonical URL, name and type, constrained directly
on the core R4 resource and carrying that resource's core snapshot.  SUSHI can then resolve the
parent and write a snapshot for the KT2 profile; every nl-core-specific rule (its slices and
extensions) is absent, so the nl-core based KT2 profiles built this way are NOT faithful and the
harness does not judge them (it only creates and reads back their official examples).

usage: python3 nictiz_stubs.py R4_CORE_PACKAGE_DIR FHIR_PACKAGE_CACHE_DIR
"""

import json
import sys
from pathlib import Path

NICTIZ = "http://nictiz.nl/fhir/StructureDefinition/"
# (package, id, FSH name, core type): every nl-core parent named by the KT2 FSH sources.
STUBS = [
    ("nictiz.fhir.nl.r4.nl-core", "nl-core-Patient", "NlcorePatient", "Patient"),
    ("nictiz.fhir.nl.r4.nl-core", "nl-core-CareTeam", "NlcoreCareTeam", "CareTeam"),
    ("nictiz.fhir.nl.r4.nl-core", "nl-core-ContactPerson", "NlcoreContactPerson", "RelatedPerson"),
    ("nictiz.fhir.nl.r4.nl-core", "nl-core-HealthProfessional-Practitioner",
     "NlcoreHealthProfessionalPractitioner", "Practitioner"),
    ("nictiz.fhir.nl.r4.nl-core", "nl-core-HealthProfessional-PractitionerRole",
     "NlcoreHealthProfessionalPractitionerRole", "PractitionerRole"),
    ("nictiz.fhir.nl.r4.nl-core", "nl-core-HealthcareProvider-Organization",
     "NlcoreHealthcareProviderOrganization", "Organization"),
]
VERSION = "0.12.0-beta.4"
PACKAGES = ["nictiz.fhir.nl.r4.nl-core", "nictiz.fhir.nl.r4.zib2020"]


def main(core_dir: Path, cache: Path) -> None:
    for name in PACKAGES:
        folder = cache / f"{name}#{VERSION}" / "package"
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {"name": name, "version": VERSION, "fhirVersions": ["4.0.1"],
                    "description": "metadata-only stand-in (not the Nictiz package)",
                    "dependencies": {"hl7.fhir.r4.core": "4.0.1"}}
        (folder / "package.json").write_text(json.dumps(manifest, indent=2))
    for package, sd_id, name, core_type in STUBS:
        core = json.loads((core_dir / f"StructureDefinition-{core_type}.json").read_text())
        stub = {
            "resourceType": "StructureDefinition", "id": sd_id, "url": NICTIZ + sd_id,
            "version": VERSION, "name": name, "status": "draft", "fhirVersion": "4.0.1",
            "kind": "resource", "abstract": False, "type": core_type,
            "baseDefinition": core["url"], "derivation": "constraint",
            "description": "STAND-IN: only the metadata of the Nictiz profile; "
                           "its rules are not included.",
            "snapshot": core["snapshot"],
        }
        folder = cache / f"{package}#{VERSION}" / "package"
        (folder / f"StructureDefinition-{sd_id}.json").write_text(json.dumps(stub))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
