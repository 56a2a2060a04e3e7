"""Every KT2 profile of the vendored package: the six built on core FHIR are judged like KT2Task
(constraint keys, oracle, generators, server rules for their type), the five built on nl-core say
in one line what they would need. The local commands as a user runs them, in a real process."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from kt2conformance import _paths as paths
from kt2conformance.generate import _strategies as strategies
from kt2conformance.generate._values import Prerequisites, oracle_for
from kt2conformance.spec._constraints import derive_constraints
from kt2conformance.spec._fhirpath import holds
from kt2conformance.spec._profile import load_profile

CORE_BASED = {"KT2ActivityDefinition": "ActivityDefinition", "KT2AuditEvent": "AuditEvent",
              "KT2Device": "Device", "KT2Endpoint": "Endpoint",
              "KT2Subscription": "Subscription", "KT2Task": "Task"}
NL_CORE_BASED = ["KT2CareTeam", "KT2Organization", "KT2Patient", "KT2Practitioner",
                 "KT2RelatedPerson"]
EXAMPLES = paths.DEFAULT_PROFILE_DIR / "examples"
PREREQS = Prerequisites(task="Task/parent-1")


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kt2conformance", *map(str, args)],
                          check=False, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(CORE_BASED))
def test_constraints_of_each_core_based_profile(name: str) -> None:
    result = cli("constraints", "--profile", name, "--format", "json")
    assert result.returncode == 0, result.stderr
    keys = [c["key"] for c in json.loads(result.stdout)]
    rtype = CORE_BASED[name]
    assert f"{rtype}/type" in keys and f"{rtype}.meta/type" in keys
    assert all(k.startswith((f"{rtype}/", f"{rtype}.", "server/")) for k in keys)
    servers = {k for k in keys if k.startswith("server/")}
    assert "server/meta.profile" in servers and "server/reference-integrity" in servers
    assert ("server/subtask-partOf" in servers) is (rtype == "Task")


def test_constraints_of_several_profiles_name_their_profile() -> None:
    result = cli("constraints", "--profile", "KT2Device,KT2Endpoint", "--format", "json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert {c["profile"].rsplit("/", 1)[-1] for c in listed} == {"KT2Device", "KT2Endpoint"}
    text = cli("constraints", "--profile", "KT2Device,KT2Endpoint").stdout
    assert "# KT2Device (http://koppeltaal.nl/fhir/StructureDefinition/KT2Device|0.8.1)" in text


@pytest.mark.parametrize("name", NL_CORE_BASED)
def test_nl_core_based_profile_is_one_clear_line(name: str) -> None:
    result = cli("constraints", "--profile", name)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"{name} builds on http://nictiz.nl/fhir/StructureDefinition/nl-core-" in result.stderr
    assert "nictiz.fhir.nl.r4.nl-core#0.12.0-beta.4" in result.stderr


def test_all_lists_the_core_based_and_says_why_not_the_others() -> None:
    result = cli("constraints", "--profile", "all", "--format", "json")
    assert result.returncode == 0
    assert {c["profile"].rsplit("/", 1)[-1] for c in json.loads(result.stdout)} == set(CORE_BASED)
    skipped = [line for line in result.stderr.splitlines() if line.startswith("kt2conformance: not judged: ")]
    assert sorted(line.split()[3] for line in skipped) == NL_CORE_BASED


def test_validate_picks_the_profile_by_resource_type(tmp_path: Path) -> None:
    """The IG's own examples of the six core-based profiles are valid, each judged against the
    profile of its type; a Device stripped of its required identifier is not."""
    files = sorted(p for p in EXAMPLES.glob("*.json") if p.name.split("-")[0] in CORE_BASED.values())
    assert len(files) >= 20
    result = cli("validate", "--profile", ",".join(CORE_BASED), "--format", "json", *files)
    assert result.returncode == 0, result.stdout[:2000]
    device = json.loads((EXAMPLES / "Device-device-volledig.json").read_text())
    del device["identifier"]
    bad = tmp_path / "device.json"
    bad.write_text(json.dumps(device))
    result = cli("validate", "--profile", "all", "--format", "json", bad)
    assert result.returncode == 1
    assert [i["key"] for i in json.loads(result.stdout)[0]["issues"] if i["severity"] == "error"] \
        == ["Device.identifier/min"]


@pytest.mark.parametrize("name", sorted(CORE_BASED))
def test_generated_resources_follow_their_profile(name: str) -> None:
    profile = load_profile(name)
    oracle = oracle_for(profile)
    stream = strategies.generate_valid(profile, PREREQS, seed=7)
    for _ in range(15):
        resource = next(stream)
        assert resource["resourceType"] == CORE_BASED[name]
        assert resource["meta"]["profile"] == [profile.url]
        assert oracle.errors(resource) == []
    keys = sorted(strategies.invalid_tasks(profile, PREREQS))
    assert len(keys) > 80
    for key in random.Random(name).sample(keys, 12):
        broken = next(strategies.generate_invalid(profile, key, PREREQS, seed=3))
        expected = set() if key.startswith("server/") else {key}
        assert {i.key for i in oracle.errors(broken)} == expected, key


def test_every_required_slice_is_in_a_minimal_resource() -> None:
    """KT2ActivityDefinition needs its endpoint extension (1..*): the minimal base of every
    invalid ActivityDefinition carries it, so a fault breaks only its own key."""
    profile = load_profile("KT2ActivityDefinition")
    broken = next(strategies.generate_invalid(profile, "ActivityDefinition.status/min", PREREQS))
    urls = [e["url"] for e in broken.get("extension", [])]
    assert "http://koppeltaal.nl/fhir/StructureDefinition/KT2EndpointExtension" in urls
    assert "status" not in broken


def test_server_rules_per_type() -> None:
    endpoint = {c.key for c in derive_constraints(load_profile("KT2Endpoint"))}
    task = {c.key for c in derive_constraints(load_profile("KT2Task"))}
    assert "server/subtask-partOf" in task - endpoint


@pytest.mark.parametrize(("low", "high", "holds_"), [(18, 65, True), (65, 18, False), (5, 5, True)])
def test_range_order_on_quantities(low: int, high: int, holds_: bool) -> None:
    """rng-2 compares two Quantities; fhirpathpy raises on that, the mend compares values."""
    rng = {"low": {"value": low, "system": "http://unitsofmeasure.org", "code": "a"},
           "high": {"value": high, "system": "http://unitsofmeasure.org", "code": "a"}}
    assert holds("low.empty() or high.empty() or (low <= high)", rng, {}) is holds_
