"""report.html as a tester sees it: rendered by headless Chromium (the system's, driven by
Playwright) and checked in the DOM. Two real runs against the embedded reference server, the
second through a proxy that lets a forbidden `note` through, compared with the first as its
baseline: the banner, the counts (equal in the console line, report.html, junit.xml and
summary.json), the failing case with its offending element highlighted, the filters and the
search box, the baseline comparison, and pytest-html's part below ours."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faulty_targets import faulty_target

from kt2conformance.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.server,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (.ci/setup installs it)")]
# a few constraints, so the runs stay short (owner/targetProfile is one HAPI lets through:
# docs/hapi-divergences.md)
SUBSET = "note or valid_tasks or example or (owner and not targetProfile) or dom-6"


@pytest.fixture(scope="module")
def runs(reference_server: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A conforming baseline run, then a failing run compared with it (console output kept)."""
    base = tmp_path_factory.mktemp("baseline")
    failing = tmp_path_factory.mktemp("failing")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code0 = main(["run", "--target", reference_server.base_url, "--examples", "2", "--no-cover",
                      "--reports", str(base), "--", "-k", SUBSET])
    with faulty_target(reference_server.base_url, "lets-note-through") as target:
        console = io.StringIO()
        with contextlib.redirect_stdout(console):
            code1 = main(["run", "--target", target, "--examples", "2", "--no-cover", "--reports", str(failing),
                          "--baseline", str(base / "summary.json"), "--", "-k", SUBSET])
    assert (code0, code1) == (0, 1), out.getvalue()[-2000:] + console.getvalue()[-2000:]
    return {"baseline": base, "failing": failing, "console": console.getvalue()}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def _open(browser: Any, report: Path) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else outside.append(r.url))
    page.goto(report.as_uri())
    page.wait_for_selector("html[data-kt-ready]")
    page.outside = outside
    return page


