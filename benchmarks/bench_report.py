"""Size and load time of report.html for runs of about 1,000 and 10,000 cases.

Two kinds of run, each at both sizes, against real servers on loopback:
- conforming: the embedded reference server (every case passes; the report shows one example
  case per constraint);
- accepts-everything: a proxy in front of it that answers 201 to every POSTed Task and reads it
  back as sent, so every invalid case is a finding (the worst case for the report: every
  constraint has a failure block, its minimal example, five detailed cases and the rest as
  one-line rows).

For each report: file size, then in headless Chromium (the system's, via Playwright) the time
from navigation to the report's script having laid out the page (`html[data-kt-ready]`; median of
three loads), and the time a status-filter click and a search take to apply.

    .venv/bin/python benchmarks/bench_report.py [--sizes 1000 10000] [--loads 3]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from faulty_targets import ForwardingProxy, Incoming  # noqa: E402

from kt2conformance.target._server import ReferenceServer  # noqa: E402

CASES_PER_EXAMPLE = 191  # one valid Task plus one per invalid constraint key, per --examples


class AcceptsEverything(ForwardingProxy):
    """Stores every POSTed Task as sent (201 with a Location), reads it back, deletes it;
    everything else goes to the reference server."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.tasks: dict[str, bytes] = {}

    def intercept(self, handler: Any, request: Incoming) -> bool:
        if request.method == "POST" and request.path == "/fhir/Task":
            task_id = str(uuid.uuid4())
            with self.lock:
                self.tasks[task_id] = request.body
            handler.answer(201, request.body, {
                "Content-Type": "application/fhir+json",
                "Location": f"{self.url}/Task/{task_id}/_history/1"})
            return True
        parts = request.path.split("/")
        if len(parts) == 4 and parts[2] == "Task" and parts[3] in self.tasks:
            if request.method == "GET":
                body = json.loads(self.tasks[parts[3]])
                if isinstance(body, dict):
                    body["id"] = parts[3]
                handler.answer(200, body)
            else:
                with self.lock:
                    self.tasks.pop(parts[3], None)
                handler.answer(204, b"", {})
            return True
        return False


def run(target: str, examples: int, reports: Path) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "kt2conformance", "run", "--target", target,
                    "--examples", str(examples), "--reports", str(reports)],
                   stdout=subprocess.DEVNULL, check=False)
    return time.monotonic() - started


def measure(browser: Any, report: Path, loads: int) -> dict[str, float]:
    times = []
    for _ in range(loads):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        start = time.perf_counter()
        page.goto(report.as_uri(), wait_until="load")
        page.wait_for_selector("html[data-kt-ready]")
        times.append(time.perf_counter() - start)
        page.close()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(report.as_uri())
    page.wait_for_selector("html[data-kt-ready]")
    click = page.evaluate("""() => { const t = performance.now();
        document.querySelector('.kt-filter[data-status="enforced"], .kt-filter').click();
        return performance.now() - t; }""")
    search = page.evaluate("""() => { const s = document.getElementById('kt-search');
        const t = performance.now(); s.value = 'task.owner'; s.dispatchEvent(new Event('input'));
        return performance.now() - t; }""")
    page.close()
    return {"load_s": statistics.median(times), "click_ms": click, "search_ms": search}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--loads", type=int, default=3)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("bench_report.py: Chromium is needed (apt-get install chromium)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ReferenceServer() as server, \
            AcceptsEverything(server.base_url) as proxy, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for size in args.sizes:
            examples = max(1, math.ceil(size / CASES_PER_EXAMPLE))
            for kind, target in (("conforming", server.base_url),
                                 ("accepts-everything", proxy.url)):
                reports = Path(tmp) / f"{kind}-{size}"
                took = run(target, examples, reports)
                summary = json.loads((reports / "summary.json").read_text())
                html = reports / "report.html"
                figures = measure(browser, html, args.loads)
                rows.append((kind, summary["totals"]["cases"], summary["totals"]["failed"],
                             html.stat().st_size, figures, took))
                print(f"{kind:>18}: {summary['totals']['cases']:6d} cases "
                      f"({summary['totals']['failed']:5d} failed), report.html "
                      f"{html.stat().st_size / 1e6:5.2f} MB, load {figures['load_s']:.2f} s, "
                      f"filter click {figures['click_ms']:.0f} ms, search "
                      f"{figures['search_ms']:.0f} ms (run took {took:.0f} s)", flush=True)
        browser.close()


if __name__ == "__main__":
    main()
