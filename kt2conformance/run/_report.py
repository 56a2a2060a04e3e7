"""The run's records and summary.json.

Each case's record (the contract's fields) is appended to a JSON-lines file the moment it is
judged, and summary.json is built from that file at the end, so memory stays flat however many
cases a run sends. The same records feed junit.xml and report.html (`kt2conformance.report`),
so every report counts the same cases. Every reason passes through `redact`: no secret reaches
a report.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kt2conformance._vocabulary import Expectation, Verdict
from kt2conformance.report import Finding, finding_of
from kt2conformance.run._cases import Case
from kt2conformance.run._verdicts import Judgement
from kt2conformance.target._client import Exchange
from kt2conformance.target._redact import redact


class CaseLog:
    """Case records, one JSON object a line, in a hidden file of the reports folder that lives
    as long as the run. Thread-safe."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".cases-", suffix=".jsonl", dir=folder)
        self.path = Path(name)
        self._file = os.fdopen(handle, "w", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, case: Case, status: int | None, verdict: Judgement) -> None:
        record = {"id": case.id, "expected": case.expected, "constraint": case.constraint,
                  "status": status, "verdict": verdict.verdict, "reason": redact(verdict.reason)}
        with self._lock:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def records(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            self._file.flush()
        with self.path.open(encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line)

    def close(self) -> None:
        """Close and remove the file (summary.json holds the records by then)."""
        self._file.close()
        self.path.unlink(missing_ok=True)


@dataclass
class Tally:
    """Counts for one constraint key, or for the valid Tasks (key None)."""

    cases: int = 0
    failed: int = 0
    judged: int = 0  # cases with a pass or fail verdict (an error says nothing either way)

    @property
    def enforced(self) -> bool | None:
        if not self.judged:
            return None
        return self.failed == 0


@dataclass
class Tallies:
    """Everything summary.json and the matrix need, gathered in one pass over the records."""

    totals: dict[str, int] = field(
        default_factory=lambda: {"cases": 0, "passed": 0, "failed": 0, "errors": 0, "data_loss": 0})
    by_key: dict[str, Tally] = field(default_factory=dict)
    valid: Tally = field(default_factory=Tally)  # cases that must be accepted

    @classmethod
    def of(cls, log: CaseLog, keys: list[str]) -> Tallies:
        tallies = cls(by_key={key: Tally() for key in keys})
        for record in log.records():
            tallies.totals["cases"] += 1
            verdict = record["verdict"]
            tallies.totals[{Verdict.PASS: "passed", Verdict.FAIL: "failed", Verdict.ERROR: "errors"}[verdict]] += 1
            tally = (tallies.valid if record["expected"] == Expectation.ACCEPT
                     else tallies.by_key.setdefault(record["constraint"], Tally()))
            tally.cases += 1
            tally.failed += verdict == Verdict.FAIL
            tally.judged += verdict != Verdict.ERROR
            tallies.totals["data_loss"] += finding_of(record) is Finding.DATA_LOSS
        return tallies

    def constraints(self) -> dict[str, dict[str, Any]]:
        return {key: {"cases": t.cases, "failed": t.failed, "enforced": t.enforced}
                for key, t in self.by_key.items()}


def write_summary(path: Path, head: dict[str, Any], tallies: Tallies, log: CaseLog) -> None:
    """summary.json in the contract's shape and key order; the case list is copied record by
    record from the log, never held in memory as a whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    with partial.open("w", encoding="utf-8") as out:
        out.write("{\n")
        for key, value in {**head, "totals": tallies.totals}.items():
            out.write(f"  {json.dumps(key)}: {json.dumps(value)},\n")
        out.write('  "cases": [')
        for i, record in enumerate(log.records()):
            out.write(("," if i else "") + "\n    " + json.dumps(record))
        out.write("\n  ],\n")
        out.write(f'  "constraints": {json.dumps(tallies.constraints(), indent=4)}\n}}\n')
    partial.replace(path)  # a reader never sees half a summary


@dataclass
class Outcome:
    """A judged case with everything the report shows about it."""

    case: Case
    verdict: Judgement
    exchange: Exchange
    oracle_keys: list[str]
    read_back: Exchange | None = None