def test_banner_and_one_set_of_counts(runs: dict[str, Any], browser: Any) -> None:
    folder = runs["failing"]
    page = _open(browser, folder / "report.html")
    assert page.inner_text("#kt-verdict") == "DOES NOT CONFORM"
    assert page.inner_text("#kt-why") == "1 constraint not enforced, 0 over-strict, 0 data-loss findings"
    totals = json.loads((folder / "summary.json").read_text())["totals"]
    counts = page.locator("#kt-counts")
    shown = {k: int(counts.get_attribute(f"data-{k}")) for k in ("cases", "passed", "failed", "errors")}
    assert shown == {k: totals[k] for k in shown}
    line = (f"{totals['cases']} cases: {totals['passed']} passed, {totals['failed']} failed, "
            f"{totals['errors']} errors")
    assert page.inner_text("#kt-counts") == line
    assert f"DOES NOT CONFORM (1 constraint not enforced, 0 over-strict, 0 data-loss findings) — {line}" \
        in runs["console"]
    suite = ET.parse(folder / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (
        str(totals["cases"]), str(totals["failed"]), str(totals["errors"]))
    assert len(suite.findall(".//testcase")) == totals["cases"]
    # the banner is the first thing on the page, and nothing was fetched from outside
    assert page.evaluate("document.getElementById('title').nextElementSibling.id") == "kt-report"
    assert page.outside == []


def test_failing_case_explains_itself(runs: dict[str, Any], browser: Any) -> None:
    page = _open(browser, runs["failing"] / "report.html")
    block = page.locator("#kt-f-Task-note-max")
    assert block.locator(".kt-lead").inner_text() == \
        "The server stored a Task with note; KT2Task forbids Task.note (max 0)."
    assert "Task.note 0..0" in block.locator(".kt-constraint").inner_text()
    minimal = block.locator(".kt-case").first
    assert "minimal failing example" in minimal.inner_text()
    added = minimal.locator(".kt-dadd").all_inner_texts()
    assert any('"note"' in line for line in added)
    assert not any('"note"' in line for line in minimal.locator(".kt-ddel").all_inner_texts())
    # each failing case shows the Task sent with exactly the `note` element highlighted (the
    # cases after the first open on a click)
    for lazy in block.locator("details.kt-case").all():
        lazy.locator("summary").first.click()
    for case in block.locator(".kt-case").all():
        marked = case.locator(".kt-json .kt-hl").all_text_contents()
        assert marked and marked[0].strip().startswith('"note"'), marked
        assert all("owner" not in line for line in marked)
    assert block.locator(".kt-curl pre").first.text_content().startswith("curl -sS")
    assert block.locator(".kt-copy").count() == block.locator(".kt-case").count()
    # the copy button puts a whole command on the clipboard: the request line and, as a
    # heredoc, the Task shown (in the file once)
    page.evaluate("navigator.clipboard.writeText = t => { window.copied = t; return Promise.resolve(); }")
    block.locator(".kt-copy").first.click()
    page.wait_for_function("window.copied !== undefined")
    command = page.evaluate("window.copied")
    head, _, rest = command.partition("\n")
    assert head.startswith("curl -sS -i -X POST ") and head.endswith("--data-binary @- <<'KT2_BODY'")
    body, _, end = rest.rpartition("\n")
    assert end == "KT2_BODY" and json.loads(body)["note"]
    # the overview row links to the explanation
    assert page.locator('#kt-overview a[href="#kt-f-Task-note-max"]').count() == 1


def test_filters_and_search(runs: dict[str, Any], browser: Any) -> None:
    page = _open(browser, runs["failing"] / "report.html")
    visible = "r => r.filter(e => e.offsetParent !== null).map(e => e.dataset.status)"
    before = page.eval_on_selector_all("#kt-overview .kt-row", visible)
    assert "enforced" in before and "not-enforced" in before
    # the group with the finding comes first after the valid resources, open
    groups = page.eval_on_selector_all(".kt-group", "g => g.map(e => [e.dataset.status, e.open])")
    assert groups[1] == ["not-enforced", True]
    page.click('.kt-filter[data-status="enforced"]')
    after = page.eval_on_selector_all("#kt-overview .kt-row", "r => r.filter(e => !e.hidden).map(e => e.dataset.status)")
    assert "enforced" not in after and "not-enforced" in after
    page.click('.kt-filter[data-status="enforced"]')
    page.fill("#kt-search", "task.owner min")
    rows = page.eval_on_selector_all("#kt-overview .kt-row", "r => r.filter(e => !e.hidden).map(e => e.dataset.search)")
    assert rows and all("task.owner" in r and "min" in r for r in rows)
    assert page.inner_text("#kt-shown") == f"{len(rows)} constraint row{'s' if len(rows) != 1 else ''} shown"
    page.fill("#kt-search", "no such constraint at all")
    assert page.is_visible("#kt-none")
    # a constraint left out with -k says so, rather than looking merely untested
    page.fill("#kt-search", "task.status/binding")
    row = page.locator('#kt-overview .kt-row:not([hidden])')
    assert row.count() == 1 and "not selected in this run (-k)" in row.text_content()


def test_baseline_comparison(runs: dict[str, Any], browser: Any) -> None:
    page = _open(browser, runs["failing"] / "report.html")
    regressed = page.inner_text('#kt-baseline [data-change="regressed"]')
    assert "Task.note/max: enforced → not enforced" in regressed
    assert page.locator('#kt-baseline [data-change="fixed"]').count() == 0
    assert "regressed (1): Task.note/max" in runs["console"]
    # the baseline itself conforms, with no comparison section
    base = _open(browser, runs["baseline"] / "report.html")
    assert base.inner_text("#kt-verdict") == "CONFORMS"
    assert base.locator("#kt-baseline").count() == 0


def test_pytest_html_part_reads_well(runs: dict[str, Any], browser: Any) -> None:
    page = _open(browser, runs["failing"] / "report.html")
    text = page.inner_text("body")
    assert "No log output captured" not in text
    assert not re.search(r"\('/[^']*', \d+, 'Skipped", text)
    # the environment table is at the bottom, below the results table
    order = page.evaluate("""() => {
        const env = document.getElementById('environment'), res = document.getElementById('results-table');
        return !!(res.compareDocumentPosition(env) & Node.DOCUMENT_POSITION_FOLLOWING); }""")
    assert order
    page.click("#show_all_details")
    skipped = page.eval_on_selector_all("tbody.results-table-row", """b => b
        .filter(e => e.querySelector('.col-result').textContent === 'Skipped')
        .map(e => e.querySelector('.log').textContent)""")
    assert skipped and all(s.startswith("Not tested: ") for s in skipped), skipped[:3]


_CONTRAST = """els => els.filter(e => e.offsetParent !== null).map(e => {
    const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255;
        return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); })
        .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
    let bg = e, back = [255, 255, 255];
    while (bg) { const c = rgb(getComputedStyle(bg).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] > 0)) { back = c.slice(0, 3); break; }
        bg = bg.parentElement; }
    const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(back)];
    return [e.textContent.trim().slice(0, 40), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
})"""


def test_text_has_readable_contrast(runs: dict[str, Any], browser: Any) -> None:
    """WCAG AA (4.5:1) for the banner, the status pills, the filters, sentences and tables, and
    for pytest-html's table and environment below them."""
    page = _open(browser, runs["failing"] / "report.html")
    checked = page.eval_on_selector_all(
        "#kt-banner *, .kt-pill, .kt-filter, .kt-bar span, .kt-sentence, .kt-table td, "
        ".kt-muted, .kt-block > summary, #kt-report a, "
        # pytest-html's part below ours
        "#results-table td, .filters span, #environment td, .run-count", _CONTRAST)
    assert len(checked) > 50
    low = [(text, round(ratio, 2)) for text, ratio in checked if ratio < 4.5]
    assert not low, low[:10]
