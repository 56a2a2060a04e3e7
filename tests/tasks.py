"""Hand-written Tasks the unit tests build on: the smallest one that conforms to KT2Task."""

from __future__ import annotations

import copy
from typing import Any

MINIMAL: dict[str, Any] = {
    "resourceType": "Task",
    "identifier": [{"system": "http://example.org/task-ids", "value": "t-1"}],
    "status": "requested",
    "intent": "order",
    "for": {"reference": "Patient/patient-1"},
    "owner": {"reference": "Practitioner/practitioner-1"},
}


def task(**changes: Any) -> dict[str, Any]:
    """MINIMAL with top-level elements replaced (copies of the values given); a value of None
    removes the element. (`for` is a Python keyword: pass it as `**{"for": ...}`.)"""
    out = copy.deepcopy(MINIMAL)
    for name, value in changes.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = copy.deepcopy(value)
    return out


def error_keys(oracle: Any, resource: Any) -> set[str]:
    """The constraint keys of the errors the oracle finds in `resource`."""
    return {issue.key for issue in oracle.errors(resource)}
