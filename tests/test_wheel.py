"""The built wheel works on its own: installed into a fresh virtual environment, run from an empty
directory, it finds its profiles, fixtures and suites (shipped inside the package) and runs
`validate`, `constraints`, `generate` and `run --target`.

The fresh environment gets the harness only from the wheel; its dependencies come from this
environment's site-packages through a .pth line that leaves this checkout's own (editable)
kt2conformance out, so the test needs no network beyond what building the wheel takes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from tasks import MINIMAL

from kt2conformance import _paths as paths
from kt2conformance.target._server import ReferenceServer

pytestmark = pytest.mark.slow


def _sh(*command: str | Path, cwd: Path, timeout: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False, env=env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh venv with the freshly built wheel installed."""
    work = tmp_path_factory.mktemp("wheel")
    built = _sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work / "dist",
                paths.PROJECT_ROOT, cwd=work)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((work / "dist").glob("kt2conformance-*.whl"))
    venv = work / "venv"
    made = _sh(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
    assert made.returncode == 0, made.stderr
    site = Path(sysconfig.get_paths()["purelib"])
    deps = work / "deps"  # this environment's packages, minus the editable kt2conformance
    deps.mkdir()
    for entry in site.iterdir():
        if "kt2conformance" not in entry.name and not entry.name.endswith(".pth"):
            (deps / entry.name).symlink_to(entry)
    fresh = venv / "bin" / "python"
    fresh_site = Path(_sh(fresh, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                          cwd=work).stdout.strip())
    (fresh_site / "deps.pth").write_text(f"{deps}\n")
    install = _sh(sys.executable, "-m", "pip", "--python", fresh, "install", "-q", "--no-deps",
                  "--no-index", wheel, cwd=work)
    assert install.returncode == 0, install.stderr[-3000:]
    return venv / "bin"


def test_the_installed_wheel_runs_from_an_empty_directory(
        installed: Path, tmp_path: Path, reference_server: ReferenceServer) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KT2_", "PYTHON"))}
    where = _sh(installed / "python", "-c", "import kt2conformance, kt2conformance._paths as p; "
                "print(kt2conformance.__file__); print(p.SUITES_DIR)", cwd=empty, env=env)
    module, suites = where.stdout.split()
    assert str(installed.parent) in module and str(paths.PROJECT_ROOT) not in module
    assert "_data" in suites and Path(suites).is_dir()

    task = empty / "task.json"
    task.write_text(json.dumps(MINIMAL))
    cli = installed / "kt2conformance"
    validate = _sh(cli, "validate", task, cwd=empty, env=env)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    constraints = _sh(cli, "constraints", cwd=empty, env=env)
    assert constraints.returncode == 0 and "Task.owner/min" in constraints.stdout
    generate = _sh(cli, "generate", "--valid", "2", "--out", "out", cwd=empty, env=env)
    assert generate.returncode == 0, generate.stderr
    assert len(json.loads((empty / "out" / "index.json").read_text())) == 2
    run = _sh(cli, "run", "--target", reference_server.base_url, "--examples", "1",
              "--reports", "reports", "--", "-k", "example or Task.note", cwd=empty, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((empty / "reports" / "summary.json").read_text())
    assert summary["complete"] is True and summary["totals"]["cases"] > 0
    # nothing written but what was asked for (hidden folders of pytest plugins aside)
    assert sorted(p.name for p in empty.iterdir() if not p.name.startswith(".")) == \
        ["out", "reports", "task.json"]
