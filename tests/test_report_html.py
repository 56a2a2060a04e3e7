"""The HTML report as a tester sees it: rendered by headless Chromium (pytest-html builds its
results table with JavaScript, so the file's text alone doesn't show what a browser shows)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kt2conformance.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (.ci/setup installs it)")
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("reports")
    assert main(["run", "--examples", "1", "--reports", str(folder)]) in (0, 1)
    return folder


def _chromium(tmp: Path, *args: str) -> str:
    done = subprocess.run([CHROMIUM, *_FLAGS, f"--user-data-dir={tmp / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def test_rendered_report_shows_matrix_and_every_test(reports: Path, tmp_path: Path) -> None:
    dom = _chromium(tmp_path, "--dump-dom", (reports / "report.html").as_uri())
    summary = json.loads((reports / "summary.json").read_text())

    matrix = dom[dom.index('id="kt-constraint-matrix"'):]
    matrix = matrix[:matrix.index("</table>")]
    assert "Constraint matrix" in matrix
    # every constraint summary.json judged has its row in the matrix, with its status
    for key, entry in summary["constraints"].items():
        assert f">{key}<" in matrix, key
    not_enforced = [k for k, e in summary["constraints"].items() if e["enforced"] is False]
    assert matrix.count(">not enforced<") >= len(not_enforced)
    # the matrix comes before pytest-html's results table
    assert dom.index('id="kt-constraint-matrix"') < dom.index('id="results-table"')
    # the results table was built by the page's script: one row per test
    rows = re.findall(r'class="results-table-row (passed|failed|skipped|error)"', dom)
    junit = (reports / "junit.xml").read_text()
    assert len(rows) == int(re.search(r'tests="(\d+)"', junit).group(1))


def test_report_screenshot_is_not_blank(reports: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    _chromium(tmp_path, "--window-size=1400,1000", f"--screenshot={shot}", (reports / "report.html").as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000  # a rendered page of tables, not an empty white page
