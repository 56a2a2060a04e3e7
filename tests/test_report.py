"""The report layer on its own: the run's verdict from summary fields (including fields a newer
harness adds, and their absence), the baseline comparison, the offending-element marks, the
plain-language sentences, and junit.xml's counts. No server needed."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kt2conformance._vocabulary import ConstraintKey, Kind
from kt2conformance.report import (
    BaselineError,
    Finding,
    FindingCounts,
    Outcome,
    case_detail,
    compare,
    finding_of,
    load_baseline,
    run_verdict,
    statuses,
    write_junit,
)
from kt2conformance.report._explain import (
    Issue,
    constraint_text,
    diff_lines,
    differing_paths,
    json_lines,
    parse_path,
    sentence,
    under,
)


def _rec(expected: str, verdict: str, status: int | None, key: str | None = "Task.note/max") -> dict:
    return {"id": "x", "expected": expected, "constraint": key if expected == "reject" else None,
            "status": status, "verdict": verdict, "reason": "r"}


def _summary(constraints: dict, cases: list[dict], **extra: object) -> dict:
    totals = {"cases": len(cases), "passed": sum(c["verdict"] == "pass" for c in cases),
              "failed": sum(c["verdict"] == "fail" for c in cases),
              "errors": sum(c["verdict"] == "error" for c in cases)}
    return {"totals": totals, "constraints": constraints, "cases": cases, **extra}


@pytest.mark.parametrize(("record", "finding"), [
    (_rec("reject", "fail", 201), Finding.NOT_ENFORCED),
    (_rec("reject", "fail", 500), Finding.SERVER_DEFECT),
    (_rec("reject", "fail", 400), Finding.WRONG_REFUSAL),
    (_rec("accept", "fail", 422), Finding.OVER_STRICT),
    (_rec("accept", "fail", 503), Finding.OVER_STRICT),
    (_rec("accept", "fail", 201), Finding.DATA_LOSS),
    (_rec("accept", "error", None), Finding.ERROR),
    (_rec("reject", "pass", 422), None),
])
def test_finding_of_a_record(record: dict, finding: Finding | None) -> None:
    assert finding_of(record) is finding


def test_verdicts() -> None:
    ok = [_rec("accept", "pass", 201), _rec("reject", "pass", 422)]
    enforced = {"Task.note/max": {"cases": 1, "failed": 0, "enforced": True}}
    conforms = run_verdict(_summary(enforced, ok), FindingCounts.of(ok))
    assert conforms.outcome is Outcome.CONFORMS
    assert conforms.counts == "2 cases: 2 passed, 0 failed, 0 errors"

    bad = [_rec("accept", "fail", 422), _rec("reject", "fail", 201), _rec("accept", "fail", 201)]
    loose = {"Task.note/max": {"cases": 1, "failed": 1, "enforced": False}}
    v = run_verdict(_summary(loose, bad), FindingCounts.of(bad))
    assert v.outcome is Outcome.DOES_NOT_CONFORM
    assert v.why == "1 constraint not enforced, 1 over-strict, 1 data-loss finding"
    # a newer summary's own data-loss count wins over the one derived from the cases
    v = run_verdict(_summary(loose, bad) | {"totals": {"cases": 3, "data_loss": 4}},
                    FindingCounts.of(bad))
    assert v.data_loss == 4

    # an incomplete run never looks green, whether the summary or the harness says so
    v = run_verdict(_summary(enforced, ok, complete=False, stopped="SIGTERM"), FindingCounts.of(ok))
    assert (v.outcome, v.why) == (Outcome.INCOMPLETE, "SIGTERM")
    v = run_verdict(_summary(enforced, ok, complete=False), FindingCounts.of(ok))
    assert v.outcome is Outcome.INCOMPLETE and v.why == "the run stopped early"
    v = run_verdict(_summary(loose, bad), FindingCounts.of(bad), stopped="interrupted")
    assert v.outcome is Outcome.INCOMPLETE and v.why.startswith("interrupted; found so far: 1 constraint")
    err = [_rec("accept", "error", None)]
    v = run_verdict(_summary({}, err), FindingCounts.of(err))
    assert (v.outcome, v.why) == (Outcome.INCOMPLETE, "1 case got no usable answer")
    assert run_verdict(_summary({}, []), FindingCounts()).outcome is Outcome.INCOMPLETE


def test_baseline_comparison() -> None:
    before = _summary({"A/min": {"enforced": True}, "B/max": {"enforced": False},
                       "C/type": {"enforced": True}, "D/gone": {"enforced": True}},
                      [_rec("accept", "pass", 201)])
    now_cases = [_rec("accept", "fail", 422)]
    now = statuses({"A/min": {"enforced": False}, "B/max": {"enforced": True},
                    "C/type": {"enforced": None}, "E/new": {"enforced": True}},
                   FindingCounts.of(now_cases), 1)
    result = compare(now, before, "old/summary.json")
    assert [c.key for c in result.regressed] == ["A/min", "valid resources"]
    assert [c.key for c in result.fixed] == ["B/max"]
    assert [c.key for c in result.new] == ["E/new"]
    assert [c.key for c in result.untested] == ["C/type"]
    assert [c.key for c in result.gone] == ["D/gone"]
    assert result.lines()[0] == "regressed (2): A/min, valid resources"
    same = compare(statuses(before["constraints"], FindingCounts.of(before["cases"]), 1), before, "x")
    assert same.unchanged and same.lines() == ["no constraint changed status"]


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"), ("{not json", "not JSON"), ('{"totals": {}}', "not a kt2conformance summary.json"),
    ("[1, 2]", "not a kt2conformance summary.json")])
def test_unusable_baselines_are_one_line_errors(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "summary.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BaselineError, match=message) as caught:
        load_baseline(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_paths_and_marks() -> None:
    assert parse_path("Task.extension[0].valueReference") == ("extension", 0, "valueReference")
    assert parse_path("Task._authoredOn.unknownElement") == ("_authoredOn", "unknownElement")
    assert parse_path("Task") == ()
    assert under(("identifier", 1, "use"), ("identifier", "use"))  # index left out: any
    assert under(("identifier", 1, "use"), ("identifier", 1))
    assert not under(("identifier", 0, "use"), ("identifier", 1))
    assert not under(("note",), ())  # the whole resource is never marked
    task = {"resourceType": "Task", "note": [{"text": "a"}], "owner": {"reference": "x"}}
    lines = json_lines(task, [("note",)])
    assert "\n".join(t for t, _ in lines) == json.dumps(task, indent=2)
    assert [t.strip() for t, hit in lines if hit] == ['"note": [', "{", '"text": "a"', "}", "],"]
    diff = diff_lines({"resourceType": "Task", "owner": {"reference": "x"}}, task)
    assert diff is not None and any(op == "+" and '+   "note": [' in t.splitlines() for op, t in diff)
    assert [op for op, _ in diff] == [" ", "+", " "]  # runs of one op are joined
    assert diff_lines({"a": 1}, {"b": 2, "c": 3, "d": 4}) is None  # nothing in common: no diff
    assert differing_paths({"id": "1", "a": [1, 2], "b": 1}, {"id": "2", "a": [1, 3]}) \
        in ([("a", 1), ("b",)], [("b",), ("a", 1)])


def test_sentences() -> None:
    note = [Issue("Task.note/max", "Task.note", "note is not allowed (max 0)")]
    assert sentence(Finding.NOT_ENFORCED, profile="KT2Task", constraint="Task.note/max", kind=Kind.MAX,
                    element="Task.note", status=201, issues=note, said=None, lost=[], reason="",
                    cardinality=(0, "0")) == \
        "The server stored a Task with `note`; KT2Task forbids `Task.note` (max 0)."
    owner = [Issue("Task.owner/min", "Task.owner", "owner is required (min 1)")]
    assert sentence(Finding.NOT_ENFORCED, profile="KT2Task", constraint="Task.owner/min",
                    kind=Kind.MIN, element="Task.owner", status=201, issues=owner, said=None,
                    lost=[], reason="", cardinality=(1, "1")) == \
        "The server stored a Task without `owner`; KT2Task requires `Task.owner` (min 1)."
    assert sentence(Finding.OVER_STRICT, profile="KT2Task", constraint=None, kind=None,
                    element=None, status=422, issues=[], said="bad owner", lost=[], reason="") == \
        "The server refused a valid KT2Task with HTTP 422: “bad owner”."
    assert "`note[0].text`" in sentence(Finding.DATA_LOSS, profile="KT2Task", constraint=None,
                                        kind=None, element=None, status=201, issues=[],
                                        said=None, lost=[("note", 0, "text")], reason="")


def test_junit_counts_are_the_cases(tmp_path: Path) -> None:
    records = [_rec("accept", "pass", 201), _rec("reject", "fail", 201),
               _rec("accept", "error", None) | {"reason": "no answer: \x00 timeout <&>"}]
    summary = _summary({"Task.note/max": {"enforced": False}}, records)
    verdict = run_verdict(summary, FindingCounts.of(records))
    write_junit(tmp_path / "junit.xml", verdict, {"target": "http://t", "seed": 0}, records, 1.5)
    root = ET.parse(tmp_path / "junit.xml").getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "1")
    cases = root.findall(".//testcase")
    assert [c.get("classname") for c in cases] == ["valid resources", "Task.note/max", "valid resources"]
    assert cases[2].find("error").get("message") == "no answer: \ufffd timeout <&>"
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["verdict"] == "DOES NOT CONFORM" and props["counts"] == verdict.counts


def test_case_detail_marks_what_the_finding_is_about() -> None:
    sent = {"resourceType": "Task", "status": "ready", "note": [{"text": "a"}]}
    common = {"text": None, "content_type": "application/fhir+json", "curl": "curl -sS",
              "curl_body": True, "profile": "KT2Task", "kind": None, "element": None,
              "cardinality": None, "said": None}
    # data loss: the elements read back differently are marked, in the read-back as well
    lost = case_detail(case_id="valid#1", constraint=None, expected="accept", verdict="fail",
                       reason="stored differently", status=201, body=sent, received="{}",
                       read_back={**sent, "note": [{"text": "b"}]}, issues=[], pointed=[],
                       **common)
    assert lost["finding"] == "data loss" and lost["marks"] == [["note", 0, "text"]]
    assert "`note[0].text`" in lost["sentence"]
    # over-strict: the elements the server's refusal pointed at are marked
    refused = case_detail(case_id="valid#2", constraint=None, expected="accept", verdict="fail",
                          reason="refused", status=422, body=sent, received="{}", read_back=None,
                          issues=[], pointed=["Task.status"], **common)
    assert refused["finding"] == "over-strict" and refused["marks"] == [["status"]]
    # not enforced: the oracle's issues for the case's own key, not the others
    issues = [Issue("Task.status/binding", "Task.status", "not in the value set"),
              Issue("Task.note/max", "Task.note", "note is not allowed (max 0)")]
    loose = case_detail(case_id="Task.note/max#1", constraint="Task.note/max", expected="reject",
                        verdict="fail", reason="accepted", status=201, body=sent,
                        received=json.dumps(sent), read_back=None, issues=issues, pointed=[],
                        **common)
    assert loose["marks"] == [["note"]] and loose["received"] == "(the Task as sent, echoed back)"


def test_section_reads_what_a_newer_summary_adds() -> None:
    """Fields other issues add to summary.json (complete/stopped, totals.data_loss, data_loss per
    element, coverage) show in the section when present; an older summary renders without them."""
    from collections import Counter

    from kt2conformance.report import RunFacts, render_section

    records = [_rec("accept", "fail", 201), _rec("reject", "pass", 422)]
    constraints = {"Task.note/max": {"cases": 1, "failed": 0, "enforced": True}}
    newer = {**_summary(constraints, records), "complete": False, "stopped": "SIGTERM",
             "profile": {"url": "http://x/StructureDefinition/KT2Task"},
             "profiles": [{"url": "http://x/StructureDefinition/KT2Task", "version": "0.8.1",
                           "name": "KT2Task"},
                          {"url": "http://x/StructureDefinition/KT2Patient", "version": "0.8.0",
                           "name": "KT2Patient"}],
             "not_judged": {"KT2Practitioner": "needs a package no registry here serves"},
             "data_loss": {"Task.note": {"cases": 1, "kinds": {"changed": 1}}},
             "coverage": {"valid": {"classes": 4, "sent": 3,
                                    "by_element": {"Task.note": {"empty-string": {
                                        "sent": 2, "answered": 2, "passed": 1}}},
                                    "not_sent": {"Task.note": ["max-length"]}},
                          "invalid": {"classes": 2, "sent": 2, "by_element": {}, "not_sent": {}}}}
    newer["totals"]["data_loss"] = 1

    def facts(summary: dict) -> RunFacts:
        head = {k: v for k, v in summary.items() if k != "cases"}
        return RunFacts(head=head, constraints=summary["constraints"],
                        descriptions={"Task.note/max": "Task.note is not allowed"},
                        elements={},
                        skipped={}, refused_at=Counter())

    verdict = run_verdict(newer, FindingCounts.of(records))
    html = render_section(verdict, facts(newer), {}, records)
    assert 'id="kt-verdict">INCOMPLETE<' in html and "SIGTERM; found so far" in html
    assert "1 data-loss finding" in html
    assert "Task.note (stored differently)" in html and "(changed)" in html
    assert "boundary classes tried: valid 3 of 4, invalid 2 of 2" in html
    assert "KT2Patient 0.8.0" in html
    assert "KT2Practitioner: needs a package no registry here serves" in html
    assert "empty-string (2 sent, 1 passed); not tried: max-length" in html

    older = _summary(constraints, records)
    html = render_section(run_verdict(older, FindingCounts.of(records)), facts(older), {}, records)
    assert 'id="kt-verdict">DOES NOT CONFORM<' in html
    assert "kt-coverage" not in html and "stored differently)" not in html
    assert "id=\"kt-not-judged\"" not in html


@pytest.mark.parametrize(("kind", "issue", "expected"), [
    ("unknown", Issue("Task/unknown", "Task.assignee", "unknown element 'assignee'"),
     "The server stored a Task with `assignee`, an element KT2Task does not define (unknown element 'assignee')."),
    ("binding", Issue("Task.status/binding", "Task.status", "value is not in the required value set V"),
     "The server stored a Task whose `status` breaks KT2Task's `Task.status/binding`: value is not in the required value set V."),
    ("constraint", Issue("Task/constraint:inv-1", "Task", "lastModified >= authoredOn (inv-1)"),
     "The server stored a Task that breaks the invariant `Task/constraint:inv-1`: lastModified >= authoredOn (inv-1)."),
])
def test_sentences_by_kind(kind: str, issue: Issue, expected: str) -> None:
    assert sentence(Finding.NOT_ENFORCED, profile="KT2Task", constraint=issue.key, kind=Kind(kind),
                    element=issue.path, status=201, issues=[issue], said=None, lost=[],
                    reason="") == expected


def test_the_profiles_own_text_is_found_by_the_keys_kind_and_detail() -> None:
    """constraint_text reads the invariant's key from the typed key (its detail), not from text."""
    element = {"id": "Task", "path": "Task", "min": 0, "max": "*", "short": "A task",
               "constraint": [{"key": "inv-1", "severity": "error", "human": "last after first",
                               "expression": "a >= b"},
                              {"key": "inv-2", "severity": "error", "human": "other", "expression": "c"}]}
    assert constraint_text(ConstraintKey.parse("Task/constraint:inv-1"), element) == \
        ("inv-1 (error): last after first", "a >= b")
    assert constraint_text(ConstraintKey.parse("Task/constraint:inv-9"), element) is None
    status = {"id": "Task.status", "path": "Task.status", "min": 1, "max": "1", "short": "s",
              "binding": {"strength": "required", "valueSet": "http://vs", "description": "d"}}
    assert constraint_text(ConstraintKey.parse("Task.status/binding"), status) == \
        ("binding (required): http://vs — d", None)
    assert constraint_text(ConstraintKey.parse("Task.status/min"), status) == ("Task.status 1..1 — s", None)
    assert constraint_text(ConstraintKey.parse("server/content-type"), None) is None


