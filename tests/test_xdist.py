"""Under pytest-xdist (`pytest suites -n 4 --kt-target ...`) each worker would create its own
prerequisites and write its own partial reports: the suites refuse xdist in one clear line,
before anything is sent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_stopping import counts

from kt2conformance import _paths as paths
from kt2conformance.target._server import ReferenceServer


def test_xdist_is_refused_in_one_line_before_anything_is_sent(
        tmp_path: Path, reference_server: ReferenceServer) -> None:
    before = counts(reference_server.base_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KT2_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(paths.SUITES_DIR), "-n", "4", "-p",
         "no:cacheprovider", "--kt-target", reference_server.base_url, "--kt-reports",
         str(tmp_path / "reports")], cwd=tmp_path, capture_output=True, text=True, env=env,
        timeout=120, check=False)
    assert result.returncode == 4  # pytest's usage error
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == ["ERROR: kt2conformance: the conformance suites do not run under "
                      "pytest-xdist (-n): one run needs one process for one summary and a full "
                      "cleanup; use --kt-concurrency N to send N requests at a time"]
    assert counts(reference_server.base_url) == before
    assert not (tmp_path / "reports" / "summary.json").exists()
