"""Malformed profiles: whatever is wrong in a StructureDefinition, or in the extension
definitions, ValueSets and CodeSystems it reaches, `validate`, `constraints` and `generate` end
with their normal exit code or with one line and exit 2: never a traceback, never a hang.

The fuzz test mutates one field of the vendored definitions at a time (a wrong JSON type, a
missing field, an out-of-range number, a broken FHIRPath expression); the named tests pin the
mistakes people make by hand, and the profile no Task can satisfy."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tasks import MINIMAL

from kt2conformance import _paths as paths
from kt2conformance.cli import main

VENDORED = paths.DEFAULT_PROFILE_DIR
KT2TASK = "StructureDefinition-KT2Task.json"
# The definitions a run reads: the profile, its extension, the ValueSets of its required
# bindings and their CodeSystems.
MUTATED = (KT2TASK, "StructureDefinition-instantiates.json", "ValueSet-koppeltaal-task-code.json",
           "CodeSystem-koppeltaal-task-code.json", "ValueSet-task-status.json",
           "CodeSystem-task-status.json")
ORIGINALS = {name: json.loads((VENDORED / name).read_text()) for name in MUTATED}
HANG_GUARD_S = 60


def _locations(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON document (object keys and list indexes), skipping the narrative."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key != "text":
                yield prefix + (key,)
                yield from _locations(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node[:40]):
            yield prefix + (i,)
            yield from _locations(value, prefix + (i,))


# The definitions' fields that matter most: the snapshot elements' own fields and the terminology
# parts; drawn from first, so the fuzz spends its examples where the harness reads.
LOCATIONS = {name: [loc for loc in _locations(doc)
                    if "snapshot" in loc or "compose" in loc or "concept" in loc
                    or len(loc) == 1]
             for name, doc in ORIGINALS.items()}
WRONG_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 3), st.sampled_from([
        "", "*", "x", "0", "-1", "2", "Task", "Task.x", "Extension", "required", "error",
        "http://example.org/nothing", "a.b(", "where(", "'unclosed", "%resource.", ")(",
        "exists() and", "1 +"]),
    st.just([]), st.just({}), st.just([{}]), st.just([None]), st.just({"code": 1}),
    st.just([{"code": "x"}]))


def _mutate(doc: Any, location: tuple[Any, ...], value: Any, delete: bool) -> Any:
    doc = json.loads(json.dumps(doc))
    parent = doc
    for step in location[:-1]:
        parent = parent[step]
    if delete:
        del parent[location[-1]]
    else:
        parent[location[-1]] = value
    return doc


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the vendored profile folder whose mutated files the test rewrites."""
    target = tmp_path_factory.mktemp("profile") / "profile"
    shutil.copytree(VENDORED, target)
    return target


@pytest.fixture(scope="module")
def task_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("task") / "task.json"
    path.write_text(json.dumps(MINIMAL))
    return path


