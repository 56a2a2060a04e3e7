"""Judging rules for answers a real server can't easily be made to give on cue (a read-back that
times out after a create succeeded), on hand-made exchanges."""

from __future__ import annotations

from kt2conformance._vocabulary import Expectation, Problem, Verdict
from kt2conformance.run._cases import Case
from kt2conformance.run._verdicts import judge, judge_read_back
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


def _created(status: int) -> Exchange:
    return Exchange("POST", "http://t/fhir/Task", {}, "{}", status=status,
                    response_headers={"location": "http://t/fhir/Task/1/_history/1"})


def test_strict_wants_a_create_answered_with_201() -> None:
    """A 200 with a Location is a create by the guideline's range; --strict wants 201 Created."""
    case = Case("valid#1", Expectation.ACCEPT, None, "a valid Task", SENT)
    assert judge(case, _created(200), strict=False).verdict == PASS
    refused = judge(case, _created(200), strict=True)
    assert refused.verdict == FAIL and "not 201" in refused.reason
    assert judge(case, _created(201), strict=True).verdict == PASS


def test_a_redirect_is_no_verdict_on_the_task() -> None:
    """A 307 to anywhere is not followed: the Task was neither accepted nor refused, so the case
    is an error (the run incomplete), never a constraint 'not enforced' or an over-strict one."""
    redirect = Exchange("POST", "http://t/fhir/Task", {}, "{}", status=307,
                        response_headers={"location": "http://t/fhir/Task"})
    redirect.fail(Problem.REDIRECT, "redirect (HTTP 307) to http://t/fhir/Task not followed")
    for expected in (Expectation.ACCEPT, Expectation.REJECT):
        case = Case("c#1", expected, None if expected is Expectation.ACCEPT else "Task.note/max",
                    "a Task", SENT)
        verdict = judge(case, redirect, strict=False)
        assert verdict.verdict == ERROR and "not followed" in verdict.reason
