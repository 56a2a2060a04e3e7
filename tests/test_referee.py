"""The referee comparison (run._referee) and `validate --referee-url`, without a HAPI server: the
validator's answers come from a tiny loopback fake that replays OperationOutcomes of the shape
HAPI's `$validate` gives (locations as HAPI writes them)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
from fakes import LoopbackServer, _Handler
from tasks import MINIMAL

from kt2conformance import _paths as paths
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.run._referee import RefereeIssue, compare, element_path
from kt2conformance.spec._profile import load_profile

ORACLE = Oracle(load_profile())


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("Task.identifier[0].type", "Task.identifier.type"),
        ("Task.extension[1].value.ofType(Reference)", "Task.extension.value"),
        ("Task.contained[0]/*Patient/c1*/.gender", "Task.contained.gender"),
        ("Task.modifierExtension[0][url='http://x.org/e']", "Task.modifierExtension"),
        ("Task._status", "Task.status"),
        ("Task.extension:instantiates.value[x]", "Task.extension.value"),
    ],
)
def test_element_path(location: str, expected: str) -> None:
    assert element_path(location) == expected


def _issue(severity: str, location: str, message: str = "m") -> RefereeIssue:
    return RefereeIssue(severity, location, message)


def test_same_element_and_agreement() -> None:
    task = {k: v for k, v in MINIMAL.items() if k != "owner"}
    ours = ORACLE.validate(task)
    # HAPI reports a missing element on its parent, naming it in the message
    on_parent = compare(ours, [_issue("error", "Task", "Task.owner: minimum required = 1, but only found 0")])
    assert on_parent.agrees and on_parent.same_element("Task.owner/min") and not on_parent.only_referee
    elsewhere = compare(ours, [_issue("error", "Task.identifier[0]", "something else")])
    assert elsewhere.agrees and not elsewhere.same_element("Task.owner/min")
    assert [i.key for i in elsewhere.only_oracle] == ["Task.owner/min"] and elsewhere.only_referee
    lenient = compare(ours, [_issue("warning", "Task.owner", "a warning is no refusal")])
    assert not lenient.agrees and lenient.referee_valid and not lenient.oracle_valid


def test_choice_and_slices_match() -> None:
    task = copy.deepcopy(MINIMAL)
    task["extension"] = [{"url": "http://vzvz.nl/fhir/StructureDefinition/instantiates", "valueString": "x"}]
    ours = ORACLE.validate(task)
    theirs = [_issue("error", "Task.extension[0].value.ofType(string)", "type not allowed")]
    c = compare(ours, theirs)
    assert c.agrees and c.same_element("Task.extension:instantiates.value[x]/type")


class _FakeValidator(_Handler):
    """Answers every $validate with the OperationOutcome in `outcome`, recording the request."""

    outcome: ClassVar[dict[str, Any]] = {}
    seen: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        type(self).seen.append((self.path, self.read_body().decode()))
        self.send(200, type(self).outcome)


class _FakeValidatorServer(LoopbackServer):
    handler = _FakeValidator


@pytest.fixture
def fake_validator() -> Iterator[str]:
    with _FakeValidatorServer() as server:
        yield f"{server.url}/fhir"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kt2conformance", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_validate_referee_shows_the_differences(fake_validator: str, tmp_path: Path) -> None:
    task = copy.deepcopy(MINIMAL)
    task["owner"] = {"reference": "Device/d1"}  # the oracle refuses (targetProfile)
    path = tmp_path / "task.json"
    path.write_text(json.dumps(task), encoding="utf-8")
    _FakeValidator.outcome = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing", "diagnostics": "Unknown code 'x'", "expression": ["Task.code"]}]}
    _FakeValidator.seen = []
    result = _cli("validate", "--referee-url", fake_validator, str(path))
    assert result.returncode == 1, result.stderr
    assert "HL7 validator" in result.stdout and "DIFFERS" not in result.stdout  # both refuse
    assert "only the oracle:        Task.owner/targetProfile" in result.stdout
    assert "only the HL7 validator: error Task.code: Unknown code 'x'" in result.stdout
    sent_path, sent_body = _FakeValidator.seen[-1]  # after the check that $validate answers
    assert sent_path.startswith("/fhir/Task/$validate?profile=http") and json.loads(sent_body) == task
    as_json = json.loads(_cli("validate", "--format", "json", "--referee-url", fake_validator, str(path)).stdout)
    referee = as_json[0]["referee"]
    assert (referee["oracle_valid"], referee["referee_valid"], referee["agree"]) == (False, False, True)
    schema = json.loads((paths.PROJECT_ROOT / "docs" / "schemas" / "validate.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(as_json, schema)  # the published schema knows `referee`
    _FakeValidator.outcome = {"resourceType": "OperationOutcome", "issue": []}
    assert "DIFFERS from the oracle" in _cli("validate", "--referee-url", fake_validator, str(path)).stdout


def test_validate_referee_unreachable_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "task.json"
    path.write_text(json.dumps(MINIMAL), encoding="utf-8")
    result = _cli("validate", "--referee-url", "http://127.0.0.1:9/fhir", str(path))
    assert result.returncode == 2 and "cannot be reached" in result.stderr and "Traceback" not in result.stderr
