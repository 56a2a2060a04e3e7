"""A FHIR resource as the harness takes it: JSON (a dict, or any JSON value for a test of bad
input), or a fhir.resources model, the app developer's way to build one in Python.

A fhir.resources model (pydantic, on fhir_core) is turned into the FHIR JSON it serializes to,
so the oracle judges exactly what would be sent to a server. fhir.resources is only looked at
when it is already imported: a value cannot be a model of a library nobody loaded, and the
command line never pays for importing it."""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["resource_json"]

_MODEL_MODULE = "fhir_core.fhirabstractmodel"  # the base of every fhir.resources (8.x) model


def resource_json(resource: Any) -> Any:
    """The FHIR JSON of `resource`: a fhir.resources model serialized, anything else as is."""
    core = sys.modules.get(_MODEL_MODULE)
    if core is not None and isinstance(resource, core.FHIRAbstractModel):
        return json.loads(resource.model_dump_json())
    return resource
