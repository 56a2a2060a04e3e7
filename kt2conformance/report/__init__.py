"""Reports: the run's verdict and the three files a run writes besides the case records —
report.html's own section (Jinja2), junit.xml (one testcase per case) and the comparison with
a baseline run. Built from summary.json's fields, so the counts agree everywhere."""

from kt2conformance.report._baseline import (
    BaselineError,
    Comparison,
    compare,
    load_baseline,
    statuses,
)
from kt2conformance.report._details import DetailLog, case_detail
from kt2conformance.report._explain import Issue, profile_texts
from kt2conformance.report._html import RunFacts, render_section
from kt2conformance.report._junit import write_junit
from kt2conformance.report._overview import anchor
from kt2conformance.report._verdict import (
    Finding,
    FindingCounts,
    Outcome,
    RunVerdict,
    finding_of,
    run_verdict,
)

__all__ = [
    "BaselineError", "Comparison", "DetailLog", "Finding", "FindingCounts", "Issue", "Outcome",
    "RunFacts", "RunVerdict", "anchor", "case_detail", "compare", "finding_of", "load_baseline",
    "profile_texts", "render_section", "run_verdict", "statuses", "write_junit",
]
