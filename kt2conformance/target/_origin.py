"""resource-origin belongs to the server: a Koppeltaal server sets it on every resource it
creates (naming the creating client's Device) and refuses a client-set one. So the harness never
sends one in a resource it expects to be accepted, and a read-back does not count it as data."""

from __future__ import annotations

from typing import Any

from kt2conformance._koppeltaal import RESOURCE_ORIGIN_URL


def has_resource_origin(resource: Any) -> bool:
    extensions = resource.get("extension") if isinstance(resource, dict) else None
    return isinstance(extensions, list) and any(
        isinstance(e, dict) and e.get("url") == RESOURCE_ORIGIN_URL for e in extensions)


def without_resource_origin(resource: dict[str, Any]) -> dict[str, Any]:
    """`resource` without its resource-origin extensions (and without an `extension` list left
    empty)."""
    extensions = resource.get("extension")
    if not isinstance(extensions, list):
        return resource
    kept = [e for e in extensions
            if not (isinstance(e, dict) and e.get("url") == RESOURCE_ORIGIN_URL)]
    out = {k: v for k, v in resource.items() if k != "extension"}
    if kept:
        out["extension"] = kept
    return out