def test_a_request_rule_names_itself() -> None:
    assert sentence(Finding.NOT_ENFORCED, profile="KT2Task", constraint="server/content-type",
                    kind=Kind.SERVER, element="server", status=201, issues=[], said=None, lost=[],
                    reason="", rule="a resource must be sent as application/fhir+json (415)") == (
        "The server accepted (HTTP 201) a request that breaks `server/content-type`: "
        "a resource must be sent as application/fhir+json (415).")


def test_hostile_text_cannot_break_the_page(tmp_path: Path) -> None:
    """Markup, a lone surrogate and a huge answer from a hostile server: escaped, writable as
    UTF-8, clipped."""
    from collections import Counter

    from kt2conformance.report import DetailLog, RunFacts, render_section

    body = {"resourceType": "Task", "note": [{"text": "</pre><script>alert(1)</script>\ud800"}]}
    log = DetailLog(tmp_path, lambda text: text)
    log.write(case_detail(case_id="Task.note/max#1", constraint="Task.note/max", expected="reject",
                          verdict="fail", reason="accepted", status=201, body=body, text=None,
                          content_type="application/fhir+json", received="<html>" * 100_000,
                          read_back=None, curl="curl -sS", curl_body=True,
                          issues=[Issue("Task.note/max", "Task.note", "not allowed")],
                          profile="KT2Task", kind=Kind.MAX, element="Task.note",
                          cardinality=(0, "0"), said=None, pointed=[]))
    records = [_rec("reject", "fail", 201)]
    summary = _summary({"Task.note/max": {"cases": 1, "failed": 1, "enforced": False}}, records)
    facts = RunFacts(head={}, constraints=summary["constraints"], descriptions={},
                     elements={}, skipped={}, refused_at=Counter())
    html = render_section(run_verdict(summary, FindingCounts.of(records)), facts, log.by_key(),
                          records)
    log.close()
    (tmp_path / "page.html").write_text(html, encoding="utf-8")  # no UnicodeEncodeError
    assert "<script>alert(1)" not in html and "&lt;/pre&gt;&lt;script&gt;" in html
    assert "\\ud800" in html
    assert len(html) < 200_000 and "more characters not shown" in html
