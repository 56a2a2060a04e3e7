"""The local commands as users and CI scripts run them: a real process, its exit code, stdout and
stderr (docs/contract.md). Exit 2 must come with exactly one line naming the problem, never a
traceback, whichever way the CLI is started (console script or `python -m`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CONSOLE_SCRIPT = [str(Path(sys.executable).parent / "kt2conformance")]
MODULE = [sys.executable, "-m", "kt2conformance"]

VALID_TASK: dict[str, Any] = {
    "resourceType": "Task",
    "meta": {"profile": ["http://koppeltaal.nl/fhir/StructureDefinition/KT2Task"]},
    "identifier": [{"system": "http://example.org/task-ids", "value": "t-1"}],
    "status": "requested",
    "intent": "order",
    "for": {"reference": "Patient/patient-1"},
    "owner": {"reference": "Practitioner/practitioner-1"},
}


def run(command: list[str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=60)


def write(folder: Path, name: str, content: Any) -> Path:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def assert_usage_error(result: subprocess.CompletedProcess[str], mentions: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert mentions in lines[0]
    assert lines[0].startswith("kt2conformance: error: ")


@pytest.mark.parametrize("command", [CONSOLE_SCRIPT, MODULE], ids=["console-script", "python-m"])
def test_valid_task_exits_0(tmp_path: Path, command: list[str]) -> None:
    result = run(command, "validate", write(tmp_path, "task.json", VALID_TASK))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "task.json: valid" in result.stdout


def test_invalid_task_exits_1_with_contract_json(tmp_path: Path) -> None:
    good = write(tmp_path, "good.json", VALID_TASK)
    bad = write(tmp_path, "bad.json", {**VALID_TASK, "priority": "urgent", "note": [{"text": "n"}]})
    result = run(CONSOLE_SCRIPT, "validate", "--format", "json", good, bad)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert [(r["file"], r["valid"]) for r in report] == [(str(good), True), (str(bad), False)]
    for entry in report:
        assert set(entry) == {"file", "valid", "issues"}
        for issue in entry["issues"]:
            assert set(issue) == {"severity", "key", "path", "message"}
            assert issue["severity"] in ("error", "warning")
    errors = {i["key"] for i in report[1]["issues"] if i["severity"] == "error"}
    assert errors == {"Task.priority/fixed", "Task.note/max"}


def test_json_that_is_not_a_task_is_invalid_not_unusable(tmp_path: Path) -> None:
    """Well-formed JSON is usable input: a non-Task is a verdict (1), not a usage error (2)."""
    result = run(CONSOLE_SCRIPT, "validate", write(tmp_path, "list.json", [VALID_TASK]))
    assert result.returncode == 1
    assert "Task/type" in result.stdout


@pytest.mark.parametrize("command", [CONSOLE_SCRIPT, MODULE], ids=["console-script", "python-m"])
def test_non_json_file_exits_2(tmp_path: Path, command: list[str]) -> None:
    broken = write(tmp_path, "broken.json", '{"resourceType": "Task",\n')
    assert_usage_error(run(command, "validate", broken), str(broken))


def test_missing_file_exits_2_before_any_verdict(tmp_path: Path) -> None:
    """All inputs must be usable before anything is judged: no partial report on stdout."""
    good = write(tmp_path, "good.json", VALID_TASK)
    missing = tmp_path / "missing.json"
    result = run(CONSOLE_SCRIPT, "validate", good, missing)
    assert_usage_error(result, str(missing))
    assert result.stdout == ""


@pytest.mark.parametrize("sub_command", [["constraints"], ["validate", "--format", "json"]])
def test_broken_profile_exits_2(tmp_path: Path, sub_command: list[str]) -> None:
    profile = write(tmp_path, "StructureDefinition-KT2Task.json", "{ not json")
    args = [*sub_command, "--profile", profile]
    if sub_command[0] == "validate":
        args.append(write(tmp_path, "task.json", VALID_TASK))
    assert_usage_error(run(CONSOLE_SCRIPT, *args), str(profile))


def test_missing_profile_exits_2(tmp_path: Path) -> None:
    assert_usage_error(run(MODULE, "constraints", "--profile", tmp_path / "nowhere"), "profile not found")


def test_validate_hostile_json_gives_a_verdict_not_a_traceback(tmp_path: Path) -> None:
    """Lone surrogates in keys and text, an integer of 6,000 digits and nesting past the servers'
    limit are all invalid Tasks, reported in text and JSON; deeper than can be read is exit 2."""
    files = [
        write(tmp_path, "surrogate.json", '{"resourceType": "Task", "\\ud800x": 1, "description": "\\udfff"}'),
        write(tmp_path, "huge.json", '{"resourceType": "Task", "extension": [{"url": "http://x", "valueInteger": '
              + "9" * 6000 + "}]}"),
        write(tmp_path, "deep.json", '{"resourceType": "Task", "extension": ['
              + '{"url": "http://example.org/e", "extension": [' * 700 + "]}" * 700 + "]}"),
    ]
    for command in (CONSOLE_SCRIPT, MODULE):
        for fmt in ("text", "json"):
            result = run(command, "validate", "--format", fmt, *files)
            assert result.returncode == 1, result.stderr
            assert "Traceback" not in result.stderr
    text = run(CONSOLE_SCRIPT, "validate", *files).stdout
    assert "\\ud800x" in text and "Task.extension/format" in text and "nested more than 1000" in text
    too_deep = write(tmp_path, "too-deep.json", "[" * 9000 + "]" * 9000)
    assert_usage_error(run(CONSOLE_SCRIPT, "validate", too_deep), "too-deep.json")
