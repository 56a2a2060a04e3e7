"""FHIR R4 primitive datatypes: their JSON kind and lexical rules, read from the vendored R4
datatype definitions (the `regex` extension on `<type>.value`), plus the calendar rule the regexes
can't express (2021-02-30 matches the dateTime regex but is not a date)."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from functools import cache

from kt2conformance._errors import BigNumber
from kt2conformance.spec._lexical import lexical_problem
from kt2conformance.spec._profile import datatype_definition

_REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
_SYSTEM_KIND = {
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "number",
}
# R4's profiles-types.json types positiveInt/unsignedInt values as System.String, yet their JSON
# form is a number (R4 JSON rules, fhir.schema.json): the integer family is named here.
_INTEGER_TYPES = {"integer", "positiveInt", "unsignedInt"}
_DATED = {"date", "dateTime", "instant"}
# R4 (§2.1.28.0.1 string): "Strings SHALL NOT exceed 1MB (1024*1024 characters) in size"; the
# HL7 validator counts Java characters (UTF-16 code units).
MAX_STRING = 1024 * 1024
_XSD_SPACE = " \t\n\r"
_INT32 = (-(2**31), 2**31 - 1)
_REMEMBERED = 20_000  # strings remembered per type (then forgotten all at once)
_REMEMBERED_LENGTH = 256  # longer strings (narrative, descriptions) are judged every time


@dataclass(frozen=True)
class Primitive:
    """How one primitive type is written in JSON and what its lexical form must match."""

    code: str
    kind: str  # "string", "boolean", "integer" or "number": the JSON type it takes
    pattern: re.Pattern[str] | None
    max_length: int | None = None  # the definition's maxLength (string: 1 MiB), in characters
    # Answers for short strings already judged: codes, systems and URLs recur across the Tasks
    # of a run, and a regex with the validator's further checks costs far more than a lookup.
    # Not an init field: a changed copy (dataclasses.replace) judges afresh.
    _judged: dict[str, tuple[str, str] | None] = field(default_factory=dict, init=False, compare=False, repr=False)

    def check(self, value: object) -> tuple[str, str] | None:
        """Why `value` is not a valid JSON representation of this type, as (kind, message) with
        kind `type` (wrong JSON type) or `format` (wrong lexical form or value); None if valid.
        The answer depends on the value alone (so it can be remembered)."""
        if type(value) is not str or len(value) > _REMEMBERED_LENGTH:
            return self._judge(value)
        judged = self._judged
        if value in judged:
            return judged[value]
        if len(judged) >= _REMEMBERED:
            judged.clear()
        answer = judged[value] = self._judge(value)
        return answer

    def _judge(self, value: object) -> tuple[str, str] | None:
        if self.kind == "boolean":
            return None if isinstance(value, bool) else ("type", f"expected a JSON boolean for {self.code}")
        if self.kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                return "type", f"expected a JSON integer for {self.code}"
            if not _INT32[0] <= value <= _INT32[1]:
                size = f"{value}" if value.bit_length() < 64 else "a number"
                return "format", f"{size} is out of the 32-bit range of {self.code}"
            text = str(value)
        elif self.kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return "type", f"expected a JSON number for {self.code}"
            if isinstance(value, float) and not math.isfinite(value) and not isinstance(value, BigNumber):
                return "format", f"{value} is not a JSON number (NaN and Infinity are not JSON)"
            return None
        else:
            if not isinstance(value, str):
                return "type", f"expected a JSON string for {self.code}"
            if not value:
                # R4 §2.6.2 (JSON): primitive values are never empty; "" is no value at all
                return "format", f"an empty string is not a {self.code} (a primitive value is never empty)"
            if len(value) > MAX_STRING // 2 and _utf16_length(value) > MAX_STRING:
                return "format", f"a {self.code} of {_utf16_length(value)} characters: more than 1 MiB ({MAX_STRING})"
            text = value
        if self.max_length is not None and len(text) > self.max_length:
            return "format", f"{len(text)} characters: longer than the {self.max_length} {self.code} allows"
        if self.pattern is not None and not self.pattern.fullmatch(text):
            return "format", f"{_short(text)} is not a valid {self.code}"
        if self.code in _DATED and not _real_date(text):
            return "format", f"{_short(text)} is not a real calendar date"
        if self.kind == "string":
            problem = lexical_problem(self.code, text)
            if problem is not None:
                return "format", problem
        return None


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def xsd_regex(pattern: str) -> str:
    """An R4 regex as XML Schema reads it, in Python syntax: `\\s` is the four XML whitespace
    characters (space, tab, CR, LF) and `\\S` everything else, not Python's Unicode
    whitespace (a no-break space is not whitespace to FHIR, so it is a valid `code` character)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            esc = pattern[i + 1]
            out.append(f"[{_XSD_SPACE}]" if esc == "s" else f"[^{_XSD_SPACE}]" if esc == "S" else ch + esc)
            i += 2
        elif ch == "[":
            end = i + 1
            while end < len(pattern) and (pattern[end] != "]" or end == i + 1):
                end += 2 if pattern[end] == "\\" else 1
            body = pattern[i + 1:end]
            negated = body.startswith("^")
            body = body[1:] if negated else body
            has_not_space = "\\S" in body
            body = body.replace("\\S", "").replace("\\s", _XSD_SPACE)
            if has_not_space and not negated:
                # [ \r\n\t\S]: "not XML whitespace, or one of these", a union Python classes lack
                out.append(f"(?:[^{_XSD_SPACE}]" + (f"|[{body}])" if body else ")"))
            elif has_not_space:
                out.append(f"[{_XSD_SPACE}]" if not body else f"(?:(?![{body}])[{_XSD_SPACE}])")
            else:
                out.append(f"[{'^' if negated else ''}{body}]")
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _short(text: str, limit: int = 60) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _real_date(text: str) -> bool:
    parts = text[:10].split("-")
    if len(parts) < 3:
        return True  # year or year-month precision: the regex already bounds the month
    try:
        dt.date(int(parts[0]), int(parts[1]), int(parts[2][:2]))
    except ValueError:
        return False
    return True


@cache
def primitive(code: str) -> Primitive | None:
    """The rules of primitive type `code`, or None if `code` is not a primitive type."""
    sd = datatype_definition(code)
    if sd is None or sd.get("kind") != "primitive-type":
        return None
    value_el = next(e for e in sd["snapshot"]["element"] if e["id"] == f"{code}.value")
    type_ref = value_el["type"][0]
    kind = "integer" if code in _INTEGER_TYPES else _SYSTEM_KIND.get(type_ref["code"], "string")
    regex = next((x["valueString"] for x in type_ref.get("extension", []) if x["url"] == _REGEX_EXT), None)
    if kind == "number":
        regex = None  # a JSON number is already lexically a decimal
    return Primitive(code, kind, re.compile(xsd_regex(regex)) if regex else None,
                     value_el.get("maxLength"))
