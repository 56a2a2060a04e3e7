"""Measures the Task generators: valid and invalid Tasks per second, and how long classifying the
profile's constraint keys (violable or not, `unviolable()`) takes, so that a slower generator or
oracle shows up as a number before it shows up as a slow `run` or `generate`.

Both ways of generating are timed, each including the oracle filtering the strategies do (every
valid Task is validated; every invalid one is checked to break its key and nothing else):
- bulk: `generate_valid` / `generate_invalid` (seeded `random`, what `generate` and the suites'
  case lists use);
- Hypothesis: `sampling.sample` over `valid_tasks` / `invalid_tasks` (what property tests and
  shrinking use; Hypothesis' engine adds its own overhead).

    .venv/bin/python benchmarks/bench_generator.py [--valid 500] [--per-key 3] [--seed 0]

Plain Python, one process, no network.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

from kt2conformance.generate import _strategies as strategies
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec._profile import load_profile

# `sample` (N reproducible examples of a strategy) lives with its other users, the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from sampling import sample  # noqa: E402

PREREQS = strategies.Prerequisites(task="Task/parent-1")


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def report(label: str, count: int, seconds: float) -> None:
    print(f"{label:44} {count / seconds:8.0f} Tasks/s  ({count} in {seconds:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--valid", type=int, default=500, help="valid Tasks per measurement (default 500)")
    parser.add_argument("--per-key", type=int, default=3, help="invalid Tasks per violable key (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    profile, load_s = timed(load_profile)
    _, oracle_s = timed(lambda: Oracle(profile))
    reasons, classify_s = timed(lambda: strategies.unviolable(profile))  # cold: builds its own oracle
    _, cached_s = timed(lambda: strategies.unviolable(profile))
    keys = sorted(strategies.invalid_tasks(profile, PREREQS))
    print(f"{'profile load':44} {load_s * 1000:8.0f} ms")
    print(f"{'oracle build':44} {oracle_s * 1000:8.0f} ms")
    print(f"{'classification, cold (unviolable())':44} {classify_s * 1000:8.0f} ms  "
          f"({len(keys)} violable keys, {len(reasons)} not)")
    print(f"{'classification, cached':44} {cached_s * 1e6:8.0f} µs")

    valid, valid_s = timed(lambda: list(islice(strategies.generate_valid(profile, PREREQS, args.seed), args.valid)))
    report("valid, bulk (generate_valid)", len(valid), valid_s)
    invalid, invalid_s = timed(lambda: [t for key in keys for t in
                                        islice(strategies.generate_invalid(profile, key, PREREQS, args.seed), args.per_key)])
    report("invalid, bulk (generate_invalid, all keys)", len(invalid), invalid_s)

    valid, valid_s = timed(lambda: sample(strategies.valid_tasks(profile, PREREQS), args.valid, args.seed))
    report("valid, Hypothesis (sample(valid_tasks))", len(valid), valid_s)
    by_key = strategies.invalid_tasks(profile, PREREQS)
    invalid, invalid_s = timed(lambda: [t for key in keys for t in sample(by_key[key], args.per_key, args.seed)])
    report("invalid, Hypothesis (sample(invalid_tasks))", len(invalid), invalid_s)


if __name__ == "__main__":
    main()
