"""Boundary and equivalence classes of values, derived from the R4 datatype definitions.

A *class* is one kind of value a server may handle differently from its neighbours: a string past
a common column size, text in another script, a dateTime to the year only or at offset -14:00, a
URN where a URL is usual. The catalogue does not list classes per type by hand. It holds one pool
of *probes* (candidate lexical forms, named after what is special about them) and keeps, for each
primitive type, those the type's own definition accepts (valid classes) or rejects (invalid
classes): its JSON kind, its `regex`, its `maxLength`, the calendar. Length probes come from the
definition too (the `{m,n}` bound of a regex, the maxLength ceiling) next to the column sizes
real storage uses. A changed datatype definition therefore changes the catalogue.

Temporal types get *renderers* instead of fixed strings for their valid classes (every precision,
fractional seconds of several lengths, offsets across the full range, calendar edges): the
generators render the instants of a Task's clock through them, so ordering invariants (inv-1,
per-1) keep holding whatever the form.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from kt2conformance.spec._primitives import Primitive, primitive

# Column sizes storage layers commonly use: VARCHAR(255), 1 KiB, Oracle VARCHAR2(4000), 4 KiB,
# MySQL TEXT (65535 bytes). A value one past each shows a silent truncation or a refusal.
STORAGE_LIMITS = (255, 1024, 4000, 4096, 65535)
PLAIN = "plain"  # the class of the generator's everyday values: what shrinking ends at
HEAVY = 4096  # longer values are sent by the covering set, not drawn at random

_TEXT = "abcdefghijklmnopqrstuvwxyz0123456789"


def _filler(length: int) -> str:
    """`length` characters with a marker at the end, so a cut shows in the read-back."""
    body = (_TEXT * (length // len(_TEXT) + 1))[: max(length - 3, 0)]
    return (body + "END")[:length]


# Free-text probes: several scripts, composed and decomposed forms, characters outside the BMP,
# whitespace inside and around, characters markup layers escape.
_TEXT_PROBES: dict[str, str] = {
    "one-char": "x",
    "dutch-diacritics": "Één coördinator, naïeve ideeën, café Zuid-Holland, ĳsbeer",
    "greek-cyrillic": "Ελληνικά и кириллица",
    "rtl-arabic-hebrew": "العربية ועברית",
    "cjk": "中文 日本語 한국어",
    "devanagari": "हिन्दी देवनागरी",
    "combining-marks": "Cafe\u0301 Zoe\u0308 (decomposed)",
    "astral-emoji": "emoji 😀👍🏽 👨‍👩‍👧 and 𝄞 𠀀",
    "inner-whitespace": "twee  spaties\tde tab\nen een regel",
    "crlf-line-ends": "regel een\r\nregel twee",
    "surrounding-whitespace": "  omringd door spaties  ",
    "markup-and-escapes": "<b>a & b</b> \"quotes\" \\ back/slash 'single' %20",
    "multibyte-400-bytes": "ë" * 200,
}
_CODE_PROBES: dict[str, str] = {
    "inner-space": "twee woorden",
    "mixed-case": "MixedCase",
    "digits": "12345",
    "punctuation": "a.b-c_d:e/f",
    "non-ascii-code": "ë-code",
}
_ID_PROBES: dict[str, str] = {
    "id-charset": "Az09-.",
    "id-dotted": "1.2.840",
}
_URI_PROBES: dict[str, str] = {
    "http-url": "http://example.org/fhir/identifiers",
    "https-query-fragment": "https://example.org/pad?a=1&b=%C3%A9#fragment",
    "urn-uuid": "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
    "urn-oid": "urn:oid:2.16.840.1.113883.2.4.6.3",
    # (not urn:ietf:rfc:3986: as an Identifier.system it makes the value a URI, a rule the HL7
    # validator applies and the oracle does not model yet)
    "urn-other": "urn:ietf:rfc:2119",
    "iri-non-ascii": "http://example.org/café/ë",
    "relative": "Patient/example",
    "canonical-version": "http://example.org/fhir/StructureDefinition/x|1.0.0",
}
_NUMBER_PROBES: dict[str, Any] = {
    "zero": 0, "one": 1, "negative": -1, "int32-max": 2**31 - 1, "int32-min": -(2**31),
    "fraction": 3.14159, "negative-fraction": -0.5, "exponent": 1.5e-7, "large": 123456789.25,
}
# Near misses: one step outside a lexical rule, by the JSON kind and shape they apply to (each
# kept for a type only where that type's definition rejects it as a value of the right JSON kind).
_INVALID_TEXT: dict[str, str] = {
    "empty": "",
    "leading-space": " a",
    "trailing-space": "a ",
    "double-inner-space": "a  b",
    "whitespace-in-uri": "http://example.org/a b",
    "underscore-id": "a_b",
    "uuid-uppercase": "urn:uuid:6E8BC430-9C3A-11D9-9669-0800200C9A66",
    "oid-leading-zero": "urn:oid:1.02.3",
    "base64-bad": "not base64!",
}
_INVALID_TEMPORAL: dict[str, str] = {
    "empty": "",
    "not-a-leap-day": "2023-02-29",
    "day-31-of-30": "2024-04-31",
    "month-13": "2024-13-01",
    "month-00": "2024-00-10",
    "year-0000": "0000",
    "unpadded": "2024-5-1",
    "basic-format": "20240501",
    "hour-24": "2024-05-01T24:00:00Z",
    "minute-60": "2024-05-01T10:60:00Z",
    "no-zone": "2024-05-01T10:00:00",
    "no-seconds": "2024-05-01T10:00Z",
    "empty-fraction": "2024-05-01T10:00:00.Z",
    "offset-past-14": "2024-05-01T10:00:00+14:30",
    "offset-15": "2024-05-01T10:00:00-15:00",
    "offset-no-colon": "2024-05-01T10:00:00+0100",
    "lowercase-t-z": "2024-05-01t10:00:00z",
    "space-separator": "2024-05-01 10:00:00Z",
    "hour-only": "2024-05-01T10Z",
    "day-precision-instant": "2024-05-01",
    "time-with-zone": "10:00:00Z",
    "time-hour-24": "24:00:00",
}
_INVALID_NUMBER: dict[str, int] = {"int32-overflow": 2**31, "int32-underflow": -(2**31) - 1,
                                   "zero-int": 0, "negative-int": -1}
_TEMPORAL_TYPES = frozenset({"date", "dateTime", "instant", "time"})
# Offsets across the full range the regex allows, with both spellings of UTC.
_OFFSETS = ("Z", "+00:00", "-00:00", "+01:00", "+02:00", "-05:00", "+05:30", "+05:45", "-03:30",
            "+13:59", "+14:00", "-14:00")
_FRACTIONS = (1, 2, 3, 6, 9)
# Fixed local calendar edges (year, month, day, hour, minute, second) and their offset. The
# first and last years the regex allows are written in UTC: an offset would put the instant
# outside them.
_CALENDAR_EDGES: dict[str, tuple[tuple[int, int, int, int, int, int], str]] = {
    "leap-day": ((2024, 2, 29, 12, 0, 0), "+01:00"),
    "month-end-30": ((2023, 4, 30, 23, 59, 59), "+02:00"),
    "year-end": ((2023, 12, 31, 23, 59, 59), "+01:00"),
    "year-start": ((2024, 1, 1, 0, 0, 0), "+01:00"),
    "year-0001": ((1, 1, 1, 0, 0, 0), "Z"),
    "year-9999": ((9999, 12, 31, 23, 59, 59), "Z"),
}


@dataclass(frozen=True)
class Temporal:
    """How a date, dateTime or instant is written: precision, fraction digits, offset, and
    optionally a fixed local moment (a calendar edge) instead of the clock's."""

    precision: str  # "year", "month", "day", "second"
    digits: int = 0
    offset: str | None = "Z"
    local: tuple[int, int, int, int, int, int] | None = None

    def render(self, moment: dt.datetime) -> str:
        """`moment` (naive UTC, or ignored for a fixed local moment) in this form."""
        if self.local is not None:
            local = dt.datetime(*self.local, microsecond=moment.microsecond)
        else:
            local = moment + _offset_delta(self.offset or "Z")
        if self.precision == "year":
            return f"{local.year:04d}"
        if self.precision == "month":
            return f"{local.year:04d}-{local.month:02d}"
        if self.precision == "day":
            return f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
        text = f"{local.year:04d}-{local.month:02d}-{local.day:02d}T{local:%H:%M:%S}"
        if self.digits:
            micro = f"{local.microsecond:06d}"
            text += "." + (micro + "789")[: self.digits]
        return text + (self.offset or "")


