"""End to end: what the harness costs next to the server, and its memory as cases grow.

    .venv/bin/python benchmarks/bench_end_to_end.py [--examples 20] [--concurrency 1]
    .venv/bin/python benchmarks/bench_end_to_end.py --memory 1,10,70

Overhead: one embedded reference server serves both sides in the same run.
- bare loop: a plain httpx.Client sends the suites' own Task bodies (the same generators, seeds
  and prerequisites), with the same requests per case the harness makes (POST; for a created
  Task a GET to read it back and a DELETE), and nothing else;
- harness: `kt2conformance run --target URL --examples N` as a user runs it, in a subprocess;
  its POST throughput is its case count over its whole duration (`summary.json`), set-up,
  prerequisites, judging, the oracle, shrinking and the three reports included.
The ratio harness/bare is the goal's figure (at least 0.9).

Memory (--memory): the peak RSS of `kt2conformance run` (the Python process alone: the server is
started here, outside it) for each examples-per-constraint value, with its case count.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import httpx

from kt2conformance.generate._strategies import generate_invalid, generate_valid, invalid_tasks
from kt2conformance.run._cases import property_seed
from kt2conformance.spec._profile import load_profile
from kt2conformance.target._client import FHIR_JSON, FhirClient
from kt2conformance.target._prerequisites import Tracker, create_all
from kt2conformance.target._server import ReferenceServer

HEADERS = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}


def suite_bodies(base: str, examples: int, seed: int) -> list[dict]:
    """The Task bodies a run with `--examples` sends for the valid and invalid suites."""
    profile = load_profile()
    client = FhirClient(base)
    tracker = Tracker(client)
    prereqs = create_all(client, tracker).prereqs
    bodies = list(islice(generate_valid(profile, prereqs, property_seed(seed, "valid")), examples))
    for key in invalid_tasks(profile, prereqs):
        bodies += islice(generate_invalid(profile, key, prereqs, property_seed(seed, key)), examples)
    return bodies


def bare_loop(base: str, bodies: list[bytes]) -> float:
    """POSTs per second of a plain httpx loop making the harness's requests per case."""
    with httpx.Client(base_url=base, headers=HEADERS, timeout=30) as http:
        start = time.perf_counter()
        for body in bodies:
            answer = http.post("/Task", content=body)
            if answer.status_code == 201:
                location = answer.json()["id"]
                http.get(f"/Task/{location}")
                http.delete(f"/Task/{location}")
        return len(bodies) / (time.perf_counter() - start)


def harness(base: str, examples: int, seed: int, concurrency: int) -> tuple[int, float, int]:
    """(cases, POSTs per second, peak RSS in KiB) of `kt2conformance run` against `base`."""
    with tempfile.TemporaryDirectory() as reports:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run([sys.executable, "-m", "kt2conformance", "run", "--target", base,
                        "--examples", str(examples), "--seed", str(seed),
                        "--concurrency", str(concurrency), "--reports", reports],
                       check=False, stdout=subprocess.DEVNULL)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        summary = json.loads((Path(reports) / "summary.json").read_text())
    cases = summary["totals"]["cases"]
    return cases, cases / summary["duration_s"], peak if peak > before else -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20, help="examples per property (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--memory", default=None, metavar="N,N,…",
                        help="measure peak RSS of runs with these examples-per-constraint values")
    args = parser.parse_args()

    with ReferenceServer() as server:
        base = server.base_url
        if args.memory:
            for n in (int(x) for x in args.memory.split(",")):
                cases, rate, peak = harness(base, n, args.seed, args.concurrency)
                print(f"examples {n:4d}: {cases:6d} cases, peak RSS {peak / 1024:6.0f} MiB, {rate:6.0f} cases/s")
            return
        bodies = [json.dumps(b).encode() for b in suite_bodies(base, args.examples, args.seed)]
        bare = bare_loop(base, bodies)
        cases, rate, _ = harness(base, args.examples, args.seed, args.concurrency)
        print(f"bare httpx loop: {len(bodies)} POSTs, {bare:7.1f} POST/s")
        print(f"kt2conformance run (concurrency {args.concurrency}): {cases} cases, {rate:7.1f} POST/s "
              f"(whole run: set-up, judging, reports)")
        print(f"ratio harness/bare: {rate / bare:.2f}")


if __name__ == "__main__":
    main()
