"""The kt2conformance section of report.html, rendered with Jinja2 from the run's summary and
the cases kept in full (`DetailLog`). One self-contained piece of HTML: its CSS and script are
inlined, nothing is fetched, so the report works offline and as a CI artifact."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from kt2conformance._vocabulary import ConstraintKey, Expectation
from kt2conformance.report._baseline import Comparison
from kt2conformance.report._explain import constraint_text, json_lines, segments
from kt2conformance.report._overview import (
    DATA_LOSS,
    ERROR,
    LABEL,
    NOT_ENFORCED,
    ORDER,
    OVER_STRICT,
    Group,
    anchor,
    build_groups,
    coverage_line,
)
from kt2conformance.report._verdict import Finding, RunVerdict, finding_of

TEMPLATES = Path(__file__).parent / "templates"
MAX_OTHERS = 100  # failing cases per constraint listed by one line each
# The status a finding gives the row of its constraint (and the colour of its case).
_STATUS = {Finding.NOT_ENFORCED: NOT_ENFORCED, Finding.SERVER_DEFECT: NOT_ENFORCED,
           Finding.WRONG_REFUSAL: NOT_ENFORCED, Finding.OVER_STRICT: OVER_STRICT,
           Finding.DATA_LOSS: DATA_LOSS, Finding.ERROR: ERROR}


def _code(text: str) -> Markup:
    """A sentence with its `quoted` names set as code (the rest escaped)."""
    parts = str(text).split("`")
    return Markup("").join(Markup("<code>%s</code>") % p if i % 2 else escape(p)
                           for i, p in enumerate(parts))


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["code"] = _code
    return env


@dataclass
class CaseView:
    id: str
    label: str
    status_class: str
    sentence: str
    content_type: str
    lines: list[tuple[str, bool]] | None
    text: str | None
    marked: bool
    answer: str
    received: str
    read_back: list[tuple[str, bool]] | None
    read_back_marked: bool
    curl: str
    curl_body: bool  # the request had a body: the curl line takes it from the Task shown
    minimal: bool
    diff: list[tuple[str, str]] | None
    issues: list[dict[str, str]]


@dataclass
class FailureBlock:
    key: str
    anchor: str
    status: str
    sentence: str
    description: str
    profile_text: str | None
    expression: str | None
    cases: list[CaseView] = field(default_factory=list)
    others: list[tuple[str, Any, str]] = field(default_factory=list)
    more: int = 0


@dataclass
class RunFacts:
    """What the section shows besides the cases: the summary's head and what the harness knows
    about the profile's constraints."""

    head: Mapping[str, Any]  # summary.json without its cases (head, totals, data_loss, coverage…)
    constraints: Mapping[str, Mapping[str, Any]]  # summary.json's constraints
    descriptions: Mapping[str, str]
    elements: Mapping[str, Mapping[str, Any]]  # element id -> ElementDefinition
    skipped: Mapping[str, str]
    refused_at: Counter[str]
    strict: bool = False
    profiles: Mapping[str, str] = field(default_factory=dict)  # resource type -> profile name


def _case_view(d: Mapping[str, Any]) -> CaseView:
    finding = Finding(d["finding"]) if d.get("finding") else None
    status = _STATUS[finding] if finding else ("accepted" if d.get("expected") == Expectation.ACCEPT
                                               else "enforced")
    marks = [tuple(m) for m in d.get("marks") or []]
    lost = [tuple(m) for m in d.get("lost") or []]
    body_lines = segments(json_lines(d["body"], marks)) if d.get("text") is None else None
    answer = f"HTTP {d['status']}" if d.get("status") is not None else "no answer"
    return CaseView(
        id=d["id"], label=finding.value if finding else d.get("verdict", ""),
        status_class=status, sentence=d.get("sentence") or "",
        content_type=d.get("content_type") or "", lines=body_lines, text=d.get("text"),
        marked=any(h for _, h in body_lines or []), answer=answer,
        received=d.get("received") or "",
        read_back=segments(json_lines(d["read_back"], lost))
        if d.get("read_back") is not None else None,
        read_back_marked=bool(lost), curl=d.get("curl") or "",
        curl_body=bool(d.get("curl_body")), minimal=bool(d.get("minimal")),
        diff=[(op, text) for op, text in d["diff"]] if d.get("diff") else None,
        issues=[{"key": k, "path": p, "message": m} for k, p, m in d.get("issues") or []])


def _head(facts: RunFacts) -> dict[str, Any]:
    head = facts.head
    profile = head.get("profile") or {}
    url = profile.get("url") or ""
    duration = head.get("duration_s")
    profiles = [p for p in head.get("profiles") or [] if isinstance(p, Mapping)]
    others = ", ".join(f"{p.get('name') or str(p.get('url', '')).rsplit('/', 1)[-1]} "
                       f"{p.get('version') or ''}".strip() for p in profiles[1:])
    not_judged = head.get("not_judged") if isinstance(head.get("not_judged"), Mapping) else {}
    return {"target": head.get("target"), "profile_name": url.rsplit("/", 1)[-1] or url,
            "other_profiles": others,
            "not_judged": [f"{name}: {why}" for name, why in (not_judged or {}).items()],
            "profile_version": profile.get("version"), "package": profile.get("package"),
            "seed": head.get("seed"), "started": head.get("started"),
            "duration": f"{duration:.1f} s" if isinstance(duration, (int, float)) else "",
            "version": (head.get("tool") or {}).get("version", ""), "strict": facts.strict}


