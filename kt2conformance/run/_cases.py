"""What the suites send: one `Case` per request, and the Hypothesis plumbing that turns a failing
case into a minimal one (shrinking)."""

from __future__ import annotations

import copy
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import find as hypothesis_find
from hypothesis.errors import Flaky, NoSuchExample
from hypothesis.strategies import SearchStrategy

from kt2conformance._errors import dump_json
from kt2conformance._vocabulary import Expectation
from kt2conformance.target._client import FHIR_JSON

# A remote server answers in tenths of a second: shrinking stops after this many requests, or
# when its deadline passes, and reports the smallest failing Task found so far.
SHRINK_BUDGET = 200


@dataclass(frozen=True)
class Case:
    """One request with the answer it must get. `body` is the JSON sent (a resource for almost
    every case, but a fault may make it any JSON value); `text`, when set, is sent instead, as
    is: malformed JSON for the protocol suite."""

    id: str
    expected: Expectation
    constraint: str | None
    description: str
    body: Any
    content_type: str = FHIR_JSON
    resource_type: str = "Task"
    text: str | None = None
    # The credentials sent instead of the run's: "" none at all, else the Authorization header
    # value (the bearer-token rule's cases); None: the run's own. A case with its own credentials
    # expects 401/403 as its refusal, not as a sign the run cannot go on.
    authorization: str | None = None
    # What the oracle says of `body`, when already known: the generators keep only Tasks the
    # oracle judged valid, or breaking exactly their key, so that verdict is not computed twice.
    oracle_keys: tuple[str, ...] | None = None
    # The catalogue classes the body exercises, (element path or constraint key, class): what
    # the run's coverage counts (kt2conformance.covering).
    classes: tuple[tuple[str, str], ...] = ()

    @property
    def payload(self) -> bytes:
        """The bytes on the wire."""
        return (self.text if self.text is not None else dump_json(self.body)).encode("utf-8")


def property_seed(run_seed: int, name: str) -> int:
    """A stable seed per property: the run's `--seed` mixed with the property's name, so every
    constraint gets its own examples and a run is repeatable to the byte."""
    return zlib.crc32(f"{run_seed}:{name}".encode())


def _settings(count: int, phases: list[Phase]) -> settings:
    # database=None and derandomize=False (whatever profile is loaded): the seed alone decides
    # the examples; deadline=None: the time a server takes is not the strategy's fault.
    return settings(max_examples=count, database=None, derandomize=False, deadline=None,
                    phases=phases, suppress_health_check=list(HealthCheck))


def shrink(strategy: SearchStrategy[Any], count: int, property_seed_: int,
           fails: Callable[[Any], bool], deadline: float | None = None) -> Any | None:
    """The smallest example for which `fails` holds, found by Hypothesis' shrinker (None when
    the failure does not show again, e.g. a flaky server). `fails` sends a request per call, so
    calls are capped at SHRINK_BUDGET and end at `deadline` (time.monotonic()); past either the
    smallest failing example so far is returned."""
    smallest: list[Any] = []
    calls = 0

    def condition(example: Any) -> bool:
        nonlocal calls
        if calls >= SHRINK_BUDGET or (deadline is not None and time.monotonic() > deadline):
            return False
        calls += 1
        if fails(example):
            smallest[:] = [copy.deepcopy(example)]
            return True
        return False

    try:
        return hypothesis_find(strategy, condition,
                               settings=_settings(count, [Phase.generate, Phase.shrink]),
                               random=Random(property_seed_))
    except (Flaky, NoSuchExample):
        return smallest[0] if smallest else None
