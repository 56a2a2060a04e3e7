"""The run's side of the reports: turns judged cases into what report.html shows in full,
and at the end writes junit.xml, renders report.html's own section and works out the verdict
the console prints, all from the same records (CaseLog) and the same summary, so that the
counts agree everywhere.

Kept apart from the pytest hooks: the plugin calls `record`, `minimal` and `finish`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from kt2conformance._vocabulary import Expectation, Verdict
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.report import (
    Comparison,
    DetailLog,
    FindingCounts,
    Issue,
    RunFacts,
    RunVerdict,
    case_detail,
    compare,
    profile_texts,
    render_section,
    run_verdict,
    statuses,
    write_junit,
)
from kt2conformance.run._report import CaseLog, Outcome, Tallies
from kt2conformance.spec._constraints import Constraint
from kt2conformance.spec._profile import Profile
from kt2conformance.target._client import outcome_elements, outcome_errors
from kt2conformance.target._redact import redact


class Reporting:
    """Collects, during the run, the cases report.html shows in full; writes the reports at
    the end."""

    def __init__(self, profiles: list[Profile], oracles: dict[str, Oracle],
                 constraints: dict[str, Constraint], reports: Path,
                 baseline: tuple[str, dict[str, Any]] | None = None) -> None:
        self.profile = profiles[0]
        self.profiles = {p.type: p for p in profiles}
        self.oracles = oracles
        self.constraints = constraints
        self.details = DetailLog(reports, redact)
        self.summary_path = reports / "summary.json"
        self.baseline = baseline
        # element ids start with their resource type, so the profiles' texts share one table
        self.elements = {k: v for p in profiles for k, v in profile_texts(p.elements).items()}
        self.refused_at: Counter[str] = Counter()
        # resource type -> the smallest valid resource, set by the run when a minimal failing
        # example of that type exists (what report.html shows it against)
        self.minimal_valid: dict[str, Any] = {}
        self.section = ""
        self.verdict: RunVerdict | None = None
        self.comparison: Comparison | None = None

    def profile_name(self, resource_type: str) -> str:
        return self.profiles.get(resource_type, self.profile).name

    def record(self, outcome: Outcome) -> None:
        """Note a judged case: where refusals of valid Tasks point, and its details when
        report.html shows it in full."""
        case, passed = outcome.case, outcome.verdict.verdict is Verdict.PASS
        if case.expected is Expectation.ACCEPT and not passed:
            self.refused_at.update(outcome_elements(outcome.exchange.json))
        key = None if case.expected is Expectation.ACCEPT else case.constraint
        if self.details.wants(key, passed):
            self.details.write(self._detail(outcome))

    def minimal(self, outcome: Outcome) -> None:
        """Keep the minimal failing example Hypothesis shrank a failure to."""
        self.details.write(self._detail(outcome, minimal=True))

    def _detail(self, outcome: Outcome, minimal: bool = False) -> dict[str, Any]:
        case, exchange, verdict = outcome.case, outcome.exchange, outcome.verdict
        key = None if case.expected is Expectation.ACCEPT else case.constraint
        constraint = self.constraints.get(key) if key else None
        issues: list[Issue] = []
        if key and case.text is None and verdict.verdict is not Verdict.PASS:
            oracle = self.oracles.get(case.resource_type) or self.oracles[self.profile.type]
            issues = [Issue(i.key, i.path, i.message) for i in oracle.errors(case.body)]
        element = self.elements.get(constraint.element) if constraint else None
        cardinality = (int(element.get("min", 0)), str(element.get("max", "*"))) \
            if element else None
        received = exchange.response_body or (exchange.error or "")
        if isinstance(exchange.json, (dict, list)):
            received = json.dumps(exchange.json, indent=2, ensure_ascii=False)
        read_back = outcome.read_back.json if outcome.read_back is not None \
            and isinstance(outcome.read_back.json, dict) else None
        said = outcome_errors(exchange.json)
        return case_detail(
            case_id=case.id, constraint=key, expected=case.expected, verdict=verdict.verdict,
            reason=verdict.reason, status=exchange.status, body=case.body, text=case.text,
            content_type=case.content_type, received=received, read_back=read_back,
            curl=exchange.curl(body=False), curl_body=bool(exchange.request_body),
            issues=issues, profile=self.profile_name(case.resource_type),
            kind=constraint.kind if constraint else None,
            element=constraint.element if constraint else None, cardinality=cardinality,
            said=said[0] if said else None, pointed=outcome_elements(exchange.json),
            rule=constraint.description if constraint else None, resource=case.resource_type,
            minimal=minimal,
            minimal_valid=self.minimal_valid.get(case.resource_type) if minimal else None)

    def finish(self, head: dict[str, Any], tallies: Tallies, log: CaseLog,
               skipped: dict[str, str], junit: Path | None, strict: bool,
               stopped: str | None) -> RunVerdict:
        """Work out the verdict, write junit.xml (unless pytest's own was asked for) and render
        report.html's section. The summary must already be written (from the same log)."""
        summary = {**head, "totals": tallies.totals, "constraints": tallies.constraints(),
                   **_written(self.summary_path)}
        findings = FindingCounts.of(log.records())
        self.verdict = verdict = run_verdict(summary, findings, stopped)
        if self.baseline is not None:
            name, data = self.baseline
            self.comparison = compare(statuses(summary["constraints"], findings,
                                               tallies.valid.cases), data, name)
        if junit is not None:
            profile = head.get("profile") or {}
            write_junit(junit, verdict, {
                "target": head.get("target"), "profile": profile.get("url"),
                "profile.version": profile.get("version"), "package": profile.get("package"),
                "seed": head.get("seed"), "started": head.get("started")},
                log.records(), float(head.get("duration_s") or 0), stopped)
        facts = RunFacts(
            head=summary, constraints=summary["constraints"],
            descriptions={k: c.description for k, c in self.constraints.items()},
            elements=self.elements, skipped=skipped, refused_at=self.refused_at, strict=strict,
            profiles={t: p.name for t, p in self.profiles.items()})
        self.section = redact(render_section(verdict, facts, self.details.by_key(),
                                             log.records(), self.comparison))
        self.details.close()
        return verdict


def _written(path: Path) -> dict[str, Any]:
    """summary.json as written, without its case list: the reports read the run from the
    contract's file, so fields the engine adds (complete, stopped, data_loss, coverage…) show
    without this module knowing them ({} when the file cannot be read)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    data.pop("cases", None)
    return data
