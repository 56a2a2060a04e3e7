"""Errors that end a command with exit code 2 and a one-line message (never a traceback), and
reading the JSON files users hand over, which is where most of them come from."""

import json
from pathlib import Path
from typing import Any


class UsageError(Exception):
    """Unusable input or set-up: a missing file, non-JSON, an unreadable profile, an unreachable
    target. The message is shown as one line; the exit code is 2 (CONTRACT.md)."""


def read_json_file(path: Path, what: str = "file") -> Any:
    """The JSON in `path`; a missing, unreadable or non-JSON file is a UsageError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.__class__.__name__}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
