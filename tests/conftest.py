"""Shared fixtures. The embedded reference server starts once per session (about a second) and is
stopped at the end even when tests fail or the run is interrupted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kt2conformance.server import ReferenceServer


@pytest.fixture(scope="session")
def reference_server() -> Iterator[ReferenceServer]:
    """The reference Koppeltaal server on a free port, without a bearer token."""
    with ReferenceServer() as server:
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
