"""The local commands of the CLI: `validate`, `constraints` and `generate` (CONTRACT.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kt2conformance.constraints import derive_constraints
from kt2conformance.errors import UsageError
from kt2conformance.oracle import Oracle
from kt2conformance.profile import load_profile


def read_task_file(path: Path) -> Any:
    """A Task file's JSON; unusable input (missing, unreadable, not JSON) is a UsageError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc.__class__.__name__}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None


def validate_command(files: list[str], profile: str | None, fmt: str) -> int:
    oracle = Oracle(load_profile(profile))
    tasks = [(f, read_task_file(Path(f))) for f in files]  # all inputs usable before any verdict
    results = []
    for name, task in tasks:
        issues = oracle.validate(task)
        valid = not any(i.severity == "error" for i in issues)
        results.append({"file": name, "valid": valid, "issues": [i.as_dict() for i in issues]})
    if fmt == "json":
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['file']}: {'valid' if r['valid'] else 'INVALID'}")
            for i in r["issues"]:
                print(f"  {i['severity']:7} {i['key']:45} {i['path']}: {i['message']}")
    return 0 if all(r["valid"] for r in results) else 1


def constraints_command(profile: str | None, fmt: str) -> int:
    constraints = derive_constraints(load_profile(profile))
    if fmt == "json":
        print(json.dumps([c.as_dict() for c in constraints], indent=2))
    else:
        width = max(len(c.key) for c in constraints)
        for c in constraints:
            print(f"{c.key:{width}}  {c.description}")
    return 0
