"""Whole runs against red-team servers (tests/redteam_servers.py, tests/faulty_targets.py): what
an independent second catalogue of defective and hostile servers found missing in the harness.

- a target that stops answering ends the run in minutes (set-up error, exit 2, cleaned up),
  instead of every case waiting out its timeout;
- a valid Task refused at the start of the lifecycle sequence is a finding (over-strict), not a
  case without an answer.

Real HTTP on loopback, in a subprocess, as users run it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from faulty_targets import HostileTarget, resource_counts, run_harness
from redteam_servers import BY_NAME, RedTeamServer

from kt2conformance.run._engine import UNANSWERED_IN_A_ROW
from kt2conformance.target._server import ReferenceServer

pytestmark = pytest.mark.server


def _summary(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "reports" / "summary.json").read_text())


def test_a_target_that_stops_answering_ends_the_run_early(
        tmp_path: Path, reference_server: ReferenceServer) -> None:
    """Every Task case hangs (the server accepted the connection and went quiet): after
    UNANSWERED_IN_A_ROW timeouts in a row the run stops with one line, exit 2, incomplete,
    and what set-up created is deleted; without the stop ~200 cases would each wait 1 s."""
    before = resource_counts(reference_server.base_url)
    with HostileTarget(reference_server.base_url, "slow", slow_seconds=60) as target:
        started = time.monotonic()
        result = run_harness(tmp_path, "--target", target.url, "--timeout", "1", "--no-cover",
                             "--examples", "1", timeout=150)
        seconds = time.monotonic() - started
        misbehaved = target.misbehaved
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "kt2conformance: error: the target stopped answering")
    assert misbehaved == UNANSWERED_IN_A_ROW
    data = _summary(tmp_path)
    assert data["complete"] is False and data["stopped_reason"] == "setup-error"
    assert seconds < 120
    assert resource_counts(reference_server.base_url) == before


def test_a_valid_task_refused_at_the_lifecycle_start_is_a_finding(
        tmp_path: Path, reference_server: ReferenceServer) -> None:
    """A server that refuses narrative (Task.text) refuses the lifecycle's first Task, the
    official example: a failed case (over-strict) and exit 1, not an unanswered one."""
    with RedTeamServer(reference_server.base_url, BY_NAME["no-narrative"]) as proxy:
        result = run_harness(tmp_path, "--target", proxy.url, "--no-cover", "--examples", "1",
                             "--", "-k", "lifecycle")
    data = _summary(tmp_path)
    create = next(c for c in data["cases"] if c["id"] == "lifecycle/create")
    assert create["status"] == 422 and create["verdict"] == "fail", create
    assert "refused a valid resource" in create["reason"]
    assert result.returncode == 1
    assert "1 over-strict" in result.stdout


def test_a_location_naming_an_earlier_resource_is_not_believed(
        tmp_path: Path, reference_server: ReferenceServer) -> None:
    """Every create answers with the Location (and id) of the run's own example Task: the
    case fails with the reason, and the example is not deleted on that word (it is still
    there for the cleanup at the end, which deletes it once)."""
    with RedTeamServer(reference_server.base_url, BY_NAME["location-other-id"]) as proxy:
        result = run_harness(tmp_path, "--target", proxy.url, "--no-cover", "--examples", "1",
                             "--", "-k", "valid_tasks")
        hidden = list(proxy.hidden)
    data = _summary(tmp_path)
    cases = [c for c in data["cases"] if not c["id"].startswith("example/")]
    assert cases and all(c["verdict"] == "fail" for c in cases), cases
    assert all("which this run created before" in c["reason"] for c in cases), cases
    assert result.returncode == 1
    # the Tasks the server hid keep the prerequisites they name on the target: listed as left
    # behind; the example Task itself was deleted by the cleanup
    assert not [u for u in data["leftovers"] if "/Task/" in u]
    assert all(u in result.stdout for u in data["leftovers"])
    for left in hidden + [u.split("/fhir/", 1)[1] for u in data["leftovers"]]:
        httpx.delete(f"{reference_server.base_url}/{left}", headers={"Accept": "application/fhir+json"})
