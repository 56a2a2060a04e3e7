"""Any answer a server can send is data, never an exception: a fuzz test of everything that reads
an answer (the body's JSON, an OperationOutcome with wrongly typed fields, odd statuses and
headers, a Location of any shape) on its way to a verdict and a report. Only the set-up errors
the contract names may raise (401/403, a target that is gone, a production-looking target)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tasks import MINIMAL

from kt2conformance._errors import UsageError
from kt2conformance._vocabulary import Expectation, Problem
from kt2conformance.generate._values import oracle_for
from kt2conformance.run._cases import Case
from kt2conformance.run._report import Outcome
from kt2conformance.run._reporting import Reporting
from kt2conformance.run._verdicts import SetupError, judge, judge_read_back
from kt2conformance.spec import derive_constraints, load_profile
from kt2conformance.target._client import (
    Exchange,
    _interpret_body,
    guard_production,
    outcome_elements,
    outcome_errors,
    parse_retry_after,
)
from kt2conformance.target._prerequisites import created_id, location_problem

BASE = "http://127.0.0.1:8080/fhir"
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25)
ISSUE = st.fixed_dictionaries({}, optional={
    "severity": st.sampled_from(["error", "fatal", "warning"]) | JSON,
    "code": JSON, "diagnostics": JSON, "details": JSON | st.fixed_dictionaries({"text": JSON}),
    "expression": JSON | st.lists(JSON, max_size=3), "location": JSON})
OUTCOME = st.fixed_dictionaries({"resourceType": st.just("OperationOutcome")},
                                optional={"issue": JSON | st.lists(ISSUE | JSON, max_size=4)})
TASKISH = st.fixed_dictionaries({"resourceType": st.just("Task")},
                                optional={"id": JSON, "status": JSON, "meta": JSON,
                                          "intent": JSON, "for": JSON, "note": JSON})
BODY = JSON | OUTCOME | TASKISH
LOCATION = st.one_of(
    st.text(max_size=60),
    st.sampled_from([f"{BASE}/Task/abc", f"{BASE}/Task/abc/_history/1", f"{BASE}/Patient/p1",
                     "http://elsewhere.invalid/fhir/Task/1", "/fhir/Task/1", "Task/1",
                     "http://[::1", "http://127.0.0.1:8080/other/Task/1", f"{BASE}/Task/",
                     f"{BASE}/Task/{'x' * 80}", f"{BASE}/Task/a b", "\x00", "ftp://x/Task/1"]))
HEADERS = st.fixed_dictionaries({}, optional={
    "location": LOCATION, "retry-after": st.text(max_size=30), "content-type": st.text(max_size=30),
    "etag": st.text(max_size=20)})
STATUS = st.none() | st.integers(100, 599) | st.sampled_from([0, 99, 600, 999])


@pytest.fixture(scope="module")
def reporting(tmp_path_factory: pytest.TempPathFactory) -> Reporting:
    profile = load_profile()
    constraints = {c.key: c for c in derive_constraints(profile)}
    return Reporting([profile], {profile.type: oracle_for(profile)}, constraints,
                     tmp_path_factory.mktemp("reports"), None)


def _may_raise(exchange: Exchange) -> bool:
    """The contract's set-up errors: refused credentials, a target that is gone."""
    return exchange.status in (401, 403) or exchange.problem is Problem.CANNOT_CONNECT


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(status=STATUS, headers=HEADERS, body=BODY, problem=st.none() | st.sampled_from(Problem),
       text=st.text(max_size=40), strict=st.booleans(), expected=st.sampled_from(Expectation),
       key=st.sampled_from([None, "Task.note/max", "server/meta.profile", "Task/constraint:inv-1"]))
def test_any_answer_is_judged_and_reported(reporting: Reporting, status: int | None,
                                          headers: dict[str, str], body: Any,
                                          problem: Problem | None, text: str, strict: bool,
                                          expected: Expectation, key: str | None) -> None:
    exchange = Exchange("POST", f"{BASE}/Task", {"Content-Type": "application/fhir+json"}, "{}",
                        status=status, response_headers=headers, response_body=text, json=body)
    if problem is not None:
        exchange.fail(problem, f"{problem}: {text}")
    outcome_errors(body)
    outcome_elements(body)
    created_id(exchange, BASE)
    location_problem(exchange, BASE)
    parse_retry_after(headers.get("retry-after"))
    exchange.curl()
    str(exchange)
    try:
        guard_production(BASE, body, False)
    except UsageError:
        pass  # a CapabilityStatement may say production: the documented refusal
    case = Case("fuzz#1", expected, None if expected is Expectation.ACCEPT else key,
                "fuzzed", dict(MINIMAL))
    try:
        verdict = judge(case, exchange, strict)
        read_back = judge_read_back(dict(MINIMAL), exchange)
    except SetupError:
        assert _may_raise(exchange)
        return
    reporting.record(Outcome(case, verdict, exchange, [], exchange))
    assert read_back.reason


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,  # nested past any recursion limit
    b'{"a":' * 900 + b"1" + b"}" * 900,  # nested just below it
    b"1" * 5000,  # an integer past Python's digit limit
    b'{"resourceType": "OperationOutcome", "issue": 7}',
    b'{"resourceType": "OperationOutcome", "issue": [{"severity": "error", "expression": {}}]}',
    b'{"resourceType": "OperationOutcome", "issue": [{"severity": ["error"], "expression": 1}]}',
    b"NaN", b"\xff\xfe\x00", b'"\\ud800"', b"",
])
def test_hostile_bodies_become_data(reporting: Reporting, raw: bytes) -> None:
    response = httpx.Response(422, content=raw,
                              headers={"Content-Type": "application/fhir+json"})
    parsed, unusable = _interpret_body(response, raw, True)
    exchange = Exchange("POST", f"{BASE}/Task", {}, "{}", status=422,
                        response_body=raw[:1000].decode("utf-8", "replace"), json=parsed)
    if unusable is not None:
        exchange.fail(*unusable)
    outcome_errors(parsed)
    outcome_elements(parsed)
    case = Case("fuzz#1", Expectation.REJECT, "Task.note/max", "hostile", dict(MINIMAL))
    verdict = judge(case, exchange, True)
    reporting.record(Outcome(case, verdict, exchange, [], None))
    assert verdict.reason


def test_the_report_of_fuzzed_answers_is_written(reporting: Reporting, tmp_path: Path) -> None:
    """What the fuzz recorded renders: the per-case details are built when recorded, so a
    record that broke them would have raised above; this only checks something was kept."""
    assert reporting.details is not None
