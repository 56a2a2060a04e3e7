"""Errors that end a command with exit code 2 and a one-line message (never a traceback), and
reading the JSON files users hand over, which is where most of them come from."""

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["UsageError", "read_json_file"]

# Nesting read from a user's file: beyond the FHIR servers' limit (oracle.MAX_DEPTH), so such a
# Task reaches the oracle and is reported there; deeper files are refused as unreadable.
_READ_DEPTH = 5000


class UsageError(Exception):
    """Unusable input or set-up: a missing file, non-JSON, an unreadable profile, an unreachable
    target. The message is shown as one line; the exit code is 2 (docs/contract.md)."""


def read_json_file(path: Path, what: str = "file") -> Any:
    """The JSON in `path`; a missing, unreadable or non-JSON file is a UsageError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.__class__.__name__}") from None
    try:
        return load_json(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise UsageError(f"{what} {path} is nested more than {_READ_DEPTH} levels deep") from None


def _integer(text: str) -> int:
    """A JSON integer of any length (int() refuses more than 4,300 digits; Decimal does not)."""
    return int(text) if len(text) < 4000 else int(Decimal(text))


def load_json(text: str) -> Any:
    """JSON text as Python values: integers of any size, nesting up to _READ_DEPTH levels
    (RecursionError beyond)."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, _READ_DEPTH + 200))
    try:
        return json.loads(text, parse_int=_integer)
    finally:
        sys.setrecursionlimit(before)


def dump_json(value: Any) -> str:
    """JSON text of any value load_json gives (nesting up to _READ_DEPTH, lone surrogates
    escaped)."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, _READ_DEPTH * 2 + 200))
    try:
        return json.dumps(value, ensure_ascii=True)
    finally:
        sys.setrecursionlimit(before)


def printable(text: str) -> str:
    """Text safe to write to any terminal or file: lone surrogates (JSON can carry them) become
    backslash escapes instead of failing the output."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
