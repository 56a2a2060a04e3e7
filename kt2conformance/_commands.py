"""The local commands of the CLI: `validate`, `constraints` and `generate` (CONTRACT.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kt2conformance._errors import UsageError, printable, read_json_file
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec._constraints import derive_constraints
from kt2conformance.spec._profile import load_profile


def validate_command(files: list[str], profile: str | None, fmt: str) -> int:
    oracle = Oracle(load_profile(profile))
    tasks = [(f, read_json_file(Path(f))) for f in files]  # all inputs usable before any verdict
    results: list[dict[str, Any]] = []
    for name, task in tasks:
        issues = oracle.validate(task)
        valid = not any(i.severity == "error" for i in issues)
        results.append({"file": name, "valid": valid, "issues": [i.as_dict() for i in issues]})
    if fmt == "json":
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(printable(f"{r['file']}: {'valid' if r['valid'] else 'INVALID'}"))
            for i in r["issues"]:
                print(printable(f"  {i['severity']:7} {i['key']:45} {i['path']}: {i['message']}"))
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


def generate_command(valid: int | None, invalid: bool, seed: int, out: str, profile: str | None) -> int:
    """Write generated Tasks, one file each, and `index.json` (CONTRACT.md). The same seed gives
    the same files."""
    from itertools import islice

    from kt2conformance.generate import _strategies as strategies

    loaded = load_profile(profile)
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {folder}: {exc.strerror}") from None
    prereqs = strategies.Prerequisites()
    index = []

    def write(name: str, task: Any, key: str | None) -> None:
        (folder / name).write_text(json.dumps(task, indent=2) + "\n", encoding="utf-8")
        index.append({"file": name, "expected": "accept" if key is None else "reject", "constraint": key,
                      "description": "conforms to the profile" if key is None else f"breaks {key} only"})

    if valid is not None:
        if valid < 0:
            raise UsageError("--valid must be at least 0")
        for n, task in enumerate(islice(strategies.generate_valid(loaded, prereqs, seed), valid)):
            write(f"valid-{n + 1:04d}.json", task, None)
    else:
        for key in sorted(strategies.invalid_tasks(loaded, prereqs)):
            stem = key.replace("/", "__").replace(":", "_").replace("[x]", "x")
            write(f"invalid-{stem}.json", next(strategies.generate_invalid(loaded, key, prereqs, seed)), key)
    (folder / "index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(index)} Tasks to {folder}")
    return 0