def _offset_delta(offset: str) -> dt.timedelta:
    if offset == "Z":
        return dt.timedelta()
    sign = 1 if offset[0] == "+" else -1
    return sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))


def _temporal_probes() -> dict[str, Temporal]:
    probes: dict[str, Temporal] = {
        "precision-year": Temporal("year", offset=None),
        "precision-month": Temporal("month", offset=None),
        "precision-day": Temporal("day", offset=None),
        "precision-seconds": Temporal("second"),
    }
    for digits in _FRACTIONS:
        probes[f"fraction-{digits}"] = Temporal("second", digits)
    for offset in _OFFSETS:
        probes[f"offset{offset}"] = Temporal("second", 3, offset)
    for name, (local, offset) in _CALENDAR_EDGES.items():
        probes[name] = Temporal("second", 0, offset, local)
    return probes


TEMPORAL_PROBES = _temporal_probes()
_PROBE_MOMENT = dt.datetime(2024, 5, 1, 10, 30, 15, 123000)


@dataclass(frozen=True)
class ValueClass:
    """One class of one primitive type. `value` is a fixed probe value; `temporal`, for the
    valid classes of dates and times, renders the instant the generator supplies."""

    type: str
    name: str
    valid: bool
    value: Any = None
    temporal: Temporal | None = None

    @property
    def light(self) -> bool:
        """Small enough to draw at random in any Task (the covering set sends the heavy ones)."""
        return not (isinstance(self.value, str) and len(self.value) > HEAVY)

    @property
    def key(self) -> str:
        """`<type>:<class>`, e.g. `dateTime:offset-14:00`."""
        return f"{self.type}:{self.name}"

    def make(self, moment: dt.datetime | None = None) -> Any:
        if self.temporal is not None:
            return self.temporal.render(moment or _PROBE_MOMENT)
        return self.value


