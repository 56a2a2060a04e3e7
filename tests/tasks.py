"""Hand-written Tasks the unit tests build on: the smallest one that conforms to KT2Task."""

from __future__ import annotations

from typing import Any

MINIMAL: dict[str, Any] = {
    "resourceType": "Task",
    "identifier": [{"system": "http://example.org/task-ids", "value": "t-1"}],
    "status": "requested",
    "intent": "order",
    "for": {"reference": "Patient/patient-1"},
    "owner": {"reference": "Practitioner/practitioner-1"},
}
