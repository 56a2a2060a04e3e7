"""Loading a profile (file, folder, package folder, bare package name), the one-line errors for
unusable ones, and the constraint list `kt2conformance constraints` derives from KT2Task.

Expected constraint sets are read from the raw snapshot JSON here, not from the model, so the
list is checked against the profile rather than against itself.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kt2conformance import _paths as paths
from kt2conformance._errors import UsageError
from kt2conformance._koppeltaal import KT2TASK_URL
from kt2conformance.cli import main
from kt2conformance.spec._profile import Profile, load_profile, select_profiles

KT2TASK_FILE = paths.DEFAULT_PROFILE_DIR / "StructureDefinition-KT2Task.json"


def kt2task_sd() -> dict[str, Any]:
    return json.loads(KT2TASK_FILE.read_text(encoding="utf-8"))


def assert_complete(profile: Profile) -> None:
    """What the oracle needs besides the SD: the extension definitions and the value sets of the
    required bindings, with their code systems."""
    assert profile.url == KT2TASK_URL
    assert profile.type == "Task"
    assert profile.structure_definition("http://koppeltaal.nl/fhir/StructureDefinition/resource-origin") is not None
    assert profile.structure_definition("http://vzvz.nl/fhir/StructureDefinition/instantiates") is not None
    assert profile.value_set("http://hl7.org/fhir/ValueSet/task-status|4.0.1") is not None
    assert profile.code_system("http://hl7.org/fhir/task-status") is not None


def test_default_profile_is_vendored_kt2task() -> None:
    profile = load_profile()
    assert_complete(profile)
    assert (profile.package, profile.package_version) == ("koppeltaalv2.00", "0.16.2")


def test_load_from_file() -> None:
    profile = load_profile(KT2TASK_FILE)
    assert_complete(profile)
    assert profile.source == KT2TASK_FILE


def test_load_from_folder() -> None:
    assert_complete(load_profile(paths.DEFAULT_PROFILE_DIR))


def test_load_by_bare_package_name() -> None:
    assert_complete(load_profile(paths.DEFAULT_PROFILE_DIR.name))


def test_load_from_package_folder(tmp_path: Path) -> None:
    """An npm-style FHIR package as the registry ships it: `package/package.json` beside the
    resources, plus files that are not resources (index, examples) to be skipped."""
    pkg = tmp_path / "koppeltaal" / "package"
    shutil.copytree(paths.DEFAULT_PROFILE_DIR, pkg)
    (pkg / "BUILD-INFO.json").unlink()
    (pkg / "package.json").write_text(json.dumps({"name": "koppeltaalv2.00", "version": "9.9.9"}), encoding="utf-8")
    (pkg / ".index.json").write_text(json.dumps({"index-version": 1, "files": []}), encoding="utf-8")
    (pkg / "notes.json").write_text("not json", encoding="utf-8")
    profile = load_profile(tmp_path / "koppeltaal")
    assert_complete(profile)
    assert (profile.package, profile.package_version) == ("koppeltaalv2.00", "9.9.9")


def _usage_error(location: Path | str) -> str:
    with pytest.raises(UsageError) as info:
        load_profile(location)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_missing_path(tmp_path: Path) -> None:
    assert str(tmp_path / "nope.json") in _usage_error(tmp_path / "nope.json")


def test_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "profile.json"
    bad.write_text('{"resourceType": "StructureDefinition",\n  oops', encoding="utf-8")
    assert "not valid JSON" in _usage_error(bad)


def test_json_but_not_an_object(tmp_path: Path) -> None:
    bad = tmp_path / "profile.json"
    bad.write_text("[1, 2]", encoding="utf-8")
    assert "JSON object" in _usage_error(bad)


def test_not_a_structure_definition() -> None:
    fixture = paths.FIXTURES_DIR / "Patient-patient-botje-minimaal.json"
    assert "not a StructureDefinition" in _usage_error(fixture)


def test_structure_definition_whose_type_and_snapshot_disagree(tmp_path: Path) -> None:
    sd = kt2task_sd()
    sd["type"] = "Patient"
    file = tmp_path / "StructureDefinition-Other.json"
    file.write_text(json.dumps(sd), encoding="utf-8")
    assert "profiles 'Patient' but its snapshot describes 'Task'" in _usage_error(file)


def test_extension_definition_is_not_a_resource_profile() -> None:
    file = paths.DEFAULT_PROFILE_DIR / "StructureDefinition-instantiates.json"
    assert "is not a resource profile (kind 'complex-type'" in _usage_error(file)


CORE_BASED = ["KT2ActivityDefinition", "KT2AuditEvent", "KT2Device", "KT2Endpoint",
              "KT2Subscription", "KT2Task"]
NL_CORE_BASED = ["KT2CareTeam", "KT2Organization", "KT2Patient", "KT2Practitioner",
                 "KT2RelatedPerson"]


@pytest.mark.parametrize("name", ["KT2Device", "KT2_Device", "kt2device"])
def test_profile_by_name(name: str) -> None:
    profile = load_profile(name)
    assert (profile.url, profile.type) == ("http://koppeltaal.nl/fhir/StructureDefinition/KT2Device", "Device")
    assert profile.unjudgeable is None
    assert profile.structure_definition("http://koppeltaal.nl/fhir/StructureDefinition/resource-origin")


def test_unknown_name_lists_the_names() -> None:
    message = _usage_error("KT2Nothing")
    assert "profile not found: KT2Nothing" in message and "KT2Endpoint" in message


def test_select_all_and_several() -> None:
    every = select_profiles("all")
    assert [p.name for p in every] == sorted(CORE_BASED + NL_CORE_BASED)
    assert [p.name for p in every if p.unjudgeable is None] == CORE_BASED
    assert [p.name for p in select_profiles("KT2Task, KT2_Device,KT2Task")] == ["KT2Task", "KT2Device"]
    assert [p.name for p in select_profiles(None)] == ["KT2Task"]


@pytest.mark.parametrize("name", NL_CORE_BASED)
def test_nl_core_based_profile_says_what_it_needs(name: str) -> None:
    reason = load_profile(name).unjudgeable
    assert reason is not None and "\n" not in reason
    assert reason.startswith(f"{name} builds on http://nictiz.nl/fhir/StructureDefinition/nl-core-")
    assert "nictiz.fhir.nl.r4.nl-core#0.12.0-beta.4" in reason
    assert "official examples are created and read back" in reason


def test_base_profile_present_in_the_folder_is_judgeable(tmp_path: Path) -> None:
    """A profile on a profile: judgeable when the folder holds the base (here a copy of KT2Task
    re-homed as the parent of a derived profile)."""
    parent = kt2task_sd()
    child = {**kt2task_sd(), "url": "http://example.org/fhir/StructureDefinition/Child",
             "baseDefinition": parent["url"]}
    (tmp_path / "parent.json").write_text(json.dumps(parent), encoding="utf-8")
    (tmp_path / "child.json").write_text(json.dumps(child), encoding="utf-8")
    assert load_profile(tmp_path / "child.json").unjudgeable is None
    (tmp_path / "parent.json").unlink()
    assert "builds on http://koppeltaal.nl/fhir/StructureDefinition/KT2Task" in str(
        load_profile(tmp_path / "child.json").unjudgeable)


def test_structure_definition_without_snapshot(tmp_path: Path) -> None:
    sd = kt2task_sd()
    del sd["snapshot"]
    file = tmp_path / "StructureDefinition-KT2Task.json"
    file.write_text(json.dumps(sd), encoding="utf-8")
    assert "no snapshot" in _usage_error(file)


def test_folder_without_a_task_profile(tmp_path: Path) -> None:
    shutil.copy(paths.DEFAULT_PROFILE_DIR / "ValueSet-task-status.json", tmp_path)
    assert "no Task profile" in _usage_error(tmp_path)


def test_folder_with_two_task_profiles(tmp_path: Path) -> None:
    """Two Task profiles neither of which is KT2Task: which one is meant is not guessed."""
    for name in ("A", "B"):
        sd = kt2task_sd()
        sd["url"] = f"http://example.org/StructureDefinition/{name}Task"
        (tmp_path / f"StructureDefinition-{name}.json").write_text(json.dumps(sd), encoding="utf-8")
    assert "several Task profiles" in _usage_error(tmp_path)


# -- the constraint list -----------------------------------------------------------------------


@pytest.fixture
def listed(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, str]]:
    """`kt2conformance constraints --format json`, by key."""
    assert main(["constraints", "--format", "json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    by_key = {e["key"]: e for e in entries}
    assert len(by_key) == len(entries), "constraint keys must be unique"
    return by_key


def _extension_slices(sd: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Slice id (`Task.extension:instantiates`) -> the extension's own StructureDefinition."""
    out = {}
    for el in sd["snapshot"]["element"]:
        profiles = [p for t in el.get("type", []) for p in t.get("profile", [])]
        if el.get("sliceName") and profiles:
            name = profiles[0].rsplit("/", 1)[-1]
            definition = paths.DEFAULT_PROFILE_DIR / f"StructureDefinition-{name}.json"
            out[el["id"]] = json.loads(definition.read_text(encoding="utf-8"))
    return out


