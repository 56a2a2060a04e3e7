"""Judging rules for answers a real server can't easily be made to give on cue (a read-back that
times out after a create succeeded), on hand-made exchanges."""

from __future__ import annotations

from kt2conformance._vocabulary import Verdict
from kt2conformance.run._verdicts import judge_read_back
from kt2conformance.target._client import Exchange

PASS, FAIL, ERROR = Verdict.PASS, Verdict.FAIL, Verdict.ERROR

SENT = {"resourceType": "Task", "status": "ready"}


def _read(status: int | None, body: object = None, error: str | None = None) -> Exchange:
    return Exchange("GET", "http://t/fhir/Task/1", {}, None, status=status, json=body, error=error)


def test_read_back_without_answer_is_an_error_not_a_finding() -> None:
    verdict = judge_read_back(SENT, _read(None, error="no response within 2 s (read timeout)"))
    assert verdict.verdict == ERROR
    assert "read timeout" in verdict.reason


def test_read_back_of_something_else_is_a_failure() -> None:
    assert judge_read_back(SENT, _read(404, {"resourceType": "OperationOutcome"})).verdict == FAIL
    changed = judge_read_back(SENT, _read(200, {**SENT, "id": "1", "status": "draft"}))
    assert changed.verdict == FAIL and "status" in changed.reason


def test_read_back_as_sent_passes() -> None:
    assert judge_read_back(SENT, _read(200, {**SENT, "id": "1", "meta": {"versionId": "1"}})).verdict == PASS
