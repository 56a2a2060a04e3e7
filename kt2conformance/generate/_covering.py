"""Drawing Tasks so that a run covers every class of the catalogue at least once.

Valid side: `TaskGenerator.catalogue` lists, per element path, the classes a valid Task can take.
`covering_valid` first sends Tasks planned to take them all: each plan gives every element one of
its classes, rotated so the N-th Task takes each element's N-th class (with a per-element
offset, so heavy classes such as a 1 MiB string land on different Tasks). The number of Tasks is
the largest class count of one element, not the sum. A planned Task the oracle finds invalid
(a class that conflicts with another, e.g. a year-9999 authoredOn before a lastModified) is drawn
again; classes still missing after the rotation get plans of their own, and then one Task each;
what no valid Task takes is left out (coverage shows it as not sent). Random Tasks follow.

Invalid side: `covering_invalid` sends one Task per edge of the key (faults.fault_edges) before
random ones. Each item says which classes it exercises, for the coverage in summary.json.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kt2conformance.generate._faults import apply_fault, fault_edges
from kt2conformance.generate._values import (
    Prerequisites,
    RandomChooser,
    Task,
    TaskGenerator,
    catalogue_for,
)
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec._profile import Profile

Klass = tuple[str, str]  # (element path or constraint key, class)
_ATTEMPTS = 8


@dataclass(frozen=True)
class Drawn:
    """A generated Task, the classes it exercises, and whether it belongs to the covering set
    (sent whatever --examples says) or to the random variety after it."""

    task: Task
    classes: tuple[Klass, ...]
    covering: bool


def error_keys(oracle: Oracle, task: Any) -> set[str]:
    return {i.key for i in oracle.errors(task)}


def breaks_only(oracle: Oracle, key: str, task: Any) -> bool:
    """Whether `task` breaks `key` and nothing else. Server rules are not profile errors: a Task
    breaking one must be valid to the profile."""
    if task is None:
        return False
    return error_keys(oracle, task) == (set() if key.startswith("server/") else {key})


def spread(catalogue: dict[str, tuple[str, ...]]) -> list[dict[str, str]]:
    """Plans that together give every element every one of its classes: plan i takes class
    (i - offset) of each element, offset a stable hash of the element's path."""
    if not catalogue:
        return []
    n = max(len(classes) for classes in catalogue.values())
    plans: list[dict[str, str]] = [{} for _ in range(n)]
    for path, classes in catalogue.items():
        offset = zlib.crc32(path.encode()) % n
        for j, klass in enumerate(classes):
            plans[(offset + j) % n][path] = klass
    return plans


def _missing(catalogue: dict[str, tuple[str, ...]], covered: set[Klass]) -> dict[str, tuple[str, ...]]:
    out = {path: tuple(k for k in classes if (path, k) not in covered) for path, classes in catalogue.items()}
    return {path: classes for path, classes in out.items() if classes}


def covering_valid(profile: Profile, prereqs: Prerequisites | None = None, seed: int = 0) -> Iterator[Drawn]:
    """Valid Tasks: first the covering set, then random ones (endless)."""
    gen = TaskGenerator(profile, prereqs or Prerequisites())
    c = RandomChooser(random.Random(seed))
    catalogue = catalogue_for(profile, prereqs or Prerequisites())[0]
    covered: set[Klass] = set()

    def attempt(plan: dict[str, str]) -> Drawn | None:
        for _ in range(_ATTEMPTS):
            task = gen.task(c, full=True, plan=plan)
            if gen.oracle.is_valid(task):
                taken = tuple(sorted(set(gen.realized)))
                covered.update(taken)
                return Drawn(task, taken, True)
        return None

    def attempt_or_leave_one_out(plan: dict[str, str]) -> Drawn | None:
        """The plan, else the plan without the one class that keeps its Tasks invalid (that
        class goes on to the later rounds): the oracle is cheap, the server's time is not."""
        drawn = attempt(plan)
        for path in list(plan) if drawn is None and len(plan) > 1 else []:
            drawn = attempt({p: k for p, k in plan.items() if p != path})
            if drawn is not None:
                break
        return drawn

    def singles() -> list[dict[str, str]]:
        return [{p: k} for p, ks in _missing(catalogue, covered).items() for k in ks]

    rounds: tuple[Callable[[], list[dict[str, str]]], ...] = (
        lambda: spread(catalogue), lambda: spread(_missing(catalogue, covered)), singles)
    for plans in rounds:
        for plan in plans():
            plan = {p: k for p, k in plan.items() if (p, k) not in covered}
            if plan:
                drawn = attempt_or_leave_one_out(plan)
                if drawn is not None:
                    yield drawn
    while True:
        task = gen.task(c, full=True)
        if gen.oracle.is_valid(task):
            yield Drawn(task, tuple(sorted(set(gen.realized))), False)


def valid_catalogue(profile: Profile, prereqs: Prerequisites | None = None) -> dict[str, tuple[str, ...]]:
    """The valid classes a run should cover, by element path."""
    return catalogue_for(profile, prereqs or Prerequisites())[0]


def covering_invalid(profile: Profile, key: str, prereqs: Prerequisites | None = None,
                     seed: int = 0) -> Iterator[Drawn]:
    """Tasks breaking exactly `key`: one per edge of the key first, then random ones (endless;
    stops when no fault can be found)."""
    gen = TaskGenerator(profile, prereqs or Prerequisites())
    c = RandomChooser(random.Random(seed))
    for edge in fault_edges(gen, key):
        for _ in range(_ATTEMPTS):
            task = apply_fault(gen, key, c, gen.task(c, full=False), edge)
            if task is not None and breaks_only(gen.oracle, key, task):
                yield Drawn(task, ((key, edge),), True)
                break
    misses = 0
    while misses < 200:
        task = apply_fault(gen, key, c, gen.task(c, full=False))
        if task is not None and breaks_only(gen.oracle, key, task):
            misses = 0
            yield Drawn(task, (), False)
        else:
            misses += 1
