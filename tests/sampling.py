"""Drawing a fixed number of examples from a strategy outside a test, reproducibly.

Hypothesis' `.example()` is meant for the REPL (random, warns); the tests and the benchmarks need
N examples that the same seed gives again, so this runs a generate-only `@given` with the seed."""

from __future__ import annotations

from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hseed
from hypothesis import strategies as st

T = TypeVar("T")


def sample(strategy: st.SearchStrategy[T], count: int, seed: int = 0) -> list[T]:
    """`count` examples of `strategy`, the same for the same seed (duplicates kept out)."""
    out: list[T] = []
    seen: set[str] = set()
    if count <= 0:
        return out

    @hseed(seed)
    @settings(max_examples=count * 3, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value: Any) -> None:
        key = repr(value)
        if len(out) < count and key not in seen:
            seen.add(key)
            out.append(value)

    collect()
    return out
