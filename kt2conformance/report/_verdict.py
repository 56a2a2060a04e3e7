"""The run's verdict, from what summary.json says: CONFORMS, DOES NOT CONFORM or INCOMPLETE, with
the one set of counts every report repeats (the console line, report.html, junit.xml and
summary.json all take them from here).

Everything is read from the summary's contract fields, so the verdict of an earlier run (a
`--baseline`) is computed the same way, and fields a newer harness adds (`complete`, `stopped`,
`totals.data_loss`) are used when present and derived from the cases when not."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Outcome(enum.Enum):
    """What a finished run says about the target."""

    CONFORMS = "CONFORMS"
    DOES_NOT_CONFORM = "DOES NOT CONFORM"
    INCOMPLETE = "INCOMPLETE"


class Finding(enum.Enum):
    """What went wrong in one case, decided from its contract fields (expected answer, HTTP status,
    verdict), never from the reason's wording."""

    NOT_ENFORCED = "not enforced"  # an invalid request was accepted
    SERVER_DEFECT = "server defect"  # a 5xx instead of a 4xx
    WRONG_REFUSAL = "wrong refusal"  # refused, but not as --strict demands
    OVER_STRICT = "over-strict"  # a valid resource was refused
    DATA_LOSS = "data loss"  # a valid resource was accepted but not stored as sent
    ERROR = "error"  # no usable answer: says nothing either way


def finding_of(record: Mapping[str, Any]) -> Finding | None:
    """The finding a case record stands for (None for a pass)."""
    verdict = record.get("verdict")
    if verdict == "error":
        return Finding.ERROR
    if verdict != "fail":
        return None
    status = record.get("status")
    ok = isinstance(status, int) and 200 <= status < 300
    if record.get("expected") == "accept":
        return Finding.DATA_LOSS if ok else Finding.OVER_STRICT
    if ok:
        return Finding.NOT_ENFORCED
    if isinstance(status, int) and status >= 500:
        return Finding.SERVER_DEFECT
    return Finding.WRONG_REFUSAL


@dataclass
class FindingCounts:
    """Cases per finding, gathered in one pass over the records (memory stays flat)."""

    by_kind: dict[Finding, int] = field(default_factory=lambda: {f: 0 for f in Finding})

    def add(self, record: Mapping[str, Any]) -> Finding | None:
        found = finding_of(record)
        if found is not None:
            self.by_kind[found] += 1
        return found

    @classmethod
    def of(cls, records: Iterable[Mapping[str, Any]]) -> FindingCounts:
        counts = cls()
        for record in records:
            counts.add(record)
        return counts


@dataclass(frozen=True)
class RunVerdict:
    outcome: Outcome
    totals: Mapping[str, int]
    not_enforced: int  # constraints
    over_strict: int  # valid resources refused
    data_loss: int  # valid resources stored differently
    stopped: str | None  # why the run is incomplete

    @property
    def why(self) -> str:
        """The banner's second line: what the verdict rests on."""
        found = (f"{self.not_enforced} constraint{_s(self.not_enforced)} not enforced, "
                 f"{self.over_strict} over-strict, {self.data_loss} data-loss "
                 f"finding{_s(self.data_loss)}")
        if self.outcome is Outcome.INCOMPLETE:
            anything = self.not_enforced or self.over_strict or self.data_loss
            return f"{self.stopped}; found so far: {found}" if anything else str(self.stopped)
        if self.outcome is Outcome.CONFORMS:
            return "every constraint enforced, every valid resource accepted and stored as sent"
        return found

    @property
    def counts(self) -> str:
        """The one count line: cases, passed, failed, errors."""
        t = self.totals
        return (f"{t.get('cases', 0)} cases: {t.get('passed', 0)} passed, "
                f"{t.get('failed', 0)} failed, {t.get('errors', 0)} errors")

    def line(self) -> str:
        """The console's verdict line."""
        return f"{self.outcome.value} ({self.why}) — {self.counts}"


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def run_verdict(summary: Mapping[str, Any], findings: FindingCounts,
                stopped: str | None = None) -> RunVerdict:
    """The verdict of a run. `summary` is summary.json's content (the case list is not needed:
    `findings` holds its counts); `stopped` says why the run ended early when the summary does
    not (older summaries have no `complete`/`stopped`)."""
    totals = summary.get("totals") or {}
    constraints = summary.get("constraints") or {}
    not_enforced = sum(1 for c in constraints.values() if c.get("enforced") is False)
    over_strict = findings.by_kind[Finding.OVER_STRICT]
    data_loss = totals.get("data_loss")
    if not isinstance(data_loss, int):
        data_loss = findings.by_kind[Finding.DATA_LOSS]
    why = summary.get("stopped") or stopped
    if summary.get("complete") is False and not why:
        why = "the run stopped early"
    errors = totals.get("errors", 0)
    if why:
        outcome = Outcome.INCOMPLETE
    elif not_enforced or over_strict or data_loss:
        outcome = Outcome.DOES_NOT_CONFORM
    elif errors:
        outcome, why = Outcome.INCOMPLETE, f"{errors} case{_s(errors)} got no usable answer"
    elif not totals.get("cases"):
        outcome, why = Outcome.INCOMPLETE, "no cases ran"
    else:
        outcome = Outcome.CONFORMS
    return RunVerdict(outcome, totals, not_enforced, over_strict, data_loss,
                      why if outcome is Outcome.INCOMPLETE else None)
