"""Read-back comparison (kt2conformance.run._readback) and the data-loss verdict: each way a
server can alter a stored Task is named by its kind, and what FHIR lets a server change is not a
difference."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kt2conformance._vocabulary import Verdict
from kt2conformance.run._readback import LossKind, stored_differences
from kt2conformance.run._verdicts import judge_read_back
from kt2conformance.target._client import Exchange

SENT: dict[str, Any] = {
    "resourceType": "Task",
    "meta": {"profile": ["http://koppeltaal.nl/fhir/StructureDefinition/KT2Task"]},
    "identifier": [{"system": "urn:oid:2.16.840.1.113883.2.4.6.3", "value": "Één café 😀"},
                   {"value": "x" * 300}],
    "status": "ready",
    "description": "  regel een\r\nregel twee  ",
    "authoredOn": "2024-05-01T10:30:15.123456789+14:00",
    "lastModified": "2024",
    "_description": {"extension": [{"url": "http://example.org/x", "valueString": "y"}]},
    "extension": [{"url": "http://example.org/other", "valueInteger": 1}],
}


def stored(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(SENT)
    out.update(id="abc", meta={**SENT["meta"], "versionId": "1", "lastUpdated": "2024-05-01T10:00:00Z"})
    for key, value in changes.items():
        if value is None:
            out.pop(key)
        else:
            out[key] = value
    return out


def kinds(server_copy: dict[str, Any]) -> dict[str, LossKind]:
    return {d.path: d.kind for d in stored_differences(SENT, server_copy)}


def test_what_a_server_manages_is_no_difference() -> None:
    copy_ = stored(text={"status": "generated", "div": "<div>x</div>"})
    copy_["extension"] = [*SENT["extension"], {
        "url": "http://koppeltaal.nl/fhir/StructureDefinition/resource-origin",
        "valueReference": {"reference": "Device/1"}}]
    copy_["meta"]["tag"] = [{"code": "server-tag"}]
    assert stored_differences(SENT, copy_) == []


def test_numbers_compare_by_value() -> None:
    sent = {**SENT, "extension": [{"url": "http://example.org/n", "valueDecimal": 1}]}
    kept = {**stored(), "extension": [{"url": "http://example.org/n", "valueDecimal": 1.0}]}
    assert stored_differences(sent, kept) == []


@pytest.mark.parametrize(("change", "path", "kind"), [
    ({"identifier": [SENT["identifier"][0], {"value": "x" * 255}]}, "Task.identifier[1].value",
     LossKind.TRUNCATED),
    ({"identifier": [{**SENT["identifier"][0], "value": "E\u0301e\u0301n cafe\u0301 😀"}, SENT["identifier"][1]]},
     "Task.identifier[0].value", LossKind.RE_ENCODED),
    ({"description": "regel een\r\nregel twee"}, "Task.description", LossKind.RE_ENCODED),
    ({"description": "  regel een\nregel twee  "}, "Task.description", LossKind.RE_ENCODED),
    ({"authoredOn": "2024-05-01T10:30:15.123+14:00"}, "Task.authoredOn", LossKind.PRECISION_LOST),
    ({"authoredOn": "2024-04-30T20:30:15.123456789Z"}, "Task.authoredOn", LossKind.OFFSET_CHANGED),
    ({"authoredOn": "2024-05-01T10:30:15.123456789Z"}, "Task.authoredOn", LossKind.INSTANT_MOVED),
    ({"lastModified": "2024-01-01"}, "Task.lastModified", LossKind.CHANGED),
    ({"_description": None}, "Task._description", LossKind.DROPPED),
    ({"identifier": [SENT["identifier"][0]]}, "Task.identifier[1]", LossKind.DROPPED),
    ({"extension": []}, "Task.extension[0]", LossKind.DROPPED),
    ({"status": "READY"}, "Task.status", LossKind.RE_ENCODED),
    ({"status": "draft"}, "Task.status", LossKind.CHANGED),
    ({"priority": "routine"}, "Task.priority", LossKind.ADDED),
])
def test_each_alteration_is_named(change: dict[str, Any], path: str, kind: LossKind) -> None:
    assert kinds(stored(**change)) == {path: kind}


def exchange(body: Any, status: int = 200) -> Exchange:
    return Exchange("GET", "http://x/fhir/Task/abc", {}, None, status, json=body)


def test_data_loss_is_a_finding_of_its_own() -> None:
    verdict = judge_read_back(SENT, exchange(stored(description="regel een")))
    assert verdict.verdict is Verdict.FAIL
    assert [d.kind for d in verdict.losses] == [LossKind.CHANGED]
    assert "data loss" in verdict.reason
    as_sent = judge_read_back(SENT, exchange(stored()))
    assert as_sent.verdict is Verdict.PASS and as_sent.losses == ()


def test_an_accepted_task_that_cannot_be_read_lost_everything() -> None:
    verdict = judge_read_back(SENT, exchange({"resourceType": "OperationOutcome"}, 404))
    assert verdict.verdict is Verdict.FAIL and verdict.losses[0].kind is LossKind.DROPPED


def test_long_values_are_cut_in_the_record() -> None:
    long = {**SENT, "description": "a" * 100_000}
    verdict = judge_read_back(long, exchange(stored(description="a" * 65_535)))
    record = verdict.losses[0].as_dict()
    assert record["kind"] == "truncated" and record["element"] == "Task.description"
    assert len(record["sent"]) < 300 and "100000 characters" in record["sent"]