def _elements_with_ids() -> list[tuple[str, dict[str, Any]]]:
    """(constraint element id, element) for KT2Task's snapshot and the extension definitions
    grafted under their slices (`Extension.url` -> `Task.extension:instantiates.url`)."""
    sd = kt2task_sd()
    out = [(el["id"], el) for el in sd["snapshot"]["element"]]
    for slice_id, ext_sd in _extension_slices(sd).items():
        out += [(slice_id + el["id"][len("Extension"):], el) for el in ext_sd["snapshot"]["element"][1:]]
    return out


def test_lists_every_max_0_element_and_narrowed_max(listed: dict[str, dict[str, str]]) -> None:
    """`max` for elements the profile forbids, and for those it limits below the base (the
    resource-origin slice: 0..1 of a 0..* element)."""
    forbidden = {f"{eid}/max" for eid, el in _elements_with_ids() if el.get("max") == "0"}
    narrowed = {f"{eid}/max" for eid, el in _elements_with_ids()
                if el.get("max") not in ("0", "*") and el.get("base", {}).get("max") == "*"}
    assert len(forbidden) >= 15
    assert "Task.extension:instantiates.extension/max" in forbidden
    assert narrowed == {"Task.extension:resource-origin/max"}
    contained = {"Task.contained/max"}  # inside a contained resource, by its own definition
    assert {k for k in listed if k.endswith("/max")} == forbidden | narrowed | contained


