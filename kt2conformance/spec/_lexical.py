"""The HL7 validator's own lexical checks of primitive values, beyond the R4 regexes.

The regexes in R4's datatype definitions are one reading of a primitive; the HL7 validator (HAPI
FHIR 8.2's `InstanceValidator.checkPrimitive`, org.hl7.fhir.validation 6.5.18) makes further
type-specific checks, each an error, that a Koppeltaal server therefore enforces:

- `uri`, `url`, `canonical`, `oid`, `uuid`: no `oid:` or `uuid:` scheme (those are `urn:oid:` and
  `urn:uuid:`), no space anywhere and no surrounding whitespace; an `oid` starts with `urn:oid:`
  and a `uuid` with `urn:uuid:`; a `urn:uuid:` names a lowercase UUID and a `urn:oid:` a
  well-formed OID whose root has at least three arcs (or lies under 1.3).
- `code`: no surrounding whitespace and no whitespace inside other than single spaces, where
  whitespace is the validator's wide set (tab, NBSP, the Unicode spaces), not only XML's four.
- `time`: `hh:mm:ss` without a fraction (R4's regex allows one; the validator's does not).

Whitespace is the validator's `Utilities.isWhitespace` set throughout.
"""

from __future__ import annotations

import re

__all__ = ["TOKEN", "UUID", "WHITESPACE", "is_absolute_url", "lexical_problem", "trim_ws"]

# org.hl7.fhir.utilities.Utilities.isWhitespace
WHITESPACE = frozenset("\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                       "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_URI_TYPES = frozenset({"uri", "url", "canonical", "oid", "uuid"})
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # UUIDUtilities
TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_\[\]]*")  # Utilities.isToken
_ISO_URNS = ("urn:iso:", "urn:iso-iec:", "urn:iso-cie:", "urn:iso-astm:", "urn:iso-ieee:", "urn:iec:")
_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)")


def trim_ws(text: str) -> str:
    """`Utilities.trimWS`: the text without the validator's whitespace at either end."""
    start, end = 0, len(text)
    while start < end and text[start] in WHITESPACE:
        start += 1
    while end > start and text[end - 1] in WHITESPACE:
        end -= 1
    return text[start:end]


def lexical_problem(code: str, text: str) -> str | None:
    """Why the validator refuses `text` as a value of primitive type `code`, or None."""
    if code in _URI_TYPES:
        return _uri_problem(code, text)
    if code == "code":
        return None if _code_spacing_ok(text) else f"{text!r}: a code has no whitespace but single spaces inside"
    if code == "time" and not _TIME.fullmatch(text):
        return f"{text!r} is not a time (hh:mm:ss, no fraction of a second)"
    return None


def _uri_problem(code: str, url: str) -> str | None:
    if url.startswith("oid:"):
        return f"{url!r}: a URI cannot start with oid: (an OID is written urn:oid:)"
    if url.startswith("uuid:"):
        return f"{url!r}: a URI cannot start with uuid: (a UUID is written urn:uuid:)"
    if url != trim_ws(url).replace(" ", ""):
        return f"{url!r}: a URI has no spaces and no surrounding whitespace"
    if code == "oid" and not url.startswith("urn:oid:"):
        return f"{url!r}: an oid starts with urn:oid:"
    if code == "uuid" and not url.startswith("urn:uuid:"):
        return f"{url!r}: a uuid starts with urn:uuid:"
    if url.startswith("urn:uuid:") and not UUID.fullmatch(url[9:].split("#", 1)[0]):
        return f"{url!r}: a urn:uuid: names a UUID in lowercase hex (8-4-4-4-12)"
    if url.startswith("urn:oid:"):
        oid = url[8:]
        # the validator: OID roots of fewer than three arcs are not namespaces, except under 1.3
        if not _OID.fullmatch(oid) or not (oid.rfind(".") >= 4 or oid.startswith("1.3")):
            return f"{url!r}: not a valid OID (digits and dots, no leading zeros, a root of at least three arcs)"
    return None


def _code_spacing_ok(text: str) -> bool:
    """`InstanceValidator.passesCodeWhitespaceRules`."""
    if trim_ws(text) != text:
        return False
    last_was_space = True
    for ch in text:
        if ch == " ":
            if last_was_space:
                return False
            last_was_space = True
        elif ch in WHITESPACE:
            return False
        else:
            last_was_space = False
    return True


def is_absolute_url(url: str) -> bool:
    """Utilities.isAbsoluteUrl: a scheme that is http, https or urn, or a lower-case token
    (letters, digits, `_`), followed by something without a space. `HTTP://x`, `a+b:x` and
    `http:` are not absolute to the validator, whatever RFC 3986 says. (Extension urls,
    canonicals and narrative links are all judged by it.)"""
    if ":" not in url:
        return False
    scheme, _, details = url.partition(":")
    known = scheme in ("http", "https", "urn") or (TOKEN.fullmatch(scheme) is not None and scheme == scheme.lower()) \
        or url.startswith(_ISO_URNS)
    return known and bool(details) and " " not in details
