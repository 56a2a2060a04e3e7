"""Hypothesis strategies and bulk generators for Tasks, derived from the profile.

`valid_tasks` / `generate_valid`: Tasks that conform. `invalid_tasks` / `generate_invalid`: per
constraint key, Tasks that break exactly that constraint: a minimal valid base (required
elements only, so shrinking ends small) plus one fault (kt2conformance.generate._faults), each checked
against the oracle to break that key and no other. A key no single JSON fault can break is
reported by `unviolable`, with the reason. The strategies draw through Hypothesis (examples
shrink); the generators through a seeded random source (thousands a second, the same for the
same seed): the suites send the second and shrink failures with the first.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

from hypothesis import strategies as st

from kt2conformance._errors import UsageError
from kt2conformance._koppeltaal import rule
from kt2conformance.generate._covering import breaks_only as _breaks_only
from kt2conformance.generate._covering import error_keys as _error_keys
from kt2conformance.generate._faults import apply_fault
from kt2conformance.generate._values import HypothesisChooser, Prerequisites, RandomChooser, Task, TaskGenerator
from kt2conformance.spec._constraints import derive_constraints
from kt2conformance.spec._profile import Profile

__all__ = ["Prerequisites", "Unsatisfiable", "valid_tasks", "minimal_tasks", "fault_strategy", "invalid_tasks",
           "unviolable", "generate_valid", "generate_invalid"]

def valid_tasks(profile: Profile, prereqs: Prerequisites = Prerequisites()) -> st.SearchStrategy[Task]:
    """Tasks that conform to the profile (and to the Koppeltaal server rules)."""
    gen = TaskGenerator(profile, prereqs)
    return st.composite(lambda draw: gen.task(HypothesisChooser(draw), full=True))().filter(gen.oracle.is_valid)


def minimal_tasks(profile: Profile, prereqs: Prerequisites = Prerequisites()) -> st.SearchStrategy[Task]:
    """Valid Tasks with only the required elements: the base the faults are added to."""
    gen = TaskGenerator(profile, prereqs)
    return st.composite(lambda draw: gen.task(HypothesisChooser(draw), full=False))()



_CLASSIFY_PREREQS = Prerequisites(task="Task/parent-1")


def _present(task: Task | None) -> Task:
    """A Task the filter kept (`_breaks_only` keeps no None)."""
    assert task is not None
    return task


def fault_strategy(profile: Profile, key: str, prereqs: Prerequisites = Prerequisites()) -> st.SearchStrategy[Task]:
    """Tasks breaking exactly `key` (filtered by the oracle: single fault)."""
    gen = TaskGenerator(profile, prereqs)

    @st.composite
    def build(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Task | None:
        c = HypothesisChooser(draw)
        return apply_fault(gen, key, c, gen.task(c, full=False))

    return build().filter(lambda t: _breaks_only(gen.oracle, key, t)).map(_present)


def _search(gen: TaskGenerator, key: str, attempts: int) -> set[str] | None:
    """Try `attempts` seeded faults for `key`; None when one breaks only `key`, else the other
    keys the attempts broke (empty when no recipe applied)."""
    seen: set[str] = set()
    for seed in range(attempts):
        c = RandomChooser(random.Random(seed))
        task = apply_fault(gen, key, c, gen.task(c, full=False))
        if task is None:
            continue
        if _breaks_only(gen.oracle, key, task):
            return None
        seen.update(_error_keys(gen.oracle, task) - {key})
    return seen


@lru_cache(maxsize=8)
def _classify(profile: Profile) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(violable keys, (key, reason) for the rest), by searching for a single-fault example."""
    gen = TaskGenerator(profile, _CLASSIFY_PREREQS)
    violable: list[str] = []
    reasons: list[tuple[str, str]] = []
    for constraint in derive_constraints(profile, gen.tree):
        server_rule = rule(constraint.key)
        if server_rule is not None and server_rule.protocol_only:
            reasons.append((constraint.key, server_rule.how))
        elif constraint.severity != "error":
            reasons.append((constraint.key, "a warning (SHOULD): breaking it does not make a Task invalid"))
        else:
            others = _search(gen, constraint.key, 12)
            if others is None:
                violable.append(constraint.key)
            elif others:
                reasons.append((constraint.key, "breaking it always breaks " + ", ".join(sorted(others)) + " too"))
            else:
                reasons.append((constraint.key, "no JSON fault breaks it (it is what identifies the element, "
                                                "or no recipe exists)"))
    return tuple(violable), tuple(reasons)


def unviolable(profile: Profile) -> dict[str, str]:
    """Constraint keys no single JSON fault can break, with the reason."""
    return dict(_classify(profile)[1])


_MAX_MISSES = 200
# Against the vendored KT2Task about 1 generated Task in 100 is not valid; a profile for which
# this many in a row are not is one no Task the generator can make satisfies.
_MAX_VALID_MISSES = 500


class Unsatisfiable(UsageError):
    """The generator finds no valid Task for the profile (a set-up error, exit 2): its
    constraints contradict each other, or ask for what the generator cannot make."""


def generate_valid(profile: Profile, prereqs: Prerequisites = Prerequisites(), seed: int = 0) -> Iterator[Task]:
    """Valid Tasks without Hypothesis' engine: the same stream for the same seed. A bounded
    search: `Unsatisfiable` after _MAX_VALID_MISSES invalid Tasks in a row, naming the
    constraints they broke most."""
    gen = TaskGenerator(profile, prereqs)
    c = RandomChooser(random.Random(seed))
    misses = 0
    broken: Counter[str] = Counter()
    while True:
        task = gen.task(c, full=True)
        errors = gen.oracle.errors(task)
        if not errors:
            misses = 0
            broken.clear()
            yield task
            continue
        misses += 1
        broken.update({issue.key for issue in errors})
        if misses >= _MAX_VALID_MISSES:
            worst = ", ".join(f"{key} ({n})" for key, n in broken.most_common(3))
            raise Unsatisfiable(f"no valid Task found for {profile.url}: {misses} generated "
                                f"Tasks in a row broke the profile, most often {worst}; its "
                                f"constraints may contradict each other")


def generate_invalid(profile: Profile, key: str, prereqs: Prerequisites = Prerequisites(), seed: int = 0) -> Iterator[Task]:
    """Tasks breaking exactly `key`, without Hypothesis' engine; ValueError for a key no fault
    breaks alone (see `unviolable`)."""
    gen = TaskGenerator(profile, prereqs)
    c = RandomChooser(random.Random(seed))
    misses = 0
    while misses < _MAX_MISSES:
        task = apply_fault(gen, key, c, gen.task(c, full=False))
        if task is not None and _breaks_only(gen.oracle, key, task):
            misses = 0
            yield task
        else:
            misses += 1
    raise ValueError(f"no single-fault Task for {key}")


def invalid_tasks(profile: Profile, prereqs: Prerequisites = Prerequisites()) -> dict[str, st.SearchStrategy[Task]]:
    """For every violable constraint key, Tasks breaking exactly that constraint."""
    return {key: fault_strategy(profile, key, prereqs) for key in _classify(profile)[0]}
