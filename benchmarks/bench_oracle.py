"""Measures the local oracle: validations per second on one core, overall and for valid vs
invalid Tasks, so a slowdown (the suites call the oracle on every generated example) shows up as a
number. With --profile, also the ten functions with the most own time (cProfile).

    .venv/bin/python benchmarks/bench_oracle.py [--seconds 3] [--profile] [--referee [URL] | --no-referee]

The oracle runs in this one process. The same generated Tasks are then timed through HAPI's
validator (`$validate` of the embedded reference server, started here, or of the server at URL),
one request at a time over loopback, and the ratio is printed.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import pstats
import time
from typing import Any

from kt2conformance._koppeltaal import KT2TASK_URL
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec._profile import load_profile

Task = dict[str, Any]

MINIMAL: Task = {
    "resourceType": "Task",
    "identifier": [{"system": "http://example.org/task-ids", "value": "t-1"}],
    "status": "requested",
    "intent": "order",
    "for": {"reference": "Patient/patient-1"},
    "owner": {"reference": "Practitioner/practitioner-1"},
}

FULL: Task = {
    **copy.deepcopy(MINIMAL),
    "id": "task-1",
    "meta": {"versionId": "1", "lastUpdated": "2023-01-01T10:00:00Z", "profile": [KT2TASK_URL]},
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Vragenlijst</div>'},
    "extension": [
        {"url": "http://koppeltaal.nl/fhir/StructureDefinition/resource-origin",
         "valueReference": {"reference": "Device/device-1"}},
        {"url": "http://vzvz.nl/fhir/StructureDefinition/instantiates",
         "valueReference": {"reference": "ActivityDefinition/ad-1"}},
    ],
    "instantiatesCanonical": "http://example.org/fhir/ActivityDefinition/ad-1",
    "partOf": [{"reference": "Task/parent-1"}],
    "priority": "routine",
    "code": {"coding": [{"system": "http://vzvz.nl/fhir/CodeSystem/koppeltaal-task-code", "code": "view"}]},
    "description": "Vragenlijst invullen",
    "executionPeriod": {"start": "2023-01-01T09:00:00Z", "end": "2023-01-31"},
    "authoredOn": "2023-01-01T10:00:00+01:00",
    "lastModified": "2023-01-02T10:00:00Z",
    "requester": {"reference": "Practitioner/practitioner-1"},
}


def _with(base: Task, **changes: Any) -> Task:
    out = copy.deepcopy(base)
    for name, value in changes.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


VALID: dict[str, Task] = {"minimal": MINIMAL, "full": FULL}
INVALID: dict[str, Task] = {
    "missing-owner": _with(MINIMAL, owner=None),
    "note-max-0": _with(MINIMAL, note=[{"text": "n"}]),
    "priority-bogus": _with(MINIMAL, priority="bogus"),
    "owner-device": _with(MINIMAL, owner={"reference": "Device/d1"}),
    "inv-1": _with(FULL, authoredOn="2023-02-01", lastModified="2023-01-01T10:00:00Z"),
    "bad-datetime": _with(MINIMAL, authoredOn="2023-01-01T10:00:00"),
    "unknown-element": _with(FULL, foo="bar"),
    "contained-unreferenced": _with(FULL, contained=[{"resourceType": "Patient", "id": "p"}]),
}


def rate(oracle: Oracle, tasks: list[Task], seconds: float) -> tuple[float, float]:
    """Validations per second of wall-clock and of this process's CPU time, cycling through
    `tasks` for about `seconds`: on a shared machine the CPU figure is the steadier one."""
    done = 0
    start, cpu = time.perf_counter(), time.process_time()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for t in tasks:
            oracle.validate(t)
        done += len(tasks)
    return done / (time.perf_counter() - start), done / max(time.process_time() - cpu, 1e-9)


def shown_rate(rates: tuple[float, float]) -> str:
    return f"{rates[0]:8.0f} validations/s ({rates[1]:.0f}/s of CPU time)"


def generated_tasks(count: int) -> list[Task]:
    """Distinct generated valid Tasks: every value differs, so no cache sees the same value
    twice by accident (the fixed Tasks above repeat on every loop)."""
    from itertools import islice

    from kt2conformance.generate._strategies import Prerequisites, generate_valid

    return list(islice(generate_valid(load_profile(), Prerequisites(task="Task/parent-1"), seed=1), count))


def referee_rate(where: str, tasks: list[Task], oracle_rate: float) -> None:
    """HAPI's validator on the same Tasks, one $validate at a time (after a warm-up)."""
    from contextlib import ExitStack

    from kt2conformance._errors import UsageError
    from kt2conformance.run._referee import Referee
    from kt2conformance.target._server import ReferenceServer

    profile_url = load_profile().url
    with ExitStack() as stack:
        try:
            url = stack.enter_context(ReferenceServer()).base_url if where == "embedded" else where
            referee = stack.enter_context(Referee(url, profile_url))
            referee.check()
            for t in tasks[:20]:  # warm-up: the JVM compiles the validator's hot paths
                referee.validate(t)
            start = time.perf_counter()
            for t in tasks:
                referee.validate(t)
        except UsageError as exc:
            print(f"HAPI validator: not measured ({exc})")
            return
        hapi = len(tasks) / (time.perf_counter() - start)
    print(f"HAPI validator ($validate at {url}): {hapi:8.1f} validations/s ({len(tasks)} of the same Tasks); "
          f"the oracle is {oracle_rate / hapi:.0f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (default 3)")
    parser.add_argument("--generated", type=int, default=2000, help="distinct generated Tasks to validate once each")
    parser.add_argument("--profile", action="store_true", help="also print the 10 functions with the most own time (cProfile)")
    parser.add_argument("--referee", nargs="?", const="embedded", default="embedded", metavar="URL",
                        help="time HAPI's validator on the same Tasks: the embedded server (default) or URL")
    parser.add_argument("--no-referee", dest="referee", action="store_const", const=None, help="skip HAPI's timing")
    parser.add_argument("--referee-tasks", type=int, default=200, help="generated Tasks sent to HAPI (default 200)")
    args = parser.parse_args()

    started = time.perf_counter()
    oracle = Oracle(load_profile())
    built = time.perf_counter() - started
    for t in [*VALID.values(), *INVALID.values()]:  # sanity, and warms the caches
        assert oracle.is_valid(t) == (t in VALID.values()), t
    everything = [*VALID.values(), *INVALID.values()]

    print(f"oracle built in {built * 1000:.0f} ms")
    print(f"overall: {shown_rate(rate(oracle, everything, args.seconds))}  ({len(everything)} Tasks)")
    print(f"valid:   {shown_rate(rate(oracle, list(VALID.values()), args.seconds))}  ({', '.join(VALID)})")
    print(f"invalid: {shown_rate(rate(oracle, list(INVALID.values()), args.seconds))}  ({', '.join(INVALID)})")
    generated = generated_tasks(args.generated)
    start, cpu = time.perf_counter(), time.process_time()
    for t in generated:
        oracle.validate(t)
    oracle_rate = len(generated) / (time.perf_counter() - start)
    cpu_rate = len(generated) / max(time.process_time() - cpu, 1e-9)
    print(f"generated, each validated once: {shown_rate((oracle_rate, cpu_rate))} "
          f"({len(generated)} distinct valid Tasks with every optional element the profile allows)")
    if args.referee is not None:
        referee_rate(args.referee, generated[: args.referee_tasks], oracle_rate)

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        rate(oracle, everything, args.seconds)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(10)


if __name__ == "__main__":
    main()
