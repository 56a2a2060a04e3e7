"""Cleanup you can trust: a DELETE counts only when a read confirms it (a target that keeps a
deleted resource is a finding, `server/delete`, and the resource is listed as left behind), and
a Location header is believed only when it names a resource of the type that was created, under
the target's base; otherwise the case is an error and nothing is deleted on its word."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from faulty_targets import ForwardingProxy, Incoming, _ForwardingHandler, run_harness
from test_stopping import counts

from kt2conformance.target._server import ReferenceServer

pytestmark = pytest.mark.server
SELECTION = "valid_tasks or Task.note"


def task_ids(base: str) -> set[str]:
    bundle = httpx.get(f"{base}/Task", params={"_count": "1000", "_elements": "id"},
                       headers={"Accept": "application/fhir+json"}).json()
    return {e["resource"]["id"] for e in bundle.get("entry", [])}


@pytest.fixture
def upstream(reference_server: ReferenceServer) -> Iterator[str]:
    """The shared reference server; Tasks a test leaves there on purpose are removed after."""
    base = reference_server.base_url
    before = task_ids(base)
    yield base
    for task_id in task_ids(base) - before:
        httpx.delete(f"{base}/Task/{task_id}")


class KeepsDeleted(ForwardingProxy):
    """Answers DELETE of a Task with 200 and an OperationOutcome, and keeps the Task."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.faked: list[str] = []

    def intercept(self, handler: _ForwardingHandler, request: Incoming) -> bool:
        if request.method == "DELETE" and request.path.startswith("/fhir/Task/"):
            with self.lock:
                self.faked.append(request.path)
            handler.answer(200, {"resourceType": "OperationOutcome", "issue": [
                {"severity": "information", "code": "informational", "diagnostics": "deleted"}]})
            return True
        return False


def test_a_target_that_keeps_deleted_resources_is_a_finding(tmp_path: Path,
                                                            upstream: str) -> None:
    before = counts(upstream)
    with KeepsDeleted(upstream) as target:
        result = run_harness(tmp_path, "--target", target.url, "--examples", "2", "--", "-k",
                             SELECTION)
        faked = set(target.faked)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    findings = [c for c in summary["cases"] if c["constraint"] == "server/delete"]
    assert findings and all(c["verdict"] == "fail" for c in findings)
    assert all("a read still finds it" in c["reason"] for c in findings)
    assert summary["constraints"]["server/delete"]["enforced"] is False
    kept = {path.rsplit("/", 1)[-1] for path in faked}
    leftovers = summary["leftovers"]
    # every Task the target kept is listed as left behind, with where it is; so are the
    # prerequisites those Tasks still refer to (the target refuses to delete them: 409)
    assert {url.rsplit("/", 1)[-1] for url in leftovers if "/Task/" in url} == kept
    assert all(url.startswith(f"{target.url}/") for url in leftovers)
    assert "left on the target" in result.stdout
    after = counts(upstream)
    by_type = {t: sum(1 for url in leftovers if url.split("/")[-2] == t) for t in after}
    assert {t: after[t] - before[t] for t in after} == by_type  # nothing unlisted is left
    for url in sorted(leftovers, key=lambda u: "/Task/" not in u):  # Tasks before what they name
        assert httpx.delete(url.replace(target.url, upstream)).status_code < 300
    assert counts(upstream) == before


class LyingLocation(ForwardingProxy):
    """Forwards the Task POSTs of the cases (not set-up's example Task) and rewrites the
    Location of a 201: to the Patient the run created (`other-type`), to another host
    (`other-host`), or outside the FHIR base on the same host (`outside-base`). Records every
    DELETE it sees."""

    def __init__(self, upstream: str, mode: str) -> None:
        super().__init__(upstream)
        self.mode = mode
        self.task_posts = 0
        self.patient: str | None = None
        self.lied = 0
        self.deletes: list[str] = []

    def intercept(self, handler: _ForwardingHandler, request: Incoming) -> bool:
        if request.method == "DELETE":
            with self.lock:
                self.deletes.append(request.path)
            return False
        if request.method != "POST" or request.path not in ("/fhir/Task", "/fhir/Patient"):
            return False
        response = self._http.post(self.upstream + request.target.removeprefix("/fhir"),
                                   content=request.body,
                                   headers={k: v for k, v in request.headers.items()
                                            if k.lower() not in ("host", "content-length")})
        headers = {"Content-Type": response.headers.get("content-type", "application/fhir+json")}
        location = response.headers.get("location")
        if location:
            headers["Location"] = location.replace(self.upstream, self.url)
        with self.lock:
            if request.path == "/fhir/Patient" and response.status_code == 201:
                self.patient = self.patient or response.json()["id"]
            elif request.path == "/fhir/Task":
                self.task_posts += 1
                if self.task_posts > 1 and location and response.status_code == 201:
                    self.lied += 1
                    task_id = re.search(r"/Task/([^/]+)", location).group(1)  # type: ignore[union-attr]
                    headers["Location"] = {
                        "other-type": f"{self.url}/Patient/{self.patient}",
                        "other-host": f"http://elsewhere.invalid/fhir/Task/{task_id}",
                        "outside-base": f"{self.url.removesuffix('/fhir')}/other/Task/{task_id}",
                    }[self.mode]
        handler.answer(response.status_code, response.content, headers)
        return True


@pytest.mark.parametrize("mode", ["other-type", "other-host", "outside-base"])
def test_a_location_naming_something_else_is_an_error_and_never_deleted(
        tmp_path: Path, upstream: str, mode: str) -> None:
    before, tasks_before = counts(upstream), task_ids(upstream)
    with LyingLocation(upstream, mode) as target:
        result = run_harness(tmp_path, "--target", target.url, "--examples", "2", "--", "-k",
                             SELECTION)
        lied, deletes, patient = target.lied, list(target.deletes), target.patient
    assert lied > 0
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    errors = [c for c in summary["cases"] if "nothing is deleted on its word" in c["reason"]]
    assert len(errors) == lied and all(c["verdict"] == "error" for c in errors)
    # the Patient was deleted once, by the final cleanup, never on a Location's word
    assert deletes.count(f"/fhir/Patient/{patient}") == 1
    assert not any("/other/" in d for d in deletes)
    after = counts(upstream)
    # what those Tasks name (prerequisites, the parent Task) cannot be deleted (409): listed
    # as left; besides them only the Tasks not deleted on an untrusted word remain
    leftovers = summary["leftovers"]
    by_type = {t: sum(1 for url in leftovers if url.split("/")[-2] == t) for t in after}
    by_type["Task"] += lied
    assert {t: after[t] - before[t] for t in after} == by_type
    for task_id in task_ids(upstream) - tasks_before:
        httpx.delete(f"{upstream}/Task/{task_id}")
    for url in leftovers:
        httpx.delete(url.replace(target.url, upstream))
    assert counts(upstream) == before
