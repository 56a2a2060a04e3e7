"""Errors that end a command with exit code 2 and a one-line message (never a traceback), and
reading the JSON files users hand over, which is where most of them come from."""

from __future__ import annotations

import json
import math
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["BigNumber", "UsageError", "read_json_file"]

# Nesting read from a user's file: beyond the FHIR servers' limit (oracle.MAX_DEPTH), so such a
# Task reaches the oracle and is reported there; deeper files are refused as unreadable.
_READ_DEPTH = 5000


class UsageError(Exception):
    """Unusable input or set-up: a missing file, non-JSON, an unreadable profile, an unreachable
    target. The message is shown as one line; the exit code is 2 (docs/contract.md)."""


def read_json_file(path: Path, what: str = "file", duplicates: list[tuple[int, str]] | None = None) -> Any:
    """The JSON in `path`; a missing, unreadable or non-JSON file is a UsageError naming it.
    `duplicates` collects repeated property names (see load_json)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.__class__.__name__}") from None
    try:
        return load_json(text, duplicates)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise UsageError(f"{what} {path} is nested more than {_READ_DEPTH} levels deep") from None


def _integer(text: str) -> int:
    """A JSON integer of any length (int() refuses more than 4,300 digits; Decimal does not)."""
    return int(text) if len(text) < 4000 else int(Decimal(text))


class BigNumber(float):
    """A JSON number beyond a double's range (`1e400`): infinite as a float, yet a valid JSON
    number and FHIR decimal, so it keeps its text."""

    text: str

    def __new__(cls, text: str) -> BigNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number


def _number(text: str) -> float:
    value = float(text)
    return BigNumber(text) if math.isinf(value) else value


def load_json(text: str, duplicates: list[tuple[int, str]] | None = None) -> Any:
    """JSON text as Python values: integers of any size, numbers beyond a double as BigNumber,
    nesting up to _READ_DEPTH levels (RecursionError beyond). With `duplicates`, each property
    name an object repeats is added to it as (id of the object, name): Python keeps the last
    value, a FHIR server refuses the body."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, _READ_DEPTH + 200))

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if duplicates is not None and len(obj) < len(items):
            seen: set[str] = set()
            for name, _ in items:
                if name in seen:
                    duplicates.append((id(obj), name))
                seen.add(name)
        return obj

    try:
        return json.loads(text, parse_int=_integer, parse_float=_number,
                          object_pairs_hook=pairs if duplicates is not None else None)
    finally:
        sys.setrecursionlimit(before)


def dump_json(value: Any) -> str:
    """JSON text of any value load_json gives (nesting up to _READ_DEPTH, lone surrogates
    escaped), as a FHIR server reads it: a backspace or form feed is written `\\u0008` and
    `\\u000c`, never `\\b` and `\\f`, which the HL7 validator's JSON reader (JsonLexer) does not
    know and refuses the whole body for (HAPI FHIR 8.2: "unknown escape sequence")."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, _READ_DEPTH * 2 + 200))
    try:
        try:
            text = json.dumps(value, ensure_ascii=True, allow_nan=False)
        except ValueError:  # a BigNumber (written as its text) or a NaN/Infinity from Python
            text = json.dumps(value, ensure_ascii=True, default=str, cls=_BigNumberEncoder)
    finally:
        sys.setrecursionlimit(before)
    if "\\b" in text or "\\f" in text:
        text = _ESCAPE.sub(lambda m: _AS_UNICODE.get(m.group(1), m.group(0)), text)
    return text


# every escape of JSON text, read left to right (`\\\\f` is an escaped backslash and an f)
_ESCAPE = re.compile(r"\\(.)")
_AS_UNICODE = {"b": "\\u0008", "f": "\\u000c"}


class _BigNumberEncoder(json.JSONEncoder):
    """Writes a BigNumber as the number it was read from (the pure-Python encoder, used only
    when a value holds one)."""

    def iterencode(self, o: Any, _one_shot: bool = False) -> Any:
        float_repr = float.__repr__

        def floatstr(value: float, *_: Any) -> str:
            if isinstance(value, BigNumber):
                return value.text
            if value != value:
                return "NaN"
            if math.isinf(value):
                return "Infinity" if value > 0 else "-Infinity"
            return float_repr(value)

        markers: dict[int, Any] | None = {} if self.check_circular else None
        return json.encoder._make_iterencode(  # type: ignore[attr-defined]
            markers, self.default, json.encoder.encode_basestring_ascii, self.indent, floatstr,
            self.key_separator, self.item_separator, self.sort_keys, self.skipkeys, _one_shot)(o, 0)


def printable(text: str) -> str:
    """Text safe to write to any terminal or file: lone surrogates (JSON can carry them) become
    backslash escapes instead of failing the output."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