def render_section(verdict: RunVerdict, facts: RunFacts,
                   details: Mapping[str | None, list[dict[str, Any]]],
                   records: Iterable[Mapping[str, Any]],
                   comparison: Comparison | None = None) -> str:
    """The section's HTML. `details` are the cases kept in full by constraint; `records` every
    case record (summary.json's), streamed once for the valid resources' counts and the
    one-line list of the other failing cases."""
    detailed = {d["id"] for ds in details.values() for d in ds}
    others: dict[str | None, list[tuple[str, Any, str]]] = {}
    more: Counter[str | None] = Counter()
    valid_cases = 0
    valid_findings: Counter[str] = Counter()
    for record in records:
        key = record.get("constraint") if record.get("expected") != Expectation.ACCEPT else None
        if key is None:
            valid_cases += 1
        finding = finding_of(record)
        if finding is None:
            continue
        if key is None:
            valid_findings[_STATUS[finding]] += 1
        if record.get("id") in detailed:
            continue
        listed = others.setdefault(key, [])
        if len(listed) < MAX_OTHERS:
            listed.append((str(record.get("id")), record.get("status"), str(record.get("reason"))))
        else:
            more[key] += 1
    failing_keys = {key for key, ds in details.items()
                    if any(d.get("finding") for d in ds)} | set(others)
    groups = build_groups(facts.constraints, facts.descriptions, facts.skipped, valid_cases,
                          valid_findings, facts.refused_at, failing_keys,
                          stopped=verdict.stopped is not None,
                          lost=facts.head.get("data_loss"), coverage=facts.head.get("coverage"),
                          profiles=facts.profiles)
    failures = _failure_blocks(groups, details, others, more, facts)
    samples = {}
    for key, ds in details.items():
        first = ds[0]
        if key is not None and not first.get("finding") and first.get("text") is None:
            samples[key] = {"id": first["id"], "curl": first.get("curl") or "",
                            "curl_body": bool(first.get("curl_body")),
                            "answer": f"HTTP {first.get('status')}",
                            "lines": segments(json_lines(first.get("body"), []))}
    rows = Counter(r.status for g in groups for r in g.rows)
    status_totals = [(s, LABEL[s], rows[s]) for s in ORDER if rows[s]]
    html = _environment().get_template("section.html.j2").render(
        verdict=verdict, head=_head(facts), comparison=comparison, groups=groups,
        status_totals=status_totals, labels=LABEL, failures=failures, samples=samples,
        open_statuses={NOT_ENFORCED, OVER_STRICT, DATA_LOSS, ERROR},
        coverage=coverage_line(facts.head.get("coverage")),
        css=(TEMPLATES / "report.css").read_text(encoding="utf-8"),
        js=(TEMPLATES / "report.js").read_text(encoding="utf-8"))
    # what a hostile server or a fault sent may hold lone surrogates: shown escaped, so the
    # page can be written as UTF-8
    return html.encode("utf-8", "backslashreplace").decode("utf-8")


def _failure_blocks(groups: list[Group], details: Mapping[str | None, list[dict[str, Any]]],
                    others: Mapping[str | None, list[tuple[str, Any, str]]],
                    more: Counter[str | None], facts: RunFacts) -> list[FailureBlock]:
    """One block per constraint with findings, in the overview's order (the valid resources
    first); within a block the minimal example first, then the cases in run order."""
    order: list[str | None] = [None]
    for group in groups:
        order += [r.key for r in group.rows if r.key in facts.constraints and r.key not in order]
    blocks = []
    for key in order:
        failing = [d for d in details.get(key, []) if d.get("finding")]
        if not failing and key not in others:
            continue
        failing.sort(key=lambda d: not d.get("minimal"))
        views = [_case_view(d) for d in failing]
        worst = min((v.status_class for v in views), key=ORDER.index, default=NOT_ENFORCED
                    if key else OVER_STRICT)
        parsed = ConstraintKey.parse(key) if key else None  # summary.json's key, read once
        text = constraint_text(parsed, facts.elements.get(parsed.element)) if parsed else None
        blocks.append(FailureBlock(
            key=key or "valid resources", anchor=anchor(key), status=worst,
            sentence=views[0].sentence if views else "",
            description=facts.descriptions.get(key, "") if key else
            "valid Tasks and the official examples must be accepted and stored as sent",
            profile_text=text[0] if text else None, expression=text[1] if text else None,
            cases=views, others=others.get(key, []), more=more[key]))
    return blocks

