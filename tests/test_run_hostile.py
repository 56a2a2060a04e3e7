"""Whole runs of `kt2conformance run` against hostile targets: a proxy in front of the reference
server (tests/faulty_targets.py `HostileTarget`) that misbehaves at the transport level for the
generated Task cases only (hangs, HTML, empty or 50 MB bodies, dropped connections, throttling),
while set-up goes through. A server like that must yield a finished run with each affected case
marked "error" and a reason saying what came back, never a crash, a traceback, a set-up error
(exit 2) or a false finding (a "fail" the server's Task handling did not earn).

Real HTTP on loopback, in a subprocess, as users run it. One Hypothesis example per property
keeps each run to a few seconds; the read-timeout run lowers the timeout with `--timeout 2`.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from faulty_targets import HUGE_BODY_BYTES, HostileTarget, resource_counts, run_harness

from kt2conformance.target._client import MAX_BODY_BYTES
from kt2conformance.target._server import ReferenceServer

pytestmark = pytest.mark.server

# A valid-Task property (accept) and one invalid-Task property (reject): one case each.
BOTH_KINDS = "valid_tasks or Task.note"

# mode -> (which cases, the status the summary must record, a phrase the reason must contain)
ERROR_MODES: dict[str, tuple[str, int | None, str]] = {
    "slow": ("valid_tasks", None, "no response within 2 s (read timeout)"),
    "nonjson": (BOTH_KINDS, 200, "response body is not JSON (text/html)"),
    "empty": (BOTH_KINDS, 200, "empty response body"),
    "huge": (BOTH_KINDS, 200, f"response body larger than {MAX_BODY_BYTES} bytes: cut off"),
    "drop": (BOTH_KINDS, None, "connection dropped"),
    "always-429": (BOTH_KINDS, 429, "still HTTP 429 after 3 retries"),
}


def _summary(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "reports" / "summary.json").read_text())


def _generated(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The cases sent as generated Tasks (not the set-up examples, which the proxy spares)."""
    return [c for c in data["cases"] if not c["id"].startswith("example/")]


def _assert_finished_cleanly(result: Any, tmp_path: Path) -> None:
    """A finished run: no traceback anywhere, all three reports written."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "INTERNALERROR" not in output, output[-3000:]
    reports = tmp_path / "reports"
    for name in ("report.html", "junit.xml", "summary.json"):
        assert (reports / name).is_file(), name
    ET.parse(reports / "junit.xml")  # well-formed


@pytest.mark.parametrize("mode", list(ERROR_MODES))
def test_unusable_answers_are_errors_not_findings(
        tmp_path: Path, reference_server: ReferenceServer, mode: str) -> None:
    """Each case the target answered unusably is an "error" with the transport's reason; the
    run ends with exit 1 (not everything passed), the target's constraints are left undecided
    (an error says nothing about enforcement) and nothing is left behind on the server."""
    selection, status, phrase = ERROR_MODES[mode]
    before = resource_counts(reference_server.base_url)
    with HostileTarget(reference_server.base_url, mode) as target:
        result = run_harness(tmp_path, "--target", target.url, "--examples", "1", "--no-cover", "--timeout", "2",
                             "--", "-k", selection)
        deadline = time.monotonic() + 5  # huge: the proxy notes the hang-up when a write fails
        while mode == "huge" and len(target.huge_sent) < target.misbehaved < 10:
            assert time.monotonic() < deadline, target.huge_sent
            time.sleep(0.05)
        misbehaved, huge_sent = target.misbehaved, list(target.huge_sent)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    _assert_finished_cleanly(result, tmp_path)
    data = _summary(tmp_path)
    cases = _generated(data)
    expected_ids = {"valid#1"} | ({"Task.note/max#1"} if selection == BOTH_KINDS else set())
    assert {c["id"] for c in cases} == expected_ids
    for case in cases:
        assert case["verdict"] == "error", case
        assert case["status"] == status, case
        assert phrase in case["reason"], case
    # each case met the misbehaviour once (no shrinking on errors), a 429 also on its 3 retries;
    # POSTs are not retried after a timeout or a drop: the server may have stored the Task
    assert misbehaved == len(cases) * (4 if mode == "always-429" else 1)
    assert data["totals"] == {"cases": len(cases), "passed": 0, "failed": 0,
                              "errors": len(cases), "data_loss": 0}
    if selection == BOTH_KINDS:
        assert data["constraints"]["Task.note/max"]["enforced"] is None
    assert "over-strict" not in result.stdout and "not enforced" not in result.stdout
    if mode == "huge":  # the harness hung up early instead of taking 50 MB (socket buffers
        # on loopback absorb a few MB more before the proxy notices)
        assert len(huge_sent) == len(cases) and max(huge_sent) < HUGE_BODY_BYTES / 2, huge_sent
    assert resource_counts(reference_server.base_url) == before


def test_throttling_is_waited_out_and_the_cases_pass(
        tmp_path: Path, reference_server: ReferenceServer) -> None:
    """429 with Retry-After: 1 on each case's first POST: the harness waits the second and sends
    again, and the cases are judged on the real answers (here: conforming, exit 0)."""
    before = resource_counts(reference_server.base_url)
    with HostileTarget(reference_server.base_url, "throttle") as target:
        result = run_harness(tmp_path, "--target", target.url, "--examples", "2", "--no-cover", "--",
                             "-k", BOTH_KINDS)
        misbehaved, gaps = target.misbehaved, list(target.retry_gaps)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    _assert_finished_cleanly(result, tmp_path)
    cases = _generated(_summary(tmp_path))
    assert len(cases) == 4 and misbehaved == 4  # every case was throttled once ...
    assert len(gaps) == 4 and min(gaps) >= 0.9  # ... and retried after the Retry-After
    for case in cases:
        assert case["verdict"] == "pass", case
        assert case["status"] == (201 if case["id"].startswith("valid#") else 422), case
    assert resource_counts(reference_server.base_url) == before