class _Hang(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Hang()


def _commands(folder: Path, task_file: Path, out: Path, invalid: bool) -> list[list[str]]:
    profile = ["--profile", str(folder)]
    commands = [["validate", *profile, str(task_file)], ["constraints", *profile],
                ["generate", "--valid", "2", "--out", str(out / "valid"), *profile]]
    if invalid:  # the slowest command: a fifth of the examples
        commands.append(["generate", "--invalid", "--out", str(out / "invalid"), *profile])
    return commands


def _run(command: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_GUARD_S)
    try:
        code = main(command)
    except _Hang:
        pytest.fail(f"kt2conformance {' '.join(command[:2])} did not end within "
                    f"{HANG_GUARD_S} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return code, capsys.readouterr().err


def _assert_clean(code: int, err: str, command: list[str]) -> None:
    if code == 2:
        assert err.startswith("kt2conformance: error: ") and err.count("\n") == 1, (command, err)
    else:
        assert code in (0, 1), (command, code, err)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_mutated_definition_never_crashes_or_hangs(folder: Path, task_file: Path,
                                                     tmp_path_factory: pytest.TempPathFactory,
                                                     capsys: pytest.CaptureFixture[str],
                                                     data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(MUTATED), label="file")
    location = data.draw(st.sampled_from(LOCATIONS[name]), label="location")
    delete = isinstance(location[-1], str) and data.draw(st.booleans(), label="delete")
    value = None if delete else data.draw(WRONG_VALUES, label="value")
    invalid = data.draw(st.integers(0, 4), label="with --invalid") == 0
    try:
        (folder / name).write_text(json.dumps(_mutate(ORIGINALS[name], location, value, delete)))
        out = tmp_path_factory.mktemp("out")
        for command in _commands(folder, task_file, out, invalid):
            code, err = _run(command, capsys)
            _assert_clean(code, err, command)
    finally:
        (folder / name).write_text(json.dumps(ORIGINALS[name]))


def _element(sd: dict[str, Any], element_id: str) -> dict[str, Any]:
    return next(e for e in sd["snapshot"]["element"] if e["id"] == element_id)


def _broken(change: Any) -> dict[str, Any]:
    sd = json.loads(json.dumps(ORIGINALS[KT2TASK]))
    change(sd)
    return sd


@pytest.mark.parametrize(("change", "message"), [
    (lambda sd: _element(sd, "Task.status").update(min="1"),
     "Task.status: min '1' is not a whole number of 0 or more"),
    (lambda sd: _element(sd, "Task.note").update(max=0),
     "Task.note: max 0 is not \"*\" or a number (as a string)"),
    (lambda sd: _element(sd, "Task.owner").update(min=2, max="1"),
     "Task.owner: min 2 is more than max 1 (eld-3)"),
    (lambda sd: _element(sd, "Task.owner").update(type={"code": "Reference"}),
     "Task.owner: type is not a list of objects"),
    (lambda sd: _element(sd, "Task.owner")["type"][0].update(targetProfile="http://x"),
     "Task.owner: type[0].targetProfile is not a list of strings"),
    (lambda sd: _element(sd, "Task.status").update(binding="required"),
     "Task.status: binding is not an object"),
    (lambda sd: _element(sd, "Task.status")["binding"].update(strength="mandatory"),
     "Task.status: binding.strength 'mandatory' is not one of"),
    (lambda sd: _element(sd, "Task")["constraint"][0].update(expression=["x"]),
     "constraint dom-2: expression is not a string"),
    (lambda sd: _element(sd, "Task")["constraint"][0].update(expression="'unclosed"),
     "constraint dom-2: expression 'unclosed does not parse"),
    (lambda sd: sd["snapshot"]["element"].__setitem__(5, "Task.x"),
     "snapshot.element[5]: not an object"),
    (lambda sd: sd["snapshot"]["element"][5].pop("path"),
     "snapshot.element[5]: path missing or not a string"),
    (lambda sd: sd["snapshot"]["element"][0].update(path="Patient"),
     "profiles 'Task' but its snapshot describes 'Patient'"),
    (lambda sd: sd.update(snapshot=[]), "has no snapshot"),
    (lambda sd: _element(sd, "Task.priority").update(fixedCode="routine", fixedString="x"),
     "Task.priority: more than one fixed[x] (fixedCode, fixedString)"),
    (lambda sd: _element(sd, "Task.owner")["type"][0].update(targetProfile=None),
     "Task.owner: type[0].targetProfile is null (FHIR JSON has no null values)"),
    (lambda sd: _element(sd, "Task.owner").pop("type"),
     "Task.owner: no type (every element but the first needs one in a snapshot)"),
])
def test_malformed_definition_is_a_one_line_error(tmp_path: Path, task_file: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  change: Any, message: str) -> None:
    folder = tmp_path / "profile"
    shutil.copytree(VENDORED, folder)
    (folder / KT2TASK).write_text(json.dumps(_broken(change)))
    for command in (["validate", "--profile", str(folder), str(task_file)],
                    ["constraints", "--profile", str(folder)],
                    ["generate", "--valid", "1", "--out", str(tmp_path / "out"),
                     "--profile", str(folder)]):
        code, err = _run(command, capsys)
        assert code == 2, (command, err)
        assert err.startswith(f"kt2conformance: error: {folder / KT2TASK}: ") \
            and err.count("\n") == 1, err
        assert message in err


def test_a_profile_no_task_satisfies_is_a_clear_error(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Every constraint is well formed, but together they contradict: Task.status is fixed to a
    code its required binding does not hold. The generator's search is bounded and says so."""
    folder = tmp_path / "profile"
    shutil.copytree(VENDORED, folder)
    (folder / KT2TASK).write_text(json.dumps(_broken(
        lambda sd: _element(sd, "Task.status").update(fixedCode="no-such-status"))))
    code, err = _run(["generate", "--valid", "1", "--out", str(tmp_path / "out"), "--profile",
                      str(folder)], capsys)
    assert code == 2
    assert err.startswith("kt2conformance: error: no valid Task found for "
                          "http://koppeltaal.nl/fhir/StructureDefinition/KT2Task: 500 generated "
                          "Tasks in a row broke the profile, most often Task.status/binding")
    assert err.count("\n") == 1
