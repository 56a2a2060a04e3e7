"""Judging what the target answered to a case: pass, fail or error, with a reason a person can act
on. Pure functions of the case and the exchange, so the rules are easy to read in one place:

- a valid Task must be accepted (2xx, with a Location header) and read back as sent, apart from
  what the server manages (id, meta.versionId, meta.lastUpdated, meta.source, text);
- an invalid request must be refused with a 4xx; a 5xx is a server defect; `--strict` also wants
  the documented status (422 for profile violations) and an OperationOutcome with an error issue,
  and a create answered with 201 Created (any 2xx with a Location will do otherwise);
- 401/403 and a target that stops accepting connections are not findings about the Task but a
  set-up problem: `SetupError` stops the run (exit 2) instead of failing every case after it;
  except for a case sent with other credentials than the run's (none, forged): there 401/403
  is the refusal it expects;
- an answer that says nothing about the Task is an error, not a finding: none at all (timeout,
  dropped connection), still throttled or unavailable (429/503) after the retries, a redirect
  (never followed: it may lead anywhere, with the credentials), or a 2xx
  without a Location whose body is unusable (HTML, empty, cut off: a gateway's page, not proof
  that the server stored, or let through, anything).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kt2conformance._errors import UsageError
from kt2conformance._koppeltaal import PROFILE_CLAIMS, PROFILE_VIOLATION_STATUS, rule
from kt2conformance._vocabulary import Expectation, Problem, Verdict
from kt2conformance.run._cases import Case
from kt2conformance.run._readback import Difference, LossKind, stored_differences
from kt2conformance.target._client import RETRY_STATUSES, Exchange, outcome_errors
from kt2conformance.target._origin import has_resource_origin

_MAX_DIFFERENCES = 3
CREATED = 201  # what a create answers (FHIR R4 http.html#create); --strict demands it


@dataclass(frozen=True)
class Judgement:
    """A verdict with the reason a person can act on."""

    verdict: Verdict
    reason: str
    # A valid Task accepted but read back changed (data loss: a fail on a 2xx): what changed,
    # difference by difference (kt2conformance.run._readback). Never counted as over-strict.
    losses: tuple[Difference, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict is Verdict.PASS


class SetupError(UsageError):
    """The run cannot go on (credentials refused, target gone): exit 2, one message."""


def _said(exchange: Exchange) -> str:
    """What the server said about its answer, for a reason: ': <first error issue>' or ''."""
    errors = outcome_errors(exchange.json)
    return f": {errors[0]}" if errors else ""


def judge(case: Case, exchange: Exchange, strict: bool) -> Judgement:
    """The verdict on the answer to the case's request (for accepted valid Tasks only the first
    step: `judge_read_back` checks what was stored)."""
    status = exchange.status
    if status is None:
        if exchange.problem is Problem.CANNOT_CONNECT:
            raise SetupError(f"lost the target during the run: {exchange.error}")
        return Judgement(Verdict.ERROR, f"no answer: {exchange.error}")
    if status in (401, 403) and case.authorization is None:
        raise SetupError(f"{exchange.method} {exchange.url} answered HTTP {status}: the "
                         f"credentials are refused or lack permission (check --token or "
                         f"--client-id/--private-key and the client's role on the target)")
    if exchange.problem is not None and (status in RETRY_STATUSES or (
            200 <= status < 300 and not exchange.response_headers.get("location"))
            or exchange.problem is Problem.REDIRECT):  # not followed: nothing known of the Task
        return Judgement(Verdict.ERROR, f"unusable answer (HTTP {status}): {exchange.error}")
    if case.expected is Expectation.ACCEPT:
        return _judge_accept(exchange, strict)
    return _judge_reject(case, exchange, strict)


def _judge_accept(exchange: Exchange, strict: bool = False) -> Judgement:
    status = exchange.status
    assert status is not None
    if 200 <= status < 300:
        if not exchange.response_headers.get("location"):
            return Judgement(Verdict.FAIL, f"accepted (HTTP {status}) without a Location header")
        if strict and status != CREATED:
            return Judgement(Verdict.FAIL, f"--strict: created with HTTP {status}, not {CREATED}")
        return Judgement(Verdict.PASS, f"accepted (HTTP {status})")
    if 400 <= status < 500:
        return Judgement(Verdict.FAIL, f"refused a valid resource: HTTP {status}{_said(exchange)}")
    if status >= 500:
        return Judgement(Verdict.FAIL, f"server defect: HTTP {status} (5xx) on a valid resource"
                             f"{_said(exchange)}")
    return Judgement(Verdict.FAIL, f"unexpected HTTP {status} on a create")


def _strict(key: str) -> int:
    """Production's status for a server rule (the table in kt2conformance._koppeltaal)."""
    server_rule = rule(key)
    assert server_rule is not None and server_rule.strict_status is not None, key
    return server_rule.strict_status


