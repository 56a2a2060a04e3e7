"""The Python API as the README shows it: a Task built with fhir.resources is judged by the oracle
exactly as the JSON it serializes to (the README's example is run as written)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from fhir.resources.task import Task

from kt2conformance import Oracle, load_profile
from kt2conformance.spec._resource import resource_json

ROOT = Path(__file__).resolve().parent.parent
ORACLE = Oracle(load_profile())


def test_readme_example_runs_as_written() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    result = subprocess.run([sys.executable, "-c", code.group(1)], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "['Task.owner/min']"]


def test_a_model_is_judged_as_its_json() -> None:
    example = json.loads((ROOT / "fixtures" / "Task-example.json").read_text(encoding="utf-8"))
    model = Task.model_validate(example)
    assert resource_json(model) == example
    assert ORACLE.validate(model) == ORACLE.validate(example)
    broken = model.model_copy(update={"status": None, "intent": None})
    assert {i.key for i in ORACLE.errors(broken)} == {"Task.status/min", "Task.intent/min"}


def test_json_passes_through_untouched() -> None:
    for value in ({"resourceType": "Task"}, [1, 2], "text", None, 3):
        assert resource_json(value) is value
