"""The HL7 validator as referee of the oracle.

A Koppeltaal server decides with HAPI's validator (the HL7 `org.hl7.fhir.validation` core);
the oracle is this project's reading of the same rules. `Referee` sends a Task to a HAPI
server's `POST [base]/Task/$validate?profile=<profile>` (the embedded reference server, or any
other) and reads its OperationOutcome; `compare` sets it against the oracle's issues: do the two
agree on validity, and does every error of one lie on an element where the other found one?

Locations are compared as element paths: indexes and `.ofType(T)` dropped, `_x` read as `x`,
`value[x]` as `value`. Two locations match when one lies on or inside the other; a location
that is only the resource itself (HAPI reports a missing element on its parent) matches when
its message names the other's element.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from kt2conformance._errors import UsageError, dump_json
from kt2conformance.oracle._oracle import Issue

__all__ = ["Comparison", "Referee", "RefereeIssue", "compare", "element_path"]

_INDEX = re.compile(r"\[\d+\]")
_OF_TYPE = re.compile(r"\.ofType\([^)]*\)|\.where\([^)]*\)|\.resolve\(\)|/\*.*?\*/|\[url=[^\]]*\]")
_CHOICE = re.compile(r"\[x\]")
_FHIR_JSON = "application/fhir+json"


def element_path(location: str) -> str:
    """An instance path or FHIRPath location as an element path (`Task.identifier[0]._value`
    -> `Task.identifier.value`; `Task.extension[1].value.ofType(Reference)` ->
    `Task.extension.value`)."""
    path = _OF_TYPE.sub("", location.strip())
    path = _INDEX.sub("", path)
    path = _CHOICE.sub("", path)
    parts = [p[1:] if p.startswith("_") else p for p in path.split(".")]
    return ".".join(p.split(":")[0] for p in parts)


def _choice_stem(part: str, other: str) -> bool:
    """`valueReference` and `value` name the same element."""
    return part == other or (part.startswith(other) and part[len(other):][:1].isupper()) or (
        other.startswith(part) and other[len(part):][:1].isupper())


def _inside(inner: str, outer: str) -> bool:
    a, b = inner.split("."), outer.split(".")
    return len(a) >= len(b) and all(_choice_stem(x, y) for x, y in zip(a, b, strict=False))


@dataclass(frozen=True)
class RefereeIssue:
    severity: str  # fatal, error, warning, information
    location: str  # as the validator gave it (FHIRPath)
    message: str
    message_id: str | None = None

    @property
    def element(self) -> str:
        return element_path(self.location)

    @property
    def is_error(self) -> bool:
        return self.severity in ("error", "fatal")

    def as_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "location": self.location, "message": self.message,
                "message_id": self.message_id}


def _matches(oracle_issue: Issue, ref: RefereeIssue, root: str) -> bool:
    ours, theirs = element_path(oracle_issue.path), ref.element
    if ours.endswith(".meta.profile") and "profile" in ref.message:
        # a claimed profile the validator judges the resource against: it reports on the
        # resource, or on the elements the profile does not allow, naming the profile
        return True
    if theirs == root and ours != root:
        # reported on the resource itself: it must name our element (a missing Task.owner)
        return ours in element_path(ref.message) or ours.split(".", 1)[-1] in ref.message
    if ours == root and theirs != root:
        return True  # a resource-level invariant (dom-3, inv-1) may point inside the resource
    return _inside(ours, theirs) or _inside(theirs, ours)


@dataclass
class Comparison:
    """The oracle's errors and the referee's, side by side."""

    oracle: list[Issue]
    referee: list[RefereeIssue]
    root: str = "Task"
    only_oracle: list[Issue] = field(init=False)
    only_referee: list[RefereeIssue] = field(init=False)

    def __post_init__(self) -> None:
        ours = [i for i in self.oracle if i.severity == "error"]
        theirs = [i for i in self.referee if i.is_error]
        self.only_oracle = [o for o in ours if not any(_matches(o, r, self.root) for r in theirs)]
        self.only_referee = [r for r in theirs if not any(_matches(o, r, self.root) for o in ours)]

    @property
    def oracle_valid(self) -> bool:
        return not any(i.severity == "error" for i in self.oracle)

    @property
    def referee_valid(self) -> bool:
        return not any(i.is_error for i in self.referee)

    @property
    def agrees(self) -> bool:
        """Same verdict: both valid, or both invalid."""
        return self.oracle_valid == self.referee_valid

    def same_element(self, key: str | None = None) -> bool:
        """For an invalid Task: the referee found an error on the element of the oracle's key
        (`key`, else every oracle error's element)."""
        if self.oracle_valid or self.referee_valid:
            return self.agrees
        ours = [i for i in self.oracle if i.severity == "error" and (key is None or i.key == key)]
        theirs = [r for r in self.referee if r.is_error]
        return bool(ours) and all(any(_matches(o, r, self.root) for r in theirs) for o in ours)

    def as_dict(self) -> dict[str, Any]:
        return {"oracle_valid": self.oracle_valid, "referee_valid": self.referee_valid, "agree": self.agrees,
                "only_oracle": [i.as_dict() for i in self.only_oracle],
                "only_referee": [r.as_dict() for r in self.only_referee],
                "referee_issues": [r.as_dict() for r in self.referee]}


def compare(oracle_issues: Sequence[Issue], referee_issues: Sequence[RefereeIssue], root: str = "Task") -> Comparison:
    return Comparison(list(oracle_issues), list(referee_issues), root)


def _issues(outcome: Any) -> list[RefereeIssue]:
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        raise UsageError("the referee answered without an OperationOutcome")
    found = []
    for issue in outcome.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        where = (issue.get("expression") or issue.get("location") or [""])[0]
        message_id = next((x.get("valueString") for x in issue.get("extension", [])
                           if isinstance(x, dict) and x.get("url", "").endswith("operationoutcome-message-id")), None)
        found.append(RefereeIssue(str(issue.get("severity", "error")), str(where),
                                  str(issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""),
                                  message_id))
    return found


class Referee:
    """A HAPI FHIR server's `$validate`, as the HL7 validator's verdict on a Task."""

    def __init__(self, base_url: str, profile_url: str, resource_type: str = "Task", timeout: float = 120.0) -> None:
        self.url = f"{base_url.rstrip('/')}/{resource_type}/$validate"
        self.profile_url = profile_url
        self._http = httpx.Client(timeout=timeout)

    def check(self) -> None:
        """UsageError unless the server answers `$validate` (with an OperationOutcome and 200,
        as HAPI does, or 412/422 for a refusal)."""
        body = dump_json({"resourceType": "Task"}).encode("utf-8")
        try:
            response = self._http.post(self.url, params={"profile": self.profile_url}, content=body,
                                       headers={"Content-Type": _FHIR_JSON, "Accept": _FHIR_JSON})
        except httpx.HTTPError as exc:
            raise UsageError(f"the referee at {self.url} cannot be reached: {exc.__class__.__name__}") from None
        if response.status_code not in (200, 412, 422):
            raise UsageError(f"no HL7 validator at {self.url}: $validate answered {response.status_code}")

    def validate(self, task: Any) -> list[RefereeIssue]:
        """The validator's issues on `task` (any JSON value), against the profile."""
        body = dump_json(task).encode("utf-8")
        try:
            response = self._http.post(self.url, params={"profile": self.profile_url}, content=body,
                                       headers={"Content-Type": _FHIR_JSON, "Accept": _FHIR_JSON})
        except httpx.HTTPError as exc:
            raise UsageError(f"the referee at {self.url} cannot be reached: {exc.__class__.__name__}") from None
        try:
            outcome = response.json()
        except ValueError:
            raise UsageError(f"the referee answered {response.status_code} without JSON") from None
        issues = _issues(outcome)
        if response.status_code >= 500:
            # The validator itself failed on this input: the production server then answers
            # 500 (its interceptor does not ignore validator exceptions). A refusal, of a kind.
            return [RefereeIssue("fatal", "", f"the validator failed ({response.status_code}): "
                                 + "; ".join(i.message for i in issues)[:300], "validator-exception")]
        return issues

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Referee:  # noqa: PYI034 (a final class)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
