"""The run's records and the reports built from them.

Each case's record (the contract's fields) is appended to a JSON-lines file the moment it is
judged, and summary.json is built from that file at the end, so memory stays flat however many
cases a run sends. The same records feed the constraint matrix at the top of report.html. The
HTML pieces (matrix, per-case details) are built here; pytest-html places them. Everything
written passes through `redact` once more: no secret reaches a report.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from kt2conformance._vocabulary import Expectation, Verdict
from kt2conformance.run._cases import Case
from kt2conformance.target._client import Exchange
from kt2conformance.target._redact import redact
from kt2conformance.run._verdicts import Judgement

ENFORCED, NOT_ENFORCED, UNTESTED, OVER_STRICT, ACCEPTED = (
    "enforced", "not enforced", "untested", "over-strict", "accepted")


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
        default_factory=lambda: {"cases": 0, "passed": 0, "failed": 0, "errors": 0})
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


def matrix_html(tallies: Tallies, descriptions: dict[str, str], skipped: dict[str, str],
                refused_at: Counter[str]) -> str:
    """The constraint matrix: one row per constraint with what the target did, the valid
    resources first (over-strict when refused, with the elements the refusals pointed at), the
    keys it does not enforce next."""
    rows = []
    valid = tallies.valid
    valid_status = OVER_STRICT if valid.failed else (ACCEPTED if valid.judged else UNTESTED)
    pointed = ", ".join(f"{element} ({n})" for element, n in refused_at.most_common(10))
    rows.append((valid_status, "valid resources",
                 "valid Tasks and the official examples: accepted and stored as sent",
                 valid.cases, valid.failed, f"refusals point at {pointed}" if pointed else ""))
    for key, tally in tallies.by_key.items():
        status = {True: ENFORCED, False: NOT_ENFORCED, None: UNTESTED}[tally.enforced]
        note = skipped.get(key, "" if tally.cases else "no cases")
        rows.append((status, key, descriptions.get(key, ""), tally.cases, tally.failed, note))
    order = {OVER_STRICT: 0, NOT_ENFORCED: 1, ENFORCED: 2, ACCEPTED: 2, UNTESTED: 3}
    rows[1:] = sorted(rows[1:], key=lambda r: order[r[0]])
    counts = {s: sum(1 for r in rows[1:] if r[0] == s) for s in (ENFORCED, NOT_ENFORCED, UNTESTED)}
    colour = {ENFORCED: "#d4edda", ACCEPTED: "#d4edda", NOT_ENFORCED: "#f8d7da",
              OVER_STRICT: "#f8d7da", UNTESTED: "#eeeeee"}
    body = "".join(
        f'<tr style="background:{colour[s]}"><td>{escape(s)}</td><td><code>{escape(k)}</code></td>'
        f"<td>{escape(d)}</td><td>{n}</td><td>{f}</td><td>{escape(note)}</td></tr>"
        for s, k, d, n, f, note in rows)
    return redact(
        '<div id="kt-constraint-matrix"><h2>Constraint matrix</h2>'
        f"<p>{counts[ENFORCED]} enforced, {counts[NOT_ENFORCED]} not enforced, "
        f"{counts[UNTESTED]} untested; valid resources: {valid.cases - valid.failed} of "
        f"{valid.cases} accepted as sent.</p>"
        '<table style="border-collapse:collapse" border="1" cellpadding="3">'
        "<tr><th>status</th><th>constraint</th><th>description</th><th>cases</th>"
        f"<th>failed</th><th>note</th></tr>{body}</table></div>")


@dataclass
class Outcome:
    """A judged case with everything the report shows about it."""

    case: Case
    verdict: Judgement
    exchange: Exchange
    oracle_keys: list[str]
    read_back: Exchange | None = None


def case_html(outcome: Outcome, title: str = "") -> str:
    """One case for report.html: the constraint, the verdict, the oracle's view of the body, what
    was sent and received, and a curl line that repeats the request (credentials redacted)."""
    case, exchange = outcome.case, outcome.exchange
    body = case.text if case.text is not None else json.dumps(case.body, indent=2)
    received = exchange.response_body or (exchange.error or "")
    if isinstance(exchange.json, dict):
        received = json.dumps(exchange.json, indent=2)
    oracle = ", ".join(outcome.oracle_keys) if outcome.oracle_keys else "valid"
    status = exchange.status if exchange.status is not None else "no answer"
    parts = [
        f"<p><b>{escape(title or case.id)}</b>: <b>{escape(outcome.verdict.verdict)}</b> — "
        f"{escape(outcome.verdict.reason)}</p>",
        f"<p>expected: {escape(case.expected)}; constraint: "
        f"<code>{escape(case.constraint or '-')}</code> ({escape(case.description)}); "
        f"oracle: {escape(oracle)}; status: {escape(str(status))}</p>",
        f"<details><summary>sent ({escape(case.content_type)})</summary><pre>{escape(body)}</pre>"
        "</details>",
        f"<details><summary>received</summary><pre>{escape(received)}</pre></details>",
    ]
    if outcome.read_back is not None and outcome.read_back.response_body:
        parts.append("<details><summary>read back</summary>"
                     f"<pre>{escape(outcome.read_back.response_body)}</pre></details>")
    parts.append(f"<details><summary>curl</summary><pre>{escape(exchange.curl())}</pre></details>")
    return redact('<div class="kt-case" style="border-top:1px solid #ccc;padding:4px">'
                  + "".join(parts) + "</div>")