def _strict_statuses(case: Case) -> tuple[int, ...]:
    """The statuses production can answer to a profile violation, in the order it checks: a
    body that is not a resource of the endpoint's type is a bad request (400); the validator's
    422 comes next. Where the validator lets a fault through, a later layer answers: a
    client-set resource-origin is refused with 400, a reference of a type the indexing search
    parameter does not allow is refused at storage with 400 (HAPI's validator does not check
    reference targets), and one of a KT2 type whose fault took away its KT2 profile claim fails
    the claim check at storage (412)."""
    body = case.body
    if not isinstance(body, dict) or body.get("resourceType") != case.resource_type:
        return (_strict("server/json-syntax"),)
    if has_resource_origin(body):
        return (PROFILE_VIOLATION_STATUS, _strict("server/resource-origin"))
    if case.constraint is not None and case.constraint.endswith("/targetProfile"):
        return (PROFILE_VIOLATION_STATUS, _strict("server/reference-integrity"))
    meta = body.get("meta")
    profiles = meta.get("profile") if isinstance(meta, dict) else None
    claim = PROFILE_CLAIMS.get(body["resourceType"])
    if claim is not None and (not isinstance(profiles, list) or claim not in profiles):
        return (PROFILE_VIOLATION_STATUS, _strict("server/meta.profile"))
    return (PROFILE_VIOLATION_STATUS,)


def _judge_reject(case: Case, exchange: Exchange, strict: bool) -> Judgement:
    status = exchange.status
    assert status is not None
    what = case.constraint or "a rule"
    if 200 <= status < 300:
        return Judgement(Verdict.FAIL, f"accepted (HTTP {status}) a request that breaks {what}")
    if status >= 500:
        return Judgement(Verdict.FAIL, f"server defect: HTTP {status} (5xx) instead of a 4xx refusal"
                             f"{_said(exchange)}")
    if not 400 <= status < 500:
        return Judgement(Verdict.FAIL, f"neither accepted nor refused: HTTP {status}")
    if strict:
        server_rule = rule(what)
        wanted = ((server_rule.strict_status,) if server_rule and server_rule.strict_status
                  else _strict_statuses(case))
        if status not in wanted:
            shown = " or ".join(str(w) for w in wanted)
            return Judgement(Verdict.FAIL, f"--strict: refused with HTTP {status}, not {shown}"
                                 f"{_said(exchange)}")
        if not outcome_errors(exchange.json):
            return Judgement(Verdict.FAIL, f"--strict: the refusal (HTTP {status}) carries no "
                                 f"OperationOutcome with an error issue")
    return Judgement(Verdict.PASS, f"refused (HTTP {status}){_said(exchange)}")


def judge_read_back(sent: dict[str, Any], exchange: Exchange) -> Judgement:
    """Whether the stored resource, read back, is the one that was sent."""
    if exchange.status in (401, 403):
        raise SetupError(f"GET {exchange.url} answered HTTP {exchange.status}: the credentials "
                         f"may create but not read")
    if exchange.status is None:  # timeout, dropped: nothing known about what was stored
        return Judgement(Verdict.ERROR, f"accepted, but the read-back got no answer: {exchange.error}")
    if exchange.status != 200 or not isinstance(exchange.json, dict):
        answer = f"HTTP {exchange.status}"
        detail = f": {exchange.error}" if exchange.problem else _said(exchange)
        lost = Difference(str(sent.get("resourceType", "Resource")), LossKind.DROPPED, sent)
        return Judgement(Verdict.FAIL, f"accepted, but reading it back failed ({answer}{detail})",
                         (lost,))
    differences = stored_differences(sent, exchange.json)
    if differences:
        more = len(differences) - _MAX_DIFFERENCES
        listed = "; ".join(str(d) for d in differences[:_MAX_DIFFERENCES]) + (
            f"; and {more} more" if more > 0 else "")
        return Judgement(Verdict.FAIL, f"accepted, but stored differently (data loss): {listed}",
                         tuple(differences))
    return Judgement(Verdict.PASS, "accepted and stored as sent")
