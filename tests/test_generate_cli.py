"""`kt2conformance generate` as CI scripts use it (docs/contract.md): a real process, its files and
exit code. Users keep generated Tasks as fixtures and diff them between runs, so the same seed
must give the same bytes, index.json must have the documented shape, and what the index says
about each file must be what `validate` says about it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kt2conformance.generate import _strategies as strategies
from kt2conformance.spec._profile import load_profile

CLI = [str(Path(sys.executable).parent / "kt2conformance")]
INDEX_FIELDS = {"file", "expected", "constraint", "description"}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=300)


def generate(out: Path, *args: str) -> list[dict[str, Any]]:
    result = run("generate", *args, "--out", out)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "index.json").read_text(encoding="utf-8"))


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def validate(folder: Path, index: list[dict[str, Any]]) -> tuple[int, dict[str, dict[str, Any]]]:
    """Exit code of one `validate --format json` over every indexed file, and its report by file."""
    result = run("validate", "--format", "json", *(folder / entry["file"] for entry in index))
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, {Path(r["file"]).name: r for r in json.loads(result.stdout)}


def assert_index_shape(index: list[dict[str, Any]], folder: Path) -> None:
    assert index
    for entry in index:
        assert set(entry) == INDEX_FIELDS, entry
        assert entry["expected"] in ("accept", "reject")
        assert entry["constraint"] is None or isinstance(entry["constraint"], str)
        assert isinstance(entry["description"], str) and entry["description"]
        assert (folder / entry["file"]).is_file()
    assert len({entry["file"] for entry in index}) == len(index)
    assert {p.name for p in folder.iterdir()} == {e["file"] for e in index} | {"index.json"}


@pytest.fixture(scope="module")
def valid_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("valid")
    return out, generate(out, "--valid", "20", "--seed", "7")


@pytest.fixture(scope="module")
def invalid_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("invalid")
    return out, generate(out, "--invalid", "--seed", "7")


def test_same_seed_gives_identical_files(valid_run: tuple[Path, list[dict[str, Any]]],
                                         invalid_run: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    for (first, _), args in ((valid_run, ["--valid", "20", "--seed", "7"]), (invalid_run, ["--invalid", "--seed", "7"])):
        again = tmp_path / first.name
        generate(again, *args)
        assert files_of(again) == files_of(first)


def test_another_seed_gives_other_tasks(valid_run: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    """Determinism by ignoring the seed would pass the test above; the seed must matter."""
    first, _ = valid_run
    generate(tmp_path, "--valid", "20", "--seed", "8")
    assert files_of(tmp_path) != files_of(first)


def test_valid_run_writes_n_distinct_tasks_that_validate(valid_run: tuple[Path, list[dict[str, Any]]]) -> None:
    folder, index = valid_run
    assert_index_shape(index, folder)
    assert len(index) == 20
    assert all(e["expected"] == "accept" and e["constraint"] is None for e in index)
    assert len({(folder / e["file"]).read_text(encoding="utf-8") for e in index}) == 20
    code, report = validate(folder, index)
    assert code == 0, [r for r in report.values() if not r["valid"]]


def test_invalid_run_writes_one_task_per_violable_key_failing_with_it(
        invalid_run: tuple[Path, list[dict[str, Any]]]) -> None:
    folder, index = invalid_run
    assert_index_shape(index, folder)
    keys = [e["constraint"] for e in index]
    assert sorted(keys) == sorted(strategies.invalid_tasks(load_profile()))
    assert all(e["expected"] == "reject" for e in index)
    code, report = validate(folder, index)
    assert code == 1
    for entry in index:
        result = report[entry["file"]]
        errors = {i["key"] for i in result["issues"] if i["severity"] == "error"}
        if entry["constraint"].startswith("server/"):
            # validate judges the profile; a server rule (meta.profile, partOf, a dangling
            # reference) is for the server to refuse, so the profile finds nothing
            assert result["valid"] and errors == set(), (entry, result)
        else:
            assert not result["valid"] and errors == {entry["constraint"]}, (entry, result)


@pytest.mark.parametrize("make_bad", [lambda tmp: tmp / "a-file.json", lambda tmp: tmp / "a-file.json" / "sub"],
                         ids=["file", "below-a-file"])
def test_out_that_is_not_a_folder_is_exit_2_in_one_line(tmp_path: Path, make_bad: Callable[[Path], Path]) -> None:
    (tmp_path / "a-file.json").write_text("{}", encoding="utf-8")
    bad = make_bad(tmp_path)
    result = run("generate", "--valid", "2", "--out", bad)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kt2conformance: error: ") and str(bad) in lines[0]
    assert (tmp_path / "a-file.json").read_text(encoding="utf-8") == "{}"
