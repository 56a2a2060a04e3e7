"""The published JSON Schemas of the harness's own outputs (docs/schemas/) hold for what the
commands really write (summary.json is checked on the main run of tests/test_suites_e2e.py), and
generated Tasks agree with HL7's official FHIR R4 JSON Schema (profiles/r4/fhir.schema.json):
every valid Task passes it, a Task that breaks only a Koppeltaal server rule passes it too (such
a Task is valid FHIR), and every unknown-element fault is refused by it (the schema forbids
additional properties)."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from kt2conformance import ConstraintKey, Kind, Prerequisites, generate_invalid, generate_valid, load_profile
from kt2conformance.generate import invalid_tasks

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"
CLI = [sys.executable, "-m", "kt2conformance"]
PROFILE = load_profile()
PREREQS = Prerequisites(task="Task/parent-1")


def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


def schema_errors(name: str, instance: Any) -> list[str]:
    """Where `instance` breaks the published schema `name` ([] when it holds)."""
    validator = jsonschema.Draft202012Validator(
        _schema(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


@pytest.mark.parametrize("name", sorted(p.name for p in SCHEMAS.glob("*.schema.json")))
def test_published_schema_is_a_valid_schema(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(_schema(name))


def test_schemas_refuse_what_the_contract_rules_out() -> None:
    """The schemas can fail: a record with a made-up verdict, a key that is not a key."""
    case = {"id": "x", "expected": "accept", "constraint": None, "status": 201,
            "verdict": "fine", "reason": ""}
    assert schema_errors("validate.schema.json", [{"file": "a", "valid": True,
                                            "issues": [{"severity": "error", "key": "no key",
                                                        "path": "Task", "message": ""}]}])
    assert schema_errors("generate-index.schema.json", [{"file": "a.json", "expected": "maybe",
                                                  "constraint": "Task.owner/min",
                                                  "description": ""}])
    summary = json.loads((SCHEMAS.parent / "examples" / "summary.json").read_text())
    assert schema_errors("summary.schema.json", summary) == []
    assert schema_errors("summary.schema.json", {**summary, "cases": [case]})
    assert schema_errors("summary.schema.json", {k: v for k, v in summary.items() if k != "complete"})
    lossy = {**case, "verdict": "fail", "data_loss": [
        {"path": "Task.description", "element": "Task.description", "kind": "truncated"}]}
    assert schema_errors("summary.schema.json", {**summary, "cases": [lossy]}) == []
    lossy["data_loss"][0]["kind"] = "lost somehow"
    assert schema_errors("summary.schema.json", {**summary, "cases": [lossy]})


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("generated")
    for args in (["--valid", "3", "--out", str(folder / "valid")],
                 ["--invalid", "--out", str(folder / "invalid")]):
        result = subprocess.run([*CLI, "generate", *args], capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.parametrize("kind", ["valid", "invalid"])
def test_generate_index_matches_its_schema(generated: Path, kind: str) -> None:
    index = json.loads((generated / kind / "index.json").read_text(encoding="utf-8"))
    assert index and schema_errors("generate-index.schema.json", index) == []


def test_validate_json_output_matches_its_schema(generated: Path) -> None:
    files = sorted(str(p) for p in (generated / "invalid").glob("invalid-*.json"))[:40]
    files += sorted(str(p) for p in (generated / "valid").glob("valid-*.json"))
    result = subprocess.run([*CLI, "validate", "--format", "json", *files],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr  # some are invalid
    report = json.loads(result.stdout)
    assert len(report) == len(files) and schema_errors("validate.schema.json", report) == []
    assert any(entry["issues"] for entry in report)


# -- the official FHIR R4 JSON Schema --------------------------------------------------------

@cache
def _r4() -> jsonschema.protocols.Validator:
    full = json.loads((ROOT / "profiles" / "r4" / "fhir.schema.json").read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(full)  # draft-06
    return validator_class({"$ref": "#/definitions/Task", "definitions": full["definitions"]})


def _r4_errors(task: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in _r4().iter_errors(task)]


def test_valid_tasks_pass_the_official_r4_schema() -> None:
    for n, task in enumerate(islice(generate_valid(PROFILE, PREREQS, seed=7), 150)):
        assert _r4_errors(task) == [], (n, task)


def test_server_rule_faults_are_valid_fhir_and_unknown_elements_are_not() -> None:
    checked = {Kind.SERVER: 0, Kind.UNKNOWN: 0}
    for key in sorted(invalid_tasks(PROFILE, PREREQS)):
        kind = ConstraintKey.parse(key).kind
        if kind not in checked:
            continue
        for task in islice(generate_invalid(PROFILE, key, PREREQS, seed=3), 3):
            errors = _r4_errors(task)
            if kind is Kind.SERVER:
                assert errors == [], (key, task)
            else:
                assert errors, f"the R4 schema accepts an unknown element ({key}): {task}"
            checked[kind] += 1
    assert checked[Kind.SERVER] >= 3 and checked[Kind.UNKNOWN] >= 20, checked


def test_summary_schema_knows_every_stop_reason() -> None:
    from kt2conformance._vocabulary import StopReason

    enum = _schema("summary.schema.json")["properties"]["stopped_reason"]["enum"]
    assert set(enum) == {None, *(r.value for r in StopReason)}
