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
from collections import Counter
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
        record: dict[str, Any] = {
            "id": case.id, "expected": case.expected, "constraint": case.constraint,
            "status": status, "verdict": verdict.verdict, "reason": redact(verdict.reason)}
        if verdict.losses:  # data loss: what the read-back found, difference by difference
            record["data_loss"] = [d.as_dict() for d in verdict.losses]
        if case.classes:  # what the case exercises, for the run's coverage
            record["classes"] = [{"element": element, "class": klass}
                                 for element, klass in case.classes]
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
    valid: Tally = field(default_factory=Tally)  # cases that must be accepted (failed: refused)
    # valid cases accepted but stored differently: element -> kind -> cases
    lost: dict[str, Counter[str]] = field(default_factory=dict)
    # (expected, element or key, class) -> [sent, answered, passed]: what the run covered
    covered: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)

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
            tally.judged += verdict != Verdict.ERROR
            for klass in record.get("classes", ()):
                counts = tallies.covered.setdefault(
                    (record["expected"], klass["element"], klass["class"]), [0, 0, 0])
                counts[0] += 1
                counts[1] += record["status"] is not None
                counts[2] += verdict == Verdict.PASS
            if record.get("data_loss") or finding_of(record) is Finding.DATA_LOSS:
                tallies.totals["data_loss"] += 1
                for element, kinds in _loss_kinds(record.get("data_loss", [])).items():
                    tallies.lost.setdefault(element, Counter()).update(kinds)
            else:
                tally.failed += verdict == Verdict.FAIL
        return tallies

    @property
    def data_loss(self) -> dict[str, dict[str, Any]]:
        """summary.json's `data_loss`: per element, the cases that lost data there, by kind."""
        return {element: {"cases": sum(kinds.values()), "kinds": dict(sorted(kinds.items()))}
                for element, kinds in sorted(self.lost.items())}

    def constraints(self) -> dict[str, dict[str, Any]]:
        return {key: {"cases": t.cases, "failed": t.failed, "enforced": t.enforced}
                for key, t in self.by_key.items()}


def coverage(tallies: Tallies, wanted: dict[str, dict[str, tuple[str, ...]]]) -> dict[str, Any]:
    """summary.json's `coverage`: for valid Tasks per element, for invalid ones per constraint
    key, each class with the cases that were sent with it, answered (any HTTP answer) and passed
    (accepted and stored as sent / refused); then per side the classes the catalogue lists that
    no case took (`not_sent`), so a tester sees what was not tried: classes of tests left out
    (`-k`), and invalid edges no Task can take while breaking only its own key (a wrong
    Reference.type also breaks targetProfile)."""
    out: dict[str, Any] = {}
    for side, expected in (("valid", Expectation.ACCEPT), ("invalid", Expectation.REJECT)):
        seen: dict[str, dict[str, dict[str, int]]] = {}
        for (exp, element, klass), (sent, answered, passed) in sorted(tallies.covered.items()):
            if exp == expected:
                seen.setdefault(element, {})[klass] = {"sent": sent, "answered": answered,
                                                       "passed": passed}
        missing = {element: [k for k in classes if k not in seen.get(element, {})]
                   for element, classes in sorted(wanted.get(side, {}).items())}
        listed = sum(len(classes) for classes in wanted.get(side, {}).values())
        out[side] = {"classes": listed,
                     "sent": listed - sum(len(m) for m in missing.values()),
                     "by_element": seen,
                     "not_sent": {element: m for element, m in missing.items() if m}}
    # valid classes of the datatypes no valid Task takes at that element (the oracle refuses
    # them there, e.g. a relative URI as Identifier.system): not sent, not counted above
    out["valid"]["left_out"] = {element: list(classes) for element, classes
                                in sorted(wanted.get("valid_left_out", {}).items())}
    return out


def _loss_kinds(losses: list[dict[str, Any]]) -> dict[str, set[str]]:
    """element -> kinds of loss, from one record (each kind counted once a case)."""
    out: dict[str, set[str]] = {}
    for loss in losses:
        out.setdefault(loss["element"], set()).add(loss["kind"])
    return out


def write_summary(path: Path, head: dict[str, Any], tallies: Tallies, log: CaseLog,
                  wanted: dict[str, dict[str, tuple[str, ...]]] | None = None) -> None:
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
        out.write(f'  "constraints": {json.dumps(tallies.constraints(), indent=4)},\n')
        out.write(f'  "data_loss": {json.dumps(tallies.data_loss, indent=4)},\n')
        out.write(f'  "coverage": {json.dumps(coverage(tallies, wanted or {}), indent=1)}\n}}\n')
    partial.replace(path)  # a reader never sees half a summary


@dataclass
class Outcome:
    """A judged case with everything the report shows about it."""

    case: Case
    verdict: Judgement
    exchange: Exchange
    oracle_keys: list[str]
    read_back: Exchange | None = None
