"""Subtly defective servers (tests/defective_servers.py) are caught, each as a finding of its own
kind: a lossy one as data loss (never as over-strict), a strict one as valid Tasks refused, a
lenient one as a constraint not enforced. One of each kind runs here end to end, on the part of
the suites that meets it; benchmarks/bench_detection.py runs the whole default run against every
defect for the detection table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from defective_servers import BY_NAME, DEFECTS, DefectiveServer
from faulty_targets import run_harness

from kt2conformance.generate._covering import covering_valid
from kt2conformance.generate._values import Prerequisites
from kt2conformance.spec._profile import load_profile
from kt2conformance.target._server import ReferenceServer

PROFILE = load_profile()


def summary(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "reports" / "summary.json").read_text(encoding="utf-8"))


def test_each_lossy_or_strict_defect_meets_the_covering_set() -> None:
    """Each lossy or strict defect changes or refuses at least one Task of the covering set:
    the defects are not no-ops."""
    tasks = []
    for drawn in covering_valid(PROFILE, Prerequisites(task="Task/parent-1"), seed=0):
        if not drawn.covering:
            break
        tasks.append(drawn.task)
    for defect in DEFECTS:
        if defect.kind == "strict":
            assert any(defect.refuse(t) for t in tasks), defect.name
        elif defect.kind == "lossy":
            assert defect.transform is not None
            changed = [defect.transform(json.loads(json.dumps(t))) for t in tasks]
            assert any(c != t for c, t in zip(changed, tasks, strict=True)), defect.name


@pytest.mark.parametrize(("name", "selection"), [
    ("varchar-255", "valid_tasks"),
    ("utc-normalises", "valid_tasks"),
    ("ascii-only", "valid_tasks"),
    ("case-insensitive-codes", "Task.status/binding"),
    ("text-order", "inv-1"),
    ("owner-target-list", "Task.owner/targetProfile"),
])
def test_a_default_run_catches_the_defect(tmp_path: Path, reference_server: ReferenceServer,
                                          name: str, selection: str) -> None:
    defect = BY_NAME[name]
    with DefectiveServer(reference_server.base_url, defect) as server:
        result = run_harness(tmp_path, "--target", server.url, "--", "-k", selection, timeout=300)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    data = summary(tmp_path)
    over_strict = [c for c in data["cases"] if c["expected"] == "accept" and c["verdict"] == "fail"
                   and not c.get("data_loss")]
    loose = [k for k, c in data["constraints"].items() if c["enforced"] is False]
    if defect.kind == "lossy":
        assert data["totals"]["data_loss"] > 0 and not over_strict and not loose
        lost = [c for c in data["cases"] if c.get("data_loss")]
        assert lost and all(c["verdict"] == "fail" and c["status"] in (200, 201) for c in lost)
        assert "data loss" in result.stdout and "0 over-strict" in result.stdout
    elif defect.kind == "strict":
        assert over_strict and data["totals"]["data_loss"] == 0
        assert "0 over-strict" not in result.stdout
    else:
        assert selection in " ".join(loose) and data["totals"]["data_loss"] == 0


def test_data_loss_names_the_kind(tmp_path: Path, reference_server: ReferenceServer) -> None:
    """A server that keeps only whole seconds: the loss is precision, on the dateTime elements."""
    with DefectiveServer(reference_server.base_url, BY_NAME["whole-seconds"]) as server:
        result = run_harness(tmp_path, "--target", server.url, "--", "-k", "valid_tasks",
                             timeout=300)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    data = summary(tmp_path)
    assert "Task.authoredOn" in data["data_loss"]
    assert set(data["data_loss"]["Task.authoredOn"]["kinds"]) == {"precision-lost"}
