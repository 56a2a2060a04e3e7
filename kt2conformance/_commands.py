"""The local commands of the CLI: `validate`, `constraints` and `generate` (docs/contract.md).

Each takes `--profile` as `select_profiles` reads it: one profile (file, folder, package folder
or name) or several (`KT2Device,KT2Task`, `all`). A profile that cannot be judged (built on
packages not available here) ends the command with its one-line reason when it was asked for by
name alone; within several it is left out with that line on stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from kt2conformance._errors import UsageError, printable, read_json_file
from kt2conformance._vocabulary import Expectation
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec._constraints import derive_constraints
from kt2conformance.spec._profile import Profile, select_profiles


def judgeable_profiles(selection: str | None) -> list[Profile]:
    """The selected profiles that can be judged. An unjudgeable one alone is a usage error (its
    one-line reason); among several it is skipped, its reason on stderr."""
    profiles = select_profiles(selection)
    if len(profiles) == 1 and profiles[0].unjudgeable:
        raise UsageError(str(profiles[0].unjudgeable))
    for profile in profiles:
        if profile.unjudgeable:
            print(f"kt2conformance: not judged: {profile.unjudgeable}", file=sys.stderr)
    return [p for p in profiles if not p.unjudgeable]


def validate_command(files: list[str], profile: str | None, fmt: str, referee: str | None = None) -> int:
    """Each file against the selected profile; with several, the one for the resource's type.
    With `referee` ("embedded", or the FHIR base URL of a HAPI server) each file also goes to
    the HL7 validator behind that server's `$validate`, and where the two differ is shown. The
    exit code is the oracle's verdict (CONTRACT.md)."""
    oracles = {p.type: Oracle(p) for p in reversed(judgeable_profiles(profile))}
    first = next(iter(oracles.values()))
    duplicates: list[list[tuple[int, str]]] = [[] for _ in files]
    # all inputs usable before any verdict
    tasks = [(f, read_json_file(Path(f), duplicates=d)) for f, d in zip(files, duplicates, strict=True)]
    results: list[dict[str, Any]] = []
    for (name, task), repeated in zip(tasks, duplicates, strict=True):
        kind = task.get("resourceType") if isinstance(task, dict) else None
        oracle = oracles.get(kind, first) if isinstance(kind, str) else first
        issues = oracle.validate(task) + oracle.duplicate_issues(task, repeated)
        valid = not any(i.severity == "error" for i in issues)
        results.append({"file": name, "valid": valid, "issues": [i.as_dict() for i in issues], "_issues": issues,
                        "_oracle": oracle})
    if referee is not None:
        _referee(results, [t for _, t in tasks], referee)
    for r in results:
        del r["_issues"], r["_oracle"]
    if fmt == "json":
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(printable(f"{r['file']}: {'valid' if r['valid'] else 'INVALID'}"))
            for i in r["issues"]:
                print(printable(f"  {i['severity']:7} {i['key']:45} {i['path']}: {i['message']}"))
            if "referee" in r:
                _print_referee(r["referee"])
    return 0 if all(r["valid"] for r in results) else 1


def _referee(results: list[dict[str, Any]], tasks: list[Any], where: str) -> None:
    """Adds each file's `referee` comparison (kt2conformance.run._referee), against the profile
    its oracle judged it by."""
    from contextlib import ExitStack

    from kt2conformance.run._referee import Referee, compare
    from kt2conformance.target._server import ReferenceServer

    with ExitStack() as stack:
        base_url = stack.enter_context(ReferenceServer()).base_url if where == "embedded" else where
        referees: dict[str, Referee] = {}
        for result, task in zip(results, tasks, strict=True):
            oracle = result["_oracle"]
            if oracle.profile.url not in referees:
                referees[oracle.profile.url] = stack.enter_context(
                    Referee(base_url, oracle.profile.url, oracle.resource_type))
                referees[oracle.profile.url].check()
            comparison = compare(result["_issues"], referees[oracle.profile.url].validate(task), oracle.tree.id)
            result["referee"] = {"url": base_url, **comparison.as_dict()}


def _print_referee(ref: dict[str, Any]) -> None:
    verdict = "valid" if ref["referee_valid"] else "INVALID"
    print(f"  HL7 validator ({ref['url']}): {verdict}" + ("" if ref["agree"] else "  <- DIFFERS from the oracle"))
    for i in ref["only_oracle"]:
        print(printable(f"    only the oracle:        {i['key']} {i['path']}: {i['message']}"))
    for i in ref["only_referee"]:
        print(printable(f"    only the HL7 validator: {i['severity']} {i['location']}: {i['message']}"))


def constraints_command(profile: str | None, fmt: str) -> int:
    """The constraints of each selected profile; with several, JSON entries carry `profile` (its
    URL) and the text lists each profile under its name."""
    profiles = judgeable_profiles(profile)
    several = len(profiles) > 1
    listed = [(p, derive_constraints(p)) for p in profiles]
    if fmt == "json":
        print(json.dumps([{**c.as_dict(), **({"profile": p.url} if several else {})}
                          for p, constraints in listed for c in constraints], indent=2))
    else:
        width = max(len(c.key) for _, constraints in listed for c in constraints)
        for p, constraints in listed:
            if several:
                print(f"# {p.name} ({p.url}|{p.version}): {len(constraints)} constraints")
            for c in constraints:
                print(f"{c.key:{width}}  {c.description}")
    return 0


def generate_command(valid: int | None, invalid: bool, seed: int, out: str, profile: str | None) -> int:
    """Write generated Tasks, one file each, and `index.json` (docs/contract.md). The same seed gives
    the same files."""
    from itertools import islice

    from kt2conformance.generate import _strategies as strategies

    profiles = judgeable_profiles(profile)
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {folder}: {exc.strerror}") from None
    prereqs = strategies.Prerequisites()
    index = []

    def write(name: str, task: Any, key: str | None, loaded: Profile) -> None:
        (folder / name).write_text(json.dumps(task, indent=2) + "\n", encoding="utf-8")
        index.append({"file": name, "expected": Expectation.ACCEPT if key is None else Expectation.REJECT, "constraint": key,
                      "description": "conforms to the profile" if key is None else f"breaks {key} only",
                      **({"profile": loaded.url} if len(profiles) > 1 else {})})

    if valid is not None and valid < 0:
        raise UsageError("--valid must be at least 0")
    for loaded in profiles:
        # with several profiles, file names start with the profile's name (`KT2Device-valid-0001.json`)
        prefix = f"{loaded.name}-" if len(profiles) > 1 else ""
        if valid is not None:
            for n, task in enumerate(islice(strategies.generate_valid(loaded, prereqs, seed), valid)):
                write(f"{prefix}valid-{n + 1:04d}.json", task, None, loaded)
        else:
            for key in sorted(strategies.invalid_tasks(loaded, prereqs)):
                stem = key.replace("/", "__").replace(":", "_").replace("[x]", "x")
                write(f"{prefix}invalid-{stem}.json",
                      next(strategies.generate_invalid(loaded, key, prereqs, seed)), key, loaded)
    (folder / "index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(index)} resources to {folder}")
    return 0
