"""The bearer-token rule (`server/bearer-token`) in whole runs: a Koppeltaal server refuses a write
without a valid bearer token (401). With the run's credentials the protocol suite sends the
example Task without a token, with one the server never issued and with the run's own token
forged; a server that lets any of them through does not enforce the rule. A run without
credentials cannot test it and says so.

Real HTTP on loopback, in a subprocess, as users run it: `AuthProxy` (tests/faulty_targets.py)
checks tokens in front of the open reference server; the open reference server itself, given a
token it never asks for, is the server that accepts writes without one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from faulty_targets import AuthProxy, resource_counts, run_harness

from kt2conformance.target._server import ReferenceServer

pytestmark = pytest.mark.server

KEY = "server/bearer-token"
# a JWT-shaped token (header.claims.signature), as Koppeltaal's auth service issues: the run
# forges it by altering the signature and by re-sending its claims with alg none
TOKEN = ("eyJhbGciOiJSUzUxMiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJrdDItdGVzdCIsImF1ZCI6ImZoaXIifQ."
         "c2lnbmF0dXJlLW9mLXRoZS1zZXJ2ZXItc2VjcmV0LWtleQ")
ONLY_THE_RULE = ("--no-cover", "--examples", "1", "--", "-k", "bearer")


def _summary(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "reports" / "summary.json").read_text())


def _rule_cases(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in data["cases"] if c["constraint"] == KEY]


def test_a_server_checking_tokens_enforces_the_rule(
        tmp_path: Path, reference_server: ReferenceServer) -> None:
    """Only the run's token gets through: no token, an unknown one, an altered signature and
    alg none are each refused with 401, so the rule is enforced (also under --strict)."""
    with AuthProxy(reference_server.base_url, lambda t: t == TOKEN, "") as proxy:
        result = run_harness(tmp_path, "--target", proxy.url, "--token", TOKEN, "--strict",
                             *ONLY_THE_RULE)
        data = _summary(tmp_path)
        cases = _rule_cases(data)
        assert [c["status"] for c in cases] == [401] * 4, result.stdout[-2000:]
        assert data["constraints"][KEY]["enforced"] is True
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr
        assert sorted(proxy.refused) == ["POST /fhir/Task: no bearer token"] + [
            "POST /fhir/Task: token not accepted"] * 3
        output = result.stdout + result.stderr + "".join(
            p.read_text() for p in (tmp_path / "reports").iterdir())
        assert TOKEN.split(".")[1] not in output and TOKEN.split(".")[2] not in output


def test_a_server_taking_writes_without_a_valid_token_does_not_enforce_it(
        tmp_path: Path, reference_server: ReferenceServer) -> None:
    """The open reference server stores the Task whatever the credentials: every case of the
    rule fails, the run exits 1, and what those cases created is deleted again."""
    before = resource_counts(reference_server.base_url)
    result = run_harness(tmp_path, "--target", reference_server.base_url, "--token", TOKEN,
                         *ONLY_THE_RULE)
    data = _summary(tmp_path)
    cases = _rule_cases(data)
    assert len(cases) == 4 and all(c["verdict"] == "fail" for c in cases), cases
    assert data["constraints"][KEY]["enforced"] is False
    assert result.returncode == 1
    assert KEY in result.stdout
    assert resource_counts(reference_server.base_url) == before


def test_a_run_without_credentials_says_the_rule_was_not_tested(
        tmp_path: Path, reference_server: ReferenceServer) -> None:
    """Nothing to withhold or forge: no case, the rule not judged, and the report says why."""
    result = run_harness(tmp_path, "--target", reference_server.base_url, *ONLY_THE_RULE)
    data = _summary(tmp_path)
    assert not _rule_cases(data)
    assert data["constraints"][KEY]["enforced"] is None, data["constraints"][KEY]
    report = (tmp_path / "reports" / "report.html").read_text()
    assert "the run has no credentials" in report
    assert result.returncode in (0, 1), result.stderr
