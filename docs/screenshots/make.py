"""Regenerates the README's screenshots of report.html from real runs: a passing run against the
embedded reference server, a failing run against a faulty proxy in front of it (one that lets a
forbidden `note` through; compared with the passing run as its baseline) and a run aborted with
Ctrl-C halfway. Rendered by the system's headless Chromium through Playwright.

    .venv/bin/python docs/screenshots/make.py
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from faulty_targets import faulty_target  # noqa: E402

from kt2conformance.target._server import ReferenceServer  # noqa: E402

OUT = Path(__file__).resolve().parent
SIZE = {"width": 1280, "height": 900}


def run(reports: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "kt2conformance", "run", "--reports",
                             str(reports), *args], stdout=subprocess.DEVNULL)


def abort_halfway(reports: Path, target: str) -> None:
    """Start a long run and press Ctrl-C once a few hundred cases are in."""
    process = run(reports, "--target", target, "--examples", "40")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        logs = list(reports.glob(".cases-*.jsonl"))
        if logs and sum(1 for _ in logs[0].open()) >= 300:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)


def shoot(browser, report: Path, name: str, scroll_to: str | None = None) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport=SIZE)
    page.goto(report.as_uri())
    page.wait_for_selector("html[data-kt-ready]")
    if scroll_to:
        page.evaluate(f"document.querySelector({scroll_to!r}).scrollIntoView()")
    page.screenshot(path=str(OUT / f"{name}.png"))
    page.close()


def main() -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("make.py: Chromium is needed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp, ReferenceServer() as server:
        folder = Path(tmp)
        run(folder / "passing", "--target", server.base_url, "--examples", "3").wait()
        with faulty_target(server.base_url, "lets-note-through") as target:
            run(folder / "failing", "--target", target, "--examples", "3", "--baseline",
                str(folder / "passing" / "summary.json")).wait()
        abort_halfway(folder / "aborted", server.base_url)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            shoot(browser, folder / "passing" / "report.html", "passing")
            shoot(browser, folder / "failing" / "report.html", "failing")
            shoot(browser, folder / "failing" / "report.html", "failing-finding",
                  "#kt-failures")
            shoot(browser, folder / "aborted" / "report.html", "aborted")
            browser.close()
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