def test_nothing_listed_below_a_forbidden_element(listed: dict[str, dict[str, str]]) -> None:
    forbidden = [k[: -len("/max")] for k in listed if k.endswith("/max") and listed[k]["description"].endswith("not allowed")]
    assert forbidden
    assert not [k for k in listed if any(k.startswith(f + ".") for f in forbidden)]


def test_lists_required_elements(listed: dict[str, dict[str, str]]) -> None:
    mins = {k for k in listed if k.endswith("/min") and k != "Task.contained/min"}
    assert {"Task.identifier/min", "Task.for/min", "Task.owner/min", "Task.status/min", "Task.intent/min"} <= mins
    elements = _elements_with_ids()
    forbidden = [eid for eid, el in elements if el.get("max") == "0"]
    required = {f"{eid}/min" for eid, el in elements if el.get("min", 0) > 0
                and not any(eid.startswith(f + ".") for f in forbidden)}  # Task.input.type: moot
    # an allowed element of a datatype with required parts (Narrative.status, Extension.url) has
    # a min too: a missing part is reported on the element
    types = {e["resource"]["name"]: e["resource"] for e in json.loads(paths.R4_TYPES.read_text())["entry"]}
    with_parts = {name for name, sd in types.items()
                  if any(el.get("min", 0) > 0 for el in sd["snapshot"]["element"][1:] if el["path"].count(".") == 1)}
    own_parts = {f"{eid}/min" for eid, el in elements
                 if el.get("max") != "0" and ":" not in eid and eid.count(".") == 1
                 and len(el.get("type", [])) == 1 and el["type"][0]["code"] in with_parts
                 and not el["type"][0].get("profile")}
    assert mins == required | own_parts


def test_lists_fixed_priority_and_required_bindings(listed: dict[str, dict[str, str]]) -> None:
    assert "Task.priority/fixed" in listed
    assert "routine" in listed["Task.priority/fixed"]["description"]
    value_set_bound = {k for k in listed if k.endswith("/binding") and "must come from the value set http" in
                       listed[k]["description"]}
    assert value_set_bound == {"Task.status/binding", "Task.intent/binding", "Task.priority/binding"}
    # codes inside datatypes (Identifier.use, Coding of a known system) and contained resources
    assert {"Task.identifier/binding", "Task.code/binding", "Task.meta/binding", "Task.text/binding",
            "Task.contained/binding"} <= {k for k in listed if k.endswith("/binding")}
    assert "Task.description/binding" not in listed


def test_lists_target_profile_rules(listed: dict[str, dict[str, str]]) -> None:
    assert {k for k in listed if k.endswith("/targetProfile")} == {
        "Task.owner/targetProfile",
        "Task.for/targetProfile",
        "Task.requester/targetProfile",
        "Task.partOf/targetProfile",
        "Task.instantiatesCanonical/targetProfile",
        "Task.extension:resource-origin.value[x]/targetProfile",
        "Task.extension:instantiates.value[x]/targetProfile",
        "Task.contained/targetProfile",  # references inside a contained resource
    }
    owner = listed["Task.owner/targetProfile"]["description"]
    assert all(t in owner for t in ("CareTeam", "Patient", "Practitioner", "RelatedPerson"))


def test_lists_both_extension_slices_and_invariants(listed: dict[str, dict[str, str]]) -> None:
    assert any(k.startswith("Task.extension:resource-origin") for k in listed)
    assert any(k.startswith("Task.extension:instantiates") for k in listed)
    assert "Task/constraint:inv-1" in listed
    assert listed["Task/constraint:dom-6"]["severity"] == "warning"
    assert {k for k in listed if k.startswith("server/")} == {
        "server/meta.profile", "server/content-type", "server/bearer-token",
        "server/json-syntax", "server/subtask-partOf", "server/reference-integrity", "server/resource-origin",
        "server/if-match", "server/stale-version", "server/delete"}


def test_every_entry_is_well_formed(listed: dict[str, dict[str, str]]) -> None:
    assert len(listed) >= 48  # dozens
    for key, entry in listed.items():
        assert set(entry) == {"key", "kind", "element", "description", "severity"}
        assert entry["severity"] in ("error", "warning")
        assert entry["description"]
        if not key.startswith("server/"):
            assert key == f"{entry['element']}/{key.split('/', 1)[1]}"
            assert key.split("/", 1)[1].split(":")[0] == entry["kind"]