def _length_bounds(rule: Primitive, max_length: int | None) -> list[int]:
    """Lengths worth a class for this type: one past each storage limit, the bounds of a
    `{m,n}` quantifier in its regex (n and n+1), and its maxLength ceiling (and one past)."""
    lengths = {limit + 1 for limit in STORAGE_LIMITS}
    if rule.pattern is not None:
        for match in re.finditer(r"\{(\d+),(\d+)\}", rule.pattern.pattern):
            lengths |= {int(match.group(2)), int(match.group(2)) + 1}
    if max_length is not None:
        lengths = {n for n in lengths if n <= max_length + 1} | {max_length, max_length + 1}
    return sorted(lengths)


def _everyday(code: str) -> Any:
    """A plain value of the type (the class ordinary generated values fall in)."""
    return {"boolean": True, "integer": 7, "positiveInt": 7, "unsignedInt": 7, "decimal": 2.5,
            "uri": "http://example.org/fhir/x", "url": "http://example.org/fhir/x",
            "canonical": "http://example.org/fhir/x", "oid": "urn:oid:2.16.840.1.113883",
            "uuid": "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66", "id": "plain-id",
            "code": "plain", "base64Binary": "AAAA", "time": "10:00:00"}.get(code, "gewone tekst")


@cache
def value_classes(code: str) -> tuple[ValueClass, ...]:
    """Every class of primitive type `code` by its R4 definition (see `classes_of`)."""
    rule = primitive(code)
    return () if rule is None else classes_of(rule)


def classes_of(rule: Primitive) -> tuple[ValueClass, ...]:
    """Every class of the primitive type `rule` defines, valid ones first (the plain class
    leads), then the invalid ones (lexical form or value: what `<element>/format` covers).
    Empty for a type without a lexical rule (xhtml)."""
    code = rule.code
    if rule.kind == "string" and rule.pattern is None:
        return ()
    plain = {"date": Temporal("day", offset=None), "dateTime": Temporal("second", 3, "+01:00"),
             "instant": Temporal("second", 3, "Z")}.get(code)
    valid: dict[str, ValueClass] = {PLAIN: ValueClass(code, PLAIN, True, _everyday(code), plain)}
    candidates: dict[str, Any]
    near_misses: dict[str, Any]
    if rule.kind == "boolean":
        candidates, near_misses = {"true": True, "false": False}, {}
    elif rule.kind in ("integer", "number"):
        candidates, near_misses = dict(_NUMBER_PROBES), dict(_INVALID_NUMBER)
    elif code in _TEMPORAL_TYPES:
        candidates, near_misses = {}, dict(_INVALID_TEMPORAL)
    else:
        candidates = dict(_TEXT_PROBES)
        if rule.check("a b") is not None:  # no inner whitespace: identifiers, codes, URIs
            candidates |= {**_CODE_PROBES, **_ID_PROBES, **_URI_PROBES}
        near_misses = dict(_INVALID_TEXT)
        # a URI-like type gets its long values as absolute URIs (a system must be absolute)
        prefix = "http://example.org/" if rule.check("a b") is not None and rule.check("http://x/") is None else ""
        for length in _length_bounds(rule, rule.max_length):
            value = prefix + _filler(length - len(prefix)) if length > len(prefix) else _filler(length)
            (candidates if rule.check(value) is None else near_misses)[f"length-{length}"] = value
    for name, value in candidates.items():
        if rule.check(value) is None:
            valid[name] = ValueClass(code, name, True, value)
    if code in ("date", "dateTime", "instant"):
        for name, form in TEMPORAL_PROBES.items():
            if rule.check(form.render(_PROBE_MOMENT)) is None:
                valid[name] = ValueClass(code, name, True, temporal=form)
    invalid = {name: ValueClass(code, name, False, value) for name, value in near_misses.items()
               if (rule.check(value) or ("",))[0] == "format"}
    return tuple(valid.values()) + tuple(invalid.values())


def valid_classes(code: str) -> tuple[ValueClass, ...]:
    return tuple(v for v in value_classes(code) if v.valid)


def invalid_classes(code: str) -> tuple[ValueClass, ...]:
    return tuple(v for v in value_classes(code) if not v.valid)


def value_class(code: str, name: str) -> ValueClass | None:
    return next((v for v in value_classes(code) if v.name == name), None)


def case_variants(code: str) -> list[str]:
    """Spellings of a code that differ only in letter case: one step outside a value set for a
    server that looks codes up case-insensitively."""
    out = [code.upper(), code.capitalize()]
    return [v for i, v in enumerate(out) if v != code and v not in out[:i]]

