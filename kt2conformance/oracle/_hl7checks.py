"""The HL7 validator's type-specific checks that are not in the StructureDefinitions.

The production Koppeltaal server refuses at ERROR level what HAPI FHIR 8.2.0's validator
(`org.hl7.fhir.validation` 6.5.18, `InstanceValidator`) reports as an error, and some of its
rules are Java code rather than profile content: what an Identifier's `system` and `value` must
be (`checkIdentifier`), which Extension urls and canonicals count as absolute
(`Utilities.isAbsoluteUrl`), and the query of a conditional reference (`checkReference`). They
are ported here as plain functions on JSON values, each returning the problem's text or None,
with the Java source they follow named; the oracle reports them under the element's key. (The
lexical rules of single primitive values, the URI family's included, are spec._lexical's.)
"""

from __future__ import annotations

import re

from kt2conformance.spec._lexical import TOKEN, UUID, is_absolute_url

__all__ = ["canonical_problem", "coded_system_problem", "conditional_reference_problem", "identifier_problems"]

_QUERY = re.compile(r"\?([_a-zA-Z][_a-zA-Z0-9]*=[^=&]*)(&([_a-zA-Z][_a-zA-Z0-9]*=[^=&]*))*")
RFC_3986 = "urn:ietf:rfc:3986"
RFC_4122 = "https://tools.ietf.org/html/rfc4122"


def _is_absolute(uri: str) -> bool:
    """InstanceValidator.isAbsolute (an Identifier value under urn:ietf:rfc:3986): a token
    scheme of any case; `file:` needs a path or another colon."""
    if ":" not in uri:
        return False
    scheme, _, tail = uri.partition(":")
    if TOKEN.fullmatch(scheme) is None:
        return False
    return tail.startswith("/") or ":" in tail if scheme == "file" else True


def canonical_problem(value: str) -> str | None:
    """checkPrimitive on a canonical: absolute (is_absolute_url) or a `#fragment`. (The URI
    family's lexical rules, `oid:`, `urn:uuid:` and the rest, are spec._lexical's.)"""
    if value.startswith("#") or is_absolute_url(value):
        return None
    return f"a canonical URL must be absolute or a #fragment, not {value!r}"


def identifier_problems(identifier: dict[str, object]) -> list[tuple[str, str]]:
    """checkIdentifier: (child, problem) pairs for an Identifier. Its system is a reference to
    a namespace: http:, https:, urn: or ldap:. Under urn:ietf:rfc:3986 the value is itself a URI
    (with a scheme); under the RFC 4122 URL a value that is not a UUID at all is an error."""
    problems: list[tuple[str, str]] = []
    system, value = identifier.get("system"), identifier.get("value")
    if not isinstance(system, str):
        return problems
    if not system.startswith(("http:", "https:", "urn:", "ldap:")):
        problems.append(("system", f"Identifier.system must be an absolute reference (http:, https:, urn: "
                                   f"or ldap:), not {system!r}"))
    if system == RFC_3986 and isinstance(value, str) and not _is_absolute(value):
        problems.append(("value", f"under {RFC_3986} the value must be a full URI (with a scheme), not {value!r}"))
    if system == RFC_4122 and isinstance(value, str) and not value.startswith("urn:uuid:") \
            and UUID.fullmatch(value) is None:
        problems.append(("value", f"{value!r} is not a UUID, as {RFC_4122} requires"))
    return problems


def coded_system_problem(coded: dict[str, object]) -> str | None:
    """checkCodedElement (a Coding outside a CodeableConcept, a Quantity): with both a system
    and a code, the system is a code system's URI, http:, https: or urn: (ldap: is not)."""
    system, code = coded.get("system"), coded.get("code")
    if isinstance(system, str) and isinstance(code, str) and not system.startswith(("http:", "https:", "urn:")):
        return f"a code system is named by an absolute URI (http:, https: or urn:), not {system!r}"
    return None


def conditional_reference_problem(reference: str, resource_types: frozenset[str]) -> str | None:
    """checkReference: a conditional reference (`Patient?identifier=…`, a resource type before
    the `?`) must have a query of `name=value` pairs joined by `&`."""
    head, question, _ = reference.partition("?")
    if not question or head not in resource_types:
        return None
    if _QUERY.fullmatch(reference[len(head):]) is None:
        return f"the query of the conditional reference {reference!r} is not name=value pairs joined by &"
    return None
