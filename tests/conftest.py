"""Shared fixtures. The embedded reference server (HAPI FHIR: a JVM start takes several seconds of
CPU) starts once per session for every test that needs a conforming target, and once more with a
bearer token for every test that needs one; both are stopped at the end even when tests fail or
the run is interrupted. Tests of the server's own life cycle start their own."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from kt2conformance.target._server import ReferenceServer

# Hypothesis profiles, picked by HYPOTHESIS_PROFILE. "ci" (the default) is derandomized so a CI
# failure reproduces locally and keeps the whole run short; "nightly" explores ten times more,
# with fresh randomness each night. Property tests derive their counts from max_examples.
settings.register_profile("ci", max_examples=200, derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def reference_server() -> Iterator[ReferenceServer]:
    """The reference Koppeltaal server on a free port, without a bearer token."""
    with ReferenceServer() as server:
        yield server


@pytest.fixture(scope="session")
def token_server() -> Iterator[ReferenceServer]:
    """The reference server requiring a bearer token (`token_server.token`) on every request but
    GET /metadata; shared by the tests of token auth and of its secrecy."""
    with ReferenceServer(token="kt2-token-server-SECRET-7d1e9b3c5a0f2468") as server:
        yield server


@pytest.fixture(scope="session")
def reference_server_factory() -> Iterator[Callable[..., ReferenceServer]]:
    """Starts further reference servers with other options (token=..., profiles_dir=...)."""
    servers: list[ReferenceServer] = []

    def start(**options: Any) -> ReferenceServer:
        server = ReferenceServer(**options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
